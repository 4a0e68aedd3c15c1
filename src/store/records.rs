//! Records at rest: every field value and subject identifier encrypted, history kept.
//!
//! A record is `(kind, id)`, owned by one partner. Each write that changes something adds a
//! version: who wrote it (partner and user), when, and which fields changed (names only). A
//! version stores the sealed value of every field it holds, so any version can be read back.
//!
//! ## What is stored, and how
//!
//! - One data key per record (`records.data_key_id`), wrapped under the master key in
//!   `data_keys`. Deleting that row would make the record unreadable (crypto-shredding).
//! - `record_fields.ciphertext`: the field's JSON value sealed with AES-256-GCM, bound to
//!   (kind, id, owner, version, field name, data key id).
//! - `record_versions.manifest`: the sealed list of the version's field names, subject count,
//!   author, time and changed fields. Reading a version checks the stored rows against it, so
//!   a deleted, added or edited row is detected, not silently served.
//! - `record_subjects`: per identifier, its HMAC blind index (for lookup) and its sealed value.
//!   The clear text of an identifier is never stored.
//! - Clear text in the database: kind, record id, owner, author partner and user, times,
//!   field names and the version numbers. No field value and no subject identifier.
//!
//! Any ciphertext that fails to authenticate makes the read fail with
//! [`RecordError::Integrity`]: nothing of that record is returned.
//!
//! ## Transactions
//!
//! The free functions take a `Transaction` (writes) or any connection (reads, including a
//! transaction through `&mut *tx`), so a caller can commit a record read or write together
//! with its disclosure-log entry. The [`Store`] methods wrap them in their own transaction.
//! A write first touches the record's row, which takes the write lock on SQLite and a row lock
//! on PostgreSQL, so concurrent writers of one record queue instead of forking its history.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{Any, AnyConnection, Transaction};

use super::data_keys::{self, WrappedKeyRow};
use super::{Store, StoreError};
use crate::crypto::{Binding, CryptoError, DataKey, KEY_PURPOSE_RECORD, Keyring};
use crate::disclosure::Logged;
pub use crate::domain::{
    InvalidInput, MAX_SUBJECT_IDENTIFIERS, RecordId, RecordKind, SubjectIdentifier,
};
use crate::domain::{PartnerId, UserId};
use crate::policy::Permit;
use crate::redaction::Record as RedactionInput;

/// A validated record to write. `Debug` shows field names, never values.
#[derive(Clone)]
pub struct NewRecord {
    /// Kind.
    pub kind: RecordKind,
    /// Id.
    pub id: RecordId,
    /// The owning partner. A record's owner never changes.
    pub owner: PartnerId,
    /// The subject's identifiers (no duplicates).
    pub subjects: Vec<SubjectIdentifier>,
    /// Field values by field name (already validated against the kind's schema).
    pub fields: BTreeMap<String, Value>,
}

impl fmt::Debug for NewRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewRecord")
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("subjects", &self.subjects)
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl fmt::Debug for DecryptedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptedRecord")
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("version", &self.version)
            .field("current_version", &self.current_version)
            .field("subjects", &self.subjects)
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Who writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    /// The writer's partner agency.
    pub partner: PartnerId,
    /// The writer (token `sub`).
    pub user: UserId,
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    /// The record's current version after the write.
    pub version: i64,
    /// Whether the record was created by this write.
    pub created: bool,
    /// Names of the fields added, changed or removed (all fields on creation); empty when the
    /// write changed nothing, in which case no version was added.
    pub changed_fields: Vec<String>,
    /// Whether the subject identifiers changed.
    pub subjects_changed: bool,
}

