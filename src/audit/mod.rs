//! The tamper-evident disclosure log.
//!
//! Security role: every disclosure and every denial, every security event (refused handshakes
//! and tokens, policy reloads, key rotations, consent changes) and every read of the log
//! itself is an entry in one SHA-256 hash chain, durably committed before the answer it
//! describes leaves the gateway. Compliance officers query it, produce a subject's accounting
//! of disclosures (HIPAA 164.528) from it, and verify it; partners keep copies of its signed
//! checkpoints so that even a rewrite by someone able to recompute every hash is caught
//! (CJIS AU-9). Subjects appear only as keyed pseudonyms and free text is sealed
//! ([`LogTextKey`]): a leaked log names nobody. An RFC 6962 Merkle tree over the entries,
//! C2SP checkpoints, proofs and witness cosignatures ([`tree`], [`transparency`], [`witness`])
//! let partners check the log without trusting the operator and without reading entries.
//!
//! # Entries
//!
//! An entry ([`Entry`]) holds its sequence number (from 1, no gaps), the time (UTC,
//! microseconds), request id, decision id, policy-set hash, recipient partner, user and role,
//! purpose, legal basis (MOU id and rule, consent id, emergency with its stated basis, court
//! order id, or 42 CFR 2.51 medical emergency with its documentation),
//! justification (required for emergency access), the subject as a pseudonym, the record kind
//! and id, the fields disclosed with their transforms, the count of fields withheld, the outcome
//! (permit, or deny with a reason code), the source address, the client-certificate
//! fingerprint, a detail text, the previous entry's hash and its own hash.
//!
//! # Canonical encoding, format 1 (entries written before free text was sealed)
//!
//! A format-1 entry's hash is `SHA-256(E)` where `E` is the concatenation of, in this order:
//!
//! | item | encoding |
//! |---|---|
//! | domain | the 33 ASCII bytes `coresponse-gateway/audit-entry/v1` |
//! | previous hash | 32 bytes (32 zero bytes before entry 1) |
//! | seq | u64, 8 bytes big-endian |
//! | time | i64 Unix microseconds, 8 bytes big-endian |
//! | kind | str |
//! | request_id, decision_id, policy_hash, recipient_partner, recipient_user, recipient_role, purpose | opt-str each |
//! | basis | `00` none; `01` str mou_id, str rule; `02` str consent_id; `03` str stated_basis; `04` str order_id (court order, 42 CFR 2.64/2.65); `05` str documentation (medical emergency, 42 CFR 2.51) |
//! | justification | opt-str |
//! | subject | `00`, or `01` and the 32 pseudonym bytes |
//! | record | `00`, or `01` str kind, str id |
//! | fields disclosed | u32 count (4 bytes big-endian), then per field: str field, str transform |
//! | fields withheld | u32, 4 bytes big-endian |
//! | outcome | `00` permit; `01` str reason |
//! | source_addr, cert_sha256, detail | opt-str each |
//!
//! where `str` is a u32 byte length (4 bytes big-endian) followed by the UTF-8 bytes, and
//! `opt-str` is `00` for absent or `01` followed by a `str`. In the `audit_log` table the
//! previous hash, the entry hash and the subject pseudonym are stored as their 32 raw bytes
//! (BLOB on SQLite, BYTEA on PostgreSQL); the head row and the checkpoints keep hashes as
//! lower-case hex, and the API, reports and CLI show every hash and pseudonym as lower-case
//! hex. In the database the basis is split into `basis_kind` (`mou`, `consent`, `emergency`,
//! `court_order`, `medical_emergency`), `basis_ref` (MOU id, consent id, stated basis, order id
//! or the 2.51 documentation) and `basis_rule`; the fields disclosed are
//! a JSON array of `{"field", "transform"}` objects. A verifier reads the row, rebuilds `E`
//! and compares; entry `n` must carry entry `n - 1`'s hash as its previous hash.
//!
//! # Canonical encoding, format 2 (sealed free text; the Merkle leaf)
//!
//! Every entry written since migration `20261201000100` (`audit_log.format = 2`) is encoded as
//! `E2`: the same items in the same order as format 1 with these changes: the domain is the
//! 33 ASCII bytes `coresponse-gateway/audit-entry/v2`; an emergency basis is `03` alone (the
//! stated basis is sealed) and a medical-emergency basis `05` alone (the 42 CFR 2.51(c)
//! documentation, which names the medical personnel, is sealed), while a court-order basis
//! stays `04` str order_id (a random id the gateway gave the order); the justification and
//! the detail are left out; and the last item is the sealed free text, `00`, or `01` and a
//! u32 big-endian length and the sealed bytes ([`LogTextKey`]: `0x01 || nonce || AES-256-GCM
//! ciphertext and tag` of the three optional strings basis text (stated basis or 2.51
//! documentation), justification, detail). In the database a format-2 entry's `basis_ref` is
//! empty for both emergency bases and holds the order id for a court order. The entry's hash is
//! `SHA-256(0x00 || E2)`: the RFC 6962 leaf hash, which is also its chain hash (the next
//! entry's previous hash). The first format-2 entry's previous hash is the last format-1
//! entry's hash.
//!
//! # Merkle tree
//!
//! Leaf `i` of the tree is entry `tree_base + 1 + i` (`tree_base`: the head when migration
//! `20261201000110` ran; 0 for a log created since). The tree's size and right edge are kept
//! in the head row and moved in the appending transaction under the same lock; each append
//! stores its leaf and the subtree hashes it completes in `audit_tree` ([`tree`]). Signed tree
//! heads are C2SP checkpoints ([`TreeCheckpoint`], [`crate::crypto::note`]), made with the
//! chain checkpoints and by the same key.
//!
//! # Chain, head and checkpoints
//!
//! The `audit_head` row holds the last sequence number and hash. Every append runs in one
//! database transaction that first locks that row (`UPDATE audit_head ... RETURNING`: a row
//! lock on PostgreSQL, the database write lock on SQLite), reads the head, inserts the entries
//! chained after it, moves the head and commits. The head is never taken from a process's
//! memory, so gateway replicas sharing one database never fork the chain.
//!
//! Every `checkpoint_every_entries` entries (in the appending transaction) and every
//! `checkpoint_every_secs` seconds (if the head moved), the gateway signs
//! `coresponse-gateway/audit-checkpoint/v1 || seq (u64 BE) || head hash || time (i64 BE µs)`
//! with its Ed25519 checkpoint key ([`checkpoint`]).
//!
//! # Verification
//!
//! [`verify_store`] (and `coresponse-gateway audit verify`, `GET /v1/audit/verify`) reads the
//! whole chain in order, recomputes every hash and link, checks every checkpoint's signature
//! and that the entry at its sequence number carries its hash, compares the end with the head,
//! and names the first failing entry and how it fails ([`FailureKind`]): altered, deleted
//! (gap, renumbering or truncated tail), inserted, reordered, a broken link (an earlier entry
//! rewritten and re-hashed) or a checkpoint mismatch. Partners' copies of checkpoints are
//! checked the same way. The Merkle tree is rebuilt from the stored leaves at the same time:
//! every stored subtree hash, every signed tree head's signature and root, and the leaves of
//! the stored entries are checked ([`transparency`]). The chain is read in ranges, one per
//! core, checked on their own and joined in order; the first entry that fails is classified
//! exactly as a verification one entry after the other would (`stored.rs`). The offline command opens the database read-only
//! (`Store::open_read_only`): it creates, migrates and writes nothing. Non-goal: the chain is not keyed, so entries appended after the
//! last checkpoint by someone who can write to the database and recompute hashes are caught
//! only by the head row (also in the database); the checkpoint interval bounds that window.
//!
//! # Durability and fail-closed
//!
//! [`DisclosureLog::append`] returns only after the transaction holding the entry has
//! committed durably (SQLite: WAL with `synchronous = FULL`; PostgreSQL: synchronous commit).
//! Concurrent appends are batched by one writer task into one transaction and one flush
//! (group commit); each caller is woken with its own sequence number once that commit is
//! done, or with an error for the whole batch. Any error means nothing may be disclosed: the
//! API maps every [`LogError`] to an opaque 503. The writer task keeps a native connection of
//! its own (on SQLite with the pool's WAL and `synchronous = FULL` settings) and inserts each
//! batch with a few multi-row INSERTs.
//!
//! # Key operations
//!
//! `coresponse-gateway keys rotate`, `keys rewrap` and `keys retire` each append a
//! `key_rotated` entry whose detail says what was done (versions and data-key counts, never
//! key material) and wait for its durable commit before reporting success. If the entry
//! cannot be written the command fails and says what had already changed.
//!
//! For a record read, "the entry commits in the same transaction as the read it describes"
//! holds as follows: the read path reads the record, decides and redacts into the answer
//! body, then appends the entry describing exactly that answer and awaits its durable commit;
//! only then is the body handed to the HTTP layer. A read changes no state, so the only thing
//! that must be atomic with it is that no answer exists without its entry, and a crash at any
//! instant loses no entry of an answer that was sent. The append returns a [`Receipt`] only
//! after that commit, and a record's values open only with a receipt for that very record. A
//! change that must commit atomically with its entry uses [`DisclosureLog::begin`], which
//! returns a [`LogTx`].
//!
//! # Retention
//!
//! [`retention::purge`] removes entries older than the retention period (6 years by default,
//! HIPAA 164.528 and 164.316), but only up to a checkpoint whose signature verifies and whose
//! chain prefix verifies: the remaining chain then starts from that signed checkpoint.

