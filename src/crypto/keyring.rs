//! The keyring: master keys from the agency's key file, checked against the database, plus
//! the blind-index key; data-key creation, unwrapping, re-wrapping and master-key retirement.

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret as _, SecretBox};

use super::CryptoError;
use super::envelope::{
    BlindIndex, DataKey, DataKeyId, KEY_PURPOSE_BLIND_INDEX, KEY_PURPOSE_SUBJECT_PSEUDONYM,
};
use super::master::{KeyFileError, MasterKeys, MasterVersion};
use crate::store::data_keys::{self, WrappedKeyRow};
use crate::store::{Store, StoreError};

const META_INDEX_KEY: &str = "blind_index_key_id";
const META_PSEUDONYM_KEY: &str = "subject_pseudonym_key_id";
const META_CHECK_PREFIX: &str = "master_key_check.v";
const REWRAP_BATCH: i64 = 500;

/// The keyring could not be opened, or a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The master key file is missing or malformed.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// A master-key version in the file is not the key the database recorded for it.
    #[error(
        "master key version {version} in `{path}` is not the key this database was set up with \
         (key check value recorded {stored}..., file gives {found}...). The gateway refuses to \
         start so that nothing is written under, or read with, the wrong key. Point \
         `crypto.master_key_file` at this database's master key file, or restore that file \
         from the agency's key backup. Do not delete the recorded check value: data written \
         under the original key cannot be read without it"
    )]
    FingerprintMismatch {
        /// The version.
        version: MasterVersion,
        /// The key file.
        path: PathBuf,
        /// First hex digits of the recorded check value.
        stored: String,
        /// First hex digits of the file's check value.
        found: String,
    },
    /// Data keys are wrapped under versions that the key file lacks.
    #[error(
        "data keys in the database are wrapped under master key version(s) {versions} which \
         `{path}` does not hold; add those versions back to the file (from the agency's key \
         backup) and restart"
    )]
    MissingVersions {
        /// The missing versions, comma-separated.
        versions: String,
        /// The key file.
        path: PathBuf,
    },
    /// A stored key did not unwrap, or randomness failed.
    #[error("key operation failed for data key {key}: {source}")]
    Crypto {
        /// The data key concerned (`-` when none).
        key: String,
        /// Why.
        source: CryptoError,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `keys retire` was refused.
#[derive(Debug, thiserror::Error)]
pub enum RetireError {
    /// The current version cannot be retired.
    #[error(
        "master key version {0} is the current version; rotate to a new version and run \
         `keys rewrap` before retiring it"
    )]
    Current(MasterVersion),
    /// Data keys still use the version.
    #[error(
        "{count} data key(s) are still wrapped under master key version {version}; run \
         `coresponse-gateway keys rewrap` first (on a gateway that holds the current version)"
    )]
    InUse {
        /// The version.
        version: MasterVersion,
        /// How many data keys use it.
        count: i64,
    },
    /// The key file or database failed.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
}

/// What a rewrap did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RewrapReport {
    /// The version every data key is now wrapped under.
    pub current: MasterVersion,
    /// How many data keys were re-wrapped.
    pub rewrapped: u64,
}

/// Master keys plus the stable keys (blind index, subject pseudonyms). Cheap to share behind
/// an `Arc`.
pub struct Keyring {
    master: MasterKeys,
    index_key: SecretBox<[u8; 32]>,
    pseudonym_key: SecretBox<[u8; 32]>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("master", &self.master)
            .finish_non_exhaustive()
    }
}

fn check_key(version: MasterVersion) -> String {
    format!("{META_CHECK_PREFIX}{version}")
}

fn crypto_err(key: impl fmt::Display) -> impl FnOnce(CryptoError) -> KeyringError {
    let key = key.to_string();
    move |source| KeyringError::Crypto { key, source }
}

impl Keyring {
    /// Loads the master key file and checks it against the database: each version's key check
    /// value must match the one recorded on first use (recorded now if new), and every
    /// master-key version a data key is wrapped under must be in the file. Then loads the
    /// blind-index key, creating it on first start.
    pub async fn open(master_key_file: &Path, store: &Store) -> Result<Self, KeyringError> {
        let master = MasterKeys::load(master_key_file)?;
        Self::check_master(&master, master_key_file, store, true).await?;
        let index_key = Self::load_or_create_stable_key(
            &master,
            store,
            META_INDEX_KEY,
            KEY_PURPOSE_BLIND_INDEX,
        )
        .await?;
        let pseudonym_key = Self::load_or_create_stable_key(
            &master,
            store,
            META_PSEUDONYM_KEY,
            KEY_PURPOSE_SUBJECT_PSEUDONYM,
        )
        .await?;
        Ok(Self {
            master,
            index_key,
            pseudonym_key,
        })
    }

