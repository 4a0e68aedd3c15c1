//! Development set-up: `init` writes a complete, working dev deployment into a directory
//! (CA, server and partner certificates, each partner's certificate and key also as a PKCS#12
//! file for browsers, partner token-signing keys, partner encryption keys, a
//! CRL, the at-rest master key, the disclosure log's checkpoint signing key, `gateway.toml`), and
//! `token` mints a dev user token for a partner.
//!
//! Everything written here is generated on first run and must never be committed. A real
//! deployment gets its certificates from the partners' PKI and its tokens from the partners'
//! identity providers (see `certs/README.md`).

pub mod demo_year;
pub mod pkcs12;
pub mod pki;
pub mod seed;

use crate::crypto::note::{NoteSigner, TYPE_COSIGNATURE};
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
use serde_json::json;

use crate::domain::{CertFingerprint, PartnerId};
use crate::policy::partners::RegistryFile;

/// The trust domain used by dev material.
pub const DEV_TRUST_DOMAIN: &str = "coresponse.example";

/// Options of `init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Directory to write into.
    pub dir: PathBuf,
    /// The policy directory whose `partners.toml` lists the partners to provision.
    pub policy_dir: PathBuf,
    /// Listen address written to the config.
    pub listen: String,
    /// Replace existing material.
    pub force: bool,
}

/// What `init` wrote.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// The config file.
    pub config: PathBuf,
    /// Partners provisioned.
    pub partners: Vec<PartnerId>,
}

/// Name of the config file written by `init`.
pub const CONFIG_FILE: &str = "gateway.toml";

/// Writes dev material and `gateway.toml` into `opts.dir`.
pub fn init(opts: &InitOptions) -> anyhow::Result<InitReport> {
    let dir = &opts.dir;
    let config = dir.join(CONFIG_FILE);
    if config.exists() && !opts.force {
        anyhow::bail!(
            "`{}` already exists; remove the directory or pass --force to regenerate",
            config.display()
        );
    }
    let registry = RegistryFile::load(&opts.policy_dir)?;
    fs::create_dir_all(dir.join("partner-keys"))?;
    fs::create_dir_all(dir.join("data"))?;

    let ca = pki::DevCa::generate("Co-response Gateway Dev CA")?;
    write_public(&dir.join("ca.pem"), &ca.cert_pem)?;
    write_secret(&dir.join("ca-key.pem"), &ca.key_pem)?;
    let server = ca.issue_server(&["localhost", "127.0.0.1", "::1"])?;
    write_public(&dir.join("server.pem"), &server.cert_pem)?;
    write_secret(&dir.join("server-key.pem"), &server.key_pem)?;
    write_public(&dir.join("crl.pem"), &ca.crl(&[])?)?;

    let mut partners = Vec::new();
    // One password for every partner's `.p12` (browsers ask for it on import).
    let p12_password = pkcs12::new_password();
    write_secret(
        &dir.join(pkcs12::PASSWORD_FILE),
        &format!("{p12_password}\n"),
    )?;
    for p in &registry.partners {
        let id = p.id.as_str();
        let cert = ca.issue_partner(DEV_TRUST_DOMAIN, id)?;
        write_public(&dir.join(format!("{id}.pem")), &cert.cert_pem)?;
        write_secret(&dir.join(format!("{id}-key.pem")), &cert.key_pem)?;
        write_secret_bytes(
            &dir.join(format!("{id}.p12")),
            &pkcs12::write(
                &cert.cert_pem,
                &cert.key_pem,
                &ca.cert_pem,
                id,
                &p12_password,
            )?,
        )?;
        let jwks_name = p
            .token
            .jwks_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{id}.jwks.json")));
        let signing = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let kid = format!("{id}-dev-1");
        write_secret(
            &dir.join("partner-keys")
                .join(format!("{id}-signing-key.pem")),
            &signing.serialize_pem(),
        )?;
        write_public(
            &dir.join("partner-keys").join(jwks_name),
            &serde_json::to_string_pretty(&jwks_es256(&signing, &kid))?,
        )?;
        let enc_name = p
            .encryption
            .as_ref()
            .map(|e| e.jwk_file.clone())
            .unwrap_or_else(|| PathBuf::from(format!("{id}.enc.jwk.json")));
        let (public_jwk, private_jwk) = encryption_key_pair(&format!("{id}-enc-dev-1"))?;
        // The partner's private key goes with its other private material, not into
        // `partner-keys/`, the directory the gateway reads partners' public keys from.
        write_secret(
            &dir.join(format!("{id}-encryption-key.jwk.json")),
            &private_jwk,
        )?;
        write_public(&dir.join("partner-keys").join(enc_name), &public_jwk)?;
        if let Some(vkey_file) = p.witness.as_ref().and_then(|w| w.vkey_file.as_ref()) {
            // The partner's witness key: the private key for `audit witness --witness-key`,
            // the vkey the registry names.
            let seed: [u8; 32] = rand::random();
            let signer = NoteSigner::new(id, TYPE_COSIGNATURE, &seed)?;
            write_secret(&dir.join(format!("{id}-witness.key")), &signer.to_skey())?;
            write_public(
                &dir.join("partner-keys").join(vkey_file),
                &format!("{}\n", signer.verifier().to_vkey()),
            )?;
        }
        partners.push(p.id.clone());
    }

    let master: [u8; 32] = rand::random();
    write_secret(&dir.join("master.key"), &hex::encode(master))?;
    let checkpoint_seed = crate::audit::CheckpointSigner::generate_hex();
    write_secret(&dir.join("audit-checkpoint.key"), &checkpoint_seed)?;
    // The log's note verifier key, as partners pin it (`audit witness --log-key`).
    let mut seed = [0u8; 32];
    hex::decode_to_slice(&checkpoint_seed, &mut seed)?;
    let log_signer = crate::audit::CheckpointSigner::from_seed(&seed)
        .with_origin(&format!("{DEV_TRUST_DOMAIN}/disclosure-log"))?;
    write_public(
        &dir.join("audit-log.vkey"),
        &format!("{}\n", log_signer.note_verifier().to_vkey()),
    )?;

    let policy_dir = fs::canonicalize(&opts.policy_dir)?;
    let toml = format!(
        r#"# Development configuration written by `coresponse-gateway init`.
# Every certificate and key next to this file is generated dev material: never commit it,
# never use it in production. Keys are documented in the README ("Configuration").

[server]
listen = "{listen}"

[tls]
server_cert = "server.pem"
server_key = "server-key.pem"
client_ca = "ca.pem"
crls = ["crl.pem"]

[identity]
trust_domain = "{DEV_TRUST_DOMAIN}"
audience = "coresponse-gateway"
leeway_secs = 30
partner_keys_dir = "partner-keys"

[policy]
dir = {policy_dir}

[storage]
url = "sqlite://data/gateway.db"

[crypto]
master_key_file = "master.key"

[audit]
checkpoint_key_file = "audit-checkpoint.key"
"#,
        listen = opts.listen,
        policy_dir = toml_edit::Value::from(policy_dir.display().to_string()),
    );
    write_public(&config, &toml)?;
    Ok(InitReport { config, partners })
}

