//! A throwaway PostgreSQL cluster for the test binary.
//!
//! Started once per test process on a free loopback port with its socket in a temporary
//! directory. A reaper process stops the cluster and removes its directory when the test
//! process exits, however it exits. Each test gets its own database. Root cannot run initdb,
//! so as root the server runs as the `postgres` user.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct PgCluster {
    port: u16,
}

static CLUSTER: OnceLock<Result<PgCluster, String>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

fn pg_bin() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    candidates.sort();
    if let Some(dir) = candidates
        .into_iter()
        .rev()
        .find(|d| d.join("initdb").exists())
    {
        return Ok(dir);
    }
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        && out.status.success()
    {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if let Some(dir) = p.parent() {
            return Ok(dir.to_owned());
        }
    }
    Err(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found: install them \
         (Debian/Ubuntu: `apt-get install postgresql`) or set PG_BIN to their directory"
            .to_owned(),
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL binary, as `postgres` when we are root.
fn run(bin: &Path, args: &[&str], as_postgres: bool) -> Result<(), String> {
    let mut cmd = if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}{}",
            bin.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(54329)
}

impl PgCluster {
    fn start() -> Result<Self, String> {
        let bin = pg_bin()?;
        let root = is_root();
        let dir = tempfile::Builder::new()
            .prefix("gateway-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        if root {
            run(
                Path::new("chown"),
                &["postgres:postgres", &dir.to_string_lossy()],
                false,
            )
            .map_err(|e| format!("{e} (is the `postgres` user missing? install postgresql)"))?;
        }
        let data = dir.join("data");
        let data_s = data.to_string_lossy().to_string();
        run(
            &bin.join("initdb"),
            &[
                "-D",
                &data_s,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            root,
        )?;
        let port = free_port();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            dir.display()
        );
        let log = dir.join("log").to_string_lossy().to_string();
        run(
            &bin.join("pg_ctl"),
            &["-D", &data_s, "-l", &log, "-w", "-o", &opts, "start"],
            root,
        )?;
        // The reaper outlives this process by at most a second and cleans up after it.
        let stop = if root {
            format!(
                "runuser -u postgres -- {}/pg_ctl -D {data_s} -m immediate -w stop",
                bin.display()
            )
        } else {
            format!("{}/pg_ctl -D {data_s} -m immediate -w stop", bin.display())
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            dir = dir.display()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the cluster reaper: {e}"))?;
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