pub mod accounting;
mod canonical;
pub mod checkpoint;
mod db;
mod entry;
pub mod metrics;
pub mod part2;
pub use crate::crypto::note;
pub mod query;
pub mod reasons;
pub mod retention;
mod scan;
mod sealed;
mod stored;
use stored::Cores;
pub use stored::Progress;
pub mod summary;
pub mod suspension;
pub mod transparency;
pub mod tree;
mod verify;
pub mod witness;
mod writer;

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use canonical::{
    ChainHash, ENTRY_DOMAIN, ENTRY_DOMAIN_V2, encode_into, encode_v2_into, entry_hash,
    entry_hash_with, leaf_hash_with,
};
pub use checkpoint::{
    Checkpoint, CheckpointExport, CheckpointSigner, DEFAULT_ORIGIN, TreeCheckpoint,
};
pub use entry::{
    AppendedEntry, Entry, EntryFormat, EntryKind, FieldDisclosure, LegalBasis, MAX_FIELDS,
    MAX_TEXT, NewEntry, Outcome, RecordRef, SubjectPseudonym,
};
pub use sealed::{LogTextKey, SealedEntry, TEXT_DOMAIN};
pub use verify::{
    Anchor, ChainFailure, FailureKind, Verifier, VerifySummary, verify_entries,
    verify_entries_parallel,
};
pub use writer::{DisclosureLog, LogRef, LogStats, LogTx, Receipt};

