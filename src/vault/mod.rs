//! Records at rest: every field value and subject identifier sealed, history kept, and the
//! gate through which stored values leave.
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
//! ## The gate
//!
//! A [`DecryptedRecord`]'s values are private: they leave it only through
//! [`DecryptedRecord::open`], which takes the decision's [`Permit`] (only `policy::decide`
//! makes one) and the [`Receipt`] of the disclosure's durable log entry (only the disclosure
//! log makes one, once the entry has committed), both for this very record. So no code path can
//! send a stored value anywhere without a permit and a log entry.
//!
//! Aggregate reports read through [`report_rows`], which needs the report's
//! [`Grant`](crate::reports::Grant) and yields only the fields it names, and people only as
//! blind indexes; what a report computes leaves only after its own durable log entry (module
//! `reports`).
//!
//! ## Reads and transactions
//!
//! Every function takes a [`Conn`]: a pooled connection for reads, or the caller's
//! transaction for writes, so a write commits together with its disclosure-log entry. A read
//! of the current version is one statement (record, data key, version, fields, subjects and
//! the cache epochs together); its data key comes from the keyring's cache when it was
//! unwrapped before. A write runs in a transaction that holds the database write lock on SQLite
//! and the record's row lock on PostgreSQL, so concurrent writers of one record queue instead
//! of forking its history.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::Receipt;
use crate::crypto::{Binding, CryptoError, DataKey, KEY_PURPOSE_RECORD, Keyring, WrappedKey};
use crate::domain::{Author, InvalidInput, PartnerId, RecordId, RecordKind, SubjectIdentifier};
use crate::policy::Permit;
use crate::redaction::Record as RedactionInput;
use crate::store::epochs::Epochs;
use crate::store::records::{
    self as rows, CurrentRows, FieldRow, RecordRow, SubjectRow, VersionRow,
};
use crate::store::{Conn, StoreError, data_keys};

mod report;
pub use report::{ReportRow, report_rows};

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
/// [`DecryptedRecord::open`] (see the module documentation).
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

    /// The values, as input for the redaction step: only for the permit of a decision about
    /// this record's kind and holder, and only with the receipt of that decision's durable log
    /// entry about this record.
    pub fn open(self, permit: &Permit, receipt: &Receipt) -> Result<RedactionInput, OpenRefused> {
        let decision = permit.decision_id().to_string();
        let ok = permit.kind() == self.kind.as_str()
            && permit.holder() == &self.owner
            && receipt.decision_id() == Some(decision.as_str())
            && receipt.record() == Some((self.kind.as_str(), self.id.as_str()));
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

fn count_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
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
        return Err(InvalidInput::new(
            "subject identifiers",
            "list each identifier once",
        ));
    }
    Ok(())
}

fn open_key(
    keyring: &Keyring,
    rec: &RecordRow,
    row: Option<&WrappedKey>,
) -> Result<Arc<DataKey>, RecordError> {
    let row = row.ok_or_else(|| integrity(&rec.kind, &rec.id, "data key missing"))?;
    if row.id != rec.data_key_id {
        return Err(integrity(&rec.kind, &rec.id, "data key"));
    }
    keyring
        .open_data_key(row, KEY_PURPOSE_RECORD)
        .map_err(|e| match e {
            CryptoError::UnknownMasterVersion(_) | CryptoError::Random => RecordError::Key(e),
            _ => integrity(&rec.kind, &rec.id, "data key"),
        })
}