/// A record read back and decrypted. `Debug` shows field names, never values.
///
/// The field values are private: they leave this type only through
/// [`DecryptedRecord::open`], which takes the decision's [`Permit`] and the receipt of the
/// disclosure's durable log entry ([`Logged`], which only [`crate::disclosure`] can make).
/// So no code path can send a stored value anywhere without a permit and a log entry.
#[derive(Clone, PartialEq)]
pub struct DecryptedRecord {
    /// Kind.
    pub kind: RecordKind,
    /// Id.
    pub id: RecordId,
    /// Owner partner.
    pub owner: PartnerId,
    /// The version read.
    pub version: i64,
    /// The record's current version (equal to `version` unless an older one was asked for).
    pub current_version: i64,
    /// When the record was created.
    pub created_at: DateTime<Utc>,
    /// When the version read was written.
    pub updated_at: DateTime<Utc>,
    /// The subject's identifiers (current ones).
    pub subjects: Vec<SubjectIdentifier>,
    fields: BTreeMap<String, Value>,
}

/// A permit and a log receipt were presented for another record or decision.
#[derive(Debug, thiserror::Error)]
#[error("the permit or log receipt does not belong to record `{kind}/{id}`")]
pub struct OpenRefused {
    /// Kind.
    pub kind: RecordKind,
    /// Id.
    pub id: RecordId,
}

impl DecryptedRecord {
    /// The names of the fields this version holds (never their values).
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.fields.keys().map(String::as_str)
    }

    /// The values, as input for [`crate::redaction::apply`]: only for the permit of a decision
    /// about this record's kind and holder, and only once that decision's log entry is durable.
    pub fn open(self, permit: &Permit, logged: &Logged) -> Result<RedactionInput, OpenRefused> {
        let ok = permit.kind() == self.kind.as_str()
            && permit.holder() == &self.owner
            && logged.decision_id() == permit.decision_id()
            && logged.record() == (self.kind.as_str(), self.id.as_str());
        if !ok {
            return Err(OpenRefused {
                kind: self.kind,
                id: self.id,
            });
        }
        Ok(RedactionInput {
            kind: self.kind.into(),
            id: self.id.into(),
            fields: self.fields,
        })
    }

    /// The values without a permit or log entry, for tests of the storage layer only (the
    /// `test-support` feature; never in a gateway build).
    #[cfg(feature = "test-support")]
    pub fn into_fields_unaudited(self) -> BTreeMap<String, Value> {
        self.fields
    }
}

/// The record as the write path sees it inside [`edit_record`].
#[derive(Debug)]
pub struct CurrentRecord<'a> {
    /// The owner.
    pub owner: &'a PartnerId,
    /// The current version.
    pub version: i64,
    /// The subject identifiers.
    pub subjects: &'a [SubjectIdentifier],
    /// The current field values (they stay inside the write transaction).
    pub fields: &'a BTreeMap<String, Value>,
}

/// One entry of a record's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordVersionInfo {
    /// Version number, from 1.
    pub version: i64,
    /// Writer's partner.
    pub author_partner: String,
    /// Writer.
    pub author_user: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Names of fields added, changed or removed (all fields for version 1).
    pub changed_fields: Vec<String>,
    /// Whether the subject identifiers changed.
    pub subjects_changed: bool,
}

/// A record found by subject identifier.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RecordRef {
    /// Kind.
    pub kind: RecordKind,
    /// Id.
    pub id: RecordId,
    /// Owner partner.
    pub owner: PartnerId,
}

/// A record operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The input breaks a rule (400).
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The record exists and belongs to another partner (403).
    #[error("record `{kind}/{id}` belongs to another partner; only its owner may write it")]
    OwnerMismatch {
        /// Kind.
        kind: RecordKind,
        /// Id.
        id: RecordId,
    },
    /// A concurrent write of the same record won (409; retry).
    #[error("record `{kind}/{id}` was written concurrently; retry")]
    Conflict {
        /// Kind.
        kind: RecordKind,
        /// Id.
        id: RecordId,
    },
    /// Stored data failed its integrity check: tampered, moved or rolled back. Nothing of the
    /// record was returned (500, opaque to the client; alert).
    #[error(
        "stored record `{kind}/{id}` failed its integrity check ({part}); it was not served. \
         Restore it from backup and investigate tampering"
    )]
    Integrity {
        /// Kind.
        kind: String,
        /// Id.
        id: String,
        /// Which part (a field name, `manifest`, `subject identifier 2`, ...).
        part: String,
    },
    /// A key could not be used, e.g. a master-key version this gateway lacks (503).
    #[error("encryption key unavailable: {0}")]
    Key(CryptoError),
    /// Encryption itself failed (500).
    #[error("encryption failed: {0}")]
    Crypto(CryptoError),
    /// The database failed (503).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for RecordError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::Query(e))
    }
}