    /// Loads the master key file and checks it against the database as [`Keyring::open`]
    /// does, but writes nothing (works on a read-only store): returns the keys and the
    /// versions whose check value the database has not recorded yet (added by `keys rotate`
    /// and not yet opened by a gateway).
    pub async fn inspect(
        master_key_file: &Path,
        store: &Store,
    ) -> Result<(MasterKeys, Vec<MasterVersion>), KeyringError> {
        let master = MasterKeys::load(master_key_file)?;
        let unrecorded = Self::check_master(&master, master_key_file, store, false).await?;
        Ok((master, unrecorded))
    }

    /// Each version's key check value must match the one recorded on first use (with
    /// `record`, recorded now if new), and every master-key version a data key is wrapped
    /// under must be in the file. Returns the versions without a recorded check value.
    async fn check_master(
        master: &MasterKeys,
        master_key_file: &Path,
        store: &Store,
        record: bool,
    ) -> Result<Vec<MasterVersion>, KeyringError> {
        let mut unrecorded = Vec::new();
        for version in master.versions() {
            let Some(fp) = master.fingerprint(version) else {
                continue;
            };
            let stored = if record {
                Some(store.meta_init(&check_key(version), &fp).await?)
            } else {
                store.meta_get(&check_key(version)).await?
            };
            match stored {
                None => unrecorded.push(version),
                Some(stored) if stored != fp => {
                    return Err(KeyringError::FingerprintMismatch {
                        version,
                        path: master_key_file.to_owned(),
                        stored: stored.chars().take(12).collect(),
                        found: fp.chars().take(12).collect(),
                    });
                }
                Some(_) => {}
            }
        }
        let missing: Vec<String> = store
            .data_key_versions()
            .await?
            .into_iter()
            .filter(|(v, _)| !MasterVersion::from_db(*v).is_some_and(|v| master.contains(v)))
            .map(|(v, _)| v.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(KeyringError::MissingVersions {
                versions: missing.join(", "),
                path: master_key_file.to_owned(),
            });
        }
        Ok(unrecorded)
    }

    /// Loads a stable key (one that never changes, only its wrapping does) named by the
    /// metadata entry `meta_key`, creating it on first start.
    async fn load_or_create_stable_key(
        master: &MasterKeys,
        store: &Store,
        meta_key: &str,
        purpose: &str,
    ) -> Result<SecretBox<[u8; 32]>, KeyringError> {
        if let Some(id) = store.meta_get(meta_key).await? {
            return Self::load_stable_key(master, store, &id, purpose).await;
        }
        let (key, raw) = DataKey::generate().map_err(crypto_err("-"))?;
        let id = key.id();
        let (version, wrapped) = master.wrap(id, purpose, &raw).map_err(crypto_err(id))?;
        store
            .insert_data_key(
                &WrappedKeyRow {
                    id: id.to_string(),
                    purpose: purpose.to_owned(),
                    master_version: version.to_db(),
                    wrapped,
                },
                chrono::Utc::now().timestamp_micros(),
            )
            .await?;
        let winner = store.meta_init(meta_key, &id.to_string()).await?;
        if winner == id.to_string() {
            Ok(raw)
        } else {
            // Another gateway started at the same moment and its key won.
            store.delete_unused_data_key(&id.to_string()).await?;
            Self::load_stable_key(master, store, &winner, purpose).await
        }
    }