use crate::store::{Store, StoreError};

/// A disclosure-log failure. Whatever the variant, nothing may be disclosed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The entry is malformed (a bug in the caller).
    #[error("invalid log entry: {0}")]
    Invalid(String),
    /// The database failed.
    #[error("disclosure log database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The store failed.
    #[error("disclosure log database error: {0}")]
    Store(#[from] StoreError),
    /// The verification scan of the database file failed.
    #[error("disclosure log database error: {0}")]
    Scan(String),
    /// The group commit holding the entry failed.
    #[error("disclosure log write failed: {0}")]
    WriteFailed(String),
    /// The writer task is gone.
    #[error("the disclosure log writer has stopped")]
    Closed,
    /// A stored row cannot be read back as an entry.
    #[error("log entry {seq} is unreadable: {why}")]
    Corrupt {
        /// Its sequence number (0 if unknown).
        seq: u64,
        /// What is wrong.
        why: String,
    },
    /// A key could not be loaded.
    #[error("{0}")]
    Key(String),
}

type HmacSha256 = Hmac<Sha256>;

/// The key that turns subject identifiers into pseudonyms.
#[derive(Clone)]
pub struct SubjectKey([u8; 32]);

impl std::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubjectKey(..)")
    }
}

/// Label of the pseudonym key derivation.
pub const PSEUDONYM_KEY_LABEL: &[u8] = b"coresponse-gateway/subject-pseudonym/v1";

