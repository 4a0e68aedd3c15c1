//! The log's tables: rows to entries and back, the head lock, appends, pages and checkpoints.
//!
//! Reading a row back is strict: a value that the canonical encoding cannot have produced
//! (an unknown kind, a rule on a consent basis, a reason on a permit, malformed field lists or
//! hashes) makes the row unreadable, and verification reports it as altered.

use chrono::DateTime;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::LogError;
use super::canonical::{ChainHash, entry_hash_with};
use super::checkpoint::Checkpoint;
use super::entry::{
    AppendedEntry, Entry, EntryKind, FieldDisclosure, LegalBasis, NewEntry, Outcome, RecordRef,
    SubjectPseudonym,
};

/// Every column of `audit_log`, in insert order.
pub(super) const COLUMNS: &str = "seq, at_us, kind, request_id, decision_id, policy_hash, \
     recipient_partner, recipient_user, recipient_role, purpose, basis_kind, basis_ref, \
     basis_rule, justification, subject, record_kind, record_id, fields_disclosed, \
     fields_withheld, outcome, reason, source_addr, cert_sha256, detail, prev_hash, entry_hash";
const NCOLS: usize = 26;
/// Rows per multi-row INSERT. Small: the SQLite driver resolves `$N` placeholders with a scan
/// per bound value, so a statement costs quadratically in its number of placeholders.
const CHUNK: usize = 8;

/// The chain head as locked inside a transaction.
#[derive(Debug, Clone, Copy)]
pub(super) struct Head {
    pub(super) seq: u64,
    pub(super) hash: ChainHash,
}

fn seq_i64(seq: u64) -> Result<i64, LogError> {
    i64::try_from(seq).map_err(|_| LogError::Invalid("sequence number overflow".into()))
}

/// Locks the head row for this transaction and reads it. On PostgreSQL the UPDATE takes the
/// row lock (other writers wait until commit); on SQLite it takes the database write lock
/// as the transaction's first write, so the head read is the latest committed one.
pub(super) async fn lock_head(conn: &mut AnyConnection) -> Result<Head, LogError> {
    let row: (i64, String) =
        sqlx::query_as("UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, head_hash")
            .fetch_one(&mut *conn)
            .await?;
    let hash = ChainHash::from_hex(&row.1).ok_or(LogError::Corrupt {
        seq: 0,
        why: "the head hash is malformed".into(),
    })?;
    Ok(Head {
        seq: u64::try_from(row.0).map_err(|_| LogError::Corrupt {
            seq: 0,
            why: "negative head".into(),
        })?,
        hash,
    })
}

/// Reads the head without locking it.
pub(super) async fn read_head(pool: &sqlx::AnyPool) -> Result<(u64, ChainHash), LogError> {
    let row: (i64, String) = sqlx::query_as("SELECT seq, head_hash FROM audit_head WHERE id = 1")
        .fetch_one(pool)
        .await?;
    let hash = ChainHash::from_hex(&row.1).ok_or(LogError::Corrupt {
        seq: 0,
        why: "the head hash is malformed".into(),
    })?;
    Ok((u64::try_from(row.0).unwrap_or(0), hash))
}

