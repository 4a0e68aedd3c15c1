-- Encryption at rest: wrapped data keys, records, their versions, encrypted field values and
-- blind-indexed subject identifiers. No clear-text field value or identifier is stored.
CREATE TABLE data_keys (
    id              TEXT    PRIMARY KEY NOT NULL,
    purpose         TEXT    NOT NULL,
    master_version  BIGINT  NOT NULL,
    wrapped         BLOB    NOT NULL,
    created_at_us   BIGINT  NOT NULL,
    rewrapped_at_us BIGINT
);
CREATE INDEX data_keys_master_version ON data_keys (master_version);

CREATE TABLE records (
    kind            TEXT   NOT NULL,
    id              TEXT   NOT NULL,
    owner           TEXT   NOT NULL,
    data_key_id     TEXT   NOT NULL REFERENCES data_keys (id),
    current_version BIGINT NOT NULL,
    created_at_us   BIGINT NOT NULL,
    updated_at_us   BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);

CREATE TABLE record_versions (
    kind             TEXT   NOT NULL,
    id               TEXT   NOT NULL,
    version          BIGINT NOT NULL,
    author_partner   TEXT   NOT NULL,
    author_user      TEXT   NOT NULL,
    at_us            BIGINT NOT NULL,
    changed_fields   TEXT   NOT NULL,
    subjects_changed BIGINT NOT NULL,
    manifest         BLOB   NOT NULL,
    PRIMARY KEY (kind, id, version),
    FOREIGN KEY (kind, id) REFERENCES records (kind, id)
);

CREATE TABLE record_fields (
    kind       TEXT   NOT NULL,
    id         TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    field      TEXT   NOT NULL,
    ciphertext BLOB   NOT NULL,
    PRIMARY KEY (kind, id, version, field),
    FOREIGN KEY (kind, id, version) REFERENCES record_versions (kind, id, version)
);

CREATE TABLE record_subjects (
    kind        TEXT   NOT NULL,
    id          TEXT   NOT NULL,
    position    BIGINT NOT NULL,
    blind_index BLOB   NOT NULL,
    ciphertext  BLOB   NOT NULL,
    PRIMARY KEY (kind, id, position),
    FOREIGN KEY (kind, id) REFERENCES records (kind, id)
);
CREATE INDEX record_subjects_blind_index ON record_subjects (blind_index);
