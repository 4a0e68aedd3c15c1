-- Disclosure log appends: each entry's previous hash, hash and subject pseudonym become their
-- 32 raw bytes (they were 64 lower-case hex digits), and the secondary indexes lose their
-- explicit `seq` column: on SQLite `seq` is the rowid, which every index entry carries and
-- orders by already. Smaller rows and index entries mean fewer pages written per commit.
-- The canonical encoding and every hash are unchanged (hashes were always over the bytes).
--
-- A value that is not 64 lower-case hex digits (a tampered row) is kept as its own bytes
-- rather than converted, so verification still reports that entry.
CREATE TABLE audit_log_binary (
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
    subject           BLOB,
    record_kind       TEXT,
    record_id         TEXT,
    fields_disclosed  TEXT    NOT NULL,
    fields_withheld   BIGINT  NOT NULL,
    outcome           TEXT    NOT NULL,
    reason            TEXT,
    source_addr       TEXT,
    cert_sha256       TEXT,
    detail            TEXT,
    prev_hash         BLOB    NOT NULL,
    entry_hash        BLOB    NOT NULL
);

INSERT INTO audit_log_binary
SELECT seq, at_us, kind, request_id, decision_id, policy_hash, recipient_partner,
       recipient_user, recipient_role, purpose, basis_kind, basis_ref, basis_rule,
       justification,
       CASE
           WHEN subject IS NULL THEN NULL
           WHEN typeof(subject) = 'text' AND length(subject) = 64
                AND subject = lower(subject) AND unhex(subject) IS NOT NULL
               THEN unhex(subject)
           ELSE CAST(subject AS BLOB)
       END,
       record_kind, record_id, fields_disclosed, fields_withheld, outcome, reason,
       source_addr, cert_sha256, detail,
       CASE
           WHEN typeof(prev_hash) = 'text' AND length(prev_hash) = 64
                AND prev_hash = lower(prev_hash) AND unhex(prev_hash) IS NOT NULL
               THEN unhex(prev_hash)
           ELSE CAST(prev_hash AS BLOB)
       END,
       CASE
           WHEN typeof(entry_hash) = 'text' AND length(entry_hash) = 64
                AND entry_hash = lower(entry_hash) AND unhex(entry_hash) IS NOT NULL
               THEN unhex(entry_hash)
           ELSE CAST(entry_hash AS BLOB)
       END
FROM audit_log
ORDER BY seq;

DROP TABLE audit_log;
ALTER TABLE audit_log_binary RENAME TO audit_log;

-- Compliance queries filter on one of these and page by `seq` (newest first); each index
-- orders its entries by rowid (= seq) within a key.
CREATE INDEX audit_log_subject ON audit_log (subject);
CREATE INDEX audit_log_recipient ON audit_log (recipient_partner);
CREATE INDEX audit_log_kind ON audit_log (kind);
CREATE INDEX audit_log_time ON audit_log (at_us);
