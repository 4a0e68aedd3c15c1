//! What the scale-out tests run: PostgreSQL clusters of their own (fsync on), the real gateway
//! binary as separate processes on one configuration, HAProxy, clients with real certificates
//! and tokens, and direct reads of the database to check what was acknowledged.
//!
//! Everything started here is stopped, and every directory removed, when its handle drops;
//! a reaper process also stops each PostgreSQL cluster if the test process dies.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coresponse_gateway::devinit::{self, TokenRequest};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use sqlx::Connection as _;

/// The gateway binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_coresponse-gateway");

/// The scale-out tests run one at a time: each starts several processes on the machine's
/// cores, and the fault tests reason about timing.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

#[path = "../common/bodies.rs"]
mod bodies;
#[path = "../common/pg_server.rs"]
mod pg_server;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub use pg_server::free_port;

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ------------------------------------------------------------------------------------------
// PostgreSQL
// ------------------------------------------------------------------------------------------

pub fn pg_bin() -> PathBuf {
    pg_server::bin_dir().unwrap_or_else(|e| {
        panic!("{e}; the scale-out tests also need pg_dump and pg_basebackup from them")
    })
}

/// A PostgreSQL cluster of the test's own, on a free loopback port.
pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    data: PathBuf,
    pub port: u16,
    root: bool,
    running: bool,
}

impl PgCluster {
    fn new_dir() -> (PathBuf, bool) {
        let root = pg_server::is_root();
        let dir =
            pg_server::server_dir("gateway-scale-pg-", root).unwrap_or_else(|e| panic!("{e}"));
        (dir, root)
    }

    /// Runs a server program (initdb, pg_ctl, pg_basebackup), as `postgres` when root.
    fn server_tool(&self, tool: &str, args: &[&str]) -> Output {
        pg_server::run(&self.bin.join(tool), args, self.root).unwrap_or_else(|e| panic!("{e}"))
    }

