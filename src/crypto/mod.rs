//! Encryption at rest: master keys, envelope data keys, field encryption, blind indexes.
//!
//! ## Key hierarchy
//!
//! - **Master keys** (key-encryption keys) live only in the agency-controlled master key file
//!   ([`MasterKeys`]); the database never holds them. Each has a version; the highest version
//!   in the file is current. The database records a key check value of each version (an HMAC
//!   of a fixed label under the key), so start-up can refuse a key file that does not match.
//! - **Data keys** (DEKs): random 256-bit AES keys, one per stored record and one per consent
//!   directive, kept in the `data_keys` table wrapped (AES-256-GCM) under a master-key
//!   version. Rotation re-wraps them; the field ciphertexts they protect are never touched.
//! - **The blind-index key**: one random 256-bit HMAC key, stored wrapped like a data key. Its
//!   value never changes, so lookups by subject identifier keep working across master-key
//!   rotations; only its wrapping changes.
//!
//! ## Ciphertexts
//!
//! Every field value (its JSON encoding) and every subject identifier is sealed with
//! AES-256-GCM under the record's data key, with a fresh random 96-bit nonce. The associated
//! data is a length-prefixed canonical encoding of what the ciphertext belongs to (record kind,
//! record id, owner partner, record version, field name, data key id), so a ciphertext that is
//! altered, or moved to another field, record, owner or version, fails to authenticate. The
//! sealed format is `0x01 || data key id (16 bytes) || nonce (12 bytes) || ciphertext || tag`:
//! the key id travels with every ciphertext.
//!
//! ## Security role
//!
//! Key material is held in [`secrecy`] boxes that zeroize on drop and is never logged, printed
//! or written to the database in clear. Decryption failures are reported as integrity errors
//! without detail that could help an attacker.

mod envelope;
pub mod jwe;
mod keyring;
mod master;
pub mod note;

pub use envelope::{
    Binding, BlindIndex, DataKey, DataKeyId, KEY_PURPOSE_BLIND_INDEX, KEY_PURPOSE_CONSENT,
    KEY_PURPOSE_DIRECTIVE, KEY_PURPOSE_LOG_TEXT, KEY_PURPOSE_RECORD, KEY_PURPOSE_SUBJECT_PSEUDONYM,
};
pub use jwe::{JweError, RecipientKey};
pub use keyring::{DATA_KEY_CACHE, Keyring, WrappedKey};
pub use master::{KeyFileError, MasterKeys, MasterVersion};

/// A cryptographic operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// A ciphertext or wrapped key did not authenticate: it was altered, moved, or sealed
    /// under another key. Its content must not be used.
    #[error("ciphertext failed authentication")]
    Authentication,
    /// A ciphertext is not in a format this version understands.
    #[error("ciphertext is malformed: {0}")]
    Malformed(&'static str),
    /// A ciphertext names a different data key than the one it is stored with.
    #[error("ciphertext was sealed under data key {found}, expected {expected}")]
    WrongDataKey {
        /// The key id the record uses.
        expected: DataKeyId,
        /// The key id in the ciphertext.
        found: DataKeyId,
    },
    /// A data key is wrapped under a master-key version that this gateway does not hold.
    #[error(
        "a data key is wrapped under master key version {0}, which is not in the master key \
         file; add that version back to the file (from the agency's key backup) and restart"
    )]
    UnknownMasterVersion(MasterVersion),
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}