/// The sealed description of one version.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Manifest {
    fields: Vec<String>,
    subjects: i64,
    author_partner: String,
    author_user: String,
    at_us: i64,
    changed: Vec<String>,
    subjects_changed: bool,
}

#[derive(Debug)]
struct RecordRow {
    kind: String,
    id: String,
    owner: String,
    data_key_id: String,
    current_version: i64,
    created_at_us: i64,
}

fn integrity(kind: &str, id: &str, part: impl Into<String>) -> RecordError {
    RecordError::Integrity {
        kind: kind.to_owned(),
        id: id.to_owned(),
        part: part.into(),
    }
}

fn micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

fn is_unique_violation(e: &StoreError) -> bool {
    matches!(e, StoreError::Query(sqlx::Error::Database(d)) if d.is_unique_violation())
}

fn validate(rec: &NewRecord) -> Result<(), InvalidInput> {
    for name in rec.fields.keys() {
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(InvalidInput::new(
                "field name",
                "use 1 to 128 characters without control characters",
            ));
        }
    }
    let unique: BTreeSet<_> = rec.subjects.iter().collect();
    if unique.len() != rec.subjects.len() {
        return Err(InvalidInput::new("subject identifiers", "list each identifier once"));
    }
    Ok(())
}

async fn fetch_record_row(
    conn: &mut AnyConnection,
    kind: &str,
    id: &str,
) -> Result<Option<RecordRow>, RecordError> {
    let row: Option<(String, String, String, String, i64, i64)> = sqlx::query_as(
        "SELECT kind, id, owner, data_key_id, current_version, created_at_us FROM records \
         WHERE kind = $1 AND id = $2",
    )
    .bind(kind)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(
        |(kind, id, owner, data_key_id, current_version, created_at_us)| RecordRow {
            kind,
            id,
            owner,
            data_key_id,
            current_version,
            created_at_us,
        },
    ))
}

async fn record_key(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    rec: &RecordRow,
) -> Result<DataKey, RecordError> {
    let row = data_keys::fetch(conn, &rec.data_key_id)
        .await?
        .ok_or_else(|| integrity(&rec.kind, &rec.id, "data key missing"))?;
    keyring
        .open_data_key(&row, KEY_PURPOSE_RECORD)
        .map_err(|e| match e {
            CryptoError::UnknownMasterVersion(_) | CryptoError::Random => RecordError::Key(e),
            _ => integrity(&rec.kind, &rec.id, "data key"),
        })
}

fn open_json<T: serde::de::DeserializeOwned>(
    key: &DataKey,
    binding: &Binding<'_>,
    ciphertext: &[u8],
    rec: &RecordRow,
    part: impl Fn() -> String,
) -> Result<T, RecordError> {
    let plain = key
        .open(binding, ciphertext)
        .map_err(|_| integrity(&rec.kind, &rec.id, part()))?;
    serde_json::from_slice(&plain).map_err(|_| integrity(&rec.kind, &rec.id, part()))
}

fn seal_json<T: Serialize>(
    key: &DataKey,
    binding: &Binding<'_>,
    value: &T,
) -> Result<Vec<u8>, RecordError> {
    let plain = secrecy::zeroize::Zeroizing::new(
        serde_json::to_vec(value)
            .map_err(|_| RecordError::Crypto(CryptoError::Malformed("value not encodable")))?,
    );
    key.seal(binding, &plain).map_err(RecordError::Crypto)
}

struct OpenedVersion {
    manifest: Manifest,
    fields: BTreeMap<String, Value>,
}

