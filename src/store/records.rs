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

/// One row of the combined read ([`read_current`]); `part` says which table it comes from.
#[derive(Debug, sqlx::FromRow)]
struct PartRow {
    part: i64,
    t1: Option<String>,
    t2: Option<String>,
    t3: Option<String>,
    n1: Option<i64>,
    n2: Option<i64>,
    n3: Option<i64>,
    b1: Option<Vec<u8>>,
    b2: Option<Vec<u8>>,
}

/// The combined read: the record with its data key (0), current version (1), its fields (2),
/// the subjects (3), the highest stored version (4) and the cache epochs (5). Written for both
/// backends (typed first branch, `CAST` for the part numbers; rows are ordered in Rust, since
/// PostgreSQL's collation need not be byte order).
const READ_CURRENT: &str = "\
SELECT CAST(0 AS BIGINT) AS part, r.owner AS t1, r.data_key_id AS t2, k.purpose AS t3, \
       r.current_version AS n1, r.created_at_us AS n2, k.master_version AS n3, \
       k.wrapped AS b1, NULL AS b2 \
  FROM records r LEFT JOIN data_keys k ON k.id = r.data_key_id \
 WHERE r.kind = $1 AND r.id = $2 \
UNION ALL \
SELECT CAST(1 AS BIGINT), v.author_partner, v.author_user, v.changed_fields, \
       v.version, v.at_us, v.subjects_changed, v.manifest, NULL \
  FROM records r JOIN record_versions v \
    ON v.kind = r.kind AND v.id = r.id AND v.version = r.current_version \
 WHERE r.kind = $1 AND r.id = $2 \
UNION ALL \
SELECT CAST(2 AS BIGINT), f.field, NULL, NULL, NULL, NULL, NULL, f.ciphertext, NULL \
  FROM records r JOIN record_fields f \
    ON f.kind = r.kind AND f.id = r.id AND f.version = r.current_version \
 WHERE r.kind = $1 AND r.id = $2 \
UNION ALL \
SELECT CAST(3 AS BIGINT), NULL, NULL, NULL, s.position, NULL, NULL, s.blind_index, \
       s.ciphertext \
  FROM record_subjects s WHERE s.kind = $1 AND s.id = $2 \
UNION ALL \
SELECT CAST(4 AS BIGINT), NULL, NULL, NULL, MAX(version), NULL, NULL, NULL, NULL \
  FROM record_versions WHERE kind = $1 AND id = $2 \
UNION ALL \
SELECT CAST(5 AS BIGINT), NULL, NULL, NULL, consents, keys, NULL, NULL, NULL \
  FROM cache_epochs WHERE id = 1";

/// Reads everything stored for the current version of `(kind, id)` and the cache epochs, in
/// one statement (one round trip). `None` when there is no such record.
pub async fn read_current(
    c: &mut Conn<'_>,
    kind: &str,
    id: &str,
) -> Result<(Option<CurrentRows>, Epochs), StoreError> {
    let rows: Vec<PartRow> = on_conn!(c, |c| {
        sqlx::query_as(READ_CURRENT)
            .bind(kind)
            .bind(id)
            .fetch_all(c)
            .await
    })?;
    let mut record = None;
    let mut key = None;
    let mut version = None;
    let mut fields = Vec::new();
    let mut subjects = Vec::new();
    let mut latest_version = None;
    let mut epochs = None;
    let missing = StoreError::Range("incomplete record row");
    for r in rows {
        match r.part {
            0 => {
                let (Some(owner), Some(data_key_id), Some(current_version), Some(created_at_us)) =
                    (r.t1, r.t2, r.n1, r.n2)
                else {
                    return Err(missing);
                };
                record = Some(RecordRow {
                    kind: kind.to_owned(),
                    id: id.to_owned(),
                    owner,
                    data_key_id: data_key_id.clone(),
                    current_version,
                    created_at_us,
                });
                if let (Some(purpose), Some(master_version), Some(wrapped)) = (r.t3, r.n3, r.b1) {
                    key = Some(WrappedKey {
                        id: data_key_id,
                        purpose,
                        master_version,
                        wrapped,
                    });
                }
            }
            1 => {
                let (
                    Some(author_partner),
                    Some(author_user),
                    Some(changed_fields),
                    Some(v),
                    Some(at_us),
                    Some(subjects_changed),
                    Some(manifest),
                ) = (r.t1, r.t2, r.t3, r.n1, r.n2, r.n3, r.b1)
                else {
                    return Err(missing);
                };
                version = Some(VersionRow {
                    version: v,
                    author_partner,
                    author_user,
                    at_us,
                    changed_fields,
                    subjects_changed,
                    manifest,
                });
            }
            2 => {
                let (Some(field), Some(ciphertext)) = (r.t1, r.b1) else {
                    return Err(missing);
                };
                fields.push(FieldRow { field, ciphertext });
            }
            3 => {
                let (Some(position), Some(blind_index), Some(ciphertext)) = (r.n1, r.b1, r.b2)
                else {
                    return Err(missing);
                };
                subjects.push(SubjectRow {
                    position,
                    blind_index,
                    ciphertext,
                });
            }
            4 => latest_version = r.n1,
            5 => {
                epochs = Some(Epochs {
                    consents: r.n1.unwrap_or_default(),
                    keys: r.n2.unwrap_or_default(),
                });
            }
            _ => return Err(StoreError::Range("record read part")),
        }
    }
    let epochs = epochs.ok_or(StoreError::Range("the cache epochs row is missing"))?;
    fields.sort_by(|a, b| a.field.cmp(&b.field));
    subjects.sort_by_key(|s| s.position);
    Ok((
        record.map(|record| CurrentRows {
            record,
            key,
            version,
            fields,
            subjects,
            latest_version,
        }),
        epochs,
    ))
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
