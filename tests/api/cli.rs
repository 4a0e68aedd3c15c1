//! The command line against a freshly generated dev directory (`init`): the read-only
//! commands (`audit verify`, `audit checkpoints`, `keys status`) create, migrate and change
//! nothing, on both backends.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use chrono::Utc;
use coresponse_gateway::audit::{self, EntryKind, Outcome};
use coresponse_gateway::config::Settings;
use coresponse_gateway::crypto::Keyring;
use coresponse_gateway::store::Store;

use crate::support::pg::PgCluster;
use crate::support::{Db, repo_root};

const BIN: &str = env!("CARGO_BIN_EXE_coresponse-gateway");

/// A dev directory written by `init`, with its own database.
struct Dev {
    dir: tempfile::TempDir,
    url: String,
}

impl Dev {
    async fn new(db: Db) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let policies = repo_root().join("policies");
        let out = Command::new(BIN)
            .args(["init", "--listen", "127.0.0.1:0", "--dir"])
            .arg(dir.path())
            .arg("--policies")
            .arg(&policies)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let url = match db {
            Db::Sqlite => format!("sqlite://{}", dir.path().join("gateway.db").display()),
            Db::Postgres => PgCluster::get().fresh_database().await,
        };
        Self { dir, url }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("gateway.toml")
    }

    fn settings(&self) -> Settings {
        let mut s = Settings::load(&self.config()).unwrap();
        s.storage.url = self.url.clone();
        s
    }

    /// Runs the gateway binary with `args` and this directory's config and database.
    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(self.config())
            .env("GATEWAY__STORAGE__URL", &self.url)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    async fn store(&self) -> Store {
        Store::open(&self.settings().storage).await.unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The dev directory's SQLite database file and its schema.
async fn sqlite_schema(path: &Path) -> Vec<(String, String)> {
    let store = Store::open_read_only(&coresponse_gateway::config::StorageSettings {
        url: format!("sqlite://{}", path.display()),
        password_file: None,
        max_connections: 2,
    })
    .await
    .unwrap();
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT name, COALESCE(sql, '') FROM sqlite_master ORDER BY type, name")
            .fetch_all(store.pool())
            .await
            .unwrap();
    store.close().await;
    rows
}

#[tokio::test]
async fn read_only_commands_leave_the_database_as_it_was() {
    let dev = Dev::new(Db::Sqlite).await;
    let db_file = dev.dir.path().join("gateway.db");

    // Nothing there yet: verification refuses rather than creating a database.
    let out = dev.run(&["audit", "verify"]);
    assert!(!out.status.success());
    assert!(!db_file.exists(), "audit verify created the database");

    {
        let s = dev.settings();
        let store = Store::open(&s.storage).await.unwrap();
        let keyring = Keyring::open(&s.crypto.master_key_file, &store)
            .await
            .unwrap();
        let log = coresponse_gateway::startup::open_log(&s, store.clone(), &keyring).unwrap();
        for i in 0..5 {
            let mut e = audit::NewEntry::new(EntryKind::LogRead, Utc::now(), Outcome::Permit);
            e.detail = Some(format!("read {i}"));
            log.append(e).await.unwrap();
        }
        log.checkpoint_now().await.unwrap();
        // Fold the write-ahead log into the database file, so that its bytes are final.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(store.pool())
            .await
            .unwrap();
        store.close().await;
    }
    let bytes_before = std::fs::read(&db_file).unwrap();
    let schema_before = sqlite_schema(&db_file).await;
    assert_eq!(std::fs::read(&db_file).unwrap(), bytes_before);

    let out = ok(&dev.run(&["audit", "verify"]));
    assert!(out.starts_with("ok: 5 entries verified"), "{out}");
    ok(&dev.run(&["audit", "checkpoints"]));
    let status = ok(&dev.run(&["keys", "status"]));
    assert!(status.contains("master key v1 (current)"), "{status}");

    assert_eq!(sqlite_schema(&db_file).await, schema_before);
    assert!(
        std::fs::read(&db_file).unwrap() == bytes_before,
        "a read-only command changed the database file"
    );
    let wal = db_file.with_extension("db-wal");
    assert!(
        std::fs::metadata(&wal).map_or(0, |m| m.len()) == 0,
        "a read-only command wrote to the write-ahead log"
    );
}

#[tokio::test]
async fn read_only_verification_refuses_an_older_schema_and_changes_nothing() {
    for db in [Db::Sqlite, Db::Postgres] {
        let dev = Dev::new(db).await;
        let store = dev.store().await;
        // As if the database predated the newest migration.
        let newest: (i64,) = sqlx::query_as("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(store.pool())
            .await
            .unwrap();
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
            .bind(newest.0)
            .execute(store.pool())
            .await
            .unwrap();
        let count = || async {
            let n: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM _sqlx_migrations")
                .fetch_one(store.pool())
                .await
                .unwrap();
            n.0
        };
        let before = count().await;
        let out = dev.run(&["audit", "verify"]);
        assert!(!out.status.success(), "{db:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("lacks migration {}", newest.0)),
            "{err}"
        );
        assert_eq!(count().await, before, "{db:?}: audit verify migrated");
        store.close().await;
    }
}

#[tokio::test]
async fn read_only_store_refuses_writes_on_both_backends() {
    for db in [Db::Sqlite, Db::Postgres] {
        let dev = Dev::new(db).await;
        dev.store().await.close().await;
        let ro = Store::open_read_only(&dev.settings().storage)
            .await
            .unwrap();
        assert!(ro.is_read_only());
        let res = sqlx::query("INSERT INTO gateway_meta (key, value) VALUES ('x', 'y')")
            .execute(ro.pool())
            .await;
        assert!(res.is_err(), "{db:?}: a read-only store wrote");
        ro.close().await;
    }
}
