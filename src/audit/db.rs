//! The log's tables: rows to entries and back, the head lock, appends, pages and checkpoints.
//!
//! Reading a row back is strict: a value that the canonical encoding cannot have produced
//! (an unknown kind, a rule on a consent basis, a reason on a permit, malformed field lists or
//! hashes) makes the row unreadable, and verification reports it as altered.

use chrono::DateTime;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;

use super::LogError;
use super::canonical::{BasisView, ChainHash, EntryContent, FieldPair, leaf_hash_with};
use super::checkpoint::{Checkpoint, TreeCheckpoint};
use super::entry::{
    AppendedEntry, Entry, EntryFormat, EntryKind, FieldDisclosure, LegalBasis, NewEntry, Outcome,
    RecordRef, SubjectPseudonym,
};
use super::sealed::SealedEntry;
use super::tree::{Frontier, Hash};
use crate::store::{Conn, on_conn};

/// Every column of `audit_log`, in insert order.
pub(super) const COLUMNS: &str = "seq, at_us, kind, request_id, decision_id, policy_hash, \
     recipient_partner, recipient_user, recipient_role, purpose, basis_kind, basis_ref, \
     basis_rule, justification, subject, record_kind, record_id, fields_disclosed, \
     fields_withheld, outcome, reason, source_addr, cert_sha256, detail, prev_hash, entry_hash, \
     format, sealed";
const NCOLS: usize = 28;

/// The chain head and the tree's right edge, as locked inside a transaction.
#[derive(Debug, Clone)]
pub(super) struct Head {
    pub(super) seq: u64,
    pub(super) hash: ChainHash,
    /// The sequence number before the tree's first leaf.
    pub(super) tree_base: u64,
    /// The tree (its size and right edge).
    pub(super) tree: Frontier,
}

fn seq_i64(seq: u64) -> Result<i64, LogError> {
    i64::try_from(seq).map_err(|_| LogError::Invalid("sequence number overflow".into()))
}

/// The head row: `seq, head_hash, tree_base, tree_size, tree_peaks`.
type HeadRow = (i64, Vec<u8>, i64, i64, Vec<u8>);

fn parse_head(row: HeadRow) -> Result<Head, LogError> {
    let (seq, hash, base, size, peaks) = row;
    let bad = |why: &str| LogError::Corrupt {
        seq: 0,
        why: why.into(),
    };
    let hash = <[u8; 32]>::try_from(hash.as_slice())
        .map(ChainHash)
        .map_err(|_| bad("the head hash is malformed"))?;
    let seq = u64::try_from(seq).map_err(|_| bad("negative head"))?;
    let tree_base = u64::try_from(base).map_err(|_| bad("negative tree base"))?;
    let size = u64::try_from(size).map_err(|_| bad("negative tree size"))?;
    let tree = Frontier::from_bytes(size, &peaks)
        .ok_or_else(|| bad("the tree's right edge does not match its size"))?;
    if tree_base.checked_add(size) != Some(seq) {
        return Err(bad(
            "the tree's size does not match the chain head: the head row was changed",
        ));
    }
    Ok(Head {
        seq,
        hash,
        tree_base,
        tree,
    })
}

/// The columns of the head row, in [`HeadRow`] order.
const HEAD_COLUMNS: &str = "seq, head_hash, tree_base, tree_size, tree_peaks";

/// One entry ready to be inserted: chained, with its column values.
pub(super) struct Row<'a> {
    seq: i64,
    data: &'a NewEntry,
    sealed: Option<&'a [u8]>,
    basis_kind: Option<&'static str>,
    basis_ref: Option<&'a str>,
    basis_rule: Option<&'a str>,
    fields: String,
    reason: Option<&'a str>,
    prev: ChainHash,
    hash: ChainHash,
}

impl<'a> Row<'a> {
    fn new(
        seq: u64,
        entry: &'a SealedEntry,
        prev: &ChainHash,
        hash: &ChainHash,
    ) -> Result<Self, LogError> {
        let data = &entry.data;
        let (basis_kind, basis_ref, basis_rule) = match &data.basis {
            None => (None, None, None),
            Some(LegalBasis::Mou { mou_id, rule }) => {
                (Some("mou"), Some(mou_id.as_str()), Some(rule.as_str()))
            }
            Some(LegalBasis::Consent { consent_id }) => {
                (Some("consent"), Some(consent_id.as_str()), None)
            }
            // The stated basis and the 42 CFR 2.51(c) documentation (which names the medical
            // personnel) are sealed with the entry's other free text; a court order's id is a
            // random id the gateway gave it, kept in clear.
            Some(LegalBasis::Emergency { .. }) => (Some("emergency"), None, None),
            Some(LegalBasis::CourtOrder { order_id }) => {
                (Some("court_order"), Some(order_id.as_str()), None)
            }
            Some(LegalBasis::MedicalEmergency { .. }) => (Some("medical_emergency"), None, None),
        };
        let reason = match &data.outcome {
            Outcome::Permit => None,
            Outcome::Deny { reason } => Some(reason.as_str()),
        };
        Ok(Self {
            seq: seq_i64(seq)?,
            data,
            sealed: entry.sealed.as_deref(),
            basis_kind,
            basis_ref,
            basis_rule,
            fields: serde_json::to_string(&data.fields_disclosed)
                .map_err(|e| LogError::Invalid(e.to_string()))?,
            reason,
            prev: *prev,
            hash: *hash,
        })
    }
}

