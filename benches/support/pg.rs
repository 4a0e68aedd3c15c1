//! A throwaway PostgreSQL cluster for the benchmarks that measure PostgreSQL: initdb into a
//! temporary directory, started with fsync on (as the `postgres` user when run as root, since
//! root cannot run initdb), stopped and removed on drop. `PG_BIN` names the server binaries'
//! directory; the default is the newest under `/usr/lib/postgresql`.

use std::path::PathBuf;

#[path = "../../tests/common/pg_server.rs"]
mod pg_server;

use sqlx::Connection as _;

/// A throwaway cluster: initdb, start with fsync on; stopped and removed on drop.
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    root: bool,
}

impl Cluster {
    pub fn start() -> Self {
        let bin = pg_server::bin_dir().expect("PostgreSQL server binaries");
        let root = pg_server::is_root();
        let dir = pg_server::server_dir("gateway-bench-pg-", root).expect("cluster directory");
        let port = pg_server::free_port();
        let c = Self {
            bin,
            dir,
            port,
            root,
        };
        let data = c.dir.join("data");
        pg_server::initdb(&c.bin, &data, root).expect("initdb");
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on \
             -c max_connections=100",
            c.dir.display()
        );
        let log = c.dir.join("log").to_string_lossy().to_string();
        let data = data.to_string_lossy().to_string();
        pg_server::must(
            &c.bin.join("pg_ctl"),
            &["-D", &data, "-l", &log, "-w", "-o", &opts, "start"],
            root,
        )
        .expect("pg_ctl start");
        c
    }

    /// A new empty database on the cluster; its URL.
    pub async fn fresh_database(&self, name: &str) -> String {
        let admin = format!("postgres://postgres@127.0.0.1:{}/postgres", self.port);
        let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut c)
            .await
            .unwrap();
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.join("data").to_string_lossy().to_string();
        let _ = pg_server::run(
            &self.bin.join("pg_ctl"),
            &["-D", &data, "-m", "fast", "-w", "stop"],
            self.root,
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