async fn open_version(
    conn: &mut AnyConnection,
    key: &DataKey,
    rec: &RecordRow,
    version: i64,
) -> Result<Option<OpenedVersion>, RecordError> {
    let (kind, id, owner) = (rec.kind.as_str(), rec.id.as_str(), rec.owner.as_str());
    let row: Option<(String, String, i64, String, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT author_partner, author_user, at_us, changed_fields, subjects_changed, manifest \
         FROM record_versions WHERE kind = $1 AND id = $2 AND version = $3",
    )
    .bind(kind)
    .bind(id)
    .bind(version)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((author_partner, author_user, at_us, changed, subjects_changed, sealed)) = row else {
        return Ok(None);
    };
    let manifest: Manifest = open_json(
        key,
        &Binding::Manifest {
            kind,
            id,
            owner,
            version,
        },
        &sealed,
        rec,
        || format!("manifest of version {version}"),
    )?;
    let changed: Vec<String> = serde_json::from_str(&changed)
        .map_err(|_| integrity(kind, id, format!("history of version {version}")))?;
    if manifest.author_partner != author_partner
        || manifest.author_user != author_user
        || manifest.at_us != at_us
        || manifest.changed != changed
        || i64::from(manifest.subjects_changed) != subjects_changed
    {
        return Err(integrity(kind, id, format!("history of version {version}")));
    }
    let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT field, ciphertext FROM record_fields WHERE kind = $1 AND id = $2 AND version = $3 \
         ORDER BY field",
    )
    .bind(kind)
    .bind(id)
    .bind(version)
    .fetch_all(&mut *conn)
    .await?;
    let names: Vec<&str> = rows.iter().map(|(f, _)| f.as_str()).collect();
    let expected: Vec<&str> = manifest.fields.iter().map(String::as_str).collect();
    if names != expected {
        return Err(integrity(
            kind,
            id,
            format!("field list of version {version}"),
        ));
    }
    let mut fields = BTreeMap::new();
    for (field, ciphertext) in rows {
        let value: Value = open_json(
            key,
            &Binding::Field {
                kind,
                id,
                owner,
                version,
                field: &field,
            },
            &ciphertext,
            rec,
            || format!("field `{field}`"),
        )?;
        fields.insert(field, value);
    }
    Ok(Some(OpenedVersion { manifest, fields }))
}

async fn open_subjects(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    key: &DataKey,
    rec: &RecordRow,
    expected_count: i64,
) -> Result<Vec<SubjectIdentifier>, RecordError> {
    let (kind, id, owner) = (rec.kind.as_str(), rec.id.as_str(), rec.owner.as_str());
    let rows: Vec<(i64, Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT position, blind_index, ciphertext FROM record_subjects \
         WHERE kind = $1 AND id = $2 ORDER BY position",
    )
    .bind(kind)
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    if i64::try_from(rows.len()).ok() != Some(expected_count) {
        return Err(integrity(kind, id, "subject identifier list"));
    }
    let mut out = Vec::with_capacity(rows.len());
    for (n, (position, index, ciphertext)) in rows.into_iter().enumerate() {
        if i64::try_from(n).ok() != Some(position) {
            return Err(integrity(kind, id, "subject identifier list"));
        }
        let subject: SubjectIdentifier = open_json(
            key,
            &Binding::Subject {
                kind,
                id,
                owner,
                position,
            },
            &ciphertext,
            rec,
            || format!("subject identifier {position}"),
        )?;
        if keyring
            .blind_index(&subject.system(), subject.value())
            .as_bytes()
            .as_slice()
            != index
        {
            return Err(integrity(
                kind,
                id,
                format!("blind index of subject identifier {position}"),
            ));
        }
        out.push(subject);
    }
    Ok(out)
}

async fn latest_version(
    conn: &mut AnyConnection,
    kind: &str,
    id: &str,
) -> Result<Option<i64>, RecordError> {
    let (max,): (Option<i64>,) =
        sqlx::query_as("SELECT MAX(version) FROM record_versions WHERE kind = $1 AND id = $2")
            .bind(kind)
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
    Ok(max)
}

