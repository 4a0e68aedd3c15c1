-- Policy changes (CJIS AU-2): the files of every policy set a gateway ran with, by content hash,
-- and one row per policy load (start-up and SIGHUP), keyed by the sequence number of its
-- policy_reloaded entry in the disclosure log, with the full diff against the set before it.
-- Policy files hold no personal data.
CREATE TABLE policy_sets (
    hash               TEXT   PRIMARY KEY NOT NULL,
    -- Every .toml file of the set (JSON: path to text); its hash is the key.
    files              TEXT   NOT NULL,
    first_loaded_at_us BIGINT NOT NULL
);

CREATE TABLE policy_changes (
    seq           BIGINT PRIMARY KEY NOT NULL,
    at_us         BIGINT NOT NULL,
    -- 'start-up' or 'reload'.
    trigger       TEXT   NOT NULL,
    previous_hash TEXT,
    new_hash      TEXT   NOT NULL,
    -- Counts by change type (JSON).
    summary       TEXT   NOT NULL,
    -- The full diff (JSON); its SHA-256 is in the log entry. NULL when the sets could not be
    -- compared (no earlier set, or one this build cannot read).
    diff          TEXT
);

-- Agreed restrictions (HIPAA 164.522(a), 42 CFR 2.26) and court orders (42 CFR 2.64, 2.65):
-- sealed at rest like consents. Only the id, the kind, who recorded it and when, the dates and
-- who ended it are in clear; the body (recipients, purposes, what it covers, the court and
-- docket) and the subject identifiers are sealed under the directive's own data key.
CREATE TABLE subject_directives (
    id               TEXT   PRIMARY KEY NOT NULL,
    -- 'restriction' or 'court_order'.
    directive        TEXT   NOT NULL,
    recorded_by      TEXT   NOT NULL,
    recorded_by_user TEXT   NOT NULL,
    recorded_at_us   BIGINT NOT NULL,
    data_key_id      TEXT   NOT NULL REFERENCES data_keys (id),
    valid_from_us    BIGINT NOT NULL,
    -- NULL: until ended (restrictions only; an order always has an end).
    ends_at_us       BIGINT,
    ended_at_us      BIGINT,
    ended_by_partner TEXT,
    ended_by_user    TEXT,
    -- The directive as recorded (JSON), AES-256-GCM bound to (kind, id, recording partner).
    body             BLOB  NOT NULL,
    -- The end (who, when, why), sealed and bound to (kind, id).
    end_sealed       BLOB
);
CREATE INDEX subject_directives_kind ON subject_directives (directive, recorded_at_us);

CREATE TABLE subject_directive_subjects (
    directive_id TEXT   NOT NULL REFERENCES subject_directives (id),
    position     BIGINT NOT NULL,
    -- Keyed HMAC of the canonical identifier (lookup), and the identifier sealed.
    blind_index  BLOB  NOT NULL,
    ciphertext   BLOB  NOT NULL,
    PRIMARY KEY (directive_id, position)
);
CREATE INDEX subject_directive_subjects_index ON subject_directive_subjects (blind_index);