/// Binds one row's columns, in [`COLUMNS`] order, to a query of any backend.
macro_rules! bind_row {
    ($q:expr, $r:expr) => {{
        let r: &Row<'_> = $r;
        let d = r.data;
        $q.bind(r.seq)
            .bind(d.at_us())
            .bind(d.kind.as_str())
            .bind(d.request_id.as_deref())
            .bind(d.decision_id.as_deref())
            .bind(d.policy_hash.as_deref())
            .bind(d.recipient_partner.as_deref())
            .bind(d.recipient_user.as_deref())
            .bind(d.recipient_role.as_deref())
            .bind(d.purpose.as_deref())
            .bind(r.basis_kind)
            .bind(r.basis_ref)
            .bind(r.basis_rule)
            .bind(None::<&str>)
            .bind(d.subject.as_ref().map(|s| &s.as_bytes()[..]))
            .bind(d.record.as_ref().map(|x| x.kind.as_str()))
            .bind(d.record.as_ref().map(|x| x.id.as_str()))
            .bind(r.fields.as_str())
            .bind(i64::from(d.fields_withheld))
            .bind(d.outcome.as_str())
            .bind(r.reason)
            .bind(d.source_addr.as_deref())
            .bind(d.cert_sha256.as_deref())
            .bind(None::<&str>)
            .bind(&r.prev.0[..])
            .bind(&r.hash.0[..])
            .bind(EntryFormat::V2.as_i32())
            .bind(r.sealed)
    }};
}

/// Largest number of rows in one multi-row INSERT (a power of two). Batches are split into
/// power-of-two chunks so that a connection caches at most `log2(MAX_ROWS) + 1` statements.
const MAX_ROWS: usize = 256;

/// Placeholder style of a backend's INSERT statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholders {
    /// `$1, $2, ...`: PostgreSQL.
    Numbered,
    /// `?`: native SQLite. The SQLite driver resolves a numbered placeholder by a scan over
    /// all of a statement's parameter names, which is quadratic in a large statement;
    /// anonymous ones are bound in order.
    Anonymous,
}

/// The INSERT statement for `rows` rows (a power of two up to [`MAX_ROWS`]), built once;
/// `None` for any other number of rows.
fn insert_sql(rows: usize, style: Placeholders) -> Option<&'static str> {
    use std::sync::OnceLock;
    const SIZES: usize = MAX_ROWS.trailing_zeros() as usize + 1;
    static NUMBERED: [OnceLock<String>; SIZES] = [const { OnceLock::new() }; SIZES];
    static ANONYMOUS: [OnceLock<String>; SIZES] = [const { OnceLock::new() }; SIZES];
    let i = rows.trailing_zeros() as usize;
    let cache = match style {
        Placeholders::Numbered => NUMBERED.get(i),
        Placeholders::Anonymous => ANONYMOUS.get(i),
    };
    if !rows.is_power_of_two() {
        return None;
    }
    Some(cache?.get_or_init(|| build_insert_sql(rows, style)))
}

/// The INSERT statement for `rows` tree nodes (a power of two up to [`MAX_ROWS`]).
fn node_insert_sql(rows: usize, style: Placeholders) -> Option<&'static str> {
    use std::sync::OnceLock;
    const SIZES: usize = MAX_ROWS.trailing_zeros() as usize + 1;
    static NUMBERED: [OnceLock<String>; SIZES] = [const { OnceLock::new() }; SIZES];
    static ANONYMOUS: [OnceLock<String>; SIZES] = [const { OnceLock::new() }; SIZES];
    if !rows.is_power_of_two() {
        return None;
    }
    let i = rows.trailing_zeros() as usize;
    let cache = match style {
        Placeholders::Numbered => NUMBERED.get(i),
        Placeholders::Anonymous => ANONYMOUS.get(i),
    };
    Some(cache?.get_or_init(|| {
        let mut sql = String::from("INSERT INTO audit_tree (idx, hash) VALUES ");
        for r in 0..rows {
            if r > 0 {
                sql.push_str(", ");
            }
            match style {
                Placeholders::Numbered => {
                    sql.push_str(&format!("(${}, ${})", 2 * r + 1, 2 * r + 2));
                }
                Placeholders::Anonymous => sql.push_str("(?, ?)"),
            }
        }
        sql
    }))
}

fn build_insert_sql(rows: usize, style: Placeholders) -> String {
    {
        let mut sql = format!("INSERT INTO audit_log ({COLUMNS}) VALUES ");
        for r in 0..rows {
            if r > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for c in 0..NCOLS {
                if c > 0 {
                    sql.push_str(", ");
                }
                match style {
                    Placeholders::Numbered => {
                        sql.push('$');
                        sql.push_str(&(r * NCOLS + c + 1).to_string());
                    }
                    Placeholders::Anonymous => sql.push('?'),
                }
            }
            sql.push(')');
        }
        sql
    }
}

/// Splits `n` rows into power-of-two chunk sizes, largest first.
fn chunk_sizes(mut n: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if n == 0 {
            return None;
        }
        let size = if n >= MAX_ROWS {
            MAX_ROWS
        } else {
            1 << (usize::BITS - 1 - n.leading_zeros())
        };
        n -= size;
        Some(size)
    })
}

