//! Shared test support: a test PKI with attack material, a gateway spawned on port 0 with a
//! fresh database (SQLite or a throwaway PostgreSQL), TLS clients and token minting.

#[path = "../../common/bodies.rs"]
pub mod bodies;
pub mod calls;
pub mod pg;
pub mod replicas;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use coresponse_gateway::audit::{self, query};
use coresponse_gateway::config::Settings;
use coresponse_gateway::devinit::{self, InitOptions, TokenRequest, pki::DevCa};
use coresponse_gateway::domain::{ManualClock, SharedClock};
use coresponse_gateway::service::Services;
use coresponse_gateway::startup::{AppState, Application};
use coresponse_gateway::store::{Backend, Store, StoredSecurityEvent, on_conn, security_events};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;

pub const PARTNERS: [(&str, &str, &str); 3] = [
    ("metro-pd", "officer-17", "officer"),
    ("county-mh", "clin-7", "clinician"),
    ("oversight", "auditor-2", "compliance"),
];

/// Material generated once per test binary.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: DevCa,
    /// A certificate from a CA the gateway does not trust, with a valid partner SAN.
    pub foreign: (String, String),
    /// Expired, not yet valid, without partner SAN, naming an unregistered partner, revoked.
    pub expired: (String, String),
    pub not_yet_valid: (String, String),
    pub no_san: (String, String),
    pub unregistered: (String, String),
    pub revoked: (String, String),
    pub revoked_serial: Vec<u8>,
}

static PKI: OnceLock<Pki> = OnceLock::new();

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn pki() -> &'static Pki {
    PKI.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Under the target directory, and removed once this test process has exited (the dev
        // CA's private key must not pile up in the system's temp directory, run after run).
        let dir = tempfile::Builder::new()
            .prefix("gateway-test-pki-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("tempdir")
            .keep();
        remove_after_exit(&dir);
        devinit::init(&InitOptions {
            dir: dir.clone(),
            policy_dir: repo_root().join("policies"),
            listen: "127.0.0.1:0".into(),
            force: false,
        })
        .expect("init dev material");
        let ca = DevCa::from_pem(
            &std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
            &std::fs::read_to_string(dir.join("ca-key.pem")).unwrap(),
        )
        .expect("load CA");
        let td = devinit::DEV_TRUST_DOMAIN;
        let now = OffsetDateTime::now_utc();
        let day = time::Duration::days(1);
        let pair = |i: devinit::pki::Issued| (i.cert_pem, i.key_pem);
        let foreign_ca = DevCa::generate("Some Other CA").unwrap();
        let foreign = pair(foreign_ca.issue_partner(td, "metro-pd").unwrap());
        let uri = |p: &str| devinit::pki::partner_uri(td, p).unwrap();
        let expired = pair(
            ca.issue_client("metro-pd", vec![uri("metro-pd")], now - day * 30, now - day)
                .unwrap(),
        );
        let not_yet_valid = pair(
            ca.issue_client("metro-pd", vec![uri("metro-pd")], now + day, now + day * 30)
                .unwrap(),
        );
        let no_san = pair(
            ca.issue_client("metro-pd", vec![], now - day, now + day)
                .unwrap(),
        );
        let unregistered = pair(ca.issue_partner(td, "fire-dept").unwrap());
        let revoked_issued = ca.issue_partner(td, "metro-pd").unwrap();
        let revoked_serial = revoked_issued.serial.clone();
        let revoked = pair(revoked_issued);
        Pki {
            dir,
            ca,
            foreign,
            expired,
            not_yet_valid,
            no_san,
            unregistered,
            revoked,
            revoked_serial,
        }
    })
}

/// Removes `dir` once this process has exited: a watcher process outlives it by at most a
/// second. (The material must live as long as the process, which has no exit hook.)
pub fn remove_after_exit(dir: &Path) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; rm -rf '{dir}'",
        pid = std::process::id(),
        dir = dir.display()
    );
    // Never waited for: it is meant to outlive this process (then it is reaped by init).
    #[allow(clippy::zombie_processes)]
    std::process::Command::new("sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the watcher that removes the test PKI");
}

