//! A PostgreSQL cluster owned by one test: started on a free loopback port with its socket and
//! data in a temporary directory, stopped and started again at the test's will (`pg_ctl stop
//! -m immediate` is a server crash: no shutdown checkpoint, WAL replay on the next start), and
//! removed when dropped. A reaper process also removes it if the test process dies first. As
//! root the server runs as the `postgres` user (root cannot run initdb).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    data: PathBuf,
    port: u16,
    opts: String,
    as_postgres: bool,
}

fn pg_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return PathBuf::from(dir);
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
        return dir;
    }
    let out = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .expect("run sh");
    let found = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    match found.parent() {
        Some(dir) if out.status.success() => dir.to_owned(),
        _ => panic!(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found: install them \
             (Debian/Ubuntu: `apt-get install postgresql`) or set PG_BIN to their directory"
        ),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Cluster {
    /// Initializes and starts a cluster. `fsync` as in production (`on`) or off for speed;
    /// commits are synchronous either way (`synchronous_commit = on`, the default).
    pub fn start(fsync: bool) -> Self {
        let bin = pg_bin();
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("gateway-faults-pg-")
            .tempdir()
            .expect("tempdir")
            .keep();
        let port = free_port();
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
        if as_postgres {
            c.run(
                Path::new("chown"),
                &["postgres:postgres", &c.dir_s()],
                false,
            );
        }
        let initdb = c.bin.join("initdb");
        c.run(
            &initdb,
            &[
                "-D",
                &c.data_s(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            as_postgres,
        );
        c.pg_start();
        // If this process dies without dropping the cluster, the reaper stops and removes it.
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            stop = c.shell_stop(),
            dir = c.dir.display()
        );
        // The reaper must outlive this process, so it is never waited for.
        #[allow(clippy::zombie_processes)]
        let _reaper = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the cluster reaper");
        c
    }

    fn dir_s(&self) -> String {
        self.dir.display().to_string()
    }

    fn data_s(&self) -> String {
        self.data.display().to_string()
    }

    fn shell_stop(&self) -> String {
        let pg_ctl = format!(
            "{}/pg_ctl -D {} -m immediate -w stop",
            self.bin.display(),
            self.data_s()
        );
        if self.as_postgres {
            format!("runuser -u postgres -- {pg_ctl}")
        } else {
            pg_ctl
        }
    }

    fn run(&self, bin: &Path, args: &[&str], as_postgres: bool) {
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
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        assert!(
            out.status.success(),
            "{} {args:?} failed: {}{}",
            bin.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl(&self, args: &[&str]) {
        self.run(&self.bin.join("pg_ctl"), args, self.as_postgres);
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
            .args(["-c", &format!("{} >/dev/null 2>&1", self.shell_stop())])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