/// What the append path needs from a connection that is inside a transaction: implemented for
/// the native SQLite and PostgreSQL connections (the group-commit writer's own connection, and
/// the connection of a [`super::LogTx`]).
pub(super) trait ChainConn: Send {
    /// Locks the head row for this transaction and reads it. On PostgreSQL the UPDATE takes
    /// the row lock (other writers wait until commit); on SQLite it takes the database write
    /// lock as the transaction's first write, so the head read is the latest committed one.
    fn lock_head(&mut self) -> impl Future<Output = Result<Head, LogError>> + Send;
    /// Inserts rows with one multi-row INSERT per chunk.
    fn insert_rows(
        &mut self,
        rows: &[Row<'_>],
    ) -> impl Future<Output = Result<(), LogError>> + Send;
    /// Inserts tree nodes (stored index, hash).
    fn insert_nodes(
        &mut self,
        nodes: &[(u64, Hash)],
    ) -> impl Future<Output = Result<(), LogError>> + Send;
    /// Stores a signed tree head (a concurrent gateway may have stored the same one).
    fn insert_tree_checkpoint(
        &mut self,
        c: &TreeCheckpoint,
    ) -> impl Future<Output = Result<(), LogError>> + Send;
    /// Moves the head (and the tree's right edge).
    fn set_head(&mut self, head: &Head) -> impl Future<Output = Result<(), LogError>> + Send;
    /// The last checkpoint's sequence number and time.
    fn last_checkpoint(
        &mut self,
    ) -> impl Future<Output = Result<Option<(u64, i64)>, LogError>> + Send;
    /// Stores a checkpoint (a concurrent gateway may have stored the same one).
    fn insert_checkpoint(
        &mut self,
        c: &Checkpoint,
    ) -> impl Future<Output = Result<(), LogError>> + Send;
}

macro_rules! chain_conn {
    ($conn:ty, $style:expr) => {
        impl ChainConn for $conn {
            async fn lock_head(&mut self) -> Result<Head, LogError> {
                let row: HeadRow = sqlx::query_as(
                    "UPDATE audit_head SET seq = seq WHERE id = 1 \
                     RETURNING seq, head_hash, tree_base, tree_size, tree_peaks",
                )
                .fetch_one(&mut *self)
                .await?;
                parse_head(row)
            }

            async fn insert_nodes(&mut self, nodes: &[(u64, Hash)]) -> Result<(), LogError> {
                let mut rest = nodes;
                for size in chunk_sizes(nodes.len()) {
                    let (chunk, tail) = rest.split_at(size);
                    rest = tail;
                    let sql = node_insert_sql(size, $style).ok_or_else(|| {
                        LogError::Invalid(format!("no INSERT statement for {size} nodes"))
                    })?;
                    let mut q = sqlx::query(sql);
                    for (idx, hash) in chunk {
                        q = q.bind(seq_i64(*idx)?).bind(&hash[..]);
                    }
                    q.execute(&mut *self).await?;
                }
                Ok(())
            }

            async fn insert_tree_checkpoint(&mut self, c: &TreeCheckpoint) -> Result<(), LogError> {
                sqlx::query(
                    "INSERT INTO audit_tree_checkpoints (tree_size, root_hash, at_us, note) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (tree_size) DO NOTHING",
                )
                .bind(seq_i64(c.size)?)
                .bind(&c.root[..])
                .bind(c.at_us)
                .bind(c.note.as_str())
                .execute(&mut *self)
                .await?;
                Ok(())
            }

            async fn insert_rows(&mut self, rows: &[Row<'_>]) -> Result<(), LogError> {
                let mut rest = rows;
                for size in chunk_sizes(rows.len()) {
                    let (chunk, tail) = rest.split_at(size);
                    rest = tail;
                    let sql = insert_sql(size, $style).ok_or_else(|| {
                        LogError::Invalid(format!("no INSERT statement for {size} rows"))
                    })?;
                    let mut q = sqlx::query(sql);
                    for r in chunk {
                        q = bind_row!(q, r);
                    }
                    q.execute(&mut *self).await?;
                }
                Ok(())
            }

            async fn set_head(&mut self, head: &Head) -> Result<(), LogError> {
                sqlx::query(
                    "UPDATE audit_head SET seq = $1, head_hash = $2, tree_size = $3, \
                     tree_peaks = $4 WHERE id = 1",
                )
                .bind(seq_i64(head.seq)?)
                .bind(&head.hash.0[..])
                .bind(seq_i64(head.tree.size())?)
                .bind(head.tree.to_bytes())
                .execute(&mut *self)
                .await?;
                Ok(())
            }

            async fn last_checkpoint(&mut self) -> Result<Option<(u64, i64)>, LogError> {
                let row: Option<(i64, i64)> = sqlx::query_as(
                    "SELECT seq, at_us FROM audit_checkpoints ORDER BY seq DESC LIMIT 1",
                )
                .fetch_optional(&mut *self)
                .await?;
                Ok(row.map(|(s, t)| (u64::try_from(s).unwrap_or(0), t)))
            }

            async fn insert_checkpoint(&mut self, c: &Checkpoint) -> Result<(), LogError> {
                sqlx::query(
                    "INSERT INTO audit_checkpoints (seq, head_hash, at_us, key_id, signature) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO NOTHING",
                )
                .bind(seq_i64(c.seq)?)
                .bind(&c.head_hash.0[..])
                .bind(c.at_us)
                .bind(c.key_id.as_str())
                .bind(c.signature.as_str())
                .execute(&mut *self)
                .await?;
                Ok(())
            }
        }
    };
}

chain_conn!(PgConnection, Placeholders::Numbered);
chain_conn!(SqliteConnection, Placeholders::Anonymous);

/// Reads the chain head without locking it. Only the chain's columns: the verification reads
/// it, and must report a head that disagrees with the tree as a failure, not stop on it.
pub(super) async fn read_head(c: &mut Conn<'_>) -> Result<(u64, ChainHash), LogError> {
    let row: (i64, Vec<u8>) = on_conn!(c, |c| {
        sqlx::query_as("SELECT seq, head_hash FROM audit_head WHERE id = 1")
            .fetch_one(c)
            .await
    })?;
    let bad = |why: &str| LogError::Corrupt {
        seq: 0,
        why: why.into(),
    };
    let hash = <[u8; 32]>::try_from(row.1.as_slice())
        .map(ChainHash)
        .map_err(|_| bad("the head hash is malformed"))?;
    let seq = u64::try_from(row.0).map_err(|_| bad("negative head"))?;
    Ok((seq, hash))
}

/// Reads the head and the tree's right edge without locking them.
pub(super) async fn read_full_head(c: &mut Conn<'_>) -> Result<Head, LogError> {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sql = SQL.get_or_init(|| format!("SELECT {HEAD_COLUMNS} FROM audit_head WHERE id = 1"));
    let row: HeadRow = on_conn!(c, |c| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .fetch_one(c)
            .await
    })?;
    parse_head(row)
}

/// Chains `entries` after the locked `head`, inserts them and moves the head. The caller
/// holds the head lock (same transaction) and commits.
pub(super) async fn append_locked<C: ChainConn>(
    conn: &mut C,
    head: Head,
    entries: &[&SealedEntry],
) -> Result<(Head, Vec<AppendedEntry>), LogError> {
    let mut buf = Vec::with_capacity(1024);
    let mut prev = head.hash;
    let mut seq = head.seq;
    let mut tree = head.tree.clone();
    let mut rows = Vec::with_capacity(entries.len());
    let mut nodes = Vec::with_capacity(entries.len() * 2 + 8);
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        seq += 1;
        let hash = leaf_hash_with(&mut buf, seq, &prev, &entry.data, entry.sealed.as_deref());
        rows.push(Row::new(seq, entry, &prev, &hash)?);
        out.push(AppendedEntry {
            seq,
            hash,
            leaf_index: tree.size(),
        });
        tree.push(hash.0, |i, h| nodes.push((i, h)));
        prev = hash;
    }
    conn.insert_rows(&rows).await?;
    conn.insert_nodes(&nodes).await?;
    let new_head = Head {
        seq,
        hash: prev,
        tree_base: head.tree_base,
        tree,
    };
    if seq != head.seq {
        conn.set_head(&new_head).await?;
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

/// One `audit_log` row, all [`COLUMNS`].
#[derive(Debug, sqlx::FromRow)]
pub(super) struct LogRow {
    seq: i64,
    at_us: i64,
    kind: String,
    request_id: Option<String>,
    decision_id: Option<String>,
    policy_hash: Option<String>,
    recipient_partner: Option<String>,
    recipient_user: Option<String>,
    recipient_role: Option<String>,
    purpose: Option<String>,
    basis_kind: Option<String>,
    basis_ref: Option<String>,
    basis_rule: Option<String>,
    justification: Option<String>,
    subject: Option<Vec<u8>>,
    record_kind: Option<String>,
    record_id: Option<String>,
    fields_disclosed: String,
    fields_withheld: i64,
    outcome: String,
    reason: Option<String>,
    source_addr: Option<String>,
    cert_sha256: Option<String>,
    detail: Option<String>,
    prev_hash: Vec<u8>,
    entry_hash: Vec<u8>,
    format: i32,
    sealed: Option<Vec<u8>>,
}

impl LogRow {
    /// The row's values, borrowed.
    pub(super) fn raw(&self) -> RawRow<'_> {
        RawRow {
            seq: self.seq,
            at_us: self.at_us,
            kind: &self.kind,
            request_id: self.request_id.as_deref(),
            decision_id: self.decision_id.as_deref(),
            policy_hash: self.policy_hash.as_deref(),
            recipient_partner: self.recipient_partner.as_deref(),
            recipient_user: self.recipient_user.as_deref(),
            recipient_role: self.recipient_role.as_deref(),
            purpose: self.purpose.as_deref(),
            basis_kind: self.basis_kind.as_deref(),
            basis_ref: self.basis_ref.as_deref(),
            basis_rule: self.basis_rule.as_deref(),
            justification: self.justification.as_deref(),
            subject: self.subject.as_deref(),
            record_kind: self.record_kind.as_deref(),
            record_id: self.record_id.as_deref(),
            fields_disclosed: &self.fields_disclosed,
            fields_withheld: self.fields_withheld,
            outcome: &self.outcome,
            reason: self.reason.as_deref(),
            source_addr: self.source_addr.as_deref(),
            cert_sha256: self.cert_sha256.as_deref(),
            detail: self.detail.as_deref(),
            prev_hash: &self.prev_hash,
            entry_hash: &self.entry_hash,
            format: i64::from(self.format),
            sealed: self.sealed.as_deref(),
        }
    }
}

/// One `audit_log` row's values, borrowed: from a [`LogRow`] read through sqlx, or straight
/// from SQLite's row buffer during a verification scan (no value copied).
#[derive(Clone, Copy)]
pub(super) struct RawRow<'a> {
    seq: i64,
    at_us: i64,
    kind: &'a str,
    request_id: Option<&'a str>,
    decision_id: Option<&'a str>,
    policy_hash: Option<&'a str>,
    recipient_partner: Option<&'a str>,
    recipient_user: Option<&'a str>,
    recipient_role: Option<&'a str>,
    purpose: Option<&'a str>,
    basis_kind: Option<&'a str>,
    basis_ref: Option<&'a str>,
    basis_rule: Option<&'a str>,
    justification: Option<&'a str>,
    subject: Option<&'a [u8]>,
    record_kind: Option<&'a str>,
    record_id: Option<&'a str>,
    fields_disclosed: &'a str,
    fields_withheld: i64,
    outcome: &'a str,
    reason: Option<&'a str>,
    source_addr: Option<&'a str>,
    cert_sha256: Option<&'a str>,
    detail: Option<&'a str>,
    prev_hash: &'a [u8],
    entry_hash: &'a [u8],
    format: i64,
    sealed: Option<&'a [u8]>,
}