impl Pki {
    pub fn partner_cert(&self, partner: &str) -> (String, String) {
        (
            std::fs::read_to_string(self.dir.join(format!("{partner}.pem"))).unwrap(),
            std::fs::read_to_string(self.dir.join(format!("{partner}-key.pem"))).unwrap(),
        )
    }

    pub fn signing_key(&self, partner: &str) -> Vec<u8> {
        std::fs::read(
            self.dir
                .join("partner-keys")
                .join(format!("{partner}-signing-key.pem")),
        )
        .unwrap()
    }

    pub fn issuer(partner: &str) -> String {
        format!("https://idp.{partner}.example")
    }

    /// A valid token for `partner`, bound to `cert_pem`.
    pub fn token(&self, partner: &str, user: &str, roles: &[&str], cert_pem: &str) -> String {
        let der = der_of(cert_pem);
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        devinit::mint_token(
            &self.signing_key(partner),
            &TokenRequest {
                issuer: &Self::issuer(partner),
                audience: "coresponse-gateway",
                user,
                roles: &roles,
                roles_claim: "roles",
                ttl_secs: 300,
                bind_to: Some(&der),
                kid: Some(&format!("{partner}-dev-1")),
            },
        )
        .unwrap()
    }

    /// Signs arbitrary claims with `partner`'s ES256 key.
    pub fn sign_claims(&self, partner: &str, claims: &serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(format!("{partner}-dev-1"));
        let key = jsonwebtoken::EncodingKey::from_ec_pem(&self.signing_key(partner)).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    /// Standard valid claims for `partner`, bound to `cert_pem`.
    pub fn claims(&self, partner: &str, cert_pem: &str) -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        let fp = coresponse_gateway::domain::CertFingerprint::of_der(&der_of(cert_pem));
        serde_json::json!({
            "iss": Self::issuer(partner), "aud": "coresponse-gateway", "sub": "user-1",
            "iat": now, "nbf": now, "exp": now + 300, "roles": ["officer"],
            "cnf": { "x5t#S256": fp.to_x5t_s256() },
        })
    }
}

pub fn der_of(cert_pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    /// The metrics listener, when the settings enable it.
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub state: actix_web::web::Data<AppState>,
    pub handle: actix_server::ServerHandle,
    pub workdir: tempfile::TempDir,
}

/// Settings for a gateway on port 0 with a fresh database; `tweak` adjusts them.
pub async fn settings(db: Db, workdir: &Path) -> Settings {
    let pki = pki();
    let mut s = Settings::load(&pki.dir.join("gateway.toml")).expect("settings");
    s.server.listen = "127.0.0.1:0".parse().unwrap();
    s.server.workers = 2;
    s.storage.url = match db {
        Db::Sqlite => format!("sqlite://{}", workdir.join("gateway.db").display()),
        Db::Postgres => pg::PgCluster::get().fresh_database().await,
    };
    // Each app gets its own CRL file so tests can revoke without affecting others. Its CRL
    // number is 1, so any later CRL of the dev CA (random 128-bit numbers) replaces it.
    let crl = workdir.join("crl.pem");
    let now = OffsetDateTime::now_utc();
    std::fs::write(
        &crl,
        crl_pem(
            &pki.ca.cert_pem,
            &pki.ca.key_pem,
            std::slice::from_ref(&pki.revoked_serial),
            1,
            now - time::Duration::minutes(5),
            now + time::Duration::days(365),
        ),
    )
    .unwrap();
    s.tls.crls = vec![crl];
    s
}

