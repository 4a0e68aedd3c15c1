//! The keyring: master keys from the agency's key file plus the stable keys (blind index,
//! subject pseudonyms); data-key creation, unwrapping (through a bounded cache) and re-wrapping.
//!
//! The keyring holds keys in memory only; reading and writing the `data_keys` table is the
//! job of the layer that opens it (the key service), which also checks the key file against
//! the database at start-up.
//!
//! # The data-key cache
//!
//! Unwrapping a data key costs an AES-GCM decryption under the master key; a record read needs
//! its record's key every time. Unwrapped keys are kept in a bounded cache keyed by data-key
//! id ([`DATA_KEY_CACHE`] entries; least recently used go first). An entry is used only for a
//! stored row whose id, purpose, master-key version and wrapped bytes all match what was
//! unwrapped, so a tampered or re-wrapped row is never answered from the cache. Evicted keys
//! are zeroized when their last user drops them. The cache is emptied by every key operation
//! of this process ([`Keyring::forget_data_keys`]) and whenever the database's key epoch moves
//! ([`Keyring::observe_key_epoch`]): `keys rotate`, `keys rewrap` and `keys retire` move it,
//! so every replica drops its cached keys before its next read.
//!
//! # A data key under a version this gateway lacks
//!
//! Another replica can make a new master-key version current (and re-wrap data keys under it)
//! while this one runs with an older key file. Such a data key cannot be unwrapped here: the
//! read fails closed with [`CryptoError::UnknownMasterVersion`], nothing of the record is
//! opened, and the keyring counts it ([`Keyring::missing_version_reads`]) so that the
//! readiness probe re-checks the key file against the database at once and takes this
//! gateway out of service (see `service::keys::check_versions`).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use secrecy::{ExposeSecret as _, SecretBox};
use sha2::{Digest, Sha256};

use super::CryptoError;
use super::envelope::{BlindIndex, DataKey, DataKeyId};
use super::master::{MasterKeys, MasterVersion};

/// Most unwrapped data keys kept at once.
pub const DATA_KEY_CACHE: usize = 16_384;

/// A data key wrapped under a master-key version, as stored in `data_keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// Key id (UUID text).
    pub id: String,
    /// What the key protects: `record`, `consent`, `blind-index`, `subject-pseudonym`.
    pub purpose: String,
    /// Master-key version it is wrapped under.
    pub master_version: i64,
    /// `nonce || ciphertext || tag`.
    pub wrapped: Vec<u8>,
}

impl WrappedKey {
    /// A digest of everything stored for the key: a cache entry answers only for this exact row.
    fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.id.as_bytes());
        h.update([0]);
        h.update(self.purpose.as_bytes());
        h.update([0]);
        h.update(self.master_version.to_be_bytes());
        h.update(&self.wrapped);
        h.finalize().into()
    }
}

struct CachedKey {
    row: [u8; 32],
    key: Arc<DataKey>,
}

impl Clone for CachedKey {
    fn clone(&self) -> Self {
        Self {
            row: self.row,
            key: Arc::clone(&self.key),
        }
    }
}

