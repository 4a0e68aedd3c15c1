//! The record tables: `records`, `record_versions`, `record_fields`, `record_subjects`.
//!
//! Rows only: every value and identifier arrives here already sealed, and leaves sealed; the
//! record vault (module `vault`, above this one) seals, opens and checks them. A record is `(kind, id)` with
//! one owner and a data key; each version has a sealed manifest, one sealed ciphertext per
//! field, and the record's subject identifiers are stored once (blind index plus sealed value).

use super::data_keys::WrappedKey;
use super::epochs::Epochs;
use super::{Conn, StoreError, on_conn};

/// A `records` row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RecordRow {
    /// Kind.
    pub kind: String,
    /// Id.
    pub id: String,
    /// Owner partner.
    pub owner: String,
    /// The record's data key.
    pub data_key_id: String,
    /// The current version (0 only inside the transaction that creates the record).
    pub current_version: i64,
    /// When it was created (µs).
    pub created_at_us: i64,
}

/// A `record_versions` row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct VersionRow {
    /// Version, from 1.
    pub version: i64,
    /// Writer's partner.
    pub author_partner: String,
    /// Writer.
    pub author_user: String,
    /// When (µs).
    pub at_us: i64,
    /// Changed field names, a JSON array.
    pub changed_fields: String,
    /// 1 when the subject identifiers changed.
    pub subjects_changed: i64,
    /// The sealed manifest.
    pub manifest: Vec<u8>,
}

/// A `record_fields` row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FieldRow {
    /// Field name.
    pub field: String,
    /// Sealed value.
    pub ciphertext: Vec<u8>,
}

/// A `record_subjects` row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SubjectRow {
    /// Position in the record's list, from 0.
    pub position: i64,
    /// Keyed blind index of the canonical identifier.
    pub blind_index: Vec<u8>,
    /// Sealed identifier.
    pub ciphertext: Vec<u8>,
}

/// Everything stored for a record's current version, read in one round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentRows {
    /// The record row.
    pub record: RecordRow,
    /// Its wrapped data key (`None`: the key row is missing).
    pub key: Option<WrappedKey>,
    /// The current version's row (`None`: missing).
    pub version: Option<VersionRow>,
    /// The current version's fields, by name.
    pub fields: Vec<FieldRow>,
    /// The subject identifiers, by position.
    pub subjects: Vec<SubjectRow>,
    /// The highest version stored (a current-version pointer below it is a rollback).
    pub latest_version: Option<i64>,
}

/// The combined read on SQLite: one row holding the record, its data key, its current
/// version, the cache epochs, and the version's fields and the subjects as lists of
/// hex-encoded parts (`hex(name):hex(ciphertext),...` and `position:hex(index):hex(ct),...`).
/// One row means one value copy per column and one message from SQLite's worker thread,
/// instead of one per field.
const READ_CURRENT_SQLITE: &str = "\
SELECT r.owner, r.data_key_id, r.current_version, r.created_at_us, \
       k.purpose AS key_purpose, k.master_version AS key_master_version, \
       k.wrapped AS key_wrapped, \
       v.version AS v_version, v.author_partner AS v_author_partner, \
       v.author_user AS v_author_user, v.at_us AS v_at_us, \
       v.changed_fields AS v_changed_fields, v.subjects_changed AS v_subjects_changed, \
       v.manifest AS v_manifest, \
       (SELECT group_concat(hex(f.field) || ':' || hex(f.ciphertext), ',') \
          FROM record_fields f \
         WHERE f.kind = r.kind AND f.id = r.id AND f.version = r.current_version) AS fields, \
       (SELECT group_concat(s.position || ':' || hex(s.blind_index) || ':' \
                            || hex(s.ciphertext), ',') \
          FROM record_subjects s WHERE s.kind = r.kind AND s.id = r.id) AS subjects, \
       (SELECT MAX(m.version) FROM record_versions m \
         WHERE m.kind = r.kind AND m.id = r.id) AS latest_version, \
       e.consents AS epoch_consents, e.keys AS epoch_keys \
  FROM records r \
  LEFT JOIN data_keys k ON k.id = r.data_key_id \
  LEFT JOIN record_versions v \
    ON v.kind = r.kind AND v.id = r.id AND v.version = r.current_version \
  LEFT JOIN cache_epochs e ON e.id = 1 \
 WHERE r.kind = $1 AND r.id = $2";

