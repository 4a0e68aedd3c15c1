//! Gateway settings: one TOML file, then environment overrides.
//!
//! Layering: built-in defaults, the file given with `--config`, then variables named
//! `GATEWAY__<SECTION>__<KEY>` (for example `GATEWAY__SERVER__LISTEN=0.0.0.0:8443`). Unknown keys
//! are refused with the key named, so a misspelt setting never silently falls back to a
//! default. Relative paths are resolved against the directory of the config file. Secrets
//! (the master key, a database password) are read from files named here, never written inline.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Everything the gateway is configured with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The HTTPS listener.
    #[serde(default)]
    pub server: ServerSettings,
    /// Certificates and revocation lists.
    pub tls: TlsSettings,
    /// Partner identity and user tokens.
    pub identity: IdentitySettings,
    /// Where the policy files live.
    pub policy: PolicySettings,
    /// The database.
    pub storage: StorageSettings,
    /// Keys for data at rest.
    pub crypto: CryptoSettings,
    /// Diagnostics output.
    #[serde(default)]
    pub log: LogSettings,
    /// The disclosure log.
    #[serde(default)]
    pub audit: AuditSettings,
    /// Emergency access.
    #[serde(default)]
    pub emergency: EmergencySettings,
    /// The Prometheus metrics listener.
    #[serde(default)]
    pub metrics: MetricsSettings,
}

/// The Prometheus metrics listener (`[metrics]`): plain HTTP, separate from the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Serve `GET /metrics`. Default: false.
    pub enabled: bool,
    /// Where (plain HTTP). Default: `127.0.0.1:9464`, loopback only.
    pub listen: SocketAddr,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

/// Emergency access, HIPAA 164.512(j) (`[emergency]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmergencySettings {
    /// How long one emergency assertion lasts, per subject and user, in seconds: reads within
    /// it share one review; after it, a new assertion opens a new window and a new review.
    /// Default: 3600.
    pub window_secs: u64,
}

impl Default for EmergencySettings {
    fn default() -> Self {
        Self { window_secs: 3600 }
    }
}

/// The HTTPS listener and its robustness limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// Worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// Largest accepted request body in bytes; larger bodies get 413.
    pub body_limit_bytes: usize,
    /// Time a client has to send the request head after connecting, in milliseconds.
    pub request_timeout_ms: u64,
    /// Time a client has to finish the TLS handshake, in milliseconds.
    pub handshake_timeout_ms: u64,
    /// How long an idle keep-alive connection is kept open, in seconds.
    pub keep_alive_secs: u64,
    /// Time allowed to close a connection cleanly, in milliseconds.
    pub disconnect_timeout_ms: u64,
    /// Largest JSON nesting depth accepted in a request body.
    pub max_json_depth: usize,
    /// Time a client has to send the whole request body once the head has arrived, in
    /// milliseconds; a slower body gets 408 and changes nothing. Default: 10000.
    pub body_timeout_ms: u64,
    /// Most connections open at once from one partner (all its certificates together); further
    /// connections are refused (429 `too_many_connections`) and recorded as security events.
    /// Default: 256.
    pub max_connections_per_partner: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            workers: 0,
            body_limit_bytes: 256 * 1024,
            request_timeout_ms: 5_000,
            handshake_timeout_ms: 3_000,
            keep_alive_secs: 30,
            disconnect_timeout_ms: 1_000,
            max_json_depth: 16,
            body_timeout_ms: 10_000,
            max_connections_per_partner: 256,
        }
    }
}

impl ServerSettings {
    /// `request_timeout_ms` as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
    /// `handshake_timeout_ms` as a duration.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }
    /// `keep_alive_secs` as a duration.
    pub fn keep_alive(&self) -> Duration {
        Duration::from_secs(self.keep_alive_secs)
    }
    /// `disconnect_timeout_ms` as a duration.
    pub fn disconnect_timeout(&self) -> Duration {
        Duration::from_millis(self.disconnect_timeout_ms)
    }
    /// `body_timeout_ms` as a duration.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }
}

/// Certificate files (PEM).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The gateway's certificate chain, leaf first.
    pub server_cert: PathBuf,
    /// The gateway's private key.
    pub server_key: PathBuf,
    /// CA bundle that partner client certificates must chain to.
    pub client_ca: PathBuf,
    /// Certificate revocation lists (PEM or DER), re-read on reload.
    #[serde(default)]
    pub crls: Vec<PathBuf>,
    /// How long a CRL is still used after its nextUpdate, in seconds; past it the certificates
    /// of its issuer are refused. Default: 604800 (7 days).
    #[serde(default = "default_crl_grace")]
    pub crl_grace_secs: u64,
}