/// The values of one row of `SELECT {COLUMNS}`, typed as the log's columns are; `Err` names
/// the first column whose value has another type.
trait ColumnValues<'a> {
    fn int(&self, i: usize) -> Result<i64, String>;
    fn text(&self, i: usize) -> Result<&'a str, String>;
    fn opt_text(&self, i: usize) -> Result<Option<&'a str>, String>;
    fn blob(&self, i: usize) -> Result<&'a [u8], String>;
    fn opt_blob(&self, i: usize) -> Result<Option<&'a [u8]>, String>;
}

/// A rusqlite row's values.
struct SqliteValues<'a, 'r>(&'a rusqlite::Row<'r>);

impl<'a> SqliteValues<'a, '_> {
    fn value(&self, i: usize) -> Result<rusqlite::types::ValueRef<'a>, String> {
        self.0.get_ref(i).map_err(|e| e.to_string())
    }
}

impl<'a> ColumnValues<'a> for SqliteValues<'a, '_> {
    fn int(&self, i: usize) -> Result<i64, String> {
        self.value(i)?.as_i64().map_err(|e| wrong_type(i, e))
    }
    fn text(&self, i: usize) -> Result<&'a str, String> {
        self.value(i)?.as_str().map_err(|e| wrong_type(i, e))
    }
    fn opt_text(&self, i: usize) -> Result<Option<&'a str>, String> {
        self.value(i)?
            .as_str_or_null()
            .map_err(|e| wrong_type(i, e))
    }
    fn blob(&self, i: usize) -> Result<&'a [u8], String> {
        self.value(i)?.as_blob().map_err(|e| wrong_type(i, e))
    }
    fn opt_blob(&self, i: usize) -> Result<Option<&'a [u8]>, String> {
        self.value(i)?
            .as_blob_or_null()
            .map_err(|e| wrong_type(i, e))
    }
}

