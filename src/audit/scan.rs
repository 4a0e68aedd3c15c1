//! Streams a table of the stored log (entries, or the tree's hashes) in one ordered scan of a
//! key range, on a thread of its own, for verification.
//!
//! Verification reads every row once. Through sqlx's SQLite driver each row cost about 15 µs
//! (every column value copied, every row handed across threads), which made `audit verify`
//! of a few years of log take most of an hour. Here the scan runs on its own thread, checks
//! each row and encodes it straight from its column values ([`EncodedEntries`]), and hands
//! batches over a bounded channel to the verifier, which hashes and links them on another
//! core ([`super::stored`] runs several such scans, one per range, at the same time):
//!
//! - on SQLite it reads the database file through a read-only rusqlite connection (the same
//!   SQLite library sqlx links; column values borrowed from the memory-mapped file, no
//!   per-value copy). One statement reads one consistent snapshot of the file;
//! - on PostgreSQL it streams one ordered query (no pages) as a binary `COPY` on a connection
//!   of its own, outside the pool, each row's values borrowed from the stream
//!   ([`crate::store::pgcopy`]);
//! - an in-memory SQLite database (tests) is read through sqlx on a pooled connection.
//!
//! The scan only reads: a read-only store stays read-only (SQLite opens the file with
//! `SQLITE_OPEN_READ_ONLY` and `query_only`; PostgreSQL runs one `SELECT`).

use futures_util::TryStreamExt;
use tokio::sync::mpsc;

use super::LogError;
use super::canonical::{ChainHash, encode_body};
use super::db::{COLUMNS, LogRow, RawRow};
use super::entry::EntryFormat;
use super::tree::Hash;
use crate::store::pgcopy::CopyReader;
use crate::store::{Backend, PooledConn, Store};

/// Rows per batch handed to the verifier.
const BATCH: usize = 2048;

/// Batches in flight between the scan and the verifier (bounds the memory a scan holds).
const IN_FLIGHT: usize = 8;

/// The most of the database file the SQLite scan maps into memory (SQLite caps it at its
/// compile-time limit).
const MMAP_SIZE: i64 = 1 << 40;

/// Bytes of PostgreSQL's `COPY` stream handed to the parsing thread at a time.
const COPY_CHUNK: usize = 256 * 1024;

/// How long the SQLite scan waits for a lock held by a writer.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A batch of rows of a table read in one ordered scan, in the form the verifier consumes:
/// the query, and how a row (from rusqlite, from PostgreSQL's binary `COPY`, or read through
/// sqlx) joins the batch.
pub(super) trait Scanned: Default + Send + 'static {
    /// A row as sqlx reads it (the pooled scan of an in-memory SQLite database).
    type Row: Send + Unpin + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>;
    /// `SELECT ... WHERE key > $1 AND key <= $2 ORDER BY key`, with the columns in the order
    /// [`Scanned::push_sqlite`] reads them.
    fn sql() -> String;
    /// Rows in the batch.
    fn len(&self) -> usize;
    /// Adds one row read by rusqlite. `Err` ends the scan after the rows before it are
    /// checked: a row of the log that no append can have written is [`LogError::Corrupt`].
    fn push_sqlite(&mut self, r: &rusqlite::Row<'_>) -> Result<(), LogError>;
    /// Adds one row of PostgreSQL's binary `COPY` stream (same errors).
    fn push_copy(&mut self, fields: &[Option<&[u8]>]) -> Result<(), LogError>;
    /// Adds one row read through sqlx (same errors).
    fn push(&mut self, r: Self::Row) -> Result<(), LogError>;
}

/// One stored entry, checked and encoded for hashing (its body in [`EncodedEntries::bytes`]).
pub(super) struct EncodedEntry {
    pub(super) seq: u64,
    pub(super) format: EntryFormat,
    /// The stored previous hash.
    pub(super) prev: ChainHash,
    /// The stored hash.
    pub(super) hash: ChainHash,
    /// Where the entry's encoded body ends in [`EncodedEntries::bytes`].
    end: usize,
}

/// Stored entries, each checked to be a row the log can have written and encoded from its
/// column values (the encoding after the sequence number: see
/// [`encode_body`](super::canonical::encode_body)); the verifier only hashes and links them.
pub(super) struct EncodedEntries {
    rows: Vec<EncodedEntry>,
    bytes: Vec<u8>,
}

impl Default for EncodedEntries {
    /// An empty batch with room for a full one of typical entries (no regrowth on the way).
    fn default() -> Self {
        Self {
            rows: Vec::with_capacity(BATCH),
            bytes: Vec::with_capacity(BATCH * 512),
        }
    }
}

