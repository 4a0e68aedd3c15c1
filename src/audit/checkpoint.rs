//! Signed checkpoints: an Ed25519 signature over (sequence number, head hash, time).
//!
//! A partner that keeps copies of the checkpoints (`GET /v1/audit/checkpoints`) can later
//! prove that the log was not rewritten up to each of them, even by someone able to change the
//! database and recompute every hash: the signing key is not in the database.

use std::path::Path;

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::LogError;
use super::canonical::ChainHash;
use super::tree::Hash;
use crate::crypto::note::{Note, NoteSigner, TYPE_ED25519, TreeHead, VerifierKey, checkpoint_body};

/// Domain-separation prefix of the signed checkpoint message.
pub const CHECKPOINT_DOMAIN: &[u8] = b"coresponse-gateway/audit-checkpoint/v1";

/// One signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The sequence number of the entry at the head when signed.
    pub seq: u64,
    /// That entry's hash.
    pub head_hash: ChainHash,
    /// Signing time, Unix microseconds (UTC).
    pub at_us: i64,
    /// Id of the signing key (first 8 bytes of SHA-256 of the public key, hex).
    pub key_id: String,
    /// Ed25519 signature over [`checkpoint_message`], hex.
    pub signature: String,
}

impl Checkpoint {
    /// The signing time.
    pub fn at(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_micros(self.at_us)
    }
}

/// The exact bytes signed: the domain prefix, then the sequence number (8 bytes, big-endian),
/// the head hash (32 bytes) and the time in Unix microseconds (8 bytes, big-endian, signed).
pub fn checkpoint_message(seq: u64, head_hash: &ChainHash, at_us: i64) -> Vec<u8> {
    let mut m = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 48);
    m.extend_from_slice(CHECKPOINT_DOMAIN);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&head_hash.0);
    m.extend_from_slice(&at_us.to_be_bytes());
    m
}

/// The id of a public key: the first 8 bytes of its SHA-256, hex.
pub fn key_id(key: &VerifyingKey) -> String {
    let d = Sha256::digest(key.as_bytes());
    hex::encode(d.get(..8).unwrap_or_default())
}

/// Whether `c` is signed by `key`.
pub fn verify_checkpoint(key: &VerifyingKey, c: &Checkpoint) -> bool {
    let mut sig = [0u8; 64];
    if hex::decode_to_slice(&c.signature, &mut sig).is_err() {
        return false;
    }
    key.verify(
        &checkpoint_message(c.seq, &c.head_hash, c.at_us),
        &Signature::from_bytes(&sig),
    )
    .is_ok()
}

/// A signed tree head: the tree's size and root, and the C2SP checkpoint note that states
/// them with the gateway's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeCheckpoint {
    /// The number of leaves.
    pub size: u64,
    /// The root hash.
    pub root: Hash,
    /// Signing time, Unix microseconds (UTC).
    pub at_us: i64,
    /// The signed note (body, empty line, the gateway's signature line).
    pub note: String,
}

/// The default origin line of the log's checkpoints when `audit.origin` is not set.
pub const DEFAULT_ORIGIN: &str = "coresponse-gateway/disclosure-log";