    async fn load_stable_key(
        master: &MasterKeys,
        store: &Store,
        id: &str,
        purpose: &str,
    ) -> Result<SecretBox<[u8; 32]>, KeyringError> {
        let missing = || KeyringError::Crypto {
            key: id.to_owned(),
            source: CryptoError::Malformed("a stable key is missing from `data_keys`"),
        };
        let row = store.data_key(id).await?.ok_or_else(missing)?;
        let key_id = DataKeyId::parse(&row.id).ok_or_else(missing)?;
        if row.purpose != purpose {
            return Err(missing());
        }
        let version = MasterVersion::from_db(row.master_version)
            .ok_or(CryptoError::Malformed("master version"))
            .map_err(crypto_err(id))?;
        master
            .unwrap(key_id, purpose, version, &row.wrapped)
            .map_err(crypto_err(id))
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
    pub fn redaction_secret(&self) -> secrecy::SecretBox<[u8; 32]> {
        use hmac::{Hmac, Mac};
        let mut mac =
            <Hmac<sha2::Sha256> as Mac>::new_from_slice(self.pseudonym_key.expose_secret())
                .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(b"coresponse-gateway/redaction-pseudonym/v1");
        secrecy::SecretBox::new(Box::new(mac.finalize().into_bytes().into()))
    }

    /// The master keys.
    pub fn master(&self) -> &MasterKeys {
        &self.master
    }

    /// The blind index of a subject identifier.
    pub fn blind_index(&self, system: &str, value: &str) -> BlindIndex {
        BlindIndex::compute(&self.index_key, system, value)
    }

    /// A fresh data key and its row for `data_keys` (wrapped under the current version).
    pub fn new_data_key(&self, purpose: &str) -> Result<(DataKey, WrappedKeyRow), CryptoError> {
        let (key, raw) = DataKey::generate()?;
        let (version, wrapped) = self.master.wrap(key.id(), purpose, &raw)?;
        let row = WrappedKeyRow {
            id: key.id().to_string(),
            purpose: purpose.to_owned(),
            master_version: version.to_db(),
            wrapped,
        };
        Ok((key, row))
    }

    /// Unwraps a stored data key, checking it was stored for `purpose`.
    pub fn open_data_key(
        &self,
        row: &WrappedKeyRow,
        purpose: &str,
    ) -> Result<DataKey, CryptoError> {
        let id = DataKeyId::parse(&row.id).ok_or(CryptoError::Malformed("data key id"))?;
        let version = MasterVersion::from_db(row.master_version)
            .ok_or(CryptoError::Malformed("master version"))?;
        let raw = self.master.unwrap(id, purpose, version, &row.wrapped)?;
        Ok(DataKey::from_raw(id, &raw))
    }

    /// Re-wraps every data key not yet under the current master-key version. Field
    /// ciphertexts and their associated data are not touched: only the wrapping of each data
    /// key changes. Safe to re-run and to run while gateways serve (each key is updated only
    /// if still wrapped as read), but every running gateway must already hold the current
    /// version.
    pub async fn rewrap(&self, store: &Store) -> Result<RewrapReport, KeyringError> {
        let current = self.master.current();
        let mut rewrapped = 0u64;
        let mut skipped: Vec<String> = Vec::new();
        loop {
            let batch = store
                .data_keys_not_under(current.to_db(), REWRAP_BATCH + skipped.len() as i64)
                .await?;
            let batch: Vec<_> = batch
                .into_iter()
                .filter(|r| !skipped.contains(&r.id))
                .collect();
            if batch.is_empty() {
                break;
            }
            let now = chrono::Utc::now().timestamp_micros();
            let mut tx = store.pool().begin().await.map_err(StoreError::from)?;
            for row in &batch {
                let id = DataKeyId::parse(&row.id)
                    .ok_or(CryptoError::Malformed("data key id"))
                    .map_err(crypto_err(&row.id))?;
                let version = MasterVersion::from_db(row.master_version)
                    .ok_or(CryptoError::Malformed("master version"))
                    .map_err(crypto_err(&row.id))?;
                let raw = self
                    .master
                    .unwrap(id, &row.purpose, version, &row.wrapped)
                    .map_err(crypto_err(&row.id))?;
                let (new_version, wrapped) = self
                    .master
                    .wrap(id, &row.purpose, &raw)
                    .map_err(crypto_err(&row.id))?;
                if data_keys::rewrap_one(
                    &mut tx,
                    &row.id,
                    row.master_version,
                    new_version.to_db(),
                    &wrapped,
                    now,
                )
                .await?
                {
                    rewrapped += 1;
                } else {
                    // Changed underneath us (another rewrap): leave it to the next pass.
                    skipped.push(row.id.clone());
                }
            }
            tx.commit().await.map_err(StoreError::from)?;
        }
        Ok(RewrapReport { current, rewrapped })
    }

    /// Adds a new master-key version to the key file (numbered above every version the file
    /// or the database has seen) and returns it. Open a new keyring afterwards to record its
    /// check value and use it.
    pub async fn rotate(
        master_key_file: &Path,
        store: &Store,
    ) -> Result<MasterVersion, KeyringError> {
        let seen = store
            .meta_with_prefix(META_CHECK_PREFIX)
            .await?
            .into_iter()
            .filter_map(|(k, _)| k.strip_prefix(META_CHECK_PREFIX)?.parse::<u32>().ok())
            .filter_map(MasterVersion::new)
            .max();
        Ok(MasterKeys::append_new_version(master_key_file, seen)?)
    }

    /// Removes `version` from the key file, refused while it is current or any data key is
    /// still wrapped under it.
    pub async fn retire(&self, store: &Store, version: MasterVersion) -> Result<(), RetireError> {
        if version == self.master.current() {
            return Err(RetireError::Current(version));
        }
        let count = store
            .data_key_versions()
            .await
            .map_err(KeyringError::from)?
            .into_iter()
            .find(|(v, _)| *v == version.to_db())
            .map_or(0, |(_, n)| n);
        if count > 0 {
            return Err(RetireError::InUse { version, count });
        }
        MasterKeys::remove_version(self.master.path(), version).map_err(KeyringError::from)?;
        Ok(())
    }
}