/// A row of PostgreSQL's binary `COPY` stream ([`crate::store::pgcopy`]): each value in its
/// type's binary form, `None` for NULL.
struct CopyValues<'a, 'f>(&'f [Option<&'a [u8]>]);

impl<'a> CopyValues<'a, '_> {
    fn utf8(i: usize, b: &'a [u8]) -> Result<&'a str, String> {
        std::str::from_utf8(b).map_err(|_| wrong_type(i, "not UTF-8"))
    }
}

impl<'a> ColumnValues<'a> for CopyValues<'a, '_> {
    fn int(&self, i: usize) -> Result<i64, String> {
        crate::store::pgcopy::int(self.blob(i)?).ok_or_else(|| wrong_type(i, "not an integer"))
    }
    fn text(&self, i: usize) -> Result<&'a str, String> {
        Self::utf8(i, self.blob(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<&'a str>, String> {
        self.opt_blob(i)?.map(|b| Self::utf8(i, b)).transpose()
    }
    fn blob(&self, i: usize) -> Result<&'a [u8], String> {
        self.opt_blob(i)?.ok_or_else(|| wrong_type(i, "NULL"))
    }
    fn opt_blob(&self, i: usize) -> Result<Option<&'a [u8]>, String> {
        self.0
            .get(i)
            .copied()
            .ok_or_else(|| wrong_type(i, "missing"))
    }
}

fn wrong_type(column: usize, what: impl std::fmt::Display) -> String {
    let name = COLUMNS.split(',').nth(column).unwrap_or_default().trim();
    format!("column {name} holds a value of the wrong type ({what})")
}

