//! A throwaway PostgreSQL cluster for the test binary.
//!
//! Started once per test process on a free loopback port with its socket in a temporary
//! directory. A reaper process stops the cluster and removes its directory when the test
//! process exits, however it exits. Each test gets its own database. Root cannot run initdb,
//! so as root the server runs as the `postgres` user.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

#[path = "../../common/pg_server.rs"]
mod pg_server;

pub struct PgCluster {
    port: u16,
}

static CLUSTER: OnceLock<Result<PgCluster, String>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

impl PgCluster {
    fn start() -> Result<Self, String> {
        let bin = pg_server::bin_dir()?;
        let root = pg_server::is_root();
        let dir = pg_server::server_dir("gateway-pg-", root)?;
        let data = dir.join("data");
        pg_server::initdb(&bin, &data, root)?;
        let port = pg_server::free_port();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            dir.display()
        );
        let log = dir.join("log").to_string_lossy().to_string();
        pg_server::must(
            &bin.join("pg_ctl"),
            &[
                "-D",
                &data.to_string_lossy(),
                "-l",
                &log,
                "-w",
                "-o",
                &opts,
                "start",
            ],
            root,
        )?;
        pg_server::spawn_reaper(&bin, &data, &dir, root)?;
        Ok(Self { port })
    }

    /// The shared cluster; panics with what to install if PostgreSQL is missing.
    pub fn get() -> &'static PgCluster {
        match CLUSTER.get_or_init(Self::start) {
            Ok(c) => c,
            Err(e) => panic!("cannot start a throwaway PostgreSQL cluster: {e}"),
        }
    }

    /// Creates a fresh database and returns its URL.
    pub async fn fresh_database(&self) -> String {
        use sqlx::Connection;
        let n = NEXT_DB.fetch_add(1, Ordering::SeqCst);
        let name = format!("gw_{}_{n}", std::process::id());
        let admin = format!("postgres://postgres@127.0.0.1:{}/postgres", self.port);
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("connect to the test cluster");
        // `name` is built from a process id and a counter only.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}
