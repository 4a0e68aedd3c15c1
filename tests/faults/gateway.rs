//! The gateway as an operator runs it: the real binary, a dev directory written by `init`, a
//! database given by URL, `serve` started and killed as a process, and `audit verify` (which
//! opens the database read-only) run against what is left.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coresponse_gateway::config::Settings;
use coresponse_gateway::devinit::{self, TokenRequest};
use coresponse_gateway::store::{Store, on_conn};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const BIN: &str = env!("CARGO_BIN_EXE_coresponse-gateway");

/// A dev directory (`init`) and the database the gateway runs on.
pub struct Dev {
    dir: tempfile::TempDir,
    url: String,
    starts: usize,
}

/// A running `serve` process.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
}

/// A partner's user: client certificate and key, and a bound token.
#[derive(Clone)]
pub struct User {
    pub client: reqwest::Client,
    pub token: String,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl Dev {
    /// Writes dev material with `init`; the gateway will use `url` (`None`: SQLite in the
    /// directory).
    pub fn init(url: Option<String>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new(BIN)
            .args(["init", "--listen", "127.0.0.1:0", "--dir"])
            .arg(dir.path())
            .arg("--policies")
            .arg(repo_root().join("policies"))
            .output()
            .expect("run init");
        assert!(out.status.success(), "init: {}", text(&out.stderr));
        let url =
            url.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("gateway.db").display()));
        Self {
            dir,
            url,
            starts: 0,
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("gateway.toml")
    }

    /// The gateway binary with this directory's configuration and database, logging JSON.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .arg("--config")
            .arg(self.config())
            .env("GATEWAY__STORAGE__URL", &self.url)
            .env("GATEWAY__LOG__FORMAT", "json")
            .env("GATEWAY__SERVER__WORKERS", "2")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        c
    }

    /// Starts `serve` and waits (bounded) until it listens.
    pub fn start(&mut self) -> Gateway {
        self.starts += 1;
        let log = self.dir.path().join(format!("serve-{}.log", self.starts));
        let file = std::fs::File::create(&log).expect("log file");
        let child = self
            .command(&["serve"])
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start serve");
        let mut g = Gateway {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(addr) = g.listening() {
                g.addr = addr;
                return g;
            }
            if let Ok(Some(status)) = g.child.try_wait() {
                panic!("serve exited with {status}:\n{}", g.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "serve did not listen within 60 s:\n{}",
                g.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `audit verify` on the database as it is (opened read-only).
    pub fn audit_verify(&self) -> Output {
        self.command(&["audit", "verify"])
            .output()
            .expect("run audit verify")
    }

    /// The settings the gateway runs with.
    pub fn settings(&self) -> Settings {
        let mut s = Settings::load(&self.config()).expect("settings");
        s.storage.url = self.url.clone();
        s
    }

    /// A user of `partner` with `role`: a client presenting the partner's certificate, and a
    /// token bound to it (valid for 10 minutes; call again for a fresh one).
    pub fn user(&self, partner: &str, user: &str, role: &str) -> User {
        let dir = self.dir.path();
        let cert = std::fs::read_to_string(dir.join(format!("{partner}.pem"))).unwrap();
        let key = std::fs::read_to_string(dir.join(format!("{partner}-key.pem"))).unwrap();
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let signing = std::fs::read(
            dir.join("partner-keys")
                .join(format!("{partner}-signing-key.pem")),
        )
        .unwrap();
        let token = devinit::mint_token(
            &signing,
            &TokenRequest {
                issuer: &format!("https://idp.{partner}.example"),
                audience: "coresponse-gateway",
                user,
                roles: &[role.to_owned()],
                roles_claim: "roles",
                ttl_secs: 600,
                bind_to: Some(der.as_ref()),
                kid: Some(&format!("{partner}-dev-1")),
            },
        )
        .unwrap();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![der.into_owned()],
            PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
        )
        .unwrap();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        User { client, token }
    }

    /// Every log entry's `(seq, request_id, kind, outcome)`, read from the database opened
    /// read-only, as `audit verify` opens it.
    pub async fn log_rows(&self) -> Vec<(i64, Option<String>, String, String)> {
        let store = Store::open_read_only(&self.settings().storage)
            .await
            .expect("open the database read-only");
        let rows = {
            let mut pooled = store.acquire().await.unwrap();
            on_conn!(&mut pooled.conn(), |c| {
                sqlx::query_as("SELECT seq, request_id, kind, outcome FROM audit_log ORDER BY seq")
                    .fetch_all(c)
                    .await
            })
            .unwrap()
        };
        store.close().await;
        rows
    }
}

impl Gateway {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn listening(&self) -> Option<SocketAddr> {
        let log = self.log_text();
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message"] == "gateway listening")
            .and_then(|v| v["addr"].as_str().and_then(|a| a.parse().ok()))
    }

    /// `https://localhost:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// SIGKILL: the process ends at once, whatever it was doing.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    /// Lines the gateway logged at ERROR level (for diagnostics in assertion messages).
    pub fn errors(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains("\"level\":\"ERROR\""))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts `audit verify` passed, with its output otherwise.
pub fn assert_verified(out: &Output, when: &str) {
    assert!(
        out.status.success(),
        "audit verify failed {when}: status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}
