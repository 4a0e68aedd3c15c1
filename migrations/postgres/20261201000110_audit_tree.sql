-- The disclosure log's RFC 6962 Merkle tree, C2SP checkpoints and witness cosignatures.
--
-- Leaf i of the tree is the entry with sequence number tree_base + 1 + i; tree_base is the
-- head's sequence number when this migration ran, so entries written before it (format 1) stay
-- covered by the hash chain only, and the first leaf's encoding carries the hash of the last of
-- them: every signed tree head commits to the whole log. `audit_head` keeps the tree's size and
-- its right edge (the roots of its complete subtrees, largest first, 32 bytes each), read and
-- moved under the same row lock as the chain head, so replicas on one database build one tree.
ALTER TABLE audit_head
    ADD COLUMN tree_base BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN tree_size BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN tree_peaks BYTEA NOT NULL DEFAULT ''::bytea;
UPDATE audit_head SET tree_base = seq;

-- Every leaf and complete subtree hash, numbered as Go's sumdb/tlog StoredHashIndex: rows are
-- only ever added at the end. A retention purge removes entries, never these hashes.
CREATE TABLE audit_tree (
    idx  BIGINT  PRIMARY KEY NOT NULL,
    hash BYTEA   NOT NULL
);

-- Signed tree heads (C2SP tlog-checkpoint signed notes, the gateway's signature only).
CREATE TABLE audit_tree_checkpoints (
    tree_size BIGINT PRIMARY KEY NOT NULL,
    root_hash BYTEA  NOT NULL,
    at_us     BIGINT NOT NULL,
    note      TEXT   NOT NULL
);

-- Witness cosignatures (C2SP tlog-cosignature lines), one per checkpoint and witness.
CREATE TABLE audit_cosignatures (
    tree_size      BIGINT NOT NULL,
    witness        TEXT   NOT NULL,
    cosigned_at    BIGINT NOT NULL,
    line           TEXT   NOT NULL,
    received_at_us BIGINT NOT NULL,
    PRIMARY KEY (tree_size, witness)
);