async fn record_key(
    c: &mut Conn<'_>,
    keyring: &Keyring,
    rec: &RecordRow,
) -> Result<Arc<DataKey>, RecordError> {
    let row = data_keys::get(c, &rec.data_key_id).await?;
    open_key(keyring, rec, row.as_ref())
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

/// Opens one version from its rows and checks them against its sealed manifest.
fn open_version(
    key: &DataKey,
    rec: &RecordRow,
    v: &VersionRow,
    field_rows: Vec<FieldRow>,
) -> Result<OpenedVersion, RecordError> {
    let (kind, id, owner) = (rec.kind.as_str(), rec.id.as_str(), rec.owner.as_str());
    let version = v.version;
    let manifest: Manifest = open_json(
        key,
        &Binding::Manifest {
            kind,
            id,
            owner,
            version,
        },
        &v.manifest,
        rec,
        || format!("manifest of version {version}"),
    )?;
    let changed: Vec<String> = serde_json::from_str(&v.changed_fields)
        .map_err(|_| integrity(kind, id, format!("history of version {version}")))?;
    if manifest.author_partner != v.author_partner
        || manifest.author_user != v.author_user
        || manifest.at_us != v.at_us
        || manifest.changed != changed
        || i64::from(manifest.subjects_changed) != v.subjects_changed
    {
        return Err(integrity(kind, id, format!("history of version {version}")));
    }
    let names: Vec<&str> = field_rows.iter().map(|f| f.field.as_str()).collect();
    let expected: Vec<&str> = manifest.fields.iter().map(String::as_str).collect();
    if names != expected {
        return Err(integrity(
            kind,
            id,
            format!("field list of version {version}"),
        ));
    }
    let mut fields = BTreeMap::new();
    for FieldRow { field, ciphertext } in field_rows {
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
    Ok(OpenedVersion { manifest, fields })
}

/// Opens the subject rows and checks each against its blind index and the expected count.
fn open_subjects(
    keyring: &Keyring,
    key: &DataKey,
    rec: &RecordRow,
    subject_rows: Vec<SubjectRow>,
    expected_count: i64,
) -> Result<Vec<SubjectIdentifier>, RecordError> {
    let (kind, id, owner) = (rec.kind.as_str(), rec.id.as_str(), rec.owner.as_str());
    if count_i64(subject_rows.len()) != expected_count {
        return Err(integrity(kind, id, "subject identifier list"));
    }
    let mut out = Vec::with_capacity(subject_rows.len());
    for (n, row) in subject_rows.into_iter().enumerate() {
        let position = row.position;
        if count_i64(n) != position {
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
            &row.ciphertext,
            rec,
            || format!("subject identifier {position}"),
        )?;
        if keyring
            .blind_index(subject.system(), subject.value())
            .as_bytes()
            .as_slice()
            != row.blind_index
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

fn decrypted(
    kind: &RecordKind,
    id: &RecordId,
    rec: &RecordRow,
    version: i64,
    opened: OpenedVersion,
    subjects: Vec<SubjectIdentifier>,
) -> Result<DecryptedRecord, RecordError> {
    let owner = rec
        .owner
        .parse()
        .map_err(|_| integrity(&rec.kind, &rec.id, "owner"))?;
    Ok(DecryptedRecord {
        kind: kind.clone(),
        id: id.clone(),
        owner,
        version,
        current_version: rec.current_version,
        created_at: micros(rec.created_at_us),
        updated_at: micros(opened.manifest.at_us),
        subjects,
        fields: opened.fields,
    })
}

/// Opens everything read for a record's current version; also returns its row and data key
/// (for a write that follows in the same transaction).
fn open_current(
    keyring: &Keyring,
    kind: &RecordKind,
    id: &RecordId,
    rows: CurrentRows,
) -> Result<(RecordRow, Arc<DataKey>, DecryptedRecord), RecordError> {
    let CurrentRows {
        record: rec,
        key,
        version,
        fields,
        subjects,
        latest_version,
    } = rows;
    // A current-version pointer moved back to an older, authentic version is a rollback.
    if latest_version != Some(rec.current_version) {
        return Err(integrity(&rec.kind, &rec.id, "current version"));
    }
    let key = open_key(keyring, &rec, key.as_ref())?;
    let version = version.ok_or_else(|| integrity(&rec.kind, &rec.id, "current version"))?;
    let opened = open_version(&key, &rec, &version, fields)?;
    let subjects = open_subjects(keyring, &key, &rec, subjects, opened.manifest.subjects)?;
    let record = decrypted(kind, id, &rec, rec.current_version, opened, subjects)?;
    Ok((rec, key, record))
}

/// Reads and decrypts the current version of a record in one round trip, with the cache
/// epochs read in the same statement (the keyring drops its cached data keys first if the key
/// epoch moved). `None` if there is no such record. Fails with [`RecordError::Integrity`] if
/// anything stored for it does not authenticate.
pub async fn read_current(
    c: &mut Conn<'_>,
    keyring: &Keyring,
    kind: &RecordKind,
    id: &RecordId,
) -> Result<(Option<DecryptedRecord>, Epochs), RecordError> {
    let (rows, epochs) = rows::read_current(c, kind.as_str(), id.as_str()).await?;
    if rows.is_some() {
        keyring.observe_key_epoch(epochs.keys);
    }
    let rec = rows
        .map(|r| open_current(keyring, kind, id, r).map(|(_, _, d)| d))
        .transpose()?;
    Ok((rec, epochs))
}

/// Reads and decrypts a record at `version` (`None`: the current version). Returns `None` if
/// there is no such record or version. Fails with [`RecordError::Integrity`] if anything
/// stored for it does not authenticate.
pub async fn get_record(
    c: &mut Conn<'_>,
    keyring: &Keyring,
    kind: &RecordKind,
    id: &RecordId,
    version: Option<i64>,
) -> Result<Option<DecryptedRecord>, RecordError> {
    let Some(version) = version else {
        return Ok(read_current(c, keyring, kind, id).await?.0);
    };
    let Some(rec) = rows::get(c, kind.as_str(), id.as_str()).await? else {
        return Ok(None);
    };
    let versions = rows::versions(c, &rec.kind, &rec.id).await?;
    if versions.last().map(|v| v.version) != Some(rec.current_version) {
        return Err(integrity(&rec.kind, &rec.id, "current version"));
    }
    let Some(v) = versions.iter().find(|v| v.version == version) else {
        return Ok(None);
    };
    let key = record_key(c, keyring, &rec).await?;
    let fields = rows::fields(c, &rec.kind, &rec.id, version).await?;
    let opened = open_version(&key, &rec, v, fields)?;
    let current = versions
        .iter()
        .find(|v| v.version == rec.current_version)
        .ok_or_else(|| integrity(&rec.kind, &rec.id, "current version"))?;
    let current_fields = rows::fields(c, &rec.kind, &rec.id, current.version).await?;
    let current_subjects = open_version(&key, &rec, current, current_fields)?
        .manifest
        .subjects;
    let subject_rows = rows::subjects(c, &rec.kind, &rec.id).await?;
    let subjects = open_subjects(keyring, &key, &rec, subject_rows, current_subjects)?;
    decrypted(kind, id, &rec, version, opened, subjects).map(Some)
}

/// Creates or updates a record inside the caller's transaction. An update by a partner other
/// than the owner is refused; a write that changes nothing adds no version. The caller commits.
pub async fn put_record(
    c: &mut Conn<'_>,
    keyring: &Keyring,
    rec: &NewRecord,
    author: &Author,
    at: DateTime<Utc>,
) -> Result<PutOutcome, RecordError> {
    rows::lock(c, rec.kind.as_str(), rec.id.as_str()).await?;
    let (current, _) = rows::read_current(c, rec.kind.as_str(), rec.id.as_str()).await?;
    let current = current
        .map(|r| open_current(keyring, &rec.kind, &rec.id, r))
        .transpose()?;
    write(c, keyring, rec, author, at, current).await
}

/// Creates or changes a record inside the caller's transaction from its current state: takes
/// the record's write lock, reads the current version (`None` for a new record), lets `edit`
/// compute the new record, and writes it. Concurrent edits of one record queue, so an edit
/// never works from a stale version (e.g. two status transitions of one referral).
pub async fn edit_record<E, F>(
    c: &mut Conn<'_>,
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
    rows::lock(c, kind.as_str(), id.as_str())
        .await
        .map_err(RecordError::from)?;
    let (current, _) = rows::read_current(c, kind.as_str(), id.as_str())
        .await
        .map_err(RecordError::from)?;
    let current = current
        .map(|r| open_current(keyring, kind, id, r))
        .transpose()?;
    let next = edit(current.as_ref().map(|(_, _, d)| CurrentRecord {
        owner: &d.owner,
        version: d.version,
        subjects: &d.subjects,
        fields: &d.fields,
    }))?;
    if &next.kind != kind || &next.id != id {
        return Err(RecordError::Invalid(InvalidInput::new(
            "record edit",
            "an edit keeps the record's kind and id",
        ))
        .into());
    }
    Ok(write(c, keyring, &next, author, at, current).await?)
}

/// Writes `rec` over `current` (the record as read in this transaction, `None` when new).
async fn write(
    c: &mut Conn<'_>,
    keyring: &Keyring,
    rec: &NewRecord,
    author: &Author,
    at: DateTime<Utc>,
    current: Option<(RecordRow, Arc<DataKey>, DecryptedRecord)>,
) -> Result<PutOutcome, RecordError> {
    validate(rec)?;
    let (kind, id, owner) = (rec.kind.as_str(), rec.id.as_str(), rec.owner.as_str());
    let at_us = at.timestamp_micros();
    let failed = |e: StoreError| write_error(e, &rec.kind, &rec.id);
    let (key, version, changed, subjects_changed, created) = match current {
        Some((row, key, old)) => {
            if row.owner != owner {
                return Err(RecordError::OwnerMismatch {
                    kind: rec.kind.clone(),
                    id: rec.id.clone(),
                });
            }
            let names: BTreeSet<&String> = old.fields.keys().chain(rec.fields.keys()).collect();
            let changed: Vec<String> = names
                .into_iter()
                .filter(|n| old.fields.get(*n) != rec.fields.get(*n))
                .cloned()
                .collect();
            let subjects_changed = old.subjects != rec.subjects;
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
            let (key, wrapped) = keyring
                .new_data_key(KEY_PURPOSE_RECORD)
                .map_err(RecordError::Key)?;
            data_keys::insert(c, &wrapped, at_us)
                .await
                .map_err(failed)?;
            rows::insert(
                c,
                &RecordRow {
                    kind: kind.to_owned(),
                    id: id.to_owned(),
                    owner: owner.to_owned(),
                    data_key_id: wrapped.id.clone(),
                    current_version: 0,
                    created_at_us: at_us,
                },
            )
            .await
            .map_err(failed)?;
            let changed = rec.fields.keys().cloned().collect();
            (Arc::new(key), 1, changed, true, true)
        }
    };

    let manifest = Manifest {
        fields: rec.fields.keys().cloned().collect(),
        subjects: count_i64(rec.subjects.len()),
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
    rows::insert_version(
        c,
        kind,
        id,
        &VersionRow {
            version,
            author_partner: author.partner.to_string(),
            author_user: author.user.to_string(),
            at_us,
            changed_fields: changed_text,
            subjects_changed: i64::from(subjects_changed),
            manifest: sealed_manifest,
        },
    )
    .await
    .map_err(failed)?;
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
        rows::insert_field(
            c,
            kind,
            id,
            version,
            &FieldRow {
                field: field.clone(),
                ciphertext,
            },
        )
        .await
        .map_err(failed)?;
    }
    if subjects_changed {
        let mut subject_rows = Vec::with_capacity(rec.subjects.len());
        for (n, subject) in rec.subjects.iter().enumerate() {
            let position = count_i64(n);
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
            subject_rows.push(SubjectRow {
                position,
                blind_index: keyring
                    .blind_index(subject.system(), subject.value())
                    .as_bytes()
                    .to_vec(),
                ciphertext,
            });
        }
        rows::replace_subjects(c, kind, id, &subject_rows)
            .await
            .map_err(failed)?;
    }
    // A statement that fails here (a lost connection, a database going down) is a failed
    // write, not a conflict; only a pointer that another write moved first is.
    if !rows::advance(c, kind, id, version - 1, version, at_us)
        .await
        .map_err(failed)?
    {
        return Err(RecordError::Conflict {
            kind: rec.kind.clone(),
            id: rec.id.clone(),
        });
    }
    Ok(PutOutcome {
        version,
        created,
        changed_fields: changed,
        subjects_changed,
    })
}

/// Records whose subject has `subject` among its identifiers, optionally of one kind, found
/// through the blind index. Each hit is confirmed by decrypting the stored identifier; a hit
/// that does not authenticate or does not match fails the lookup with
/// [`RecordError::Integrity`].
pub async fn find_by_subject(
    c: &mut Conn<'_>,
    keyring: &Keyring,
    subject: &SubjectIdentifier,
    kind: Option<&RecordKind>,
) -> Result<Vec<RecordRef>, RecordError> {
    let index = keyring
        .blind_index(subject.system(), subject.value())
        .as_bytes()
        .to_vec();
    let hits = rows::find_by_blind_index(c, &index, kind.map(RecordKind::as_str)).await?;
    let mut out = BTreeSet::new();
    for hit in hits {
        let rec = RecordRow {
            kind: hit.kind,
            id: hit.id,
            owner: hit.owner,
            data_key_id: hit.data_key_id,
            current_version: hit.current_version,
            created_at_us: hit.created_at_us,
        };
        let position = hit.position;
        let key = record_key(c, keyring, &rec).await?;
        let found: SubjectIdentifier = open_json(
            &key,
            &Binding::Subject {
                kind: &rec.kind,
                id: &rec.id,
                owner: &rec.owner,
                position,
            },
            &hit.ciphertext,
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
    c: &mut Conn<'_>,
    keyring: &Keyring,
    kind: &RecordKind,
    id: &RecordId,
) -> Result<Vec<RecordVersionInfo>, RecordError> {
    let Some(rec) = rows::get(c, kind.as_str(), id.as_str()).await? else {
        return Ok(Vec::new());
    };
    let key = record_key(c, keyring, &rec).await?;
    let versions = rows::versions(c, &rec.kind, &rec.id).await?;
    let mut out = Vec::new();
    for version in 1..=rec.current_version {
        let v = versions
            .iter()
            .find(|v| v.version == version)
            .ok_or_else(|| integrity(&rec.kind, &rec.id, format!("version {version} missing")))?;
        let fields = rows::fields(c, &rec.kind, &rec.id, version).await?;
        let m = open_version(&key, &rec, v, fields)?.manifest;
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

/// The owner of a record, if it exists (no decryption).
pub async fn record_owner(
    c: &mut Conn<'_>,
    kind: &RecordKind,
    id: &RecordId,
) -> Result<Option<PartnerId>, RecordError> {
    let Some(row) = rows::get(c, kind.as_str(), id.as_str()).await? else {
        return Ok(None);
    };
    row.owner
        .parse()
        .map(Some)
        .map_err(|_| integrity(&row.kind, &row.id, "owner"))
}

/// The tables whose primary keys are the record's own: its `records` row (kind, id) and its
/// version numbers (kind, id, version).
const RECORD_KEYS: [&str; 2] = ["records", "record_versions"];

/// Sorts a failed statement or commit of a record write. Only a violation of the record's own
/// key (the primary key of `records` or `record_versions`) means that a concurrent write of
/// the same record won: [`RecordError::Conflict`] (409; retry). Anything else is
/// [`RecordError::Store`] (503: nothing changed; retry): a lost connection, a failed
/// statement, and a violation of any other unique key (a data key, a field or subject row, the
/// disclosure log's tables written in the same transaction), which no client caused; that one
/// is logged with the key's name (names only, never values).
pub fn write_error(e: StoreError, kind: &RecordKind, id: &RecordId) -> RecordError {
    if e.is_own_key_conflict(&RECORD_KEYS, "record", kind.as_str()) {
        RecordError::Conflict {
            kind: kind.clone(),
            id: id.clone(),
        }
    } else {
        RecordError::Store(e)
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