/// Chains `entries` after the locked `head`, inserts them and moves the head. The caller
/// holds the head lock (same transaction) and commits.
pub(super) async fn append_locked(
    conn: &mut AnyConnection,
    head: Head,
    entries: &[&NewEntry],
) -> Result<(Head, Vec<AppendedEntry>), LogError> {
    let mut buf = Vec::with_capacity(1024);
    let mut prev = head.hash;
    let mut seq = head.seq;
    let mut rows = Vec::with_capacity(entries.len());
    let mut out = Vec::with_capacity(entries.len());
    for data in entries {
        seq += 1;
        let hash = entry_hash_with(&mut buf, seq, &prev, data);
        rows.push((seq, *data, prev, hash));
        out.push(AppendedEntry { seq, hash });
        prev = hash;
    }
    for chunk in rows.chunks(CHUNK) {
        let mut sql = format!("INSERT INTO audit_log ({COLUMNS}) VALUES ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for c in 0..NCOLS {
                if c > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("${}", i * NCOLS + c + 1));
            }
            sql.push(')');
        }
        // The statement is built from constant text and numbered placeholders only.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (seq, d, prev, hash) in chunk {
            let (basis_kind, basis_ref, basis_rule) = match &d.basis {
                None => (None, None, None),
                Some(LegalBasis::Mou { mou_id, rule }) => {
                    (Some("mou"), Some(mou_id.clone()), Some(rule.clone()))
                }
                Some(LegalBasis::Consent { consent_id }) => {
                    (Some("consent"), Some(consent_id.clone()), None)
                }
                Some(LegalBasis::Emergency { stated_basis }) => {
                    (Some("emergency"), Some(stated_basis.clone()), None)
                }
            };
            let reason = match &d.outcome {
                Outcome::Permit => None,
                Outcome::Deny { reason } => Some(reason.clone()),
            };
            let fields = serde_json::to_string(&d.fields_disclosed)
                .map_err(|e| LogError::Invalid(e.to_string()))?;
            q = q
                .bind(seq_i64(*seq)?)
                .bind(d.at_us())
                .bind(d.kind.as_str())
                .bind(d.request_id.clone())
                .bind(d.decision_id.clone())
                .bind(d.policy_hash.clone())
                .bind(d.recipient_partner.clone())
                .bind(d.recipient_user.clone())
                .bind(d.recipient_role.clone())
                .bind(d.purpose.clone())
                .bind(basis_kind)
                .bind(basis_ref)
                .bind(basis_rule)
                .bind(d.justification.clone())
                .bind(d.subject.map(|s| s.to_hex()))
                .bind(d.record.as_ref().map(|r| r.kind.clone()))
                .bind(d.record.as_ref().map(|r| r.id.clone()))
                .bind(fields)
                .bind(i64::from(d.fields_withheld))
                .bind(d.outcome.as_str())
                .bind(reason)
                .bind(d.source_addr.clone())
                .bind(d.cert_sha256.clone())
                .bind(d.detail.clone())
                .bind(prev.to_hex())
                .bind(hash.to_hex());
        }
        q.execute(&mut *conn).await?;
    }
    let new_head = Head { seq, hash: prev };
    if seq != head.seq {
        sqlx::query("UPDATE audit_head SET seq = $1, head_hash = $2 WHERE id = 1")
            .bind(seq_i64(seq)?)
            .bind(prev.to_hex())
            .execute(&mut *conn)
            .await?;
    }
    Ok((new_head, out))
}

/// A row that could not be read back as an entry.
fn corrupt(seq: u64, why: impl Into<String>) -> LogError {
    LogError::Corrupt {
        seq,
        why: why.into(),
    }
}