/// Master keys plus the stable keys (blind index, subject pseudonyms), and the data-key
/// cache. Cheap to share behind an `Arc`.
pub struct Keyring {
    master: MasterKeys,
    index_key: SecretBox<[u8; 32]>,
    pseudonym_key: SecretBox<[u8; 32]>,
    log_text_key: Option<SecretBox<[u8; 32]>>,
    cache: quick_cache::sync::Cache<DataKeyId, CachedKey>,
    key_epoch: AtomicI64,
    missing_version_reads: AtomicU64,
    stats: crate::domain::stats::CacheStats,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("master", &self.master)
            .field("cached_data_keys", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// A keyring from the master keys and the two stable keys (already unwrapped).
    pub fn new(
        master: MasterKeys,
        index_key: SecretBox<[u8; 32]>,
        pseudonym_key: SecretBox<[u8; 32]>,
    ) -> Self {
        Self {
            master,
            index_key,
            pseudonym_key,
            log_text_key: None,
            cache: quick_cache::sync::Cache::new(DATA_KEY_CACHE),
            key_epoch: AtomicI64::new(i64::MIN),
            missing_version_reads: AtomicU64::new(0),
            stats: Default::default(),
        }
    }

    /// The same keyring holding the disclosure log's free-text key too.
    pub fn with_log_text_key(mut self, key: SecretBox<[u8; 32]>) -> Self {
        self.log_text_key = Some(key);
        self
    }

    /// The disclosure log's free-text key: random, stored wrapped, never rotated (like the
    /// subject-pseudonym key), so sealed free text stays readable after master-key rotation.
    /// `None` only on a database opened read-only that no gateway of this version has opened.
    pub fn log_text_key(&self) -> Option<[u8; 32]> {
        self.log_text_key.as_ref().map(|k| *k.expose_secret())
    }

    /// The disclosure log's subject-pseudonym key: random, stored wrapped, never rotated, so a
    /// subject's pseudonym (and accounting) survives master-key rotation and retirement.
    pub fn subject_pseudonym_key(&self) -> [u8; 32] {
        *self.pseudonym_key.expose_secret()
    }

    /// The secret the redaction step derives per-recipient pseudonym keys from (fields an MOU
    /// pseudonymizes): `HMAC-SHA256(subject-pseudonym key, "coresponse-gateway/redaction-pseudonym/v1")`.
    /// Stable across master-key rotation, so a recipient's pseudonyms stay linkable over time,
    /// and separate from the log's subject pseudonyms.
    pub fn redaction_secret(&self) -> SecretBox<[u8; 32]> {
        use hmac::{Hmac, Mac};
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(self.pseudonym_key.expose_secret());
        let mut out = [0u8; 32];
        // HMAC accepts keys of any length: `new_from_slice` cannot fail here.
        if let Ok(mut mac) = mac {
            mac.update(b"coresponse-gateway/redaction-pseudonym/v1");
            out = mac.finalize().into_bytes().into();
        }
        SecretBox::new(Box::new(out))
    }

    /// The master keys.
    pub fn master(&self) -> &MasterKeys {
        &self.master
    }

    /// The blind index of a subject identifier.
    pub fn blind_index(&self, system: &str, value: &str) -> BlindIndex {
        BlindIndex::compute(&self.index_key, system, value)
    }

    /// A fresh data key and its wrapped form (under the current version), for `data_keys`.
    pub fn new_data_key(&self, purpose: &str) -> Result<(DataKey, WrappedKey), CryptoError> {
        let (key, raw) = DataKey::generate()?;
        let (version, wrapped) = self.master.wrap(key.id(), purpose, &raw)?;
        let row = WrappedKey {
            id: key.id().to_string(),
            purpose: purpose.to_owned(),
            master_version: version.to_db(),
            wrapped,
        };
        Ok((key, row))
    }

    /// A fresh random 256-bit key (a stable key) and its wrapped form.
    pub fn new_stable_key(
        master: &MasterKeys,
        purpose: &str,
    ) -> Result<(SecretBox<[u8; 32]>, WrappedKey), CryptoError> {
        let (key, raw) = DataKey::generate()?;
        let (version, wrapped) = master.wrap(key.id(), purpose, &raw)?;
        Ok((
            raw,
            WrappedKey {
                id: key.id().to_string(),
                purpose: purpose.to_owned(),
                master_version: version.to_db(),
                wrapped,
            },
        ))
    }

    /// Unwraps a stable key (one whose value never changes) stored for `purpose`.
    pub fn open_stable_key(
        master: &MasterKeys,
        row: &WrappedKey,
        purpose: &str,
    ) -> Result<SecretBox<[u8; 32]>, CryptoError> {
        let id = DataKeyId::parse(&row.id).ok_or(CryptoError::Malformed("data key id"))?;
        if row.purpose != purpose {
            return Err(CryptoError::Malformed(
                "a stable key stored for another purpose",
            ));
        }
        let version = MasterVersion::from_db(row.master_version)
            .ok_or(CryptoError::Malformed("master version"))?;
        master.unwrap(id, purpose, version, &row.wrapped)
    }

    /// Unwraps a stored data key, checking it was stored for `purpose`; answered from the cache
    /// when this exact row was unwrapped before.
    pub fn open_data_key(
        &self,
        row: &WrappedKey,
        purpose: &str,
    ) -> Result<Arc<DataKey>, CryptoError> {
        let id = DataKeyId::parse(&row.id).ok_or(CryptoError::Malformed("data key id"))?;
        let digest = row.digest();
        if let Some(hit) = self.cache.get(&id)
            && hit.row == digest
            && row.purpose == purpose
        {
            self.stats.hit();
            return Ok(hit.key);
        }
        self.stats.miss();
        let version = MasterVersion::from_db(row.master_version)
            .ok_or(CryptoError::Malformed("master version"))?;
        let raw = self
            .master
            .unwrap(id, purpose, version, &row.wrapped)
            .inspect_err(|e| {
                if matches!(e, CryptoError::UnknownMasterVersion(_)) {
                    self.missing_version_reads.fetch_add(1, Ordering::Relaxed);
                }
            })?;
        let key = Arc::new(DataKey::from_raw(id, &raw));
        self.cache.insert(
            id,
            CachedKey {
                row: digest,
                key: Arc::clone(&key),
            },
        );
        Ok(key)
    }

    /// Unwraps a data key and wraps it again under the current master-key version, for
    /// `keys rewrap`. The key itself, and every ciphertext under it, stay as they are.
    pub fn rewrap(&self, row: &WrappedKey) -> Result<WrappedKey, CryptoError> {
        let id = DataKeyId::parse(&row.id).ok_or(CryptoError::Malformed("data key id"))?;
        let version = MasterVersion::from_db(row.master_version)
            .ok_or(CryptoError::Malformed("master version"))?;
        let raw = self
            .master
            .unwrap(id, &row.purpose, version, &row.wrapped)?;
        let (new_version, wrapped) = self.master.wrap(id, &row.purpose, &raw)?;
        Ok(WrappedKey {
            id: row.id.clone(),
            purpose: row.purpose.clone(),
            master_version: new_version.to_db(),
            wrapped,
        })
    }

    /// Drops every cached data key (they are zeroized once no read still holds them).
    pub fn forget_data_keys(&self) {
        self.cache.clear();
    }

    /// Notes the database's key epoch as read with a record: when it moved since the last
    /// observation, every cached data key is dropped.
    pub fn observe_key_epoch(&self, epoch: i64) {
        if self.key_epoch.swap(epoch, Ordering::AcqRel) != epoch {
            self.forget_data_keys();
        }
    }

    /// How many times a data key was found wrapped under a master-key version that this
    /// keyring does not hold (each such read failed closed). The readiness probe watches it.
    pub fn missing_version_reads(&self) -> u64 {
        self.missing_version_reads.load(Ordering::Relaxed)
    }

    /// The data-key cache's `(hits, misses)` since start.
    pub fn cache_stats(&self) -> (u64, u64) {
        self.stats.snapshot()
    }

    /// How many unwrapped data keys are cached.
    pub fn cached_data_keys(&self) -> usize {
        self.cache.len()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const K1: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    fn keyring() -> Keyring {
        let master = MasterKeys::parse(Path::new("m"), K1).unwrap();
        Keyring::new(
            master,
            SecretBox::new(Box::new([1; 32])),
            SecretBox::new(Box::new([2; 32])),
        )
    }

    #[test]
    fn a_cached_key_answers_only_for_the_row_it_came_from() {
        let k = keyring();
        let (key, row) = k.new_data_key("record").unwrap();
        let opened = k.open_data_key(&row, "record").unwrap();
        assert_eq!(opened.id(), key.id());
        assert_eq!(k.cached_data_keys(), 1);
        // Same row: from the cache. A tampered row: unwrapped again, and refused.
        assert!(k.open_data_key(&row, "record").is_ok());
        let mut bad = row.clone();
        if let Some(b) = bad.wrapped.last_mut() {
            *b ^= 1;
        }
        assert!(k.open_data_key(&bad, "record").is_err());
        assert!(
            k.open_data_key(&row, "consent").is_err(),
            "purpose is checked"
        );
    }

    #[test]
    fn a_key_under_a_version_the_file_lacks_fails_closed_and_is_counted() {
        let k = keyring();
        let (_, mut row) = k.new_data_key("record").unwrap();
        assert_eq!(k.missing_version_reads(), 0);
        row.master_version = 2;
        assert!(matches!(
            k.open_data_key(&row, "record"),
            Err(CryptoError::UnknownMasterVersion(v)) if v.to_db() == 2
        ));
        assert_eq!(k.missing_version_reads(), 1);
        // A tampered key under a version it holds is another failure, not counted here.
        row.master_version = 1;
        if let Some(b) = row.wrapped.last_mut() {
            *b ^= 1;
        }
        assert!(k.open_data_key(&row, "record").is_err());
        assert_eq!(k.missing_version_reads(), 1);
    }

    #[test]
    fn a_moved_key_epoch_empties_the_cache() {
        let k = keyring();
        let (_, row) = k.new_data_key("record").unwrap();
        k.observe_key_epoch(0);
        k.open_data_key(&row, "record").unwrap();
        k.observe_key_epoch(0);
        assert_eq!(k.cached_data_keys(), 1);
        k.observe_key_epoch(1);
        assert_eq!(k.cached_data_keys(), 0);
    }
}
