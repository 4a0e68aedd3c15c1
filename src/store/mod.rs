//! Storage: native SQLite (embedded default) and native PostgreSQL (production), one repository
//! per aggregate.
//!
//! The backend is chosen once, when the store is opened from `storage.url`. There is no generic
//! driver in between: every statement runs on the backend's own connection type with its native
//! column types (BLOB/BYTEA for hashes, keys and ciphertext; 64-bit integers for times in
//! microseconds), and every statement is prepared once per connection and reused (sqlx's
//! per-connection statement cache).
//!
//! Each repository (`records`, `consents`, `directives` (restrictions and court orders),
//! `data_keys`, `reviews`, `suspensions`, `security_events`, `epochs`, `meta`,
//! `policy_changes`; the disclosure log keeps its own in `audit`) is a set of
//! functions over a [`Conn`]: a borrowed native connection of either backend. Each function
//! body is written once and compiled for both backends by [`on_conn!`], so the two
//! implementations cannot drift apart; where the SQL itself must differ, the function says so.
//! The repositories move rows, never meaning: sealing, opening and checking stored data is the
//! job of the layers above, which own their transactions ([`Store::begin`]). `privacy_ledger`
//! keeps what public reports spent of their differential-privacy budgets.
//!
//! SQLite runs in WAL mode with `synchronous = FULL`: a committed transaction survives a crash,
//! which the disclosure log's "no answer without a durable entry" rule depends on. Write
//! transactions start with `BEGIN IMMEDIATE`, so a transaction that reads before it writes never
//! fails to upgrade its lock. PostgreSQL commits synchronously (the server's default).
//!
//! Failing closed quickly: a request waits at most `storage.acquire_timeout_ms` (default 1 s) for
//! a connection, and a PostgreSQL connection attempt is bounded by the same time, so an
//! unreachable database turns into a 503 within about a second instead of hanging.

pub mod consents;
pub mod data_keys;
pub mod directives;
pub mod epochs;
pub mod meta;
pub mod pgcopy;
pub mod policy_changes;
pub mod privacy_ledger;
pub mod records;
pub mod reviews;
pub mod security_events;
pub mod suspensions;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, Postgres};
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions as _, Connection as _, Transaction};

pub use security_events::StoredSecurityEvent;

use crate::config::StorageSettings;

/// Which database the store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no supported database.
    #[error("unsupported storage url `{0}`: use `sqlite://PATH` or `postgres://...`")]
    UnsupportedUrl(String),
    /// Connecting failed.
    #[error("cannot open the database: {0}")]
    Connect(#[source] sqlx::Error),
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
    /// The password file could not be read.
    #[error("cannot read the database password file: {0}")]
    PasswordFile(std::io::Error),
    /// A read-only open found a schema other than this build's.
    #[error("{0}")]
    Schema(String),
    /// Preparing the database directory failed.
    #[error("cannot create the database directory `{0}`: {1}")]
    Directory(String, std::io::Error),
    /// A stored value is out of the range this build can represent.
    #[error("stored value out of range: {0}")]
    Range(&'static str),
}

impl StoreError {
    /// Whether the failure is a unique-key violation, of any key (see
    /// [`StoreError::unique_violation`] for which one).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, Self::Query(sqlx::Error::Database(d)) if d.is_unique_violation())
    }

    /// The unique key the failed statement or commit violated, as the database names it;
    /// `None` for any other failure.
    pub fn unique_violation(&self) -> Option<UniqueViolation> {
        match self {
            Self::Query(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                Some(UniqueViolation::of(d.as_ref()))
            }
            _ => None,
        }
    }

    /// Whether a failed write of one `thing` (a record, a consent, a directive) lost to a
    /// concurrent write of the same thing: the failure violated the primary key of one of
    /// `own_tables`, the key such a write hits. A violation of any other unique key is no
    /// conflict but a failure no client caused: it is logged here with the key's name, the
    /// `thing` and its `kind` (names only, never values), and the caller answers it as any other
    /// store failure (503: nothing changed).
    pub fn is_own_key_conflict(&self, own_tables: &[&str], thing: &str, kind: &str) -> bool {
        let Some(v) = self.unique_violation() else {
            return false;
        };
        if own_tables.iter().any(|t| v.is_primary_key_of(t)) {
            return true;
        }
        // Operators look for this line: a write failed on a key that is not its own.
        tracing::error!(
            key = %v,
            kind,
            "a {thing} write violated a unique key other than the {thing}'s own; the write \
             failed and changed nothing"
        );
        false
    }
}