/// Reads and decrypts a record at `version` (`None`: the current version). Returns `None`
/// if there is no such record or version. Fails with [`RecordError::Integrity`] if anything
/// stored for it does not authenticate.
pub async fn get_record(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    kind: &RecordKind,
    id: &RecordId,
    version: Option<i64>,
) -> Result<Option<DecryptedRecord>, RecordError> {
    let Some(rec) = fetch_record_row(conn, kind.as_str(), id.as_str()).await? else {
        return Ok(None);
    };
    // A current-version pointer moved back to an older, authentic version is a rollback.
    if latest_version(conn, &rec.kind, &rec.id).await? != Some(rec.current_version) {
        return Err(integrity(&rec.kind, &rec.id, "current version"));
    }
    let key = record_key(conn, keyring, &rec).await?;
    let version = version.unwrap_or(rec.current_version);
    let Some(opened) = open_version(conn, &key, &rec, version).await? else {
        return Ok(None);
    };
    let current_subjects = if version == rec.current_version {
        opened.manifest.subjects
    } else {
        let current = open_version(conn, &key, &rec, rec.current_version)
            .await?
            .ok_or_else(|| integrity(&rec.kind, &rec.id, "current version"))?;
        current.manifest.subjects
    };
    let subjects = open_subjects(conn, keyring, &key, &rec, current_subjects).await?;
    let owner = rec
        .owner
        .parse()
        .map_err(|_| integrity(&rec.kind, &rec.id, "owner"))?;
    Ok(Some(DecryptedRecord {
        kind: kind.clone(),
        id: id.clone(),
        owner,
        version,
        current_version: rec.current_version,
        created_at: micros(rec.created_at_us),
        updated_at: micros(opened.manifest.at_us),
        subjects,
        fields: opened.fields,
    }))
}