    fn must(&self, tool: &str, args: &[&str]) {
        let out = self.server_tool(tool, args);
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}\nserver log:\n{}",
            text(&out.stdout),
            text(&out.stderr),
            self.log_tail()
        );
    }

    /// A new cluster (initdb), started with fsync on and `settings` (`name=value`).
    pub fn start(settings: &[&str]) -> Self {
        let (dir, root) = Self::new_dir();
        let mut c = Self {
            bin: pg_bin(),
            data: dir.join("data"),
            dir,
            port: free_port(),
            root,
            running: false,
        };
        if let Err(e) = pg_server::initdb(&c.bin, &c.data, root) {
            panic!("{e}\nserver log:\n{}", c.log_tail());
        }
        c.reaper();
        c.run(settings);
        c
    }

    /// A streaming standby of `primary` (pg_basebackup), connecting as `application_name`,
    /// started with `settings`.
    pub fn standby_of(primary: &PgCluster, application_name: &str, settings: &[&str]) -> Self {
        let (dir, root) = Self::new_dir();
        let mut c = Self {
            bin: pg_bin(),
            data: dir.join("data"),
            dir,
            port: free_port(),
            root,
            running: false,
        };
        let data = c.data.to_string_lossy().to_string();
        let port = primary.port.to_string();
        c.must(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                &data,
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ],
        );
        // Name the standby, so that the primary's synchronous_standby_names can wait for it.
        let conf = c.data.join("postgresql.auto.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str(&format!(
            "primary_conninfo = 'host=127.0.0.1 port={port} user=postgres \
             application_name={application_name}'\n"
        ));
        std::fs::write(&conf, text).unwrap();
        c.reaper();
        c.run(settings);
        c
    }

    fn run(&mut self, settings: &[&str]) {
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            self.port,
            self.dir.display()
        );
        for s in settings {
            opts.push_str(" -c ");
            opts.push_str(s);
        }
        let data = self.data.to_string_lossy().to_string();
        let log = self.dir.join("log").to_string_lossy().to_string();
        self.must(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-w", "-o", &opts, "start"],
        );
        self.running = true;
    }

    /// Stops the cluster and removes it if the test process dies first.
    fn reaper(&self) {
        pg_server::spawn_reaper(&self.bin, &self.data, &self.dir, self.root)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs a client program (psql, pg_dump, pg_restore, createdb) against this cluster.
    pub fn client(&self, tool: &str, args: &[&str]) -> Output {
        Command::new(self.bin.join(tool))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    pub fn create_db(&self, name: &str) -> String {
        let out = self.client("createdb", &[name]);
        assert!(out.status.success(), "createdb: {}", text(&out.stderr));
        self.url(name)
    }

    /// One SQL statement through psql; its output, unaligned.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self.client(
            "psql",
            &["-d", db, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
        );
        assert!(out.status.success(), "psql `{sql}`: {}", text(&out.stderr));
        text(&out.stdout).trim().to_owned()
    }

    /// Crashes the server: immediate shutdown, as a power loss would (no checkpoint).
    pub fn crash(&mut self) {
        let data = self.data.to_string_lossy().to_string();
        self.must("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        self.running = false;
    }

    /// Promotes a standby to primary and waits until it accepts writes.
    pub fn promote(&self) {
        let data = self.data.to_string_lossy().to_string();
        self.must("pg_ctl", &["-D", &data, "-w", "promote"]);
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let data = self.data.to_string_lossy().to_string();
            let _ = self.server_tool("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A direct connection to a database, for checking what the gateways acknowledged.
pub async fn connect(url: &str) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(url).await.unwrap()
}

// ------------------------------------------------------------------------------------------
// Dev material (`init`), the gateway binary, tokens and clients
// ------------------------------------------------------------------------------------------

/// A directory written by `init`, with a copy of the policy directory of its own (so a test
/// can change the policy set and send SIGHUP).
pub struct Dev {
    pub dir: tempfile::TempDir,
    pub policies: PathBuf,
}

impl Dev {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("policies");
        copy_dir(&repo_root().join("policies"), &policies);
        let material = dir.path().join("gw");
        let out = Command::new(BIN)
            .args(["init", "--listen", "127.0.0.1:0", "--dir"])
            .arg(&material)
            .arg("--policies")
            .arg(&policies)
            .output()
            .unwrap();
        assert!(out.status.success(), "init: {}", text(&out.stderr));
        Self { dir, policies }
    }

    pub fn material(&self) -> PathBuf {
        self.dir.path().join("gw")
    }

    pub fn config(&self) -> PathBuf {
        self.material().join("gateway.toml")
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.material().join(name)
    }

    /// Runs a command of the gateway binary (`audit verify`, ...) on the database at `url`.
    pub fn run(&self, args: &[&str], url: &str) -> Output {
        Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(self.config())
            .env("GATEWAY__STORAGE__URL", url)
            .env("GATEWAY__LOG__FORMAT", "json")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// A caller of `partner` with a token of `roles` bound to the partner's certificate.
    pub fn who(&self, partner: &str, user: &str, roles: &[&str]) -> Who {
        let cert = std::fs::read_to_string(self.file(&format!("{partner}.pem"))).unwrap();
        let key = std::fs::read_to_string(self.file(&format!("{partner}-key.pem"))).unwrap();
        let signing = std::fs::read(
            self.material()
                .join("partner-keys")
                .join(format!("{partner}-signing-key.pem")),
        )
        .unwrap();
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        let token = devinit::mint_token(
            &signing,
            &TokenRequest {
                issuer: &format!("https://idp.{partner}.example"),
                audience: "coresponse-gateway",
                user,
                roles: &roles,
                roles_claim: "roles",
                ttl_secs: 1800,
                bind_to: Some(der.as_ref()),
                kid: Some(&format!("{partner}-dev-1")),
            },
        )
        .unwrap();
        let config = client_config(&self.file("ca.pem"), &cert, &key);
        Who {
            token,
            // A new connection for every request: a request that fails can then only be one
            // that was in flight, never one sent later on a connection that was already dead.
            client: reqwest::Client::builder()
                .tls_backend_preconfigured(config)
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    /// The certificate and key of `partner` in one PEM file (what HAProxy's `crt` reads).
    pub fn combined_pem(&self, partner: &str) -> PathBuf {
        let path = self.material().join(format!("{partner}-combined.pem"));
        let mut pem = std::fs::read_to_string(self.file(&format!("{partner}.pem"))).unwrap();
        pem.push_str(&std::fs::read_to_string(self.file(&format!("{partner}-key.pem"))).unwrap());
        std::fs::write(&path, pem).unwrap();
        path
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn client_config(ca: &Path, cert: &str, key: &str) -> rustls::ClientConfig {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
        )
        .unwrap()
}

/// A caller: a client presenting the partner's certificate, and a user token.
#[derive(Clone)]
pub struct Who {
    pub token: String,
    pub client: reqwest::Client,
}

/// One answer: status, the `Request-Id` and `Disclosure-Id` headers, the body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub request_id: Option<String>,
    pub disclosure_id: Option<u64>,
    pub body: Value,
}

impl Who {
    pub async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        purpose: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Answer, reqwest::Error> {
        let mut req = self.client.request(method, url).bearer_auth(&self.token);
        if let Some(p) = purpose {
            req = req.header("Purpose-Of-Use", p);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await?;
        let header = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let request_id = header("request-id");
        let disclosure_id = header("disclosure-id").and_then(|v| v.parse().ok());
        let status = res.status().as_u16();
        let body = res.json().await.unwrap_or(Value::Null);
        Ok(Answer {
            status,
            request_id,
            disclosure_id,
            body,
        })
    }

    pub async fn get(&self, url: &str, purpose: Option<&str>) -> Result<Answer, reqwest::Error> {
        self.send(reqwest::Method::GET, url, purpose, None).await
    }

    pub async fn put(&self, url: &str, body: &Value) -> Result<Answer, reqwest::Error> {
        self.send(reqwest::Method::PUT, url, None, Some(body)).await
    }

    pub async fn post(&self, url: &str, body: &Value) -> Result<Answer, reqwest::Error> {
        self.send(reqwest::Method::POST, url, None, Some(body))
            .await
    }
}

pub fn base(port: u16) -> String {
    format!("https://localhost:{port}")
}

pub use bodies::{incident, plan_consent as consent, safety_plan};

/// A gateway replica: the real binary, `serve --config`, with its own port.
pub struct Gateway {
    pub name: String,
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Gateway {
    /// Starts `serve` on the dev configuration with the database at `url`; `env` adds
    /// `GATEWAY__...` overrides.
    pub fn spawn(dev: &Dev, name: &str, url: &str, env: &[(&str, &str)]) -> Self {
        Self::spawn_on(dev, name, free_port(), url, env)
    }

    /// As [`Gateway::spawn`], on a given port (to restart a replica where it was).
    pub fn spawn_on(dev: &Dev, name: &str, port: u16, url: &str, env: &[(&str, &str)]) -> Self {
        let log = dev.dir.path().join(format!("{name}-{}.log", free_port()));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--config"])
            .arg(dev.config())
            .env("GATEWAY__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("GATEWAY__STORAGE__URL", url)
            .env("GATEWAY__SERVER__WORKERS", "2")
            .env("GATEWAY__LOG__FILTER", "warn")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        Self {
            name: name.to_owned(),
            port,
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", base(self.port))
    }

    /// Waits (at most a minute) until `/healthz` answers 200.
    pub async fn wait_ready(&mut self, who: &Who) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(a) = who.get(&self.url("/healthz"), None).await
                && a.status == 200
            {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "gateway {} exited ({status}) before it was ready:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "gateway {} not ready within a minute:\n{}",
                self.name,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no shutdown, no flush, as a crash or an OOM kill.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Sends a signal (`HUP`, `TERM`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {}", self.pid());
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ------------------------------------------------------------------------------------------
// What the database holds
// ------------------------------------------------------------------------------------------

/// The log's sequence numbers: (count, distinct count, lowest, highest) and the head's.
pub async fn log_shape(db: &mut sqlx::PgConnection) -> (i64, i64, i64, i64, i64) {
    let (n, distinct, lo, hi): (i64, i64, Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT seq), MIN(seq), MAX(seq) FROM audit_log")
            .fetch_one(&mut *db)
            .await
            .unwrap();
    let (head,): (i64,) = sqlx::query_as("SELECT seq FROM audit_head WHERE id = 1")
        .fetch_one(&mut *db)
        .await
        .unwrap();
    (n, distinct, lo.unwrap_or(0), hi.unwrap_or(0), head)
}

/// The entry `seq`: (kind, record kind, record id, policy hash), if the log holds it.
pub async fn entry(
    db: &mut sqlx::PgConnection,
    seq: u64,
) -> Option<(String, Option<String>, Option<String>, Option<String>)> {
    sqlx::query_as("SELECT kind, record_kind, record_id, policy_hash FROM audit_log WHERE seq = $1")
        .bind(i64::try_from(seq).unwrap())
        .fetch_optional(&mut *db)
        .await
        .unwrap()
}

/// Whether the log holds a `record_changed` entry of the request `request_id`.
pub async fn has_write_entry(db: &mut sqlx::PgConnection, request_id: &str) -> bool {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM audit_log WHERE request_id = $1 AND kind = 'record_changed'",
    )
    .bind(request_id)
    .fetch_one(&mut *db)
    .await
    .unwrap();
    n == 1
}

/// `audit verify` on the database at `url` (optionally against a partner's saved
/// checkpoints): exit code, stdout, stderr.
pub fn audit_verify(dev: &Dev, url: &str, checkpoints: Option<&Path>) -> (i32, String, String) {
    let mut args = vec!["audit", "verify"];
    let path;
    if let Some(p) = checkpoints {
        path = p.to_string_lossy().to_string();
        args.extend(["--checkpoints", &path]);
    }
    let out = dev.run(&args, url);
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

// ------------------------------------------------------------------------------------------
// Load: concurrent record writes and disclosure reads, every outcome kept
// ------------------------------------------------------------------------------------------

/// What happened to one request.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A read answered 200: the log entry it names and the record it is about.
    Read { disclosure_id: u64, record: String },
    /// A write answered 200 or 201: its request id, the record and its version.
    Write {
        request_id: String,
        record: String,
        version: u64,
    },
    /// Any other HTTP answer.
    Refused { status: u16, body: Value },
    /// No HTTP answer (the connection failed or was cut).
    Failed { error: String },
}

#[derive(Debug, Clone)]
pub struct Timed {
    pub started: Instant,
    pub ended: Instant,
    pub outcome: Outcome,
}

/// The wall-clock time (UTC, as HAProxy logs it) of an earlier instant, to find a request's
/// line in HAProxy's log.
pub fn wall(at: Instant) -> String {
    let ago = chrono::Duration::from_std(at.elapsed()).unwrap_or_default();
    (chrono::Utc::now() - ago)
        .format("%H:%M:%S%.3f")
        .to_string()
}

/// Runs `writers` tasks writing their own incidents and `readers` tasks reading the seeded
/// incidents (`seeded`), all against `base_url`, until `stop` is set. Returns every outcome.
pub async fn run_load(
    base_url: String,
    officer: Who,
    clinician: Who,
    seeded: Vec<String>,
    writers: usize,
    readers: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<Timed> {
    use std::sync::atomic::Ordering;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (base_url, officer, stop) = (base_url.clone(), officer.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Each writer updates its own few records, so versions grow and never clash.
                let record = format!("INC-W{w}-{}", n % 3);
                let url = format!("{base_url}/v1/records/crisis-incident/{record}");
                let body = incident(&format!("P-W{w}"), &format!("update {n}"));
                let started = Instant::now();
                let outcome = match officer.put(&url, &body).await {
                    Ok(a) if a.status == 200 || a.status == 201 => Outcome::Write {
                        request_id: a.request_id.expect("Request-Id"),
                        record,
                        version: a.body["version"].as_u64().expect("version"),
                    },
                    Ok(a) => Outcome::Refused {
                        status: a.status,
                        body: a.body,
                    },
                    Err(e) => Outcome::Failed {
                        error: format!("{e:?}"),
                    },
                };
                out.push(Timed {
                    started,
                    ended: Instant::now(),
                    outcome,
                });
                n += 1;
            }
            out
        }));
    }
    for r in 0..readers {
        let (base_url, clinician, stop, seeded) = (
            base_url.clone(),
            clinician.clone(),
            stop.clone(),
            seeded.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut n = r;
            while !stop.load(Ordering::Relaxed) {
                let record = seeded[n % seeded.len()].clone();
                let url = format!("{base_url}/v1/records/crisis-incident/{record}");
                let started = Instant::now();
                let outcome = match clinician.get(&url, Some("treatment")).await {
                    Ok(a) if a.status == 200 => Outcome::Read {
                        disclosure_id: a.disclosure_id.expect("Disclosure-Id"),
                        record,
                    },
                    Ok(a) => Outcome::Refused {
                        status: a.status,
                        body: a.body,
                    },
                    Err(e) => Outcome::Failed {
                        error: format!("{e:?}"),
                    },
                };
                out.push(Timed {
                    started,
                    ended: Instant::now(),
                    outcome,
                });
                n += 1;
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// Checks that every acknowledged read and write is in the log at `url`: each read's
/// `Disclosure-Id` names a disclosure of that record (and no two reads share one), each
/// write's request has its `record_changed` entry, and the sequence numbers run from 1 to the
/// head without a repeat or a gap. Returns the number of acknowledged answers checked.
pub async fn assert_acknowledged_in_log(url: &str, outcomes: &[Timed]) -> usize {
    let mut db = connect(url).await;
    let mut seen = std::collections::BTreeSet::new();
    let mut checked = 0;
    for t in outcomes {
        match &t.outcome {
            Outcome::Read {
                disclosure_id,
                record,
            } => {
                assert!(
                    seen.insert(*disclosure_id),
                    "two acknowledged reads name entry {disclosure_id}"
                );
                let e = entry(&mut db, *disclosure_id).await.unwrap_or_else(|| {
                    panic!("acknowledged entry {disclosure_id} is not in the log")
                });
                assert_eq!(e.0, "disclosure", "entry {disclosure_id}");
                assert_eq!(
                    e.2.as_deref(),
                    Some(record.as_str()),
                    "entry {disclosure_id}"
                );
                checked += 1;
            }
            Outcome::Write { request_id, .. } => {
                assert!(
                    has_write_entry(&mut db, request_id).await,
                    "acknowledged write {request_id} has no record_changed entry"
                );
                checked += 1;
            }
            _ => {}
        }
    }
    let (n, distinct, lo, hi, head) = log_shape(&mut db).await;
    assert_eq!(n, distinct, "a sequence number repeats");
    assert_eq!((lo, hi), (1, n), "the sequence numbers have a gap");
    assert_eq!(head, hi, "the head is not the last entry");
    checked
}

/// The latest acknowledged version of each record written.
pub fn acknowledged_versions(outcomes: &[Timed]) -> std::collections::BTreeMap<String, u64> {
    let mut latest = std::collections::BTreeMap::new();
    for t in outcomes {
        if let Outcome::Write {
            record, version, ..
        } = &t.outcome
        {
            let v = latest.entry(record.clone()).or_insert(0);
            *v = (*v).max(*version);
        }
    }
    latest
}

pub fn count(outcomes: &[Timed], f: impl Fn(&Outcome) -> bool) -> usize {
    outcomes.iter().filter(|t| f(&t.outcome)).count()
}

// ------------------------------------------------------------------------------------------
// HAProxy
// ------------------------------------------------------------------------------------------

/// The HAProxy binary. The scale-out tests need it and fail (never skip) without it.
pub fn haproxy_bin() -> PathBuf {
    for p in [
        "/usr/sbin/haproxy",
        "/usr/bin/haproxy",
        "/usr/local/sbin/haproxy",
    ] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v haproxy"])
        .output()
        && out.status.success()
    {
        return PathBuf::from(text(&out.stdout).trim());
    }
    panic!(
        "HAProxy is required by the scale-out tests and was not found: install it \
         (Debian/Ubuntu: `apt-get install haproxy`; `bash .ci/run` does) and run the tests again"
    );
}

/// HAProxy in front of gateway replicas: `mode tcp` (TLS passes through, so mutual TLS still
/// ends at each gateway), health checks on `/healthz` over TLS with a partner certificate, the
/// server certificate verified. The configuration is the README's ("Running in production").
pub struct HaProxy {
    child: Child,
    pub port: u16,
    socket: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// When HAProxy changed a server's status: between `after` and `before`.
#[derive(Debug, Clone, Copy)]
pub struct Changed {
    pub after: Instant,
    pub before: Instant,
}

impl HaProxy {
    pub fn start(dev: &Dev, servers: &[(&str, u16)]) -> Self {
        let bin = haproxy_bin();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let socket = dir.path().join("admin.sock");
        let config = dir.path().join("haproxy.cfg");
        let servers: String = servers
            .iter()
            .map(|(name, p)| format!("    server {name} 127.0.0.1:{p}\n"))
            .collect();
        std::fs::write(
            &config,
            format!(
                r#"global
    stats socket {socket} mode 600 level admin
    log stdout format raw local0 info

defaults
    mode tcp
    log global
    option tcplog
    option log-health-checks
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout check 2s
    retries 3
    option redispatch 1

frontend gateway
    bind 127.0.0.1:{port}
    default_backend replicas

backend replicas
    balance roundrobin
    option httpchk
    http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host localhost
    http-check expect status 200
    default-server check inter 500ms fall 2 rise 2 on-marked-down shutdown-sessions check-ssl check-sni localhost verify required verifyhost localhost ca-file {ca} crt {crt}
{servers}"#,
                socket = socket.display(),
                ca = dev.file("ca.pem").display(),
                crt = dev.combined_pem("oversight").display(),
            ),
        )
        .unwrap();
        let check = Command::new(&bin)
            .arg("-c")
            .arg("-f")
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "haproxy refused its configuration: {}{}",
            text(&check.stdout),
            text(&check.stderr)
        );
        let log = dir.path().join("haproxy.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(&bin)
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Self {
            child,
            port,
            socket,
            log,
            _dir: dir,
        }
    }

    /// Each server's status as HAProxy sees it (`UP`, `DOWN`, `UP 1/2`, ...).
    pub async fn statuses(&self) -> std::collections::BTreeMap<String, String> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut out = std::collections::BTreeMap::new();
        let Ok(mut s) = tokio::net::UnixStream::connect(&self.socket).await else {
            return out;
        };
        s.write_all(b"show stat\n").await.unwrap();
        let mut csv = String::new();
        s.read_to_string(&mut csv).await.unwrap();
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let col = |name: &str| header.iter().position(|h| *h == name);
        let (Some(px), Some(sv), Some(st)) = (col("pxname"), col("svname"), col("status")) else {
            return out;
        };
        for line in lines {
            let f: Vec<&str> = line.split(',').collect();
            if f.get(px) == Some(&"replicas")
                && let (Some(name), Some(status)) = (f.get(sv), f.get(st))
                && *name != "BACKEND"
            {
                out.insert((*name).to_owned(), (*status).to_owned());
            }
        }
        out
    }

    /// Waits (bounded) until server `name` has status `want` (`UP` or `DOWN`). Returns when
    /// the change happened, as closely as polling every 20 ms tells: after the start of the
    /// last poll that did not show it, and before the end of the first that did.
    pub async fn wait_status(&self, name: &str, want: &str, within: Duration) -> Changed {
        let deadline = Instant::now() + within;
        let mut not_yet = Instant::now();
        loop {
            let asked = Instant::now();
            let s = self.statuses().await;
            if s.get(name).map(String::as_str) == Some(want) {
                return Changed {
                    after: not_yet,
                    before: Instant::now(),
                };
            }
            not_yet = asked;
            assert!(
                Instant::now() < deadline,
                "HAProxy did not see {name} {want} within {within:?}: {s:?}\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The log's lines other than connections that ended normally on the first attempt
    /// (termination state `--` or `CD`, no retry): server-side closes, retries, health checks
    /// and server state changes.
    pub fn unusual_log(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().filter(|l| !is_plain_connection(l)).collect();
        lines[lines.len().saturating_sub(80)..].join("\n")
    }
}

/// A `tcplog` line (`client [time] frontend backend/server timers bytes state
/// act/fe/be/srv/retries queues`) for a connection that ended normally without a retry.
fn is_plain_connection(line: &str) -> bool {
    let f: Vec<&str> = line.split_whitespace().collect();
    f.len() == 9
        && f[2] == "gateway"
        && matches!(f[6], "--" | "CD")
        && f[7].rsplit('/').next() == Some("0")
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