impl<'a> RawRow<'a> {
    /// Borrows a row of `SELECT {COLUMNS}` (in that order) from PostgreSQL's binary `COPY`
    /// stream ([`crate::store::pgcopy`]): the log scan of [`super::scan`] reads PostgreSQL
    /// without a message, a type check or a copy per value. `Err` says which column holds a
    /// value no row of the log can have.
    pub(super) fn from_copy(fields: &[Option<&'a [u8]>]) -> Result<Self, String> {
        Self::read(&CopyValues(fields))
    }

    /// Borrows a row of `SELECT {COLUMNS}` (in that order) from a rusqlite statement: the log
    /// scan of [`super::scan`] reads SQLite without sqlx's per-value copies. `Err` says which
    /// column holds a value of a type no row of the log can have.
    pub(super) fn from_sqlite(r: &'a rusqlite::Row<'_>) -> Result<Self, String> {
        Self::read(&SqliteValues(r))
    }

    /// Reads a row of `SELECT {COLUMNS}` (in that order) through `v`.
    fn read(v: &impl ColumnValues<'a>) -> Result<Self, String> {
        Ok(Self {
            seq: v.int(0)?,
            at_us: v.int(1)?,
            kind: v.text(2)?,
            request_id: v.opt_text(3)?,
            decision_id: v.opt_text(4)?,
            policy_hash: v.opt_text(5)?,
            recipient_partner: v.opt_text(6)?,
            recipient_user: v.opt_text(7)?,
            recipient_role: v.opt_text(8)?,
            purpose: v.opt_text(9)?,
            basis_kind: v.opt_text(10)?,
            basis_ref: v.opt_text(11)?,
            basis_rule: v.opt_text(12)?,
            justification: v.opt_text(13)?,
            subject: v.opt_blob(14)?,
            record_kind: v.opt_text(15)?,
            record_id: v.opt_text(16)?,
            fields_disclosed: v.text(17)?,
            fields_withheld: v.int(18)?,
            outcome: v.text(19)?,
            reason: v.opt_text(20)?,
            source_addr: v.opt_text(21)?,
            cert_sha256: v.opt_text(22)?,
            detail: v.opt_text(23)?,
            prev_hash: v.blob(24)?,
            entry_hash: v.blob(25)?,
            format: v.int(26)?,
            sealed: v.opt_blob(27)?,
        })
    }

    /// Checks that the log can have written this row and reads it as an entry, still
    /// borrowing its values. A value that the canonical encoding cannot have produced is
    /// [`LogError::Corrupt`].
    pub(super) fn check(self) -> Result<CheckedRow<'a>, LogError> {
        let row = self;
        let seq = u64::try_from(row.seq).map_err(|_| corrupt(0, "negative sequence number"))?;
        let c = |why: &str| corrupt(seq, why);
        DateTime::from_timestamp_micros(row.at_us).ok_or_else(|| c("time out of range"))?;
        let kind: EntryKind = row.kind.parse().map_err(|_| c("unknown kind"))?;
        let format = i32::try_from(row.format)
            .ok()
            .and_then(EntryFormat::from_i32)
            .ok_or_else(|| c("unknown format"))?;
        let v1 = format == EntryFormat::V1;
        // Format 2 keeps free text only sealed; format 1 only in clear.
        if !v1 && (row.justification.is_some() || row.detail.is_some()) {
            return Err(c("clear free text in an entry that seals it"));
        }
        if v1 && row.sealed.is_some() {
            return Err(c("sealed text in an entry written in clear"));
        }
        let basis = match (row.basis_kind, row.basis_ref, row.basis_rule) {
            (None, None, None) => None,
            (Some("consent"), Some(r), None) => Some(BasisView::Consent(r)),
            (Some("emergency"), Some(r), None) if v1 => Some(BasisView::Emergency(r)),
            (Some("emergency"), None, None) if !v1 => Some(BasisView::Emergency("")),
            (Some("court_order"), Some(r), None) => Some(BasisView::CourtOrder(r)),
            (Some("medical_emergency"), Some(r), None) if v1 => {
                Some(BasisView::MedicalEmergency(r))
            }
            (Some("medical_emergency"), None, None) if !v1 => Some(BasisView::MedicalEmergency("")),
            (Some("mou"), Some(mou_id), Some(rule)) => Some(BasisView::Mou { mou_id, rule }),
            _ => return Err(c("inconsistent legal basis columns")),
        };
        let bytes32 = |v: &'a [u8]| -> Result<&'a [u8; 32], LogError> {
            <&[u8; 32]>::try_from(v).map_err(|_| c("malformed 32-byte value"))
        };
        let subject = row.subject.map(bytes32).transpose()?;
        let record = match (row.record_kind, row.record_id) {
            (None, None) => None,
            (Some(kind), Some(id)) => Some((kind, id)),
            _ => return Err(c("inconsistent record columns")),
        };
        let fields = match fields_as_written(row.fields_disclosed) {
            Some(fields) => fields,
            None => {
                serde_json::from_str(row.fields_disclosed).map_err(|_| c("malformed field list"))?
            }
        };
        let fields_withheld =
            u32::try_from(row.fields_withheld).map_err(|_| c("withheld count out of range"))?;
        let deny_reason = match (row.outcome, row.reason) {
            ("permit", None) => None,
            ("deny", Some(reason)) => Some(reason),
            _ => return Err(c("inconsistent outcome columns")),
        };
        let prev = ChainHash(*bytes32(row.prev_hash)?);
        let hash = ChainHash(*bytes32(row.entry_hash)?);
        Ok(CheckedRow {
            seq,
            format,
            kind,
            row,
            basis,
            subject,
            record,
            fields,
            fields_withheld,
            deny_reason,
            prev,
            hash,
        })
    }
}