/// The unique key a statement or commit violated: names only, never the values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueViolation {
    /// The key's table, when the database names it.
    pub table: Option<String>,
    /// The key: PostgreSQL's constraint name (e.g. `records_pkey`); SQLite names no
    /// constraint, only the key's columns (e.g. `records.kind, records.id`).
    pub key: String,
    primary_key: bool,
}

/// SQLite's extended result code for a primary-key violation (`SQLITE_CONSTRAINT_PRIMARYKEY`).
const SQLITE_CONSTRAINT_PRIMARYKEY: &str = "1555";

impl UniqueViolation {
    fn of(d: &dyn sqlx::error::DatabaseError) -> Self {
        if let Some(pg) = d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
            let table = pg.table().map(str::to_owned);
            let key = pg.constraint().unwrap_or("unnamed key").to_owned();
            // A primary key declared without a name is `<table>_pkey`, as every one of ours.
            let primary_key = table
                .as_deref()
                .is_some_and(|t| key.strip_suffix("_pkey").is_some_and(|stem| stem == t));
            return Self {
                table,
                key,
                primary_key,
            };
        }
        // SQLite: "UNIQUE constraint failed: records.kind, records.id" (or "... index 'name'"
        // for a key on expressions).
        let message = d.message();
        let key = message
            .strip_prefix("UNIQUE constraint failed: ")
            .unwrap_or(message)
            .to_owned();
        let tables: BTreeSet<&str> = key
            .split(", ")
            .filter_map(|column| column.split_once('.').map(|(t, _)| t))
            .collect();
        let table = match (tables.len(), tables.first()) {
            (1, Some(t)) => Some((*t).to_owned()),
            _ => None,
        };
        let primary_key = d.code().as_deref() == Some(SQLITE_CONSTRAINT_PRIMARYKEY);
        Self {
            table,
            key,
            primary_key,
        }
    }

    /// Whether the key is the primary key of `table`.
    pub fn is_primary_key_of(&self, table: &str) -> bool {
        self.primary_key && self.table.as_deref() == Some(table)
    }
}

impl std::fmt::Display for UniqueViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.table {
            Some(t) => write!(f, "`{}` of table `{t}`", self.key),
            None => write!(f, "`{}`", self.key),
        }
    }
}

/// A borrowed native connection of either backend: what every repository function works on.
/// Get one from a [`PooledConn`] or a [`Tx`].
#[derive(Debug)]
pub enum Conn<'a> {
    /// SQLite.
    Sqlite(&'a mut SqliteConnection),
    /// PostgreSQL.
    Postgres(&'a mut PgConnection),
}

impl Conn<'_> {
    /// The same connection, borrowed again (to pass it to one repository call after another).
    pub fn reborrow(&mut self) -> Conn<'_> {
        match self {
            Self::Sqlite(c) => Conn::Sqlite(c),
            Self::Postgres(c) => Conn::Postgres(c),
        }
    }

    /// Which backend.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }
}

/// Runs one body on the native connection inside a [`Conn`], compiled once per backend:
/// `on_conn!(conn, |c| sqlx::query("...").execute(c).await)`, where `c` is
/// `&mut SqliteConnection` or `&mut PgConnection`. `conn` is a `&mut Conn<'_>`.
#[macro_export]
#[doc(hidden)]
macro_rules! on_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::store::Conn::Sqlite(inner) => {
                let $c = &mut **inner;
                $body
            }
            $crate::store::Conn::Postgres(inner) => {
                let $c = &mut **inner;
                $body
            }
        }
    };
}
pub use on_conn;