fn default_crl_grace() -> u64 {
    7 * 24 * 3600
}

/// Partner identity and token rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySettings {
    /// SPIFFE trust domain of partner certificates: `spiffe://<trust_domain>/partner/<id>`.
    pub trust_domain: String,
    /// The `aud` every user token must carry.
    #[serde(default = "default_audience")]
    pub audience: String,
    /// Clock-skew allowance for `exp`, `nbf` and `iat`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Longest accepted token lifetime (`exp - iat`, or `exp - now` without `iat`), in
    /// seconds. Default: 3600.
    #[serde(default = "default_max_token_lifetime")]
    pub max_token_lifetime_secs: u64,
    /// Directory against which the registry's `jwks_file` entries resolve.
    pub partner_keys_dir: PathBuf,
}

fn default_audience() -> String {
    "coresponse-gateway".to_owned()
}

fn default_leeway() -> u64 {
    30
}

fn default_max_token_lifetime() -> u64 {
    3600
}

/// Policy files.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// Directory holding `partners.toml`, record kinds and MOUs.
    pub dir: PathBuf,
    /// How many days before an MOU expires `/healthz` and a daily log line start warning.
    /// Default: 30.
    #[serde(default = "default_expiry_warning_days")]
    pub expiry_warning_days: u32,
}

fn default_expiry_warning_days() -> u32 {
    30
}

/// The database.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    /// `sqlite://PATH` (created if missing) or `postgres://USER@HOST:PORT/DB`.
    pub url: String,
    /// File holding the database password, added to a PostgreSQL URL.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Connection pool size.
    #[serde(default = "default_pool")]
    pub max_connections: u32,
    /// How long a request waits for a database connection before it fails closed with 503,
    /// in milliseconds. Default: 1000.
    #[serde(default = "default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
}

fn default_pool() -> u32 {
    8
}

fn default_acquire_timeout_ms() -> u64 {
    1000
}

impl StorageSettings {
    /// Settings for the database at `url` with every other value at its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            password_file: None,
            max_connections: default_pool(),
            acquire_timeout_ms: default_acquire_timeout_ms(),
        }
    }

    /// [`StorageSettings::acquire_timeout_ms`] as a duration (at least 50 ms).
    pub fn acquire_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.acquire_timeout_ms.max(50))
    }
}

/// Keys for data at rest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CryptoSettings {
    /// The agency's master key file: one 32-byte key per line as `VERSION:HEX` (a bare `HEX`
    /// line is version 1); the highest version is current. See the `crypto` module.
    pub master_key_file: PathBuf,
}

/// The disclosure log (`[audit]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// File holding the Ed25519 checkpoint signing key (32-byte seed, hex). Without it no
    /// checkpoints are signed and nothing can ever be purged. Default: none.
    pub checkpoint_key_file: Option<PathBuf>,
    /// Sign a checkpoint once this many entries were appended since the last one.
    /// Default: 1000.
    pub checkpoint_every_entries: u64,
    /// Sign a checkpoint this many seconds after the last one if entries were appended.
    /// Default: 60.
    pub checkpoint_every_secs: u64,
    /// Keep entries at least this many days (HIPAA: 6 years). Default: 2192 (6 * 365 + 2).
    pub retention_days: u32,
    /// Most entries committed in one group commit. Default: 512.
    pub max_batch: usize,
    /// Entries that may wait for the writer before appends wait too. Default: 16384.
    pub queue_capacity: usize,
    /// The origin line of the log's C2SP checkpoints (and the name of its note key): a
    /// schema-less URL naming this log, no white space, no `+`. Default:
    /// `<identity.trust_domain>/disclosure-log`.
    pub origin: Option<String>,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            checkpoint_key_file: None,
            checkpoint_every_entries: 1000,
            checkpoint_every_secs: 60,
            retention_days: 6 * 365 + 2,
            max_batch: 512,
            queue_capacity: 16_384,
            origin: None,
        }
    }
}