/// Test builds only: entries (by stored hash) whose encoding the scan gets wrong, so that a
/// test can make the scan and a full read of an entry disagree.
#[cfg(test)]
pub(super) static MISREAD: std::sync::Mutex<Vec<ChainHash>> = std::sync::Mutex::new(Vec::new());

impl EncodedEntries {
    fn add(&mut self, row: RawRow<'_>) -> Result<(), LogError> {
        let c = row.check()?;
        encode_body(&mut self.bytes, c.format, &c.view(), c.sealed());
        #[cfg(test)]
        if MISREAD.lock().is_ok_and(|m| m.contains(&c.hash))
            && let Some(b) = self.bytes.last_mut()
        {
            *b ^= 1;
        }
        self.rows.push(EncodedEntry {
            seq: c.seq,
            format: c.format,
            prev: c.prev,
            hash: c.hash,
            end: self.bytes.len(),
        });
        Ok(())
    }

    /// The entries in order, each with its encoded body.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&EncodedEntry, &[u8])> {
        let mut start = 0;
        self.rows.iter().map(move |e| {
            let body = self.bytes.get(start..e.end).unwrap_or_default();
            start = e.end;
            (e, body)
        })
    }
}

impl Scanned for EncodedEntries {
    type Row = LogRow;

    fn sql() -> String {
        format!("SELECT {COLUMNS} FROM audit_log WHERE seq > $1 AND seq <= $2 ORDER BY seq")
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    fn push_sqlite(&mut self, r: &rusqlite::Row<'_>) -> Result<(), LogError> {
        let raw = RawRow::from_sqlite(r).map_err(|why| LogError::Corrupt {
            // A value of a type no row of the log can have: the row is unreadable (altered).
            seq: r
                .get::<_, i64>(0)
                .ok()
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(0),
            why,
        })?;
        self.add(raw)
    }

    fn push_copy(&mut self, fields: &[Option<&[u8]>]) -> Result<(), LogError> {
        let raw = RawRow::from_copy(fields).map_err(|why| LogError::Corrupt {
            seq: fields
                .first()
                .copied()
                .flatten()
                .and_then(crate::store::pgcopy::int)
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(0),
            why,
        })?;
        self.add(raw)
    }

    fn push(&mut self, r: LogRow) -> Result<(), LogError> {
        self.add(r.raw())
    }
}

/// One stored hash of the Merkle tree (`audit_tree`), as sqlx reads it.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct NodeRow {
    idx: i64,
    hash: Vec<u8>,
}

/// Stored hashes of the Merkle tree: index and value, in index order.
#[derive(Default)]
pub(super) struct Nodes(pub(super) Vec<(u64, Hash)>);

impl Nodes {
    fn add(&mut self, idx: i64, hash: &[u8]) -> Result<(), LogError> {
        let corrupt = |why: String| LogError::Corrupt { seq: 0, why };
        let idx = u64::try_from(idx).map_err(|_| corrupt("negative tree index".into()))?;
        let hash =
            Hash::try_from(hash).map_err(|_| corrupt(format!("tree hash {idx} is malformed")))?;
        self.0.push((idx, hash));
        Ok(())
    }
}

impl Scanned for Nodes {
    type Row = NodeRow;

    fn sql() -> String {
        "SELECT idx, hash FROM audit_tree WHERE idx > $1 AND idx <= $2 ORDER BY idx".into()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn push_sqlite(&mut self, r: &rusqlite::Row<'_>) -> Result<(), LogError> {
        let wrong = |e: rusqlite::Error| LogError::Corrupt {
            seq: 0,
            why: format!("a tree hash is not stored as one ({e})"),
        };
        let idx = r.get_ref(0).map_err(wrong)?.as_i64();
        let hash = r.get_ref(1).map_err(wrong)?.as_blob();
        match (idx, hash) {
            (Ok(idx), Ok(hash)) => self.add(idx, hash),
            _ => Err(LogError::Corrupt {
                seq: 0,
                why: "a tree hash is not stored as one (a value of the wrong type)".into(),
            }),
        }
    }

    fn push_copy(&mut self, fields: &[Option<&[u8]>]) -> Result<(), LogError> {
        match fields {
            [Some(idx), Some(hash)] => match crate::store::pgcopy::int(idx) {
                Some(idx) => self.add(idx, hash),
                None => Err(LogError::Corrupt {
                    seq: 0,
                    why: "a tree index is not an integer".into(),
                }),
            },
            _ => Err(LogError::Corrupt {
                seq: 0,
                why: "a tree hash is not stored as one (a NULL value)".into(),
            }),
        }
    }

    fn push(&mut self, r: NodeRow) -> Result<(), LogError> {
        self.add(r.idx, &r.hash)
    }
}

/// One batch of rows in key order, or the error that ended the scan.
pub(super) type Batch<T> = Result<T, LogError>;

/// Starts a scan of the rows of `T`'s table with a key above `after` and up to `upto`, in
/// ascending order. The scan stops early when the receiver is dropped.
pub(super) fn scan_range<T: Scanned>(
    store: &Store,
    after: i64,
    upto: i64,
) -> mpsc::Receiver<Batch<T>> {
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    match store.sqlite_file() {
        Some(file) => {
            let file = file.to_path_buf();
            tokio::task::spawn_blocking(move || scan_sqlite_file(&file, (after, upto), &tx));
        }
        None if store.backend() == Backend::Postgres => {
            let store = store.clone();
            tokio::spawn(async move { scan_postgres(&store, (after, upto), &tx).await });
        }
        None => {
            let store = store.clone();
            tokio::spawn(async move { scan_pooled(&store, (after, upto), &tx).await });
        }
    }
    rx
}

/// Fills batches row by row: [`Batcher::add`] returns a full batch to send, and the rows
/// before a row that cannot join are kept for [`Batcher::rest`].
struct Batcher<T> {
    batch: T,
}

impl<T: Scanned> Batcher<T> {
    fn new() -> Self {
        Self {
            batch: T::default(),
        }
    }

