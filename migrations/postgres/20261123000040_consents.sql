-- The consent registry: consent directives sealed at rest, their subjects as blind indexes, and
-- their history. A consent's content (e.g. that a person is in substance-use treatment) is never
-- stored in clear: only its id, the collecting partner, times and status are. A revoked consent
-- is never deleted; every creation and revocation is an event row.
CREATE TABLE consents (
    id            TEXT   PRIMARY KEY NOT NULL,
    -- The partner that collected the consent (one of its disclosers).
    collected_by  TEXT   NOT NULL,
    -- The consent's own data key, wrapped under the master key.
    data_key_id   TEXT   NOT NULL REFERENCES data_keys (id),
    -- Recorded state: 'active' or 'revoked' (expiry is computed from the times).
    status        TEXT   NOT NULL,
    valid_from_us BIGINT NOT NULL,
    -- NULL when the consent expires on an event rather than a date.
    expires_us    BIGINT,
    created_at_us BIGINT NOT NULL,
    revoked_at_us BIGINT,
    -- Number of rows in consent_events.
    event_count   BIGINT NOT NULL,
    -- The directive as given (JSON), AES-256-GCM under the data key, bound to (id, collecting
    -- partner, version 1).
    body          BYTEA  NOT NULL
);

CREATE TABLE consent_events (
    consent_id    TEXT   NOT NULL REFERENCES consents (id),
    seq           BIGINT NOT NULL,
    -- 'created' or 'revoked'.
    event         TEXT   NOT NULL,
    actor_partner TEXT   NOT NULL,
    actor_user    TEXT   NOT NULL,
    at_us         BIGINT NOT NULL,
    -- The event as recorded (JSON, with the revocation's receipt and note), sealed and bound to
    -- (consent id, seq); it repeats the clear columns so that an edited row is detected.
    sealed        BYTEA  NOT NULL,
    PRIMARY KEY (consent_id, seq)
);

CREATE TABLE consent_subjects (
    consent_id  TEXT   NOT NULL REFERENCES consents (id),
    position    BIGINT NOT NULL,
    -- HMAC-SHA256 of the canonical identifier under the keyring's blind-index key.
    blind_index BYTEA  NOT NULL,
    -- The identifier, sealed and bound to (consent id, position).
    ciphertext  BYTEA  NOT NULL,
    PRIMARY KEY (consent_id, position)
);
CREATE INDEX consent_subjects_blind_index ON consent_subjects (blind_index);