/// A connection taken from the pool for a few reads outside a transaction.
#[derive(Debug)]
pub enum PooledConn {
    /// SQLite.
    Sqlite(PoolConnection<Sqlite>),
    /// PostgreSQL.
    Postgres(PoolConnection<Postgres>),
}

impl PooledConn {
    /// The connection, for repository calls.
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Self::Sqlite(c) => Conn::Sqlite(c),
            Self::Postgres(c) => Conn::Postgres(c),
        }
    }
}

/// A database transaction of either backend. Dropped without [`Tx::commit`], it rolls back.
#[derive(Debug)]
pub enum Tx {
    /// SQLite (`BEGIN IMMEDIATE`: holds the write lock from its first statement).
    Sqlite(Transaction<'static, Sqlite>),
    /// PostgreSQL.
    Postgres(Transaction<'static, Postgres>),
}

impl Tx {
    /// The transaction's connection, for repository calls.
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Self::Sqlite(t) => Conn::Sqlite(t),
            Self::Postgres(t) => Conn::Postgres(t),
        }
    }

    /// Commits durably.
    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(t) => t.commit().await?,
            Self::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Pools {
    Sqlite {
        pool: SqlitePool,
        /// How to open a dedicated connection ([`Store::sqlite_connection`]); `None` when
        /// read-only.
        options: Option<SqliteConnectOptions>,
        /// The database file (`None` in memory), for [`Store::sqlite_file`].
        file: Option<PathBuf>,
    },
    Postgres {
        pool: PgPool,
        options: PgConnectOptions,
    },
}

/// The gateway's database. Cheap to clone (the pools are shared).
#[derive(Debug, Clone)]
pub struct Store {
    pools: Pools,
    read_only: bool,
    acquire_timeout: Duration,
    /// Seconds each request waited for a pooled connection (for the metrics endpoint).
    pool_wait: Option<prometheus::Histogram>,
}

static MIGRATE_SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static MIGRATE_POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How often the background task folds SQLite's WAL back into the database.
const SQLITE_CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Folds the WAL back into the database every [`SQLITE_CHECKPOINT_EVERY`] with a passive
/// checkpoint, on a pooled connection, until the pool closes. A passive checkpoint waits for no
/// lock: appends and reads go on while it copies pages and syncs the database file, so the copy
/// is off every request's path. (With SQLite's default, the connection whose commit crossed the
/// WAL threshold did the copy inside that commit.)
fn spawn_sqlite_checkpointer(pool: SqlitePool) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SQLITE_CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if pool.is_closed() {
                break;
            }
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                tracing::warn!(error = %e, "SQLite checkpoint failed; the next one retries");
            }
        }
    });
}

/// How long SQLite waits for a lock held by another connection before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The size SQLite truncates its WAL file to when it starts the file over
/// (`journal_size_limit`). Under a sustained burst of writes the passive checkpoints never
/// catch up with the writer, so the WAL cannot start over and grows (about 6 KiB per log entry,
/// mostly index pages); once the burst ends a checkpoint completes, the next commit starts the
/// WAL over, and the file is cut back to this size instead of keeping its peak on disk.
const SQLITE_WAL_KEEP_BYTES: u64 = 64 << 20;

impl Store {
    /// Opens (and for SQLite, creates) the database and applies pending migrations.
    pub async fn open(settings: &StorageSettings) -> Result<Self, StoreError> {
        Self::connect(settings, false).await
    }

    /// Opens an existing database for reading only, changing nothing: no file or directory
    /// is created, no migration is applied (a schema older or newer than this build is
    /// refused instead), and every connection refuses writes (SQLite: `mode=ro` and
    /// `query_only`; PostgreSQL: `default_transaction_read_only`). For offline inspection
    /// such as `audit verify`.
    pub async fn open_read_only(settings: &StorageSettings) -> Result<Self, StoreError> {
        Self::connect(settings, true).await
    }