/// Parses one `audit_log` row (all [`COLUMNS`]).
pub(super) fn row_to_entry(row: &AnyRow) -> Result<Entry, LogError> {
    let seq: i64 = row.try_get("seq")?;
    let seq = u64::try_from(seq).map_err(|_| corrupt(0, "negative sequence number"))?;
    let c = |why: &str| corrupt(seq, why);
    let s = |name: &str| -> Result<Option<String>, LogError> { Ok(row.try_get(name)?) };
    let at_us: i64 = row.try_get("at_us")?;
    let at = DateTime::from_timestamp_micros(at_us).ok_or_else(|| c("time out of range"))?;
    let kind: String = row.try_get("kind")?;
    let kind: EntryKind = kind.parse().map_err(|_| c("unknown kind"))?;
    let basis = match (s("basis_kind")?, s("basis_ref")?, s("basis_rule")?) {
        (None, None, None) => None,
        (Some(k), Some(r), None) if k == "consent" => Some(LegalBasis::Consent { consent_id: r }),
        (Some(k), Some(r), None) if k == "emergency" => {
            Some(LegalBasis::Emergency { stated_basis: r })
        }
        (Some(k), Some(m), Some(rule)) if k == "mou" => Some(LegalBasis::Mou { mou_id: m, rule }),
        _ => return Err(c("inconsistent legal basis columns")),
    };
    let subject = match s("subject")? {
        None => None,
        Some(h) => Some(SubjectPseudonym::from_hex(&h).ok_or_else(|| c("malformed subject"))?),
    };
    let record = match (s("record_kind")?, s("record_id")?) {
        (None, None) => None,
        (Some(kind), Some(id)) => Some(RecordRef { kind, id }),
        _ => return Err(c("inconsistent record columns")),
    };
    let fields: String = row.try_get("fields_disclosed")?;
    let fields_disclosed: Vec<FieldDisclosure> =
        serde_json::from_str(&fields).map_err(|_| c("malformed field list"))?;
    let withheld: i64 = row.try_get("fields_withheld")?;
    let fields_withheld = u32::try_from(withheld).map_err(|_| c("withheld count out of range"))?;
    let outcome: String = row.try_get("outcome")?;
    let outcome = match (outcome.as_str(), s("reason")?) {
        ("permit", None) => Outcome::Permit,
        ("deny", Some(reason)) => Outcome::Deny { reason },
        _ => return Err(c("inconsistent outcome columns")),
    };
    let prev: String = row.try_get("prev_hash")?;
    let hash: String = row.try_get("entry_hash")?;
    let data = NewEntry {
        at,
        kind,
        request_id: s("request_id")?,
        decision_id: s("decision_id")?,
        policy_hash: s("policy_hash")?,
        recipient_partner: s("recipient_partner")?,
        recipient_user: s("recipient_user")?,
        recipient_role: s("recipient_role")?,
        purpose: s("purpose")?,
        basis,
        justification: s("justification")?,
        subject,
        record,
        fields_disclosed,
        fields_withheld,
        outcome,
        source_addr: s("source_addr")?,
        cert_sha256: s("cert_sha256")?,
        detail: s("detail")?,
    };
    Ok(Entry {
        seq,
        data,
        prev_hash: ChainHash::from_hex(&prev).ok_or_else(|| c("malformed previous hash"))?,
        hash: ChainHash::from_hex(&hash).ok_or_else(|| c("malformed hash"))?,
    })
}

/// One page of raw rows with `seq > after`, ascending.
pub(super) async fn page_after(
    pool: &sqlx::AnyPool,
    after: u64,
    limit: i64,
) -> Result<Vec<AnyRow>, LogError> {
    let sql = format!("SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2");
    Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(seq_i64(after)?)
        .bind(limit)
        .fetch_all(pool)
        .await?)
}

/// The lowest stored sequence number.
pub(super) async fn first_seq(pool: &sqlx::AnyPool) -> Result<Option<u64>, LogError> {
    let row: (Option<i64>,) = sqlx::query_as("SELECT MIN(seq) FROM audit_log")
        .fetch_one(pool)
        .await?;
    Ok(row.0.and_then(|s| u64::try_from(s).ok()))
}

/// Stores a checkpoint (a concurrent gateway may have stored the same one).
pub(super) async fn insert_checkpoint(
    conn: &mut AnyConnection,
    c: &Checkpoint,
) -> Result<(), LogError> {
    sqlx::query(
        "INSERT INTO audit_checkpoints (seq, head_hash, at_us, key_id, signature) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO NOTHING",
    )
    .bind(seq_i64(c.seq)?)
    .bind(c.head_hash.to_hex())
    .bind(c.at_us)
    .bind(c.key_id.as_str())
    .bind(c.signature.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The last checkpoint's sequence number and time.
pub(super) async fn last_checkpoint(
    conn: &mut AnyConnection,
) -> Result<Option<(u64, i64)>, LogError> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT seq, at_us FROM audit_checkpoints ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    Ok(row.map(|(s, t)| (u64::try_from(s).unwrap_or(0), t)))
}

/// Every checkpoint, ascending.
pub(super) async fn checkpoints(pool: &sqlx::AnyPool) -> Result<Vec<Checkpoint>, LogError> {
    let rows: Vec<(i64, String, i64, String, String)> = sqlx::query_as(
        "SELECT seq, head_hash, at_us, key_id, signature FROM audit_checkpoints ORDER BY seq",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(seq, h, at_us, key_id, signature)| {
            let seq = u64::try_from(seq).map_err(|_| corrupt(0, "negative checkpoint"))?;
            Ok(Checkpoint {
                seq,
                head_hash: ChainHash::from_hex(&h)
                    .ok_or_else(|| corrupt(seq, "malformed checkpoint hash"))?,
                at_us,
                key_id,
                signature,
            })
        })
        .collect()
}