/// A public JWKS holding one ES256 key.
pub fn jwks_es256(key: &KeyPair, kid: &str) -> serde_json::Value {
    let raw = key.public_key_raw(); // 0x04 || X || Y
    let (x, y) = raw
        .get(1..)
        .unwrap_or_default()
        .split_at(32.min(raw.len().saturating_sub(1)));
    json!({ "keys": [{
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
    }]})
}

/// A fresh P-256 encryption key pair for a partner: (public JWK, private JWK), both pretty
/// JSON with `kid`, `use` `enc` and `alg` `ECDH-ES`. The private one stays with the partner.
pub fn encryption_key_pair(kid: &str) -> anyhow::Result<(String, String)> {
    let secret = (0..8)
        .find_map(|_| p256::SecretKey::from_slice(&rand::random::<[u8; 32]>()).ok())
        .ok_or_else(|| anyhow::anyhow!("cannot generate an encryption key"))?;
    let with_meta = |jwk: String| -> anyhow::Result<String> {
        let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&jwk)?;
        v.insert("kid".into(), json!(kid));
        v.insert("use".into(), json!("enc"));
        v.insert("alg".into(), json!("ECDH-ES"));
        Ok(serde_json::to_string_pretty(&v)?)
    };
    let public = with_meta(secret.public_key().to_jwk_string())?;
    let private = with_meta(secret.to_jwk_string().to_string())?;
    Ok((public, private))
}

/// Claims of a dev user token.
#[derive(Debug, Clone)]
pub struct TokenRequest<'a> {
    /// `iss`.
    pub issuer: &'a str,
    /// `aud`.
    pub audience: &'a str,
    /// `sub`.
    pub user: &'a str,
    /// Roles, written to `roles_claim`.
    pub roles: &'a [String],
    /// Claim name for the roles.
    pub roles_claim: &'a str,
    /// Lifetime in seconds.
    pub ttl_secs: i64,
    /// Certificate to bind with `cnf.x5t#S256`, if any (DER).
    pub bind_to: Option<&'a [u8]>,
    /// Key id for the header.
    pub kid: Option<&'a str>,
}

/// Signs a dev token with an ES256 PKCS#8 PEM key.
pub fn mint_token(signing_key_pem: &[u8], req: &TokenRequest<'_>) -> anyhow::Result<String> {
    let now = chrono::Utc::now().timestamp();
    let mut claims = serde_json::Map::new();
    claims.insert("iss".into(), json!(req.issuer));
    claims.insert("aud".into(), json!(req.audience));
    claims.insert("sub".into(), json!(req.user));
    claims.insert("iat".into(), json!(now));
    claims.insert("nbf".into(), json!(now));
    claims.insert("exp".into(), json!(now + req.ttl_secs));
    claims.insert("jti".into(), json!(uuid::Uuid::new_v4().to_string()));
    claims.insert(req.roles_claim.to_owned(), json!(req.roles));
    if let Some(der) = req.bind_to {
        claims.insert(
            "cnf".into(),
            json!({ "x5t#S256": CertFingerprint::of_der(der).to_x5t_s256() }),
        );
    }
    let mut header = Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = req.kid.map(str::to_owned);
    let key = EncodingKey::from_ec_pem(signing_key_pem)?;
    Ok(jsonwebtoken::encode(&header, &claims, &key)?)
}

/// DER of the first certificate in a PEM file.
pub fn cert_der_from_pem_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let certs = crate::tls::load_certs(path)?;
    certs
        .into_iter()
        .next()
        .map(|c| c.as_ref().to_vec())
        .ok_or_else(|| anyhow::anyhow!("no certificate in `{}`", path.display()))
}

fn write_public(path: &Path, text: &str) -> std::io::Result<()> {
    fs::write(path, text)
}

/// Writes a secret file (mode 0600 where the platform has modes).
pub fn write_secret_file(path: &Path, text: &str) -> std::io::Result<()> {
    write_secret(path, text)
}

fn write_secret(path: &Path, text: &str) -> std::io::Result<()> {
    write_secret_bytes(path, text.as_bytes())
}

fn write_secret_bytes(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(bytes)
}