/// Reads a field list in the exact form the log writes it (`[{"field":"..","transform":".."},..]`,
/// strings without escapes or control characters), without a JSON parser; `None` for any
/// other text, which is then parsed as JSON. Whatever this reads, the JSON parser reads the
/// same way (a unit test holds the two to it).
fn fields_as_written(text: &str) -> Option<Vec<FieldRef<'_>>> {
    /// A string up to its closing quote, if it needs no unescaping.
    fn plain(s: &str) -> Option<(&str, &str)> {
        let end = s.find(['"', '\\'])?;
        let (value, rest) = s.split_at(end);
        let rest = rest.strip_prefix('"')?;
        (!value.bytes().any(|b| b < 0x20)).then_some((value, rest))
    }
    let mut rest = text.strip_prefix('[')?;
    let mut out = Vec::new();
    if rest == "]" {
        return Some(out);
    }
    loop {
        let (field, r) = plain(rest.strip_prefix(r#"{"field":""#)?)?;
        let (transform, r) = plain(r.strip_prefix(r#","transform":""#)?)?;
        out.push(FieldRef {
            field: field.into(),
            transform: transform.into(),
        });
        let r = r.strip_prefix('}')?;
        match r.strip_prefix(',') {
            Some(next) => rest = next,
            None => return (r == "]").then_some(out),
        }
    }
}

/// One disclosed field of a stored field list, borrowed where the JSON text allows.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FieldRef<'a> {
    #[serde(borrow)]
    field: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    transform: std::borrow::Cow<'a, str>,
}

impl FieldPair for FieldRef<'_> {
    fn field(&self) -> &str {
        &self.field
    }
    fn transform(&self) -> &str {
        &self.transform
    }
}

/// A stored row that the log can have written, read as an entry but still borrowing its
/// values.
pub(super) struct CheckedRow<'a> {
    pub(super) seq: u64,
    pub(super) format: EntryFormat,
    kind: EntryKind,
    row: RawRow<'a>,
    basis: Option<BasisView<'a>>,
    subject: Option<&'a [u8; 32]>,
    record: Option<(&'a str, &'a str)>,
    fields: Vec<FieldRef<'a>>,
    fields_withheld: u32,
    deny_reason: Option<&'a str>,
    /// The stored previous hash.
    pub(super) prev: ChainHash,
    /// The stored hash.
    pub(super) hash: ChainHash,
}

impl<'a> CheckedRow<'a> {
    /// The view the encodings read.
    pub(super) fn view(&self) -> EntryContent<'_, FieldRef<'a>> {
        let r = &self.row;
        EntryContent {
            at_us: r.at_us,
            kind: self.kind.as_str(),
            request_id: r.request_id,
            decision_id: r.decision_id,
            policy_hash: r.policy_hash,
            recipient_partner: r.recipient_partner,
            recipient_user: r.recipient_user,
            recipient_role: r.recipient_role,
            purpose: r.purpose,
            basis: self.basis,
            justification: r.justification,
            subject: self.subject,
            record: self.record,
            fields: &self.fields,
            fields_withheld: self.fields_withheld,
            deny_reason: self.deny_reason,
            source_addr: r.source_addr,
            cert_sha256: r.cert_sha256,
            detail: r.detail,
        }
    }

    /// The sealed free text of a format-2 entry.
    pub(super) fn sealed(&self) -> Option<&'a [u8]> {
        self.row.sealed
    }

    /// The owned entry.
    pub(super) fn into_entry(self) -> Result<Entry, LogError> {
        let r = self.row;
        let owned = |s: Option<&str>| s.map(str::to_owned);
        let at = DateTime::from_timestamp_micros(r.at_us)
            .ok_or_else(|| corrupt(self.seq, "time out of range"))?;
        let data = NewEntry {
            at,
            kind: self.kind,
            request_id: owned(r.request_id),
            decision_id: owned(r.decision_id),
            policy_hash: owned(r.policy_hash),
            recipient_partner: owned(r.recipient_partner),
            recipient_user: owned(r.recipient_user),
            recipient_role: owned(r.recipient_role),
            purpose: owned(r.purpose),
            basis: self.basis.map(BasisView::to_owned),
            justification: owned(r.justification),
            subject: self.subject.map(|s| SubjectPseudonym(*s)),
            record: self.record.map(|(kind, id)| RecordRef {
                kind: kind.to_owned(),
                id: id.to_owned(),
            }),
            fields_disclosed: self
                .fields
                .into_iter()
                .map(|f| FieldDisclosure {
                    field: f.field.into_owned(),
                    transform: f.transform.into_owned(),
                })
                .collect(),
            fields_withheld: self.fields_withheld,
            outcome: match self.deny_reason {
                None => Outcome::Permit,
                Some(reason) => Outcome::Deny {
                    reason: reason.to_owned(),
                },
            },
            source_addr: owned(r.source_addr),
            cert_sha256: owned(r.cert_sha256),
            detail: owned(r.detail),
        };
        Ok(Entry {
            seq: self.seq,
            format: self.format,
            data,
            sealed: r.sealed.map(<[u8]>::to_vec),
            prev_hash: self.prev,
            hash: self.hash,
        })
    }
}

/// Parses one `audit_log` row.
pub(super) fn row_to_entry(row: LogRow) -> Result<Entry, LogError> {
    row.raw().check()?.into_entry()
}

/// Up to `limit` rows after `seq`, ascending.
pub(super) async fn rows_after(
    c: &mut Conn<'_>,
    seq: u64,
    limit: i64,
) -> Result<Vec<LogRow>, LogError> {
    let seq = seq_i64(seq)?;
    Ok(on_conn!(c, |c| {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
        )))
        .bind(seq)
        .bind(limit)
        .fetch_all(c)
        .await
    })?)
}