    async fn connect(settings: &StorageSettings, read_only: bool) -> Result<Self, StoreError> {
        let acquire_timeout = settings.acquire_timeout();
        let pools = if let Some(path) = settings.url.strip_prefix("sqlite://") {
            let path = path.split_once('?').map_or(path, |(p, _)| p);
            if !read_only
                && let Some(parent) = Path::new(path).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent)
                    .map_err(|e| StoreError::Directory(parent.display().to_string(), e))?;
            }
            let base = SqliteConnectOptions::from_str(&settings.url)
                .map_err(StoreError::Connect)?
                .busy_timeout(SQLITE_BUSY_TIMEOUT);
            let options = if read_only {
                base.read_only(true)
                    .create_if_missing(false)
                    .pragma("query_only", "ON")
            } else {
                base.create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .foreign_keys(true)
                    // No connection folds the WAL back into the database in its commit path
                    // (which made every request waiting on that commit wait for the copy and
                    // its fsync); a background task does it (`spawn_sqlite_checkpointer`).
                    .pragma("wal_autocheckpoint", "0")
                    .pragma("journal_size_limit", SQLITE_WAL_KEEP_BYTES.to_string())
            };
            let pool = SqlitePoolOptions::new()
                .max_connections(settings.max_connections.max(2))
                .acquire_timeout(acquire_timeout)
                // No ping on every acquire: it doubled the round trips of a record read. A
                // broken connection fails its statement instead, which fails the request
                // closed like any database error.
                .test_before_acquire(false)
                .connect_with(options.clone())
                .await
                .map_err(StoreError::Connect)?;
            if !read_only {
                spawn_sqlite_checkpointer(pool.clone());
            }
            let in_memory = path.is_empty()
                || path.starts_with(":memory:")
                || settings.url.contains("mode=memory");
            Pools::Sqlite {
                pool,
                options: (!read_only).then_some(options),
                file: (!in_memory).then(|| PathBuf::from(path)),
            }
        } else if settings.url.starts_with("postgres://")
            || settings.url.starts_with("postgresql://")
        {
            let mut options = PgConnectOptions::from_str(&settings.url)
                .map_err(|_| StoreError::UnsupportedUrl(redact_url(&settings.url)))?;
            if let Some(pw_file) = &settings.password_file {
                let pw = std::fs::read_to_string(pw_file).map_err(StoreError::PasswordFile)?;
                options = options.password(pw.trim());
            }
            if read_only {
                options = options.options([("default_transaction_read_only", "on")]);
            }
            let pool = PgPoolOptions::new()
                .max_connections(settings.max_connections.max(1))
                .acquire_timeout(acquire_timeout)
                .test_before_acquire(false)
                .connect_with(options.clone())
                .await
                .map_err(StoreError::Connect)?;
            Pools::Postgres { pool, options }
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(&settings.url)));
        };
        let store = Self {
            pools,
            read_only,
            acquire_timeout,
            pool_wait: prometheus::Histogram::with_opts(
                prometheus::HistogramOpts::new(
                    "gateway_db_pool_wait_seconds",
                    "time a request waited for a pooled database connection (a wait that timed \
                     out is counted in the last bucket)",
                )
                .buckets(vec![
                    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0,
                ]),
            )
            .ok(),
        };
        if read_only {
            store.check_schema().await?;
        } else {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self.pools {
            Pools::Sqlite { .. } => Backend::Sqlite,
            Pools::Postgres { .. } => Backend::Postgres,
        }
    }

    /// The SQLite database file, for a reader that scans a whole table outside the pool and
    /// its driver (the log verification). `None` on PostgreSQL and for a database in memory.
    pub fn sqlite_file(&self) -> Option<&Path> {
        match &self.pools {
            Pools::Sqlite { file, .. } => file.as_deref(),
            Pools::Postgres { .. } => None,
        }
    }

    /// Whether the store was opened with [`Store::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// How long a caller waits for a connection (`storage.acquire_timeout_ms`).
    pub fn acquire_timeout(&self) -> Duration {
        self.acquire_timeout
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        match &self.pools {
            Pools::Sqlite { pool, .. } => MIGRATE_SQLITE.run(pool).await?,
            Pools::Postgres { pool, .. } => MIGRATE_POSTGRES.run(pool).await?,
        }
        Ok(())
    }

    /// Read-only: the applied migrations must be exactly this build's.
    async fn check_schema(&self) -> Result<(), StoreError> {
        const SQL: &str = "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version";
        let not_set_up =
            |_| StoreError::Schema("the database has not been set up by a gateway".into());
        let (applied, migrator): (Vec<(i64,)>, &sqlx::migrate::Migrator) = match &self.pools {
            Pools::Sqlite { pool, .. } => (
                sqlx::query_as(SQL)
                    .fetch_all(pool)
                    .await
                    .map_err(not_set_up)?,
                &MIGRATE_SQLITE,
            ),
            Pools::Postgres { pool, .. } => (
                sqlx::query_as(SQL)
                    .fetch_all(pool)
                    .await
                    .map_err(not_set_up)?,
                &MIGRATE_POSTGRES,
            ),
        };
        let applied: Vec<i64> = applied.into_iter().map(|r| r.0).collect();
        let known: Vec<i64> = migrator
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| m.version)
            .collect();
        if let Some(v) = applied.iter().find(|v| !known.contains(v)) {
            return Err(StoreError::Schema(format!(
                "the database has migration {v}, which this build does not know: use a newer \
                 build"
            )));
        }
        if let Some(v) = known.iter().find(|v| !applied.contains(v)) {
            return Err(StoreError::Schema(format!(
                "the database lacks migration {v}: start a gateway of this build on it once \
                 (it migrates on start), then retry"
            )));
        }
        Ok(())
    }

    /// A connection from the pool, waiting at most the acquire timeout.
    pub async fn acquire(&self) -> Result<PooledConn, StoreError> {
        let started = std::time::Instant::now();
        let conn = match &self.pools {
            Pools::Sqlite { pool, .. } => pool.acquire().await.map(PooledConn::Sqlite),
            Pools::Postgres { pool, .. } => pool.acquire().await.map(PooledConn::Postgres),
        };
        if let Some(h) = &self.pool_wait {
            h.observe(started.elapsed().as_secs_f64());
        }
        Ok(conn?)
    }

    /// The pool-wait histogram (unregistered), for the metrics endpoint.
    pub fn pool_wait_histogram(&self) -> Option<&prometheus::Histogram> {
        self.pool_wait.as_ref()
    }

    /// Begins a write transaction (SQLite: `BEGIN IMMEDIATE`, so the transaction holds the
    /// write lock from its first statement and never fails to upgrade a read lock).
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match &self.pools {
            Pools::Sqlite { pool, .. } => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Pools::Postgres { pool, .. } => Tx::Postgres(pool.begin().await?),
        })
    }

    /// Begins a read transaction: one consistent snapshot for several reads (SQLite: a deferred
    /// transaction in WAL mode; PostgreSQL: `REPEATABLE READ, READ ONLY`).
    pub async fn begin_read(&self) -> Result<Tx, StoreError> {
        Ok(match &self.pools {
            Pools::Sqlite { pool, .. } => Tx::Sqlite(pool.begin().await?),
            Pools::Postgres { pool, .. } => Tx::Postgres(
                pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .await?,
            ),
        })
    }

    /// A new SQLite connection outside the pool, with the pool's settings and `extra_pragmas`
    /// (e.g. a longer WAL for a long-lived writer). `None` on PostgreSQL and on a read-only
    /// store.
    pub async fn sqlite_connection(
        &self,
        extra_pragmas: &[(&str, String)],
    ) -> Result<Option<SqliteConnection>, StoreError> {
        let Pools::Sqlite {
            options: Some(options),
            ..
        } = &self.pools
        else {
            return Ok(None);
        };
        let mut options = options.clone();
        for (k, v) in extra_pragmas {
            options = options.pragma((*k).to_owned(), v.clone());
        }
        Ok(Some(options.connect().await.map_err(StoreError::Connect)?))
    }

    /// A new PostgreSQL connection outside the pool (for a long-lived writer). `None` on
    /// SQLite. The connection attempt is bounded by the acquire timeout.
    pub async fn postgres_connection(&self) -> Result<Option<PgConnection>, StoreError> {
        let Pools::Postgres { options, .. } = &self.pools else {
            return Ok(None);
        };
        let connect = PgConnection::connect_with(options);
        match tokio::time::timeout(self.acquire_timeout, connect).await {
            Ok(Ok(c)) => Ok(Some(c)),
            Ok(Err(e)) => Err(StoreError::Connect(e)),
            Err(_) => Err(StoreError::Connect(sqlx::Error::PoolTimedOut)),
        }
    }

    /// A cheap liveness probe (one round trip).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.acquire().await?;
        on_conn!(&mut c.conn(), |c| c.ping().await)?;
        Ok(())
    }

    /// Closes the pools.
    pub async fn close(&self) {
        match &self.pools {
            Pools::Sqlite { pool, .. } => pool.close().await,
            Pools::Postgres { pool, .. } => pool.close().await,
        }
    }
}