/// The combined read on PostgreSQL: the same row, with the fields and subjects as native
/// arrays.
const READ_CURRENT_POSTGRES: &str = "\
SELECT r.owner, r.data_key_id, r.current_version, r.created_at_us, \
       k.purpose AS key_purpose, k.master_version AS key_master_version, \
       k.wrapped AS key_wrapped, \
       v.version AS v_version, v.author_partner AS v_author_partner, \
       v.author_user AS v_author_user, v.at_us AS v_at_us, \
       v.changed_fields AS v_changed_fields, v.subjects_changed AS v_subjects_changed, \
       v.manifest AS v_manifest, \
       ARRAY(SELECT f.field FROM record_fields f \
              WHERE f.kind = r.kind AND f.id = r.id AND f.version = r.current_version \
              ORDER BY f.field) AS field_names, \
       ARRAY(SELECT f.ciphertext FROM record_fields f \
              WHERE f.kind = r.kind AND f.id = r.id AND f.version = r.current_version \
              ORDER BY f.field) AS field_ciphertexts, \
       ARRAY(SELECT s.position FROM record_subjects s \
              WHERE s.kind = r.kind AND s.id = r.id ORDER BY s.position) AS subject_positions, \
       ARRAY(SELECT s.blind_index FROM record_subjects s \
              WHERE s.kind = r.kind AND s.id = r.id ORDER BY s.position) AS subject_indexes, \
       ARRAY(SELECT s.ciphertext FROM record_subjects s \
              WHERE s.kind = r.kind AND s.id = r.id ORDER BY s.position) AS subject_ciphertexts, \
       (SELECT MAX(m.version) FROM record_versions m \
         WHERE m.kind = r.kind AND m.id = r.id) AS latest_version, \
       e.consents AS epoch_consents, e.keys AS epoch_keys \
  FROM records r \
  LEFT JOIN data_keys k ON k.id = r.data_key_id \
  LEFT JOIN record_versions v \
    ON v.kind = r.kind AND v.id = r.id AND v.version = r.current_version \
  LEFT JOIN cache_epochs e ON e.id = 1 \
 WHERE r.kind = $1 AND r.id = $2";

/// The columns both combined reads share.
#[derive(Debug, sqlx::FromRow)]
struct CurrentHead {
    owner: String,
    data_key_id: String,
    current_version: i64,
    created_at_us: i64,
    key_purpose: Option<String>,
    key_master_version: Option<i64>,
    key_wrapped: Option<Vec<u8>>,
    v_version: Option<i64>,
    v_author_partner: Option<String>,
    v_author_user: Option<String>,
    v_at_us: Option<i64>,
    v_changed_fields: Option<String>,
    v_subjects_changed: Option<i64>,
    v_manifest: Option<Vec<u8>>,
    latest_version: Option<i64>,
    epoch_consents: Option<i64>,
    epoch_keys: Option<i64>,
}

#[derive(Debug, sqlx::FromRow)]
struct CurrentSqlite {
    #[sqlx(flatten)]
    head: CurrentHead,
    fields: Option<String>,
    subjects: Option<String>,
}

#[derive(Debug, sqlx::FromRow)]
struct CurrentPostgres {
    #[sqlx(flatten)]
    head: CurrentHead,
    field_names: Vec<String>,
    field_ciphertexts: Vec<Vec<u8>>,
    subject_positions: Vec<i64>,
    subject_indexes: Vec<Vec<u8>>,
    subject_ciphertexts: Vec<Vec<u8>>,
}

fn unhex(part: &str) -> Result<Vec<u8>, StoreError> {
    hex::decode(part).map_err(|_| StoreError::Range("a record part is not hex"))
}

/// Parses `hex(name):hex(ciphertext),...`.
fn sqlite_fields(text: Option<&str>) -> Result<Vec<FieldRow>, StoreError> {
    let mut out = Vec::new();
    for item in text
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
    {
        let (name, ct) = item
            .split_once(':')
            .ok_or(StoreError::Range("a record field part"))?;
        let field = String::from_utf8(unhex(name)?)
            .map_err(|_| StoreError::Range("a field name is not UTF-8"))?;
        out.push(FieldRow {
            field,
            ciphertext: unhex(ct)?,
        });
    }
    Ok(out)
}

