-- Cache coherence across gateway replicas: counters moved in the transaction of every consent
-- change (consents) and with every master-key operation (keys). Each record read returns them;
-- a gateway drops what it cached under older values before it decides.
CREATE TABLE cache_epochs (
    id       INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    consents BIGINT  NOT NULL,
    keys     BIGINT  NOT NULL
);
INSERT INTO cache_epochs (id, consents, keys) VALUES (1, 0, 0);

-- The chain head and checkpoint hashes become their 32 raw bytes (they were 64 lower-case hex
-- digits), like the hashes of the entries. A value that is not 64 lower-case hex digits (a
-- tampered row) is kept as its own bytes, so verification still reports it.
CREATE TABLE audit_head_binary (
    id        INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    seq       BIGINT  NOT NULL,
    head_hash BLOB    NOT NULL
);
INSERT INTO audit_head_binary (id, seq, head_hash)
SELECT id, seq,
       CASE
           WHEN typeof(head_hash) = 'text' AND length(head_hash) = 64
                AND head_hash = lower(head_hash) AND unhex(head_hash) IS NOT NULL
               THEN unhex(head_hash)
           ELSE CAST(head_hash AS BLOB)
       END
FROM audit_head;
DROP TABLE audit_head;
ALTER TABLE audit_head_binary RENAME TO audit_head;

CREATE TABLE audit_checkpoints_binary (
    seq       BIGINT PRIMARY KEY NOT NULL,
    head_hash BLOB   NOT NULL,
    at_us     BIGINT NOT NULL,
    key_id    TEXT   NOT NULL,
    signature TEXT   NOT NULL
);
INSERT INTO audit_checkpoints_binary (seq, head_hash, at_us, key_id, signature)
SELECT seq,
       CASE
           WHEN typeof(head_hash) = 'text' AND length(head_hash) = 64
                AND head_hash = lower(head_hash) AND unhex(head_hash) IS NOT NULL
               THEN unhex(head_hash)
           ELSE CAST(head_hash AS BLOB)
       END,
       at_us, key_id, signature
FROM audit_checkpoints;
DROP TABLE audit_checkpoints;
ALTER TABLE audit_checkpoints_binary RENAME TO audit_checkpoints;