/// Creates or updates a record inside `tx`. An update by a partner other than the owner is
/// refused; a write that changes nothing adds no version. The caller commits.
pub async fn put_record(
    tx: &mut Transaction<'_, Any>,
    keyring: &Keyring,
    rec: &NewRecord,
    author: &Author,
    at: DateTime<Utc>,
) -> Result<PutOutcome, RecordError> {
    validate(rec)?;
    let (kind, id, owner) = (rec.kind.as_str(), rec.id.as_str(), rec.owner.as_str());
    let at_us = at.timestamp_micros();
    let conflict = || RecordError::Conflict {
        kind: rec.kind.clone(),
        id: rec.id.clone(),
    };
    // Take the record's write lock before reading it.
    sqlx::query("UPDATE records SET updated_at_us = updated_at_us WHERE kind = $1 AND id = $2")
        .bind(kind)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    let existing = fetch_record_row(tx, kind, id).await?;
    let (key, version, changed, subjects_changed, created) = match existing {
        Some(row) => {
            if row.owner != owner {
                return Err(RecordError::OwnerMismatch {
                    kind: rec.kind.clone(),
                    id: rec.id.clone(),
                });
            }
            let key = record_key(tx, keyring, &row).await?;
            let old = open_version(tx, &key, &row, row.current_version)
                .await?
                .ok_or_else(|| integrity(kind, id, "current version"))?;
            let old_subjects =
                open_subjects(tx, keyring, &key, &row, old.manifest.subjects).await?;
            let names: BTreeSet<&String> = old.fields.keys().chain(rec.fields.keys()).collect();
            let changed: Vec<String> = names
                .into_iter()
                .filter(|n| old.fields.get(*n) != rec.fields.get(*n))
                .cloned()
                .collect();
            let subjects_changed = old_subjects != rec.subjects;
            if changed.is_empty() && !subjects_changed {
                return Ok(PutOutcome {
                    version: row.current_version,
                    created: false,
                    changed_fields: Vec::new(),
                    subjects_changed: false,
                });
            }
            (
                key,
                row.current_version + 1,
                changed,
                subjects_changed,
                false,
            )
        }
        None => {
            let (key, wrapped): (DataKey, WrappedKeyRow) = keyring
                .new_data_key(KEY_PURPOSE_RECORD)
                .map_err(RecordError::Key)?;
            data_keys::insert(tx, &wrapped, at_us).await?;
            let inserted = sqlx::query(
                "INSERT INTO records \
                 (kind, id, owner, data_key_id, current_version, created_at_us, updated_at_us) \
                 VALUES ($1, $2, $3, $4, 0, $5, $5)",
            )
            .bind(kind)
            .bind(id)
            .bind(owner)
            .bind(&wrapped.id)
            .bind(at_us)
            .execute(&mut **tx)
            .await
            .map_err(StoreError::from);
            match inserted {
                Err(e) if is_unique_violation(&e) => return Err(conflict()),
                other => other?,
            };
            let changed = rec.fields.keys().cloned().collect();
            (key, 1, changed, true, true)
        }
    };

    let manifest = Manifest {
        fields: rec.fields.keys().cloned().collect(),
        subjects: i64::try_from(rec.subjects.len()).unwrap_or(i64::MAX),
        author_partner: author.partner.to_string(),
        author_user: author.user.to_string(),
        at_us,
        changed: changed.clone(),
        subjects_changed,
    };
    let sealed_manifest = seal_json(
        &key,
        &Binding::Manifest {
            kind,
            id,
            owner,
            version,
        },
        &manifest,
    )?;
    let changed_text = serde_json::to_string(&changed)
        .map_err(|_| RecordError::Crypto(CryptoError::Malformed("field names")))?;
    let inserted = sqlx::query(
        "INSERT INTO record_versions (kind, id, version, author_partner, author_user, at_us, \
         changed_fields, subjects_changed, manifest) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(kind)
    .bind(id)
    .bind(version)
    .bind(author.partner.as_str())
    .bind(author.user.as_str())
    .bind(at_us)
    .bind(&changed_text)
    .bind(i64::from(subjects_changed))
    .bind(&sealed_manifest)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::from);
    match inserted {
        Err(e) if is_unique_violation(&e) => return Err(conflict()),
        other => other?,
    };
    for (field, value) in &rec.fields {
        let ciphertext = seal_json(
            &key,
            &Binding::Field {
                kind,
                id,
                owner,
                version,
                field,
            },
            value,
        )?;
        sqlx::query(
            "INSERT INTO record_fields (kind, id, version, field, ciphertext) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(kind)
        .bind(id)
        .bind(version)
        .bind(field)
        .bind(&ciphertext)
        .execute(&mut **tx)
        .await?;
    }
    if subjects_changed {
        sqlx::query("DELETE FROM record_subjects WHERE kind = $1 AND id = $2")
            .bind(kind)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        for (n, subject) in rec.subjects.iter().enumerate() {
            let position = i64::try_from(n).unwrap_or(i64::MAX);
            let ciphertext = seal_json(
                &key,
                &Binding::Subject {
                    kind,
                    id,
                    owner,
                    position,
                },
                subject,
            )?;
            let index = keyring.blind_index(&subject.system(), subject.value());
            sqlx::query(
                "INSERT INTO record_subjects (kind, id, position, blind_index, ciphertext) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(kind)
            .bind(id)
            .bind(position)
            .bind(index.as_bytes().to_vec())
            .bind(&ciphertext)
            .execute(&mut **tx)
            .await?;
        }
    }
    sqlx::query(
        "UPDATE records SET current_version = $1, updated_at_us = $2 \
         WHERE kind = $3 AND id = $4 AND current_version = $5",
    )
    .bind(version)
    .bind(at_us)
    .bind(kind)
    .bind(id)
    .bind(version - 1)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::from)
    .and_then(|done| {
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::Query(sqlx::Error::RowNotFound))
        }
    })
    .map_err(|_| conflict())?;
    Ok(PutOutcome {
        version,
        created,
        changed_fields: changed,
        subjects_changed,
    })
}

