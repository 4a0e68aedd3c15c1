//! A throwaway PostgreSQL cluster for the benchmarks that measure PostgreSQL: initdb into a
//! temporary directory, started with fsync on (as the `postgres` user when run as root, since
//! root cannot run initdb), stopped and removed on drop. `PG_BIN` names the server binaries'
//! directory; the default is the newest under `/usr/lib/postgresql`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

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
        let bin = std::env::var("PG_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                    .expect("PostgreSQL server binaries (apt-get install postgresql) or PG_BIN")
                    .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                    .filter(|d| d.join("initdb").exists())
                    .collect();
                dirs.sort();
                dirs.pop().expect("no initdb under /usr/lib/postgresql")
            });
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let dir = tempfile::Builder::new()
            .prefix("gateway-bench-pg-")
            .tempdir()
            .unwrap()
            .keep();
        if root {
            assert!(
                Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(&dir)
                    .status()
                    .unwrap()
                    .success()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Self {
            bin,
            dir,
            port,
            root,
        };
        let data = c.dir.join("data").to_string_lossy().to_string();
        c.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on \
             -c max_connections=100",
            c.dir.display()
        );
        let log = c.dir.join("log").to_string_lossy().to_string();
        c.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-w", "-o", &opts, "start"],
        );
        c
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let mut cmd = if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(tool));
            c
        } else {
            Command::new(self.bin.join(tool))
        };
        let out = cmd.args(args).stdin(Stdio::null()).output().unwrap();
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
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
        let mut cmd = if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"));
            c
        } else {
            Command::new(self.bin.join("pg_ctl"))
        };
        let _ = cmd
            .args(["-D", &data, "-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