/// Parses `position:hex(index):hex(ciphertext),...`.
fn sqlite_subjects(text: Option<&str>) -> Result<Vec<SubjectRow>, StoreError> {
    let mut out = Vec::new();
    for item in text
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
    {
        let mut parts = item.splitn(3, ':');
        let (Some(pos), Some(index), Some(ct)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(StoreError::Range("a record subject part"));
        };
        out.push(SubjectRow {
            position: pos
                .parse()
                .map_err(|_| StoreError::Range("a subject position"))?,
            blind_index: unhex(index)?,
            ciphertext: unhex(ct)?,
        });
    }
    Ok(out)
}

fn current_rows(
    kind: &str,
    id: &str,
    h: CurrentHead,
    mut fields: Vec<FieldRow>,
    mut subjects: Vec<SubjectRow>,
) -> (CurrentRows, Epochs) {
    let key = match (h.key_purpose, h.key_master_version, h.key_wrapped) {
        (Some(purpose), Some(master_version), Some(wrapped)) => Some(WrappedKey {
            id: h.data_key_id.clone(),
            purpose,
            master_version,
            wrapped,
        }),
        _ => None,
    };
    let version = match (
        h.v_version,
        h.v_author_partner,
        h.v_author_user,
        h.v_at_us,
        h.v_changed_fields,
        h.v_subjects_changed,
        h.v_manifest,
    ) {
        (
            Some(version),
            Some(author_partner),
            Some(author_user),
            Some(at_us),
            Some(changed_fields),
            Some(subjects_changed),
            Some(manifest),
        ) => Some(VersionRow {
            version,
            author_partner,
            author_user,
            at_us,
            changed_fields,
            subjects_changed,
            manifest,
        }),
        _ => None,
    };
    // Rows are ordered here: PostgreSQL's collation need not be byte order.
    fields.sort_by(|a, b| a.field.cmp(&b.field));
    subjects.sort_by_key(|s| s.position);
    let epochs = Epochs {
        consents: h.epoch_consents.unwrap_or_default(),
        keys: h.epoch_keys.unwrap_or_default(),
    };
    (
        CurrentRows {
            record: RecordRow {
                kind: kind.to_owned(),
                id: id.to_owned(),
                owner: h.owner,
                data_key_id: h.data_key_id,
                current_version: h.current_version,
                created_at_us: h.created_at_us,
            },
            key,
            version,
            fields,
            subjects,
            latest_version: h.latest_version,
        },
        epochs,
    )
}

/// Reads everything stored for the current version of `(kind, id)` and the cache epochs, in
/// one statement that returns one row (one round trip). `None` when there is no such record
/// (the epochs are then zero: they are read with a record only).
pub async fn read_current(
    c: &mut Conn<'_>,
    kind: &str,
    id: &str,
) -> Result<(Option<CurrentRows>, Epochs), StoreError> {
    let found = match c {
        Conn::Sqlite(c) => {
            let row: Option<CurrentSqlite> = sqlx::query_as(READ_CURRENT_SQLITE)
                .bind(kind)
                .bind(id)
                .fetch_optional(&mut **c)
                .await?;
            match row {
                None => None,
                Some(r) => {
                    let fields = sqlite_fields(r.fields.as_deref())?;
                    let subjects = sqlite_subjects(r.subjects.as_deref())?;
                    Some(current_rows(kind, id, r.head, fields, subjects))
                }
            }
        }
        Conn::Postgres(c) => {
            let row: Option<CurrentPostgres> = sqlx::query_as(READ_CURRENT_POSTGRES)
                .bind(kind)
                .bind(id)
                .fetch_optional(&mut **c)
                .await?;
            match row {
                None => None,
                Some(r) => {
                    if r.field_names.len() != r.field_ciphertexts.len()
                        || r.subject_positions.len() != r.subject_indexes.len()
                        || r.subject_positions.len() != r.subject_ciphertexts.len()
                    {
                        return Err(StoreError::Range("record parts of unequal length"));
                    }
                    let fields = r
                        .field_names
                        .into_iter()
                        .zip(r.field_ciphertexts)
                        .map(|(field, ciphertext)| FieldRow { field, ciphertext })
                        .collect();
                    let subjects = r
                        .subject_positions
                        .into_iter()
                        .zip(r.subject_indexes)
                        .zip(r.subject_ciphertexts)
                        .map(|((position, blind_index), ciphertext)| SubjectRow {
                            position,
                            blind_index,
                            ciphertext,
                        })
                        .collect();
                    Some(current_rows(kind, id, r.head, fields, subjects))
                }
            }
        }
    };
    Ok(match found {
        Some((rows, epochs)) => (Some(rows), epochs),
        None => (None, Epochs::default()),
    })
}

