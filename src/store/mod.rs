//! Storage: one sqlx `Any` pool over SQLite (embedded default) or PostgreSQL (production).
//!
//! The same repository code and the same tests run on both backends. Queries use `$N`
//! placeholders, which both drivers accept, and only portable column types (BIGINT for times in
//! microseconds, TEXT, BLOB/BYTEA through `Vec<u8>`). Each backend has its own forward-only
//! migration directory under `migrations/` because DDL differs (auto-increment, byte columns).
//!
//! SQLite runs in WAL mode with `synchronous = FULL`: a committed transaction survives a crash,
//! which the disclosure log's "no answer without a durable entry" rule depends on.

pub mod data_keys;
pub mod records;
mod security_events;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{AnyPool, ConnectOptions as _, Executor};

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
}

/// The gateway's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite only: how to open a dedicated connection ([`Store::sqlite_connection`]).
    sqlite: Option<SqliteConnectOptions>,
    read_only: bool,
}

static MIGRATE_SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static MIGRATE_POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The pragmas every read-write SQLite connection runs first.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;";

/// The pragmas every read-only SQLite connection runs first.
const SQLITE_READ_ONLY_PRAGMAS: &str = "PRAGMA query_only = ON; PRAGMA busy_timeout = 10000;";

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
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(path) = settings.url.strip_prefix("sqlite://") {
            if !read_only
                && let Some(parent) = std::path::Path::new(path).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent)
                    .map_err(|e| StoreError::Directory(parent.display().to_string(), e))?;
            }
            let sep = if settings.url.contains('?') { '&' } else { '?' };
            let mode = if read_only { "ro" } else { "rwc" };
            (Backend::Sqlite, format!("{}{sep}mode={mode}", settings.url))
        } else if settings.url.starts_with("postgres://")
            || settings.url.starts_with("postgresql://")
        {
            let mut url = settings.url.clone();
            if let Some(pw_file) = &settings.password_file {
                let pw = std::fs::read_to_string(pw_file).map_err(StoreError::PasswordFile)?;
                url = with_password(&url, pw.trim());
            }
            (Backend::Postgres, url)
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(&settings.url)));
        };
        let options = AnyConnectOptions::from_str(&url).map_err(StoreError::Connect)?;
        let sqlite = match backend {
            Backend::Sqlite if !read_only => Some(
                SqliteConnectOptions::from_str(&url)
                    .map_err(StoreError::Connect)?
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10)),
            ),
            _ => None,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => settings.max_connections.max(2),
                Backend::Postgres => settings.max_connections,
            })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    match (backend, read_only) {
                        (Backend::Sqlite, false) => {
                            conn.execute(SQLITE_PRAGMAS).await?;
                        }
                        (Backend::Sqlite, true) => {
                            conn.execute(SQLITE_READ_ONLY_PRAGMAS).await?;
                        }
                        (Backend::Postgres, true) => {
                            conn.execute("SET SESSION default_transaction_read_only = on")
                                .await?;
                        }
                        (Backend::Postgres, false) => {}
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(StoreError::Connect)?;
        let store = Self {
            pool,
            backend,
            sqlite,
            read_only,
        };
        if read_only {
            store.check_schema().await?;
        } else {
            store.migrate().await?;
        }
        Ok(store)
    }

    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        match self.backend {
            Backend::Sqlite => &MIGRATE_SQLITE,
            Backend::Postgres => &MIGRATE_POSTGRES,
        }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        self.migrator().run(&self.pool).await?;
        Ok(())
    }

    /// Read-only: the applied migrations must be exactly this build's.
    async fn check_schema(&self) -> Result<(), StoreError> {
        let applied: Vec<(i64,)> =
            sqlx::query_as("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
                .fetch_all(&self.pool)
                .await
                .map_err(|_| {
                    StoreError::Schema("the database has not been set up by a gateway".into())
                })?;
        let applied: Vec<i64> = applied.into_iter().map(|r| r.0).collect();
        let known: Vec<i64> = self
            .migrator()
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

    /// Whether the store was opened with [`Store::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// A new SQLite connection outside the pool, with the pool's pragmas and `extra_pragmas`
    /// (e.g. a larger page cache for a long-lived writer). `None` on PostgreSQL and on a
    /// read-only store.
    pub async fn sqlite_connection(
        &self,
        extra_pragmas: &[(&str, String)],
    ) -> Result<Option<SqliteConnection>, StoreError> {
        let Some(options) = &self.sqlite else {
            return Ok(None);
        };
        let mut options = options.clone();
        for (k, v) in extra_pragmas {
            options = options.pragma((*k).to_owned(), v.clone());
        }
        Ok(Some(options.connect().await.map_err(StoreError::Connect)?))
    }

    /// The connection pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A cheap liveness probe.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Reads a metadata value.
    pub async fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT value FROM gateway_meta WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.0))
    }

    /// Writes a metadata value only if the key is absent; returns the value now stored.
    pub async fn meta_init(&self, key: &str, value: &str) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO gateway_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(self.meta_get(key).await?.unwrap_or_default())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn with_password(url: &str, password: &str) -> String {
    // postgres://user@host/db -> postgres://user:password@host/db
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((user, host)) if !user.contains(':') => {
                format!("{scheme}://{user}:{}@{host}", urlencode(password))
            }
            _ => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A URL with any password removed, for messages.
fn redact_url(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://***{}", &url[at..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_inserted_and_encoded() {
        assert_eq!(
            with_password("postgres://gw@db:5432/gw", "p@ss w"),
            "postgres://gw:p%40ss%20w@db:5432/gw"
        );
        assert_eq!(redact_url("mysql://a:b@h/d"), "mysql://***@h/d");
    }
}
