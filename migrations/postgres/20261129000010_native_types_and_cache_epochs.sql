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
ALTER TABLE audit_head
    ALTER COLUMN head_hash TYPE BYTEA USING (
        CASE
            WHEN head_hash ~ '^[0-9a-f]{64}$' THEN decode(head_hash, 'hex')
            ELSE convert_to(head_hash, 'UTF8')
        END);
ALTER TABLE audit_checkpoints
    ALTER COLUMN head_hash TYPE BYTEA USING (
        CASE
            WHEN head_hash ~ '^[0-9a-f]{64}$' THEN decode(head_hash, 'hex')
            ELSE convert_to(head_hash, 'UTF8')
        END);
