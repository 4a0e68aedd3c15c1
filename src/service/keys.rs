//! Opening the keyring against the database, and the master-key operations (`keys rotate`,
//! `keys rewrap`, `keys retire`).
//!
//! At start-up the master key file is checked against the database: each version's key check
//! value must match the one recorded on first use (recorded now if new), and every master-key
//! version a data key is wrapped under must be in the file. Then the stable keys (blind index,
//! subject pseudonyms, the disclosure log's free-text key) are loaded, or created on first
//! start.

use std::path::{Path, PathBuf};

use secrecy::SecretBox;

use crate::crypto::{
    CryptoError, KEY_PURPOSE_BLIND_INDEX, KEY_PURPOSE_LOG_TEXT, KEY_PURPOSE_SUBJECT_PSEUDONYM,
    KeyFileError, Keyring, MasterKeys, MasterVersion,
};
use crate::store::{Store, StoreError, data_keys, epochs, meta};

const META_INDEX_KEY: &str = "blind_index_key_id";
const META_PSEUDONYM_KEY: &str = "subject_pseudonym_key_id";
const META_LOG_TEXT_KEY: &str = "log_text_key_id";
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

fn check_key(version: MasterVersion) -> String {
    format!("{META_CHECK_PREFIX}{version}")
}

fn crypto_err(key: impl std::fmt::Display) -> impl FnOnce(CryptoError) -> KeyringError {
    let key = key.to_string();
    move |source| KeyringError::Crypto { key, source }
}

/// Loads the master key file, checks it against the database (recording the check value of a
/// new version) and loads the stable keys, creating them on first start.
pub async fn open(master_key_file: &Path, store: &Store) -> Result<Keyring, KeyringError> {
    let master = MasterKeys::load(master_key_file)?;
    check_master(&master, master_key_file, store, true).await?;
    let index_key =
        load_or_create_stable_key(&master, store, META_INDEX_KEY, KEY_PURPOSE_BLIND_INDEX).await?;
    let pseudonym_key = load_or_create_stable_key(
        &master,
        store,
        META_PSEUDONYM_KEY,
        KEY_PURPOSE_SUBJECT_PSEUDONYM,
    )
    .await?;
    let log_text_key =
        load_or_create_stable_key(&master, store, META_LOG_TEXT_KEY, KEY_PURPOSE_LOG_TEXT).await?;
    Ok(Keyring::new(master, index_key, pseudonym_key).with_log_text_key(log_text_key))
}

/// Opens the keyring of a database without writing anything (works on a read-only store):
/// the master key file is checked as [`inspect`] does, and the stable keys must exist already
/// (a gateway creates them on its first start).
pub async fn open_read_only(
    master_key_file: &Path,
    store: &Store,
) -> Result<Keyring, KeyringError> {
    let master = MasterKeys::load(master_key_file)?;
    check_master(&master, master_key_file, store, false).await?;
    let mut stable = Vec::with_capacity(2);
    for (meta_key, purpose) in [
        (META_INDEX_KEY, KEY_PURPOSE_BLIND_INDEX),
        (META_PSEUDONYM_KEY, KEY_PURPOSE_SUBJECT_PSEUDONYM),
    ] {
        let id = {
            let mut pooled = store.acquire().await?;
            meta::get(&mut pooled.conn(), meta_key).await?
        };
        let id = id.ok_or_else(|| KeyringError::Crypto {
            key: meta_key.to_owned(),
            source: CryptoError::Malformed(
                "the database holds no keys yet: start a gateway on it once",
            ),
        })?;
        stable.push(load_stable_key(&master, store, &id, purpose).await?);
    }
    // The log's free-text key exists once a gateway of this version has started; before that
    // no entry is sealed.
    let log_text_id = {
        let mut pooled = store.acquire().await?;
        meta::get(&mut pooled.conn(), META_LOG_TEXT_KEY).await?
    };
    let log_text_key = match log_text_id {
        Some(id) => Some(load_stable_key(&master, store, &id, KEY_PURPOSE_LOG_TEXT).await?),
        None => None,
    };
    let pseudonym_key = stable.pop();
    let index_key = stable.pop();
    match (index_key, pseudonym_key) {
        (Some(i), Some(p)) => {
            let keyring = Keyring::new(master, i, p);
            Ok(match log_text_key {
                Some(k) => keyring.with_log_text_key(k),
                None => keyring,
            })
        }
        _ => Err(KeyringError::Crypto {
            key: "-".into(),
            source: CryptoError::Malformed("stable keys"),
        }),
    }
}