impl SubjectKey {
    /// A key from 32 bytes.
    pub fn new(key: [u8; 32]) -> Self {
        Self(key)
    }

    /// Derives a pseudonym key from 32 bytes of key material:
    /// `HMAC-SHA256(key = material, message = "coresponse-gateway/subject-pseudonym/v1")`.
    /// The gateway itself uses the keyring's stable subject-pseudonym key
    /// ([`crate::crypto::Keyring::subject_pseudonym_key`]), which survives master-key rotation.
    pub fn derive(master: &[u8; 32]) -> Self {
        Self(hmac32(master, &[PSEUDONYM_KEY_LABEL]))
    }

    /// The pseudonym of the identifier `value` in the identifier system `system` (e.g. a
    /// medical record number system): `HMAC-SHA256(key, "coresponse-gateway/subject/v1" ||
    /// str(system) || str(value))` with `str` a u32 big-endian length and the UTF-8 bytes.
    /// No normalization is applied: callers pass identifiers in their canonical form.
    pub fn pseudonym(&self, system: &str, value: &str) -> SubjectPseudonym {
        let sl = u32::try_from(system.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes();
        let vl = u32::try_from(value.len()).unwrap_or(u32::MAX).to_be_bytes();
        SubjectPseudonym(hmac32(
            &self.0,
            &[
                b"coresponse-gateway/subject/v1",
                &sl,
                system.as_bytes(),
                &vl,
                value.as_bytes(),
            ],
        ))
    }
}

fn hmac32(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// The result of verifying a stored log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreVerification {
    /// The chain result.
    #[serde(flatten)]
    pub summary: VerifySummary,
    /// The first stored sequence number (greater than 1 after a purge).
    pub first_seq: Option<u64>,
    /// Checkpoints whose signature and hash were checked (the log's and a partner's).
    pub checkpoints_checked: usize,
    /// Whether checkpoint signatures could be checked (a public key was known).
    pub signatures_checked: bool,
    /// The Merkle tree: its stored hashes rebuilt from the leaves, the signed tree heads, and
    /// the witnesses required (none when the chain failed first).
    pub tree: Option<transparency::TreeVerification>,
}

impl StoreVerification {
    /// Whether the whole log verified: the chain and the tree.
    pub fn ok(&self) -> bool {
        self.summary.failure.is_none() && self.tree.as_ref().is_none_or(|t| t.failure.is_none())
    }
}

/// Verifies the whole stored log: every hash and link, the head, every stored checkpoint and
/// each of `partner_checkpoints` (a partner's copies), and the Merkle tree. `key` checks
/// checkpoint signatures; without it only their hashes are compared, and a purged log cannot
/// be anchored.
pub async fn verify_store(
    store: &Store,
    key: Option<&ed25519_dalek::VerifyingKey>,
    partner_checkpoints: Option<&CheckpointExport>,
) -> Result<StoreVerification, LogError> {
    verify_store_witnessed(store, key, partner_checkpoints, &[]).await
}

/// [`verify_store`], also requiring a signed tree head cosigned by every witness of
/// `witnesses` (name and cosignature key).
pub async fn verify_store_witnessed(
    store: &Store,
    key: Option<&ed25519_dalek::VerifyingKey>,
    partner_checkpoints: Option<&CheckpointExport>,
    witnesses: &[(String, note::VerifierKey)],
) -> Result<StoreVerification, LogError> {
    verify_store_against(store, key, partner_checkpoints, &[], witnesses).await
}

/// [`verify_store_witnessed`], also checking tree heads a partner saved (C2SP checkpoints
/// whose signature the caller verified, e.g. a witness's state file): the stored tree must
/// reach each one's size with the same root. A saved head larger than the stored tree is a
/// rollback (a restore that lacks the newest entries, or a truncation); another root at its
/// size is a rewrite or a fork.
pub async fn verify_store_against(
    store: &Store,
    key: Option<&ed25519_dalek::VerifyingKey>,
    partner_checkpoints: Option<&CheckpointExport>,
    partner_heads: &[note::TreeHead],
    witnesses: &[(String, note::VerifierKey)],
) -> Result<StoreVerification, LogError> {
    let progress = Progress::default();
    verify_store_reporting(
        store,
        key,
        partner_checkpoints,
        partner_heads,
        witnesses,
        &progress,
    )
    .await
}

/// [`verify_store_against`], counting the entries read into `progress` as it goes (for a
/// progress display; the result is the same).
pub async fn verify_store_reporting(
    store: &Store,
    key: Option<&ed25519_dalek::VerifyingKey>,
    partner_checkpoints: Option<&CheckpointExport>,
    partner_heads: &[note::TreeHead],
    witnesses: &[(String, note::VerifierKey)],
    progress: &Progress,
) -> Result<StoreVerification, LogError> {
    verify_on(
        store,
        key,
        partner_checkpoints,
        partner_heads,
        witnesses,
        Cores::All,
        progress.clone(),
    )
    .await
}

/// [`verify_store`] as a serving gateway runs it (`GET /v1/audit/verify`): on half the
/// machine's cores, so that requests go on being answered meanwhile.
pub async fn verify_store_serving(
    store: &Store,
    key: Option<&ed25519_dalek::VerifyingKey>,
) -> Result<StoreVerification, LogError> {
    verify_on(store, key, None, &[], &[], Cores::Half, Progress::default()).await
}

async fn verify_on(
    store: &Store,
    key: Option<&ed25519_dalek::VerifyingKey>,
    partner_checkpoints: Option<&CheckpointExport>,
    partner_heads: &[note::TreeHead],
    witnesses: &[(String, note::VerifierKey)],
    cores: Cores,
    progress: Progress,
) -> Result<StoreVerification, LogError> {
    // The chain and the tree are read at the same time; the tree's leaves are then compared
    // with the entries' hashes. A tree is reported only for a chain that verifies.
    let (chain, tree) = tokio::join!(
        stored::verify_chain(store, key, partner_checkpoints, cores, progress),
        transparency::verify_tree(store, key, witnesses)
    );
    let (mut out, (first_leaf, leaves)) = chain?;
    if out.summary.failure.is_none() {
        let mut tree = tree?.with_entries((first_leaf, &leaves));
        if tree.failure.is_none() {
            let mut pooled = store.acquire().await?;
            tree.failure =
                transparency::check_partner_heads(&mut pooled.conn(), &tree, partner_heads).await?;
            tree.partner_heads_checked = partner_heads.len();
        }
        out.tree = Some(tree);
    }
    Ok(out)
}

/// The stored checkpoints, ascending.
pub async fn stored_checkpoints(store: &Store) -> Result<Vec<Checkpoint>, LogError> {
    let mut pooled = store.acquire().await?;
    db::checkpoints(&mut pooled.conn()).await
}

/// The current head (sequence number and hash).
pub async fn head(store: &Store) -> Result<(u64, ChainHash), LogError> {
    let mut pooled = store.acquire().await?;
    db::read_head(&mut pooled.conn()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_keyed_and_unambiguous() {
        let k = SubjectKey::derive(&[1; 32]);
        let a = k.pseudonym("mrn", "12345");
        assert_eq!(a, k.pseudonym("mrn", "12345"));
        assert_ne!(a, k.pseudonym("mrn", "12346"));
        assert_ne!(k.pseudonym("mr", "n12345"), a);
        assert_ne!(SubjectKey::derive(&[2; 32]).pseudonym("mrn", "12345"), a);
        assert!(!a.to_hex().contains("12345"));
        assert_eq!(SubjectPseudonym::from_hex(&a.to_hex()), Some(a));
    }

    #[test]
    fn the_key_derivation_is_the_documented_hmac() {
        let master = [0x11; 32];
        let mut mac = HmacSha256::new_from_slice(&master).unwrap();
        mac.update(b"coresponse-gateway/subject-pseudonym/v1");
        let want: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(SubjectKey::derive(&master).0, want);
    }
}
