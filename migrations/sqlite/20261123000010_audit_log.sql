-- The tamper-evident disclosure log: entries, the chain head and signed checkpoints.
-- Hashes and pseudonyms are lower-case hex. The encoding is documented in src/audit/mod.rs.
-- On SQLite `seq` is the rowid (INTEGER PRIMARY KEY), so appends maintain one B-tree less.
CREATE TABLE audit_log (
    seq               INTEGER PRIMARY KEY NOT NULL,
    at_us             BIGINT  NOT NULL,
    kind              TEXT    NOT NULL,
    request_id        TEXT,
    decision_id       TEXT,
    policy_hash       TEXT,
    recipient_partner TEXT,
    recipient_user    TEXT,
    recipient_role    TEXT,
    purpose           TEXT,
    basis_kind        TEXT,
    basis_ref         TEXT,
    basis_rule        TEXT,
    justification     TEXT,
    subject           TEXT,
    record_kind       TEXT,
    record_id         TEXT,
    fields_disclosed  TEXT    NOT NULL,
    fields_withheld   BIGINT  NOT NULL,
    outcome           TEXT    NOT NULL,
    reason            TEXT,
    source_addr       TEXT,
    cert_sha256       TEXT,
    detail            TEXT,
    prev_hash         TEXT    NOT NULL,
    entry_hash        TEXT    NOT NULL
);
CREATE INDEX audit_log_subject ON audit_log (subject, seq);
CREATE INDEX audit_log_recipient ON audit_log (recipient_partner, seq);
CREATE INDEX audit_log_time ON audit_log (at_us);
CREATE INDEX audit_log_kind ON audit_log (kind, seq);

-- One row: the last sequence number and hash. Every append locks it first.
CREATE TABLE audit_head (
    id        INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    seq       BIGINT  NOT NULL,
    head_hash TEXT    NOT NULL
);
INSERT INTO audit_head (id, seq, head_hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE audit_checkpoints (
    seq       BIGINT PRIMARY KEY NOT NULL,
    head_hash TEXT   NOT NULL,
    at_us     BIGINT NOT NULL,
    key_id    TEXT   NOT NULL,
    signature TEXT   NOT NULL
);
