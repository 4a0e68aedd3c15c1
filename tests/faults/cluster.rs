//! A PostgreSQL cluster owned by one test: started on a free loopback port with its socket and
//! data in a temporary directory, stopped and started again at the test's will (`pg_ctl stop
//! -m immediate` is a server crash: no shutdown checkpoint, WAL replay on the next start), and
//! removed when dropped. A reaper process also removes it if the test process dies first. As
//! root the server runs as the `postgres` user (root cannot run initdb).

use std::path::PathBuf;
use std::process::Command;

#[path = "../common/pg_server.rs"]
mod pg_server;

pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    data: PathBuf,
    port: u16,
    opts: String,
    as_postgres: bool,
}

impl Cluster {
    /// Initializes and starts a cluster. `fsync` as in production (`on`) or off for speed;
    /// commits are synchronous either way (`synchronous_commit = on`, the default).
    pub fn start(fsync: bool) -> Self {
        let bin = pg_server::bin_dir().unwrap_or_else(|e| panic!("{e}"));
        let as_postgres = pg_server::is_root();
        let dir = pg_server::server_dir("gateway-faults-pg-", as_postgres)
            .unwrap_or_else(|e| panic!("{e}"));
        let port = pg_server::free_port();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync={} -c max_connections=100",
            dir.display(),
            if fsync { "on" } else { "off" }
        );
        let c = Self {
            data: dir.join("data"),
            port,
            opts,
            dir,
            bin,
            as_postgres,
        };
        pg_server::initdb(&c.bin, &c.data, as_postgres).unwrap_or_else(|e| panic!("{e}"));
        c.pg_start();
        // If this process dies without dropping the cluster, the reaper stops and removes it.
        pg_server::spawn_reaper(&c.bin, &c.data, &c.dir, as_postgres)
            .unwrap_or_else(|e| panic!("{e}"));
        c
    }

    fn data_s(&self) -> String {
        self.data.display().to_string()
    }

    fn pg_ctl(&self, args: &[&str]) {
        pg_server::must(&self.bin.join("pg_ctl"), args, self.as_postgres)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts the server and waits until it accepts connections (after any crash recovery).
    pub fn pg_start(&self) {
        let log = self.dir.join("log").display().to_string();
        self.pg_ctl(&[
            "-D",
            &self.data_s(),
            "-l",
            &log,
            "-w",
            "-o",
            &self.opts,
            "start",
        ]);
    }

    /// Stops the server the hard way: every server process quits at once, without a shutdown
    /// checkpoint, as in a crash. Returns when the server is gone.
    pub fn crash(&self) {
        self.pg_ctl(&["-D", &self.data_s(), "-m", "immediate", "-w", "stop"]);
    }

    /// A URL for database `name` (created by [`Cluster::create_database`]).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates a database.
    pub async fn create_database(&self, name: &str) -> String {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .expect("connect to the test cluster");
        // `name` is a constant of the tests.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create the database");
        self.url(name)
    }

    /// A setting as the server reports it (`SHOW`).
    pub async fn show(&self, setting: &str) -> String {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .expect("connect to the test cluster");
        let row: (String,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("SHOW {setting}")))
            .fetch_one(&mut conn)
            .await
            .expect("SHOW");
        row.0
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "{} >/dev/null 2>&1",
                    pg_server::shell_stop(&self.bin, &self.data, self.as_postgres)
                ),
            ])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