/// A CRL naming `ca_cert_pem`'s subject as issuer, signed with `signing_key_pem` (the CA's own
/// key, or another one to forge it), revoking `serials`.
pub fn crl_pem(
    ca_cert_pem: &str,
    signing_key_pem: &str,
    serials: &[Vec<u8>],
    number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
) -> String {
    let key = rcgen::KeyPair::from_pem(signing_key_pem).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(ca_cert_pem, key).unwrap();
    rcgen::CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: rcgen::SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|s| rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from_slice(s),
                revocation_time: this_update,
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .unwrap()
    .pem()
    .unwrap()
}

pub async fn spawn_app(db: Db) -> TestApp {
    spawn_with(db, |_| {}).await
}

pub async fn spawn_with(db: Db, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_on(db, tweak, coresponse_gateway::service::system_clock()).await
}

/// A gateway whose services read the time from `clock`: a test moves the clock instead of
/// sleeping until a consent expires or an emergency window ends.
pub async fn spawn_with_clock(
    db: Db,
    clock: &ManualClock,
    tweak: impl FnOnce(&mut Settings),
) -> TestApp {
    spawn_on(db, tweak, Arc::new(clock.clone())).await
}

async fn spawn_on(db: Db, tweak: impl FnOnce(&mut Settings), clock: SharedClock) -> TestApp {
    let workdir = tempfile::tempdir().unwrap();
    let mut s = settings(db, workdir.path()).await;
    tweak(&mut s);
    let app = Application::build_with_clock(s, clock)
        .await
        .expect("build app");
    let addr = app.addr();
    let metrics_addr = app.metrics_addr();
    let state = app.state();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        addr,
        metrics_addr,
        state,
        handle,
        workdir,
    }
}

/// rustls client config trusting the dev CA, presenting `identity` if given.
pub fn client_config(identity: Option<&(String, String)>) -> rustls::ClientConfig {
    client_config_trusting(&pki().dir.join("ca.pem"), identity)
}

/// A client trusting the CA in `ca` (PEM), presenting `identity` if given.
pub fn client_trusting(ca: &Path, identity: Option<&(String, String)>) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(client_config_trusting(ca, identity))
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn client_config_trusting(ca: &Path, identity: Option<&(String, String)>) -> rustls::ClientConfig {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    }
}

pub fn client(identity: Option<&(String, String)>) -> reqwest::Client {
    client_trusting(&pki().dir.join("ca.pem"), identity)
}

impl TestApp {
    /// The gateway's services (store, keyring, log, policy, clock, caches).
    pub fn services(&self) -> &Services {
        &self.state.services
    }

    /// The gateway's database.
    pub fn store(&self) -> &Store {
        &self.state.services.store
    }

    /// The log entries `filter` selects, newest first.
    pub async fn log_entries(&self, filter: &query::Filter) -> Vec<audit::Entry> {
        let mut pooled = self.store().acquire().await.unwrap();
        let mut out = query::list(&mut pooled.conn(), filter).await.unwrap();
        for e in &mut out {
            self.services().log.open(e).unwrap();
        }
        out
    }

    /// The log entry `seq`, its sealed free text opened (as compliance officers see it).
    pub async fn log_entry(&self, seq: u64) -> Option<audit::Entry> {
        let mut pooled = self.store().acquire().await.unwrap();
        let mut e = query::get(&mut pooled.conn(), seq).await.unwrap();
        if let Some(e) = &mut e {
            self.services().log.open(e).unwrap();
        }
        e
    }