/// Creates or changes a record inside `tx` from its current state: takes the record's write
/// lock, reads the current version (`None` for a new record), lets `edit` compute the new
/// record, and writes it with [`put_record`]. Concurrent edits of one record queue, so an
/// edit never works from a stale version (e.g. two status transitions of one referral).
pub async fn edit_record<E, F>(
    tx: &mut Transaction<'_, Any>,
    keyring: &Keyring,
    kind: &RecordKind,
    id: &RecordId,
    author: &Author,
    at: DateTime<Utc>,
    edit: F,
) -> Result<PutOutcome, E>
where
    E: From<RecordError>,
    F: FnOnce(Option<CurrentRecord<'_>>) -> Result<NewRecord, E>,
{
    sqlx::query("UPDATE records SET updated_at_us = updated_at_us WHERE kind = $1 AND id = $2")
        .bind(kind.as_str())
        .bind(id.as_str())
        .execute(&mut **tx)
        .await
        .map_err(RecordError::from)?;
    let current = get_record(tx, keyring, kind, id, None).await?;
    let next = edit(current.as_ref().map(|c| CurrentRecord {
        owner: &c.owner,
        version: c.version,
        subjects: &c.subjects,
        fields: &c.fields,
    }))?;
    if &next.kind != kind || &next.id != id {
        return Err(RecordError::Invalid(InvalidInput::new(
            "record edit",
            "an edit keeps the record's kind and id",
        ))
        .into());
    }
    Ok(put_record(tx, keyring, &next, author, at).await?)
}

/// Records whose subject has `subject` among its identifiers, optionally of one kind, found
/// through the blind index. Each hit is confirmed by decrypting the stored identifier; a hit
/// that does not authenticate or does not match fails the lookup with
/// [`RecordError::Integrity`].
pub async fn find_by_subject(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    subject: &SubjectIdentifier,
    kind: Option<&RecordKind>,
) -> Result<Vec<RecordRef>, RecordError> {
    let index = keyring
        .blind_index(&subject.system(), subject.value())
        .as_bytes()
        .to_vec();
    type Hit = (String, String, i64, Vec<u8>, String, String, i64, i64);
    let hits: Vec<Hit> = match kind {
        Some(k) => {
            sqlx::query_as(
                "SELECT s.kind, s.id, s.position, s.ciphertext, r.owner, r.data_key_id, \
                 r.current_version, r.created_at_us \
                 FROM record_subjects s JOIN records r ON r.kind = s.kind AND r.id = s.id \
                 WHERE s.blind_index = $1 AND s.kind = $2 ORDER BY s.kind, s.id",
            )
            .bind(index)
            .bind(k.as_str())
            .fetch_all(&mut *conn)
            .await?
        }
        None => {
            sqlx::query_as(
                "SELECT s.kind, s.id, s.position, s.ciphertext, r.owner, r.data_key_id, \
                 r.current_version, r.created_at_us \
                 FROM record_subjects s JOIN records r ON r.kind = s.kind AND r.id = s.id \
                 WHERE s.blind_index = $1 ORDER BY s.kind, s.id",
            )
            .bind(index)
            .fetch_all(&mut *conn)
            .await?
        }
    };
    let mut out = BTreeSet::new();
    for (kind, id, position, ciphertext, owner, data_key_id, current_version, created_at_us) in hits
    {
        let rec = RecordRow {
            kind,
            id,
            owner,
            data_key_id,
            current_version,
            created_at_us,
        };
        let key = record_key(conn, keyring, &rec).await?;
        let found: SubjectIdentifier = open_json(
            &key,
            &Binding::Subject {
                kind: &rec.kind,
                id: &rec.id,
                owner: &rec.owner,
                position,
            },
            &ciphertext,
            &rec,
            || format!("subject identifier {position}"),
        )?;
        if &found != subject {
            return Err(integrity(
                &rec.kind,
                &rec.id,
                format!("blind index of subject identifier {position}"),
            ));
        }
        let bad = |part: &str| integrity(&rec.kind, &rec.id, part);
        out.insert(RecordRef {
            kind: rec.kind.parse().map_err(|_| bad("kind"))?,
            id: rec.id.parse().map_err(|_| bad("id"))?,
            owner: rec.owner.parse().map_err(|_| bad("owner"))?,
        });
    }
    Ok(out.into_iter().collect())
}

/// A record's versions, oldest first: who changed which fields, when. Each entry is checked
/// against its sealed manifest. Empty if there is no such record.
pub async fn record_history(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    kind: &RecordKind,
    id: &RecordId,
) -> Result<Vec<RecordVersionInfo>, RecordError> {
    let Some(rec) = fetch_record_row(conn, kind.as_str(), id.as_str()).await? else {
        return Ok(Vec::new());
    };
    let key = record_key(conn, keyring, &rec).await?;
    let mut out = Vec::new();
    for version in 1..=rec.current_version {
        let opened = open_version(conn, &key, &rec, version)
            .await?
            .ok_or_else(|| integrity(&rec.kind, &rec.id, format!("version {version} missing")))?;
        let m = opened.manifest;
        out.push(RecordVersionInfo {
            version,
            author_partner: m.author_partner,
            author_user: m.author_user,
            at: micros(m.at_us),
            changed_fields: m.changed,
            subjects_changed: m.subjects_changed,
        });
    }
    Ok(out)
}

/// Commits a record write; a concurrent write of the same record that won is
/// [`RecordError::Conflict`].
pub async fn commit_write(
    tx: Transaction<'_, Any>,
    kind: &RecordKind,
    id: &RecordId,
) -> Result<(), RecordError> {
    tx.commit().await.map_err(|e| {
        let e = StoreError::from(e);
        if is_unique_violation(&e) {
            RecordError::Conflict {
                kind: kind.clone(),
                id: id.clone(),
            }
        } else {
            RecordError::Store(e)
        }
    })
}

impl Store {
    /// The owner of a record, if it exists (no decryption).
    pub async fn record_owner(
        &self,
        kind: &RecordKind,
        id: &RecordId,
    ) -> Result<Option<PartnerId>, RecordError> {
        let mut conn = self.pool().acquire().await?;
        let Some(row) = fetch_record_row(&mut conn, kind.as_str(), id.as_str()).await? else {
            return Ok(None);
        };
        row.owner
            .parse()
            .map(Some)
            .map_err(|_| integrity(&row.kind, &row.id, "owner"))
    }

    /// [`put_record`] in its own transaction.
    pub async fn put_record(
        &self,
        keyring: &Keyring,
        rec: &NewRecord,
        author: &Author,
        at: DateTime<Utc>,
    ) -> Result<PutOutcome, RecordError> {
        let mut tx = self.pool().begin().await?;
        let outcome = put_record(&mut tx, keyring, rec, author, at).await?;
        commit_write(tx, &rec.kind, &rec.id).await?;
        Ok(outcome)
    }

    /// [`get_record`] at the current version.
    pub async fn get_record(
        &self,
        keyring: &Keyring,
        kind: &RecordKind,
        id: &RecordId,
    ) -> Result<Option<DecryptedRecord>, RecordError> {
        let mut conn = self.pool().acquire().await?;
        get_record(&mut conn, keyring, kind, id, None).await
    }

    /// [`get_record`] at a given version.
    pub async fn get_record_version(
        &self,
        keyring: &Keyring,
        kind: &RecordKind,
        id: &RecordId,
        version: i64,
    ) -> Result<Option<DecryptedRecord>, RecordError> {
        let mut conn = self.pool().acquire().await?;
        get_record(&mut conn, keyring, kind, id, Some(version)).await
    }

    /// [`find_by_subject`].
    pub async fn find_by_subject(
        &self,
        keyring: &Keyring,
        subject: &SubjectIdentifier,
        kind: Option<&RecordKind>,
    ) -> Result<Vec<RecordRef>, RecordError> {
        let mut conn = self.pool().acquire().await?;
        find_by_subject(&mut conn, keyring, subject, kind).await
    }

    /// [`record_history`].
    pub async fn record_history(
        &self,
        keyring: &Keyring,
        kind: &RecordKind,
        id: &RecordId,
    ) -> Result<Vec<RecordVersionInfo>, RecordError> {
        let mut conn = self.pool().acquire().await?;
        record_history(&mut conn, keyring, kind, id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_values_or_identifiers() {
        let rec = NewRecord {
            kind: "crisis-incident".parse().unwrap(),
            id: "INC-1".parse().unwrap(),
            owner: "metro-pd".parse().unwrap(),
            subjects: vec![SubjectIdentifier::new("metro-pd", "P-SECRET-1").unwrap()],
            fields: BTreeMap::from([("narrative".to_owned(), Value::from("SECRET-TEXT"))]),
        };
        let shown = format!("{rec:?}");
        assert!(
            shown.contains("narrative") && shown.contains("metro-pd"),
            "{shown}"
        );
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}
