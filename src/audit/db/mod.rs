//! The log's tables: the head lock, appends, pages and checkpoints; reading a row back as an
//! entry is [`rows`].

use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;

use super::LogError;
use super::canonical::{ChainHash, leaf_hash_with};
use super::checkpoint::{Checkpoint, TreeCheckpoint};
use super::entry::{AppendedEntry, EntryFormat, LegalBasis, NewEntry, Outcome};
use super::sealed::SealedEntry;
use super::tree::{Frontier, Hash};
use crate::store::{Conn, on_conn};

mod rows;

use rows::corrupt;
pub(super) use rows::{LogRow, RawRow, row_to_entry};

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