    /// Verifies the whole chain (with the checkpoint key) and asserts that it holds.
    pub async fn assert_log_verifies(&self) {
        let log = &self.services().log;
        let v = audit::verify_store(self.store(), log.checkpoint_key().as_ref(), None)
            .await
            .unwrap();
        assert!(v.ok(), "{v:?}");
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// GET with a client certificate and an optional bearer token.
    pub async fn get(
        &self,
        identity: Option<&(String, String)>,
        path: &str,
        token: Option<&str>,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let mut req = client(identity).get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await
    }

    /// Waits (bounded) until a security event with `code` is stored; returns it.
    pub async fn security_event(&self, code: &str) -> StoredSecurityEvent {
        for _ in 0..100 {
            let events = {
                let mut pooled = self.store().acquire().await.unwrap();
                security_events::recent(&mut pooled.conn(), 50)
                    .await
                    .unwrap()
            };
            if let Some(e) = events.into_iter().find(|e| e.code == code) {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no security event with code `{code}` was recorded");
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// A raw TLS connection to the gateway (for tests that speak bytes, not HTTP-client calls).
pub async fn tls_connect(
    app: &TestApp,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(app.addr).await?;
    let name =
        rustls::pki_types::ServerName::try_from("localhost").map_err(std::io::Error::other)?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// A second gateway on the same configuration and database as `app` (another replica), on its
/// own port.
pub async fn spawn_replica(app: &TestApp) -> TestApp {
    let workdir = tempfile::tempdir().unwrap();
    let mut s = app.state.settings.clone();
    s.server.listen = "127.0.0.1:0".parse().unwrap();
    let replica = Application::build(s).await.expect("build replica");
    let addr = replica.addr();
    let metrics_addr = replica.metrics_addr();
    let state = replica.state();
    let handle = replica.handle();
    tokio::spawn(replica.run_until_stopped());
    TestApp {
        addr,
        metrics_addr,
        state,
        handle,
        workdir,
    }
}

/// Runs raw SQL (one or more statements, no parameters) on the store's database.
pub async fn exec(store: &Store, sql: &str) {
    let mut pooled = store.acquire().await.unwrap();
    on_conn!(&mut pooled.conn(), |c| {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(c)
            .await
            .map(|_| ())
    })
    .unwrap();
}

/// Installs trigger `name`, which runs `body` (one SQL statement that may use `NEW`) before each
/// insert into `table` whose new row satisfies `when`, on either backend. The statements `body`
/// runs fire no trigger of their own (SQLite's recursive triggers are off; PostgreSQL's trigger
/// checks its depth), so a body that inserts into `table` itself inserts exactly one row.
/// Give each installation in a test a name of its own: SQLite checks a new trigger's name
/// against the schema its pooled connection last read, which may still hold one just dropped.
pub async fn before_insert(store: &Store, name: &str, table: &str, when: &str, body: &str) {
    let sql = match store.backend() {
        Backend::Sqlite => {
            format!("CREATE TRIGGER {name} BEFORE INSERT ON {table} WHEN {when} BEGIN {body}; END;")
        }
        Backend::Postgres => format!(
            "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN IF pg_trigger_depth() = 1 AND ({when}) THEN {body}; END IF; \
             RETURN NEW; END $$; \
             CREATE TRIGGER {name} BEFORE INSERT ON {table} \
             FOR EACH ROW EXECUTE FUNCTION {name}();"
        ),
    };
    exec(store, &sql).await;
}

/// Removes a trigger installed by [`before_insert`].
pub async fn drop_before_insert(store: &Store, name: &str, table: &str) {
    let sql = match store.backend() {
        Backend::Sqlite => format!("DROP TRIGGER {name}"),
        Backend::Postgres => format!("DROP TRIGGER {name} ON {table}; DROP FUNCTION {name}();"),
    };
    exec(store, &sql).await;
}

/// Every row a query returns, as `T`, on either backend.
pub async fn fetch_all<T>(store: &Store, sql: &'static str) -> Vec<T>
where
    T: Send
        + Unpin
        + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
{
    let mut pooled = store.acquire().await.unwrap();
    on_conn!(&mut pooled.conn(), |c| sqlx::query_as(sql)
        .fetch_all(c)
        .await)
    .unwrap()
}

/// A query's single integer (e.g. a `COUNT(*)`).
pub async fn scalar(store: &Store, sql: &'static str) -> i64 {
    let rows: Vec<(i64,)> = fetch_all(store, sql).await;
    rows.first().expect("one row").0
}
