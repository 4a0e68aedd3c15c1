-- Disclosure log, format 2: free text (an emergency's threat description and stated basis,
-- suspension statements, review notes, details) is sealed under the log's free-text key and
-- stored in `sealed`; the clear columns `justification` and `detail` (and `basis_ref` of an
-- emergency basis) stay empty in format-2 rows. Rows written before this migration keep
-- format 1 and their clear text, and verify as before: `audit verify` recomputes each entry's
-- hash with the encoding of its own format. The encodings are specified in src/audit/mod.rs.
ALTER TABLE audit_log
    ADD COLUMN format INTEGER NOT NULL DEFAULT 1,
    ADD COLUMN sealed BYTEA;