/// The `records` row of `(kind, id)`.
pub async fn get(c: &mut Conn<'_>, kind: &str, id: &str) -> Result<Option<RecordRow>, StoreError> {
    Ok(on_conn!(c, |c| {
        sqlx::query_as(
            "SELECT kind, id, owner, data_key_id, current_version, created_at_us FROM records \
             WHERE kind = $1 AND id = $2",
        )
        .bind(kind)
        .bind(id)
        .fetch_optional(c)
        .await
    })?)
}

/// Takes the record's row lock for the rest of the transaction (PostgreSQL; on SQLite the
/// write transaction already holds the database lock). No-op when there is no such record.
pub async fn lock(c: &mut Conn<'_>, kind: &str, id: &str) -> Result<(), StoreError> {
    on_conn!(c, |c| {
        sqlx::query("UPDATE records SET updated_at_us = updated_at_us WHERE kind = $1 AND id = $2")
            .bind(kind)
            .bind(id)
            .execute(c)
            .await
            .map(|_| ())
    })?;
    Ok(())
}

/// Inserts a new record row at version 0 (its first version follows in the same transaction).
pub async fn insert(c: &mut Conn<'_>, r: &RecordRow) -> Result<(), StoreError> {
    on_conn!(c, |c| {
        sqlx::query(
            "INSERT INTO records \
             (kind, id, owner, data_key_id, current_version, created_at_us, updated_at_us) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(&r.kind)
        .bind(&r.id)
        .bind(&r.owner)
        .bind(&r.data_key_id)
        .bind(r.current_version)
        .bind(r.created_at_us)
        .execute(c)
        .await
        .map(|_| ())
    })?;
    Ok(())
}

/// Inserts a version row.
pub async fn insert_version(
    c: &mut Conn<'_>,
    kind: &str,
    id: &str,
    v: &VersionRow,
) -> Result<(), StoreError> {
    on_conn!(c, |c| {
        sqlx::query(
            "INSERT INTO record_versions (kind, id, version, author_partner, author_user, \
             at_us, changed_fields, subjects_changed, manifest) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(kind)
        .bind(id)
        .bind(v.version)
        .bind(&v.author_partner)
        .bind(&v.author_user)
        .bind(v.at_us)
        .bind(&v.changed_fields)
        .bind(v.subjects_changed)
        .bind(&v.manifest)
        .execute(c)
        .await
        .map(|_| ())
    })?;
    Ok(())
}

/// Inserts one field of a version.
pub async fn insert_field(
    c: &mut Conn<'_>,
    kind: &str,
    id: &str,
    version: i64,
    f: &FieldRow,
) -> Result<(), StoreError> {
    on_conn!(c, |c| {
        sqlx::query(
            "INSERT INTO record_fields (kind, id, version, field, ciphertext) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(kind)
        .bind(id)
        .bind(version)
        .bind(&f.field)
        .bind(&f.ciphertext)
        .execute(c)
        .await
        .map(|_| ())
    })?;
    Ok(())
}

/// Replaces the record's subject rows.
pub async fn replace_subjects(
    c: &mut Conn<'_>,
    kind: &str,
    id: &str,
    subjects: &[SubjectRow],
) -> Result<(), StoreError> {
    on_conn!(c, |c| {
        sqlx::query("DELETE FROM record_subjects WHERE kind = $1 AND id = $2")
            .bind(kind)
            .bind(id)
            .execute(&mut *c)
            .await
            .map(|_| ())
    })?;
    for s in subjects {
        on_conn!(c, |c| {
            sqlx::query(
                "INSERT INTO record_subjects (kind, id, position, blind_index, ciphertext) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(kind)
            .bind(id)
            .bind(s.position)
            .bind(&s.blind_index)
            .bind(&s.ciphertext)
            .execute(c)
            .await
            .map(|_| ())
        })?;
    }
    Ok(())
}

/// Moves the current-version pointer from `from` to `to`; returns whether it moved (it does
/// not when a concurrent write moved it first).
pub async fn advance(
    c: &mut Conn<'_>,
    kind: &str,
    id: &str,
    from: i64,
    to: i64,
    at_us: i64,
) -> Result<bool, StoreError> {
    let done = on_conn!(c, |c| {
        sqlx::query(
            "UPDATE records SET current_version = $1, updated_at_us = $2 \
             WHERE kind = $3 AND id = $4 AND current_version = $5",
        )
        .bind(to)
        .bind(at_us)
        .bind(kind)
        .bind(id)
        .bind(from)
        .execute(c)
        .await
        .map(|d| d.rows_affected())
    })?;
    Ok(done == 1)
}

/// Every version row of a record, oldest first.
pub async fn versions(
    c: &mut Conn<'_>,
    kind: &str,
    id: &str,
) -> Result<Vec<VersionRow>, StoreError> {
    Ok(on_conn!(c, |c| {
        sqlx::query_as(
            "SELECT version, author_partner, author_user, at_us, changed_fields, \
             subjects_changed, manifest FROM record_versions WHERE kind = $1 AND id = $2 \
             ORDER BY version",
        )
        .bind(kind)
        .bind(id)
        .fetch_all(c)
        .await
    })?)
}

/// The fields of one version, by name.
pub async fn fields(
    c: &mut Conn<'_>,
    kind: &str,
    id: &str,
    version: i64,
) -> Result<Vec<FieldRow>, StoreError> {
    let mut rows: Vec<FieldRow> = on_conn!(c, |c| {
        sqlx::query_as(
            "SELECT field, ciphertext FROM record_fields \
             WHERE kind = $1 AND id = $2 AND version = $3",
        )
        .bind(kind)
        .bind(id)
        .bind(version)
        .fetch_all(c)
        .await
    })?;
    rows.sort_by(|a, b| a.field.cmp(&b.field));
    Ok(rows)
}

/// The subject rows of a record, by position.
pub async fn subjects(
    c: &mut Conn<'_>,
    kind: &str,
    id: &str,
) -> Result<Vec<SubjectRow>, StoreError> {
    Ok(on_conn!(c, |c| {
        sqlx::query_as(
            "SELECT position, blind_index, ciphertext FROM record_subjects \
             WHERE kind = $1 AND id = $2 ORDER BY position",
        )
        .bind(kind)
        .bind(id)
        .fetch_all(c)
        .await
    })?)
}

/// A subject row found by blind index, with its record's row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SubjectHit {
    /// Kind.
    pub kind: String,
    /// Id.
    pub id: String,
    /// Position of the identifier in the record's list.
    pub position: i64,
    /// The sealed identifier.
    pub ciphertext: Vec<u8>,
    /// Owner.
    pub owner: String,
    /// The record's data key.
    pub data_key_id: String,
    /// Current version.
    pub current_version: i64,
    /// Creation time (µs).
    pub created_at_us: i64,
}

/// Subject rows whose blind index is `index` (optionally of one kind), with their records.
pub async fn find_by_blind_index(
    c: &mut Conn<'_>,
    index: &[u8],
    kind: Option<&str>,
) -> Result<Vec<SubjectHit>, StoreError> {
    let mut hits: Vec<SubjectHit> = match kind {
        Some(k) => on_conn!(c, |c| {
            sqlx::query_as(
                "SELECT s.kind, s.id, s.position, s.ciphertext, r.owner, r.data_key_id, \
                 r.current_version, r.created_at_us \
                 FROM record_subjects s JOIN records r ON r.kind = s.kind AND r.id = s.id \
                 WHERE s.blind_index = $1 AND s.kind = $2",
            )
            .bind(index)
            .bind(k)
            .fetch_all(c)
            .await
        })?,
        None => on_conn!(c, |c| {
            sqlx::query_as(
                "SELECT s.kind, s.id, s.position, s.ciphertext, r.owner, r.data_key_id, \
                 r.current_version, r.created_at_us \
                 FROM record_subjects s JOIN records r ON r.kind = s.kind AND r.id = s.id \
                 WHERE s.blind_index = $1",
            )
            .bind(index)
            .fetch_all(c)
            .await
        })?,
    };
    hits.sort_by(|a, b| (&a.kind, &a.id, a.position).cmp(&(&b.kind, &b.id, b.position)));
    Ok(hits)
}

/// How many records are stored.
pub async fn count(c: &mut Conn<'_>) -> Result<i64, StoreError> {
    let (n,): (i64,) = on_conn!(c, |c| {
        sqlx::query_as("SELECT COUNT(*) FROM records")
            .fetch_one(c)
            .await
    })?;
    Ok(n)
}

/// The ids and owners of every record of `kind`, by id (for aggregate reports, which read
/// each through the vault).
pub async fn ids_of_kind(
    c: &mut Conn<'_>,
    kind: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    Ok(on_conn!(c, |c| {
        sqlx::query_as("SELECT id, owner FROM records WHERE kind = $1 ORDER BY id")
            .bind(kind)
            .fetch_all(c)
            .await
    })?)
}