    /// Adds a row; a full batch is returned for sending.
    fn add(
        &mut self,
        push: impl FnOnce(&mut T) -> Result<(), LogError>,
    ) -> Result<Option<T>, LogError> {
        push(&mut self.batch)?;
        Ok((self.batch.len() >= BATCH).then(|| std::mem::take(&mut self.batch)))
    }

    /// What is left to send (rows before an error included), then the error, if any.
    fn rest(self, end: Result<(), LogError>) -> impl Iterator<Item = Batch<T>> {
        let rows = (self.batch.len() > 0).then_some(Ok(self.batch));
        rows.into_iter().chain(end.err().map(Err))
    }
}

/// The SQLite scan: a read-only rusqlite connection to the database file.
fn scan_sqlite_file<T: Scanned>(
    file: &std::path::Path,
    range: (i64, i64),
    tx: &mpsc::Sender<Batch<T>>,
) {
    let mut batcher = Batcher::new();
    let end = try_scan_sqlite_file(file, range, &mut batcher, |full| {
        tx.blocking_send(Ok(full)).is_ok()
    });
    for b in batcher.rest(end) {
        // The receiver may be gone; then nobody waits for the rows or the error.
        if tx.blocking_send(b).is_err() {
            break;
        }
    }
}

/// Reads rows into `batcher`, handing each full batch to `send` (`false`: nobody listens).
fn try_scan_sqlite_file<T: Scanned>(
    file: &std::path::Path,
    (after, upto): (i64, i64),
    batcher: &mut Batcher<T>,
    mut send: impl FnMut(T) -> bool,
) -> Result<(), LogError> {
    use rusqlite::OpenFlags;
    let db_err = |e: rusqlite::Error| LogError::Scan(e.to_string());
    let conn = rusqlite::Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(db_err)?;
    conn.pragma_update(None, "query_only", "ON")
        .map_err(db_err)?;
    // Pages are read in place (memory-mapped) rather than copied in by a system call each.
    conn.pragma_update(None, "mmap_size", MMAP_SIZE)
        .map_err(db_err)?;
    let mut stmt = conn.prepare(&T::sql()).map_err(db_err)?;
    let mut rows = stmt.query([after, upto]).map_err(db_err)?;
    while let Some(r) = rows.next().map_err(db_err)? {
        if let Some(full) = batcher.add(|b| b.push_sqlite(r))?
            && !send(full)
        {
            break;
        }
    }
    Ok(())
}

/// The PostgreSQL scan: one ordered query streamed as a binary `COPY` on a connection of its
/// own, outside the pool (so that scans of several ranges at once take nothing from the
/// requests being served), each row's values borrowed from the stream.
///
/// The stream is read on the async runtime; its rows are parsed, checked and encoded on a
/// blocking thread, so that a verification on a serving gateway keeps that work off the
/// threads answering requests.
async fn scan_postgres<T: Scanned>(store: &Store, range: (i64, i64), tx: &mpsc::Sender<Batch<T>>) {
    let (chunk_tx, chunk_rx) = mpsc::channel(IN_FLIGHT);
    let batches = tx.clone();
    let parse = tokio::task::spawn_blocking(move || parse_copy(chunk_rx, &batches));
    if let Err(e) = read_copy::<T>(store, range, &chunk_tx).await {
        // The rows read before the failure are checked first.
        let _ = chunk_tx.send(Err(e)).await;
    }
    drop(chunk_tx);
    if parse.await.is_err() {
        let _ = tx
            .send(Err(LogError::Scan(
                "the scan's parsing thread failed".into(),
            )))
            .await;
    }
}

/// Streams the binary `COPY` of `T`'s rows above `after` and up to `upto` on a connection of
/// its own, handing each chunk on; stops early when nobody takes them.
async fn read_copy<T: Scanned>(
    store: &Store,
    (after, upto): (i64, i64),
    chunks: &mpsc::Sender<Result<Vec<u8>, LogError>>,
) -> Result<(), LogError> {
    use sqlx::Connection as _;
    let Some(mut conn) = store.postgres_connection().await? else {
        return Err(LogError::Scan("not a PostgreSQL store".into()));
    };
    // COPY takes no parameters: the bounds are numbers formatted here.
    let sql = format!(
        "COPY ({}) TO STDOUT (FORMAT binary)",
        T::sql()
            .replace("$1", &after.to_string())
            .replace("$2", &upto.to_string())
    );
    let out = async {
        let mut stream = conn.copy_out_raw(&sql).await?;
        // PostgreSQL sends about one message per row: they are handed on in runs of
        // `COPY_CHUNK` bytes, not one by one (waking the parsing thread once per row made the
        // whole verification four times slower).
        let mut run = Vec::with_capacity(COPY_CHUNK);
        while let Some(chunk) = stream.try_next().await? {
            run.extend_from_slice(&chunk);
            if run.len() >= COPY_CHUNK
                && chunks
                    .send(Ok(std::mem::replace(
                        &mut run,
                        Vec::with_capacity(COPY_CHUNK),
                    )))
                    .await
                    .is_err()
            {
                return Ok(());
            }
        }
        if !run.is_empty() {
            let _ = chunks.send(Ok(run)).await;
        }
        Ok(())
    }
    .await;
    // A clean goodbye; the scan's outcome does not depend on it.
    let _ = conn.close().await;
    out
}

/// Reads rows out of the `COPY` stream's chunks into batches (on a blocking thread), then
/// sends what is left and the error that ended the stream, if any.
fn parse_copy<T: Scanned>(
    mut chunks: mpsc::Receiver<Result<Vec<u8>, LogError>>,
    tx: &mpsc::Sender<Batch<T>>,
) {
    let mut batcher = Batcher::new();
    let end = try_parse_copy(&mut chunks, &mut batcher, tx);
    for b in batcher.rest(end) {
        if tx.blocking_send(b).is_err() {
            break;
        }
    }
}

fn try_parse_copy<T: Scanned>(
    chunks: &mut mpsc::Receiver<Result<Vec<u8>, LogError>>,
    batcher: &mut Batcher<T>,
    tx: &mpsc::Sender<Batch<T>>,
) -> Result<(), LogError> {
    let mut reader = CopyReader::new();
    while let Some(chunk) = chunks.blocking_recv() {
        reader.push(&chunk?);
        loop {
            let full = reader
                .next_row(|fields| batcher.add(|b| b.push_copy(fields)))
                .map_err(|e| LogError::Scan(e.to_string()))?;
            match full {
                None => break,
                Some(Ok(None)) => {}
                Some(Ok(Some(full))) => {
                    if tx.blocking_send(Ok(full)).is_err() {
                        return Ok(());
                    }
                }
                Some(Err(e)) => return Err(e),
            }
        }
    }
    if !reader.ended() {
        return Err(LogError::Scan("the COPY stream ended early".into()));
    }
    Ok(())
}

/// The pooled scan (SQLite without a file): one streamed ordered query.
async fn scan_pooled<T: Scanned>(store: &Store, range: (i64, i64), tx: &mpsc::Sender<Batch<T>>) {
    let mut batcher = Batcher::new();
    let end = try_scan_pooled(store, range, &mut batcher, tx).await;
    for b in batcher.rest(end) {
        if tx.send(b).await.is_err() {
            break;
        }
    }
}

async fn try_scan_pooled<T: Scanned>(
    store: &Store,
    (after, upto): (i64, i64),
    batcher: &mut Batcher<T>,
    tx: &mpsc::Sender<Batch<T>>,
) -> Result<(), LogError> {
    let sql = T::sql();
    let mut pooled = store.acquire().await?;
    let PooledConn::Sqlite(c) = &mut pooled else {
        return Err(LogError::Scan("not a SQLite store".into()));
    };
    let mut rows = sqlx::query_as::<_, T::Row>(sqlx::AssertSqlSafe(sql.as_str()))
        .bind(after)
        .bind(upto)
        .fetch(&mut **c);
    while let Some(row) = rows.try_next().await? {
        if let Some(full) = batcher.add(|b| b.push(row))?
            && tx.send(Ok(full)).await.is_err()
        {
            break;
        }
    }
    Ok(())
}
