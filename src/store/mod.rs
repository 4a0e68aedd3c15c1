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
use sqlx::{AnyPool, Executor};

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
    /// Preparing the database directory failed.
    #[error("cannot create the database directory `{0}`: {1}")]
    Directory(String, std::io::Error),
}

/// The gateway's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

static MIGRATE_SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static MIGRATE_POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Opens (and for SQLite, creates) the database and applies pending migrations.
    pub async fn open(settings: &StorageSettings) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(path) = settings.url.strip_prefix("sqlite://") {
            if let Some(parent) = std::path::Path::new(path).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent)
                    .map_err(|e| StoreError::Directory(parent.display().to_string(), e))?;
            }
            let sep = if settings.url.contains('?') { '&' } else { '?' };
            (Backend::Sqlite, format!("{}{sep}mode=rwc", settings.url))
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
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => settings.max_connections.max(2),
                Backend::Postgres => settings.max_connections,
            })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(StoreError::Connect)?;
        let store = Self { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => MIGRATE_SQLITE.run(&self.pool).await?,
            Backend::Postgres => MIGRATE_POSTGRES.run(&self.pool).await?,
        }
        Ok(())
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