/// Converts a count or sequence number to the database's `i64`.
pub(crate) fn to_i64(v: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Range(what))
}

/// A URL with any password removed, for messages.
fn redact_url(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://***{}", url.get(at..).unwrap_or("")),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_messages_hide_the_password() {
        assert_eq!(redact_url("mysql://a:b@h/d"), "mysql://***@h/d");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }

    /// A WAL that grew past [`SQLITE_WAL_KEEP_BYTES`] is cut back once a checkpoint has
    /// caught up and the next commit starts it over, on pooled and dedicated connections.
    #[tokio::test]
    async fn a_grown_wal_is_cut_back_once_checkpointed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("g.db");
        let store = Store::open(&StorageSettings::new(format!(
            "sqlite://{}",
            file.display()
        )))
        .await
        .unwrap();
        let wal = dir.path().join("g.db-wal");
        let wal_size = || std::fs::metadata(&wal).map_or(0, |m| m.len());
        let Pools::Sqlite { pool, .. } = &store.pools else {
            panic!("a SQLite store")
        };
        let mut own = store.sqlite_connection(&[]).await.unwrap().unwrap();
        sqlx::query("CREATE TABLE scratch (b BLOB)")
            .execute(&mut own)
            .await
            .unwrap();
        // One commit of 80 MiB: the WAL grows past the limit.
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 80) \
             INSERT INTO scratch SELECT randomblob(1048576) FROM n",
        )
        .execute(&mut own)
        .await
        .unwrap();
        let grown = wal_size();
        assert!(grown > SQLITE_WAL_KEEP_BYTES, "the WAL is {grown} bytes");
        // The background checkpointer catches up (nothing else writes); then a commit on a
        // pooled connection, and one on the dedicated connection, start the WAL over.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            tokio::time::sleep(SQLITE_CHECKPOINT_EVERY * 2).await;
            sqlx::query("DELETE FROM scratch WHERE rowid = 1")
                .execute(pool)
                .await
                .unwrap();
            sqlx::query("DELETE FROM scratch WHERE rowid = 2")
                .execute(&mut own)
                .await
                .unwrap();
            if wal_size() <= SQLITE_WAL_KEEP_BYTES {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the WAL stayed at {} bytes (it grew to {grown})",
                wal_size()
            );
        }
    }
}
