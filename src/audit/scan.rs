//! Streams the stored log in one ordered scan, on a thread of its own, for verification.
//!
//! Verification reads every row once. Through sqlx's SQLite driver each row cost about 15 µs
//! (every column value copied, every row handed across threads), which made `audit verify`
//! of a few years of log take most of an hour. Here the scan runs on its own thread and hands
//! batches of rows over a bounded channel to the verifier, which decodes and hashes them on
//! another core:
//!
//! - on SQLite it reads the database file through a read-only rusqlite connection (the same
//!   SQLite library sqlx links; column values borrowed, no per-value copy). One statement
//!   reads one consistent snapshot of the file;
//! - on PostgreSQL it streams one ordered query (no pages) on a pooled connection.
//!
//! The scan only reads: a read-only store stays read-only (SQLite opens the file with
//! `SQLITE_OPEN_READ_ONLY` and `query_only`; PostgreSQL runs one `SELECT`).

use futures_util::TryStreamExt;
use tokio::sync::mpsc;

use super::LogError;
use super::db::{COLUMNS, LogRow};
use crate::store::{PooledConn, Store};

/// Rows per batch handed to the verifier.
const BATCH: usize = 2048;

/// Batches in flight between the scan and the verifier (bounds the memory a scan holds).
const IN_FLIGHT: usize = 8;

/// How long the SQLite scan waits for a lock held by a writer.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A table read in one ordered scan: its query, and how to read a row through rusqlite.
pub(super) trait Scanned: Sized + Send + Unpin + 'static {
    /// `SELECT ... WHERE key > $1 ORDER BY key`, with the columns in the order
    /// [`Scanned::from_sqlite`] reads them.
    fn sql() -> String;
    /// Reads one row of [`Scanned::sql`] from rusqlite.
    fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self>;
}

impl Scanned for LogRow {
    fn sql() -> String {
        format!("SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq")
    }

    fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        LogRow::from_sqlite(r)
    }
}

/// One stored hash of the Merkle tree (`audit_tree`): its index and value.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct NodeRow {
    pub(super) idx: i64,
    pub(super) hash: Vec<u8>,
}

impl Scanned for NodeRow {
    fn sql() -> String {
        "SELECT idx, hash FROM audit_tree WHERE idx > $1 ORDER BY idx".into()
    }

    fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            idx: r.get(0)?,
            hash: r.get(1)?,
        })
    }
}

/// One batch of rows in key order, or the error that ended the scan.
pub(super) type Batch<T> = Result<Vec<T>, LogError>;

/// Starts a scan of every row of `T`'s table with a key above `after`, in ascending order.
/// The scan stops early when the receiver is dropped.
pub(super) fn scan_after<T>(store: &Store, after: i64) -> mpsc::Receiver<Batch<T>>
where
    T: Scanned
        + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
{
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    match store.sqlite_file() {
        Some(file) => {
            let file = file.to_path_buf();
            tokio::task::spawn_blocking(move || scan_sqlite_file(&file, after, &tx));
        }
        None => {
            let store = store.clone();
            tokio::spawn(async move { scan_pooled(&store, after, &tx).await });
        }
    }
    rx
}

/// The SQLite scan: a read-only rusqlite connection to the database file.
fn scan_sqlite_file<T: Scanned>(file: &std::path::Path, after: i64, tx: &mpsc::Sender<Batch<T>>) {
    if let Err(e) = try_scan_sqlite_file(file, after, tx) {
        // The receiver may be gone; then nobody waits for the error.
        let _ = tx.blocking_send(Err(e));
    }
}

fn try_scan_sqlite_file<T: Scanned>(
    file: &std::path::Path,
    after: i64,
    tx: &mpsc::Sender<Batch<T>>,
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
    let mut stmt = conn.prepare(&T::sql()).map_err(db_err)?;
    let mut rows = stmt.query([after]).map_err(db_err)?;
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(r) = rows.next().map_err(db_err)? {
        match T::from_sqlite(r) {
            Ok(row) => batch.push(row),
            Err(e) => {
                // A value of a type no row of the log can have: the row is unreadable
                // (altered). The rows before it are checked first.
                let key = r.get::<_, i64>(0).ok().and_then(|s| u64::try_from(s).ok());
                if !batch.is_empty() && tx.blocking_send(Ok(batch)).is_err() {
                    return Ok(());
                }
                return Err(LogError::Corrupt {
                    seq: key.unwrap_or(0),
                    why: format!("a column holds a value of the wrong type ({e})"),
                });
            }
        }
        if batch.len() == BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            if tx.blocking_send(Ok(full)).is_err() {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(Ok(batch));
    }
    Ok(())
}

/// The pooled scan (PostgreSQL, or SQLite without a file): one streamed ordered query.
async fn scan_pooled<T>(store: &Store, after: i64, tx: &mpsc::Sender<Batch<T>>)
where
    T: Scanned
        + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
{
    if let Err(e) = try_scan_pooled(store, after, tx).await {
        let _ = tx.send(Err(e)).await;
    }
}

async fn try_scan_pooled<T>(
    store: &Store,
    after: i64,
    tx: &mpsc::Sender<Batch<T>>,
) -> Result<(), LogError>
where
    T: Scanned
        + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
{
    let sql = T::sql();
    let mut pooled = store.acquire().await?;
    macro_rules! stream_into {
        ($c:expr) => {{
            let mut rows = sqlx::query_as::<_, T>(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(after)
                .fetch($c);
            let mut batch = Vec::with_capacity(BATCH);
            while let Some(row) = rows.try_next().await? {
                batch.push(row);
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    if tx.send(Ok(full)).await.is_err() {
                        return Ok(());
                    }
                }
            }
            if !batch.is_empty() {
                let _ = tx.send(Ok(batch)).await;
            }
        }};
    }
    match &mut pooled {
        PooledConn::Sqlite(c) => stream_into!(&mut **c),
        PooledConn::Postgres(c) => stream_into!(&mut **c),
    }
    Ok(())
}