/// The checkpoint signing key: it signs the chain checkpoints and, as a C2SP note signer named
/// after the log's origin, the tree heads.
pub struct CheckpointSigner {
    key: SigningKey,
    key_id: String,
    note: NoteSigner,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("key_id", &self.key_id)
            .field("origin", &self.note.name())
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// A signer from a 32-byte Ed25519 seed, with the default origin.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let key_id = key_id(&key.verifying_key());
        let note = NoteSigner::from_parts(DEFAULT_ORIGIN, TYPE_ED25519, seed);
        Self { key, key_id, note }
    }

    /// The same key signing tree heads for the log named `origin` (the checkpoints' first line
    /// and the note key's name: no white space, no `+`).
    pub fn with_origin(self, origin: &str) -> Result<Self, LogError> {
        let note = NoteSigner::new(origin, TYPE_ED25519, self.key.as_bytes())
            .map_err(|e| LogError::Key(format!("`audit.origin`: {e}")))?;
        Ok(Self { note, ..self })
    }

    /// The log's origin (the first line of its checkpoints).
    pub fn origin(&self) -> &str {
        self.note.name()
    }

    /// The note verifier key of the tree heads, as partners and witnesses pin it.
    pub fn note_verifier(&self) -> VerifierKey {
        self.note.verifier()
    }

    /// Signs the tree head `(size, root)` as a C2SP checkpoint.
    pub fn sign_tree(&self, size: u64, root: Hash, at_us: i64) -> TreeCheckpoint {
        let body = checkpoint_body(self.note.name(), &TreeHead { size, root });
        let note = Note {
            signatures: vec![self.note.sign(&body)],
            body,
        };
        TreeCheckpoint {
            size,
            root,
            at_us,
            note: note.to_text(),
        }
    }

    /// Loads the key file: the 32-byte Ed25519 seed, hex encoded (surrounding whitespace is
    /// ignored).
    pub fn load(path: &Path) -> Result<Self, LogError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            LogError::Key(format!(
                "cannot read the checkpoint key `{}`: {e}",
                path.display()
            ))
        })?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| {
            LogError::Key(format!(
                "`{}` must hold a 32-byte Ed25519 seed as 64 hex digits",
                path.display()
            ))
        })?;
        Ok(Self::from_seed(&seed))
    }

    /// A fresh seed, hex encoded, for a new key file.
    pub fn generate_hex() -> String {
        let seed: [u8; 32] = rand::random();
        hex::encode(seed)
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The key id.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Signs a checkpoint.
    pub fn sign(&self, seq: u64, head_hash: ChainHash, at_us: i64) -> Checkpoint {
        let sig = self.key.sign(&checkpoint_message(seq, &head_hash, at_us));
        Checkpoint {
            seq,
            head_hash,
            at_us,
            key_id: self.key_id.clone(),
            signature: hex::encode(sig.to_bytes()),
        }
    }
}

/// The checkpoint export (`GET /v1/audit/checkpoints`, `audit checkpoints`), also the format
/// of the file that `audit verify --checkpoints` reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointExport {
    /// Always `ed25519`.
    pub algorithm: String,
    /// The public key, hex (32 bytes).
    pub public_key: String,
    /// Its id.
    pub key_id: String,
    /// How the signed message is built.
    pub message: String,
    /// The checkpoints, ascending.
    pub checkpoints: Vec<Checkpoint>,
}

/// Describes the signed message in exports.
pub const MESSAGE_DESCRIPTION: &str = "ASCII `coresponse-gateway/audit-checkpoint/v1` || seq (u64 \
     big-endian) || head_hash (32 bytes) || at_us (i64 big-endian); Ed25519 (RFC 8032)";

impl CheckpointExport {
    /// An export of `checkpoints` under `key`.
    pub fn new(key: &VerifyingKey, checkpoints: Vec<Checkpoint>) -> Self {
        Self {
            algorithm: "ed25519".into(),
            public_key: hex::encode(key.as_bytes()),
            key_id: key_id(key),
            message: MESSAGE_DESCRIPTION.into(),
            checkpoints,
        }
    }

    /// The public key named by the export.
    pub fn verifying_key(&self) -> Result<VerifyingKey, LogError> {
        let mut raw = [0u8; 32];
        hex::decode_to_slice(&self.public_key, &mut raw)
            .map_err(|_| LogError::Key("`public_key` must be 64 hex digits".into()))?;
        VerifyingKey::from_bytes(&raw)
            .map_err(|_| LogError::Key("`public_key` is not an Ed25519 public key".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_verifies_and_any_change_breaks_it() {
        let s = CheckpointSigner::from_seed(&[3; 32]);
        let c = s.sign(42, ChainHash([1; 32]), 1_700_000_000_000_000);
        assert!(verify_checkpoint(&s.verifying_key(), &c));
        let mut bad = c.clone();
        bad.seq = 43;
        assert!(!verify_checkpoint(&s.verifying_key(), &bad));
        let mut bad = c.clone();
        bad.head_hash = ChainHash([2; 32]);
        assert!(!verify_checkpoint(&s.verifying_key(), &bad));
        let mut bad = c.clone();
        bad.at_us += 1;
        assert!(!verify_checkpoint(&s.verifying_key(), &bad));
        let other = CheckpointSigner::from_seed(&[4; 32]);
        assert!(!verify_checkpoint(&other.verifying_key(), &c));
        let export = CheckpointExport::new(&s.verifying_key(), vec![c]);
        let json = serde_json::to_string(&export).unwrap();
        let back: CheckpointExport = serde_json::from_str(&json).unwrap();
        assert_eq!(back.verifying_key().unwrap(), s.verifying_key());
        assert_eq!(back.key_id, s.key_id());
    }
}
