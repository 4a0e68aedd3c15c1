-- Disclosure log appends: each entry's previous hash, hash and subject pseudonym become their
-- 32 raw bytes (they were 64 lower-case hex digits). Smaller rows and index entries mean less
-- written per commit. The canonical encoding and every hash are unchanged (hashes were always
-- over the bytes). The subject index is rebuilt by the type change.
--
-- A value that is not 64 lower-case hex digits (a tampered row) is kept as its own bytes
-- rather than converted, so verification still reports that entry.
ALTER TABLE audit_log
    ALTER COLUMN subject TYPE BYTEA USING (
        CASE
            WHEN subject ~ '^[0-9a-f]{64}$' THEN decode(subject, 'hex')
            ELSE convert_to(subject, 'UTF8')
        END),
    ALTER COLUMN prev_hash TYPE BYTEA USING (
        CASE
            WHEN prev_hash ~ '^[0-9a-f]{64}$' THEN decode(prev_hash, 'hex')
            ELSE convert_to(prev_hash, 'UTF8')
        END),
    ALTER COLUMN entry_hash TYPE BYTEA USING (
        CASE
            WHEN entry_hash ~ '^[0-9a-f]{64}$' THEN decode(entry_hash, 'hex')
            ELSE convert_to(entry_hash, 'UTF8')
        END);