/// Loads the master key file and checks it against the database as [`open`] does, but writes
/// nothing (works on a read-only store): returns the keys and the versions whose check value
/// the database has not recorded yet (added by `keys rotate` and not yet opened by a gateway).
pub async fn inspect(
    master_key_file: &Path,
    store: &Store,
) -> Result<(MasterKeys, Vec<MasterVersion>), KeyringError> {
    let master = MasterKeys::load(master_key_file)?;
    let unrecorded = check_master(&master, master_key_file, store, false).await?;
    Ok((master, unrecorded))
}

/// Re-checks a running gateway's keys against the database as start-up does, writing
/// nothing: every master-key version a data key is wrapped under must be in the keyring, and
/// each version it holds must match the check value recorded for it. Fails with
/// [`KeyringError::MissingVersions`] once another replica has wrapped data keys under a
/// version this one lacks (a newer key file), so the readiness probe can take this gateway out
/// of service instead of letting it answer reads it cannot open.
pub async fn check_versions(keyring: &Keyring, store: &Store) -> Result<(), KeyringError> {
    let master = keyring.master();
    check_master(master, master.path(), store, false)
        .await
        .map(|_| ())
}

/// Each version's key check value must match the one recorded on first use (with `record`,
/// recorded now if new), and every master-key version a data key is wrapped under must be in
/// the file. Returns the versions without a recorded check value.
async fn check_master(
    master: &MasterKeys,
    master_key_file: &Path,
    store: &Store,
    record: bool,
) -> Result<Vec<MasterVersion>, KeyringError> {
    let mut pooled = store.acquire().await?;
    let mut c = pooled.conn();
    let mut unrecorded = Vec::new();
    for version in master.versions() {
        let Some(fp) = master.fingerprint(version) else {
            continue;
        };
        let stored = if record {
            Some(meta::init(&mut c, &check_key(version), &fp).await?)
        } else {
            meta::get(&mut c, &check_key(version)).await?
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
    let missing: Vec<String> = data_keys::versions(&mut c)
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

/// Loads a stable key (one that never changes, only its wrapping does) named by the metadata
/// entry `meta_key`, creating it on first start.
async fn load_or_create_stable_key(
    master: &MasterKeys,
    store: &Store,
    meta_key: &str,
    purpose: &str,
) -> Result<SecretBox<[u8; 32]>, KeyringError> {
    let mut pooled = store.acquire().await?;
    let mut c = pooled.conn();
    if let Some(id) = meta::get(&mut c, meta_key).await? {
        // Give the connection back first: a pool of one must serve the next read.
        drop(pooled);
        return load_stable_key(master, store, &id, purpose).await;
    }
    let (raw, wrapped) = Keyring::new_stable_key(master, purpose).map_err(crypto_err("-"))?;
    data_keys::insert(&mut c, &wrapped, chrono::Utc::now().timestamp_micros()).await?;
    let winner = meta::init(&mut c, meta_key, &wrapped.id).await?;
    if winner == wrapped.id {
        Ok(raw)
    } else {
        // Another gateway started at the same moment and its key won.
        data_keys::delete_unused(&mut c, &wrapped.id).await?;
        drop(pooled);
        load_stable_key(master, store, &winner, purpose).await
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
    let mut pooled = store.acquire().await?;
    let row = data_keys::get(&mut pooled.conn(), id)
        .await?
        .ok_or_else(missing)?;
    Keyring::open_stable_key(master, &row, purpose).map_err(crypto_err(id))
}

/// Re-wraps every data key not yet under the current master-key version. Field ciphertexts
/// and their associated data are not touched: only the wrapping of each data key changes. Safe
/// to re-run and to run while gateways serve (each key is updated only if still wrapped as
/// read), but every running gateway must already hold the current version.
pub async fn rewrap(keyring: &Keyring, store: &Store) -> Result<RewrapReport, KeyringError> {
    let current = keyring.master().current();
    let mut rewrapped = 0u64;
    let mut skipped: Vec<String> = Vec::new();
    loop {
        let limit = REWRAP_BATCH.saturating_add(i64::try_from(skipped.len()).unwrap_or(i64::MAX));
        let batch = {
            let mut pooled = store.acquire().await?;
            data_keys::not_under(&mut pooled.conn(), current.to_db(), limit).await?
        };
        let batch: Vec<_> = batch
            .into_iter()
            .filter(|r| !skipped.contains(&r.id))
            .collect();
        if batch.is_empty() {
            break;
        }
        let now = chrono::Utc::now().timestamp_micros();
        let mut tx = store.begin().await?;
        for row in &batch {
            let new = keyring.rewrap(row).map_err(crypto_err(&row.id))?;
            if data_keys::rewrap_one(
                &mut tx.conn(),
                &row.id,
                row.master_version,
                new.master_version,
                &new.wrapped,
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
        epochs::bump_keys(&mut tx.conn()).await?;
        tx.commit().await?;
    }
    keyring.forget_data_keys();
    Ok(RewrapReport { current, rewrapped })
}

/// Adds a new master-key version to the key file (numbered above every version the file or
/// the database has seen) and returns it. Open a new keyring afterwards to record its check
/// value and use it.
pub async fn rotate(master_key_file: &Path, store: &Store) -> Result<MasterVersion, KeyringError> {
    let seen = {
        let mut pooled = store.acquire().await?;
        meta::with_prefix(&mut pooled.conn(), META_CHECK_PREFIX).await?
    }
    .into_iter()
    .filter_map(|(k, _)| k.strip_prefix(META_CHECK_PREFIX)?.parse::<u32>().ok())
    .filter_map(MasterVersion::new)
    .max();
    let version = MasterKeys::append_new_version(master_key_file, seen)?;
    bump_key_epoch(store).await?;
    Ok(version)
}

/// Removes `version` from the key file, refused while it is current or any data key is still
/// wrapped under it.
pub async fn retire(
    keyring: &Keyring,
    store: &Store,
    version: MasterVersion,
) -> Result<(), RetireError> {
    if version == keyring.master().current() {
        return Err(RetireError::Current(version));
    }
    let count = data_key_versions(store)
        .await?
        .into_iter()
        .find(|(v, _)| *v == version.to_db())
        .map_or(0, |(_, n)| n);
    if count > 0 {
        return Err(RetireError::InUse { version, count });
    }
    MasterKeys::remove_version(keyring.master().path(), version).map_err(KeyringError::from)?;
    keyring.forget_data_keys();
    bump_key_epoch(store).await?;
    Ok(())
}

/// Every master-key version that at least one data key is wrapped under, with counts.
pub async fn data_key_versions(store: &Store) -> Result<Vec<(i64, i64)>, KeyringError> {
    let mut pooled = store.acquire().await?;
    Ok(data_keys::versions(&mut pooled.conn()).await?)
}

async fn bump_key_epoch(store: &Store) -> Result<(), KeyringError> {
    let mut tx = store.begin().await?;
    epochs::bump_keys(&mut tx.conn()).await?;
    tx.commit().await?;
    Ok(())
}