/// The lowest stored sequence number.
pub(super) async fn first_seq(c: &mut Conn<'_>) -> Result<Option<u64>, LogError> {
    let row: (Option<i64>,) = on_conn!(c, |c| {
        sqlx::query_as("SELECT MIN(seq) FROM audit_log")
            .fetch_one(c)
            .await
    })?;
    Ok(row.0.and_then(|s| u64::try_from(s).ok()))
}

/// Every checkpoint, ascending.
pub(super) async fn checkpoints(c: &mut Conn<'_>) -> Result<Vec<Checkpoint>, LogError> {
    let rows: Vec<(i64, Vec<u8>, i64, String, String)> = on_conn!(c, |c| {
        sqlx::query_as(
            "SELECT seq, head_hash, at_us, key_id, signature FROM audit_checkpoints \
             ORDER BY seq",
        )
        .fetch_all(c)
        .await
    })?;
    rows.into_iter()
        .map(|(seq, h, at_us, key_id, signature)| {
            let seq = u64::try_from(seq).map_err(|_| corrupt(0, "negative checkpoint"))?;
            Ok(Checkpoint {
                seq,
                head_hash: <[u8; 32]>::try_from(h.as_slice())
                    .map(ChainHash)
                    .map_err(|_| corrupt(seq, "malformed checkpoint hash"))?,
                at_us,
                key_id,
                signature,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_lists_read_without_a_parser_read_as_json_does() {
        let pairs = |v: &[FieldRef<'_>]| -> Vec<(String, String)> {
            v.iter()
                .map(|f| (f.field.to_string(), f.transform.to_string()))
                .collect()
        };
        let lists: Vec<Vec<FieldDisclosure>> = vec![
            vec![],
            vec![FieldDisclosure::new("narrative", "reveal")],
            vec![
                FieldDisclosure::new("safety_flags.weapon", "reveal"),
                FieldDisclosure::new("dob", "generalize"),
                FieldDisclosure::new("", ""),
                FieldDisclosure::new("näme", "mask"),
            ],
            vec![FieldDisclosure::new("a\"b", "x")],
            vec![FieldDisclosure::new("a\\b", "x")],
            vec![FieldDisclosure::new("tab\there", "x")],
            vec![FieldDisclosure::new("x", "line\nbreak")],
        ];
        for list in &lists {
            let text = serde_json::to_string(list).unwrap();
            let parsed: Vec<FieldRef<'_>> = serde_json::from_str(&text).unwrap();
            match fields_as_written(&text) {
                Some(fast) => assert_eq!(pairs(&fast), pairs(&parsed), "{text}"),
                // Only strings that JSON escapes are left to the parser.
                None => assert!(text.contains('\\'), "{text}"),
            }
        }
        // Other texts: read the same way as JSON reads them, or left to the parser.
        for text in [
            "[]",
            "[ ]",
            "",
            "[",
            "]",
            "[{}]",
            r#"[{"field":"a","transform":"b"}]"#,
            r#"[{"field":"a","transform":"b"},]"#,
            r#"[{"field":"a","transform":"b"}] "#,
            r#"[{"field":"a","transform":"b"}]x"#,
            r#"[{"field":"a","transform":"b","x":1}]"#,
            r#"[{"transform":"b","field":"a"}]"#,
            r#"[{"field":"a"}]"#,
            r#"[{"field":"a","transform":"b"}{"field":"a","transform":"b"}]"#,
            r#"[{"field":"a","transform":"b"},{"field":"c","transform":"d"}]"#,
            "[{\"field\":\"a\u{1}\",\"transform\":\"b\"}]",
            r#"[{"field":"a\u0041","transform":"b"}]"#,
        ] {
            let json: Option<Vec<FieldRef<'_>>> = serde_json::from_str(text).ok();
            if let Some(fast) = fields_as_written(text) {
                assert_eq!(Some(pairs(&fast)), json.as_deref().map(pairs), "{text:?}");
            }
        }
        assert!(
            fields_as_written(r#"[{"field":"a","transform":"b"},{"field":"c","transform":"d"}]"#)
                .is_some()
        );
    }

    #[test]
    fn batches_split_into_few_statement_shapes() {
        let sizes = |n| chunk_sizes(n).collect::<Vec<_>>();
        assert!(sizes(0).is_empty());
        assert_eq!(sizes(1), vec![1]);
        assert_eq!(sizes(3), vec![2, 1]);
        assert_eq!(sizes(300), vec![256, 32, 8, 4]);
        assert_eq!(sizes(600), vec![256, 256, 64, 16, 8]);
        for n in 0..2000 {
            let s = sizes(n);
            assert_eq!(s.iter().sum::<usize>(), n);
            assert!(s.iter().all(|k| k.is_power_of_two() && *k <= MAX_ROWS));
        }
    }

    #[test]
    fn insert_statements_have_one_placeholder_per_value() {
        for rows in [1, 2, 4, 256] {
            let anonymous = insert_sql(rows, Placeholders::Anonymous).unwrap();
            assert_eq!(anonymous.matches('?').count(), rows * NCOLS);
            let numbered = insert_sql(rows, Placeholders::Numbered).unwrap();
            assert_eq!(numbered.matches('$').count(), rows * NCOLS);
            assert!(numbered.ends_with(&format!("${})", rows * NCOLS)));
            assert_eq!(COLUMNS.split(',').count(), NCOLS);
        }
    }
}