/// Diagnostics output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `pretty` for people, `json` for log shippers.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `coresponse_gateway=debug`. `RUST_LOG` wins if set.
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            filter: "info".to_owned(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// The settings could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(String);

impl Settings {
    /// Loads `path`, applies `GATEWAY__*` environment overrides and resolves relative paths
    /// against the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        if !path.is_file() {
            return Err(ConfigError(format!(
                "`{}` does not exist; create one with `coresponse-gateway init --dir DIR`",
                path.display()
            )));
        }
        let figment = Figment::from(Serialized::defaults(DefaultsOnly::default()))
            .merge(Toml::file_exact(path))
            .merge(Env::prefixed("GATEWAY__").split("__"));
        let mut settings: Settings = figment.extract().map_err(|e| {
            let msgs: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
            ConfigError(msgs.join("; "))
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        settings.resolve_paths(&base);
        Ok(settings)
    }

    /// Makes every relative path absolute against `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.tls.server_cert);
        fix(&mut self.tls.server_key);
        fix(&mut self.tls.client_ca);
        self.tls.crls.iter_mut().for_each(fix);
        fix(&mut self.identity.partner_keys_dir);
        fix(&mut self.policy.dir);
        fix(&mut self.crypto.master_key_file);
        if let Some(p) = self.audit.checkpoint_key_file.as_mut() {
            fix(p);
        }
        if let Some(p) = self.storage.password_file.as_mut() {
            fix(p);
        }
        if let Some(rest) = self.storage.url.strip_prefix("sqlite://")
            && !rest.starts_with('/')
            && !rest.starts_with(":memory:")
        {
            self.storage.url = format!("sqlite://{}", base.join(rest).display());
        }
    }
}

/// The sections that have defaults, so a file may leave them out.
#[derive(Debug, Default, Serialize)]
struct DefaultsOnly {
    server: ServerSettings,
    log: LogSettings,
    audit: AuditSettings,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[tls]
server_cert = "server.pem"
server_key = "server-key.pem"
client_ca = "ca.pem"
[identity]
trust_domain = "example.org"
partner_keys_dir = "keys"
[policy]
dir = "/srv/policies"
[storage]
url = "sqlite://data/gateway.db"
[crypto]
master_key_file = "master.key"
"#;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn defaults_fill_what_the_file_leaves_out_and_paths_resolve() {
        let (dir, path) = write(MINIMAL);
        let s = Settings::load(&path).unwrap();
        assert_eq!(s.server.listen.port(), 8443);
        assert_eq!(s.identity.audience, "coresponse-gateway");
        assert_eq!(s.tls.client_ca, dir.path().join("ca.pem"));
        assert_eq!(s.policy.dir, PathBuf::from("/srv/policies"));
        assert_eq!(s.audit, AuditSettings::default());
        assert_eq!(s.audit.retention_days, 2192);
        assert_eq!(s.tls.crl_grace_secs, 604_800);
        assert_eq!(s.identity.max_token_lifetime_secs, 3600);
        assert!(!s.metrics.enabled);
        assert!(s.metrics.listen.ip().is_loopback());
        assert_eq!(s.server.body_timeout_ms, 10_000);
        assert_eq!(s.server.max_connections_per_partner, 256);
        assert_eq!(
            s.storage.url,
            format!("sqlite://{}", dir.path().join("data/gateway.db").display())
        );
    }

    #[test]
    fn the_audit_section_resolves_its_key_path() {
        let (dir, path) = write(&format!(
            "{MINIMAL}\n[audit]\ncheckpoint_key_file = \"ck.key\"\nretention_days = 3000\n"
        ));
        let s = Settings::load(&path).unwrap();
        assert_eq!(s.audit.checkpoint_key_file, Some(dir.path().join("ck.key")));
        assert_eq!(s.audit.retention_days, 3000);
        assert_eq!(s.audit.checkpoint_every_entries, 1000);
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let (_dir, path) = write(&format!("{MINIMAL}\n[server]\nlisten_adress = \"x\"\n"));
        let err = Settings::load(&path).unwrap_err().to_string();
        assert!(err.contains("listen_adress"), "{err}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's own test API
    fn environment_overrides_the_file() {
        let (_dir, path) = write(MINIMAL);
        figment::Jail::expect_with(|jail| {
            jail.set_env("GATEWAY__SERVER__BODY_LIMIT_BYTES", "1234");
            let s = Settings::load(&path).map_err(|e| e.to_string())?;
            assert_eq!(s.server.body_limit_bytes, 1234);
            Ok(())
        });
    }

    #[test]
    fn a_missing_file_says_how_to_create_one() {
        let err = Settings::load(Path::new("/nonexistent/gateway.toml")).unwrap_err();
        assert!(err.to_string().contains("init --dir"));
    }
}
