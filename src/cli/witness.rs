//! `audit witness`: what a partner agency runs (from cron) to witness the gateway's disclosure
//! log, and `audit witness-key`, which makes its witness key.
//!
//! Security role: the witness runs on the partner's machine, trusts nothing the gateway says
//! without checking it, and reads no entry. Each run fetches the latest checkpoint over mutual
//! TLS, checks the gateway's signature with the pinned log key, checks that it extends the last
//! checkpoint it saw (kept in its state file) with an RFC 6962 consistency proof, cosigns it
//! (C2SP `tlog-cosignature`) and posts the cosignature back. A conflict is not cosigned: the
//! run exits with status 2 and writes both signed checkpoints as evidence.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::audit::transparency::ConsistencyProof;
use crate::audit::witness::{self, Observed, Verdict};
use crate::crypto::note::{Note, NoteSigner, TYPE_COSIGNATURE, VerifierKey};

/// What one witness run is given.
#[derive(Debug, Clone)]
pub struct WitnessOptions {
    /// The gateway's base URL, e.g. `https://gateway.example:8443`.
    pub url: String,
    /// The log's note verifier key (vkey text).
    pub log_key: VerifierKey,
    /// The witness's signer (cosignature key).
    pub witness: Arc<NoteSigner>,
    /// Where the last verified checkpoint is kept.
    pub state: PathBuf,
}

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessOutcome {
    /// The checkpoint was verified, cosigned and the cosignature accepted.
    Cosigned {
        /// The tree size cosigned.
        size: u64,
        /// The earlier size it was checked against (0: the first run).
        from: u64,
    },
    /// The log misbehaved; nothing was cosigned. `evidence` is where both checkpoints were
    /// written.
    Conflict {
        /// Why.
        reason: String,
        /// The evidence file.
        evidence: PathBuf,
    },
}

/// A mutual-TLS client presenting the partner's certificate and trusting `ca`.
pub fn client(cert: &Path, key: &Path, ca: &Path) -> anyhow::Result<reqwest::Client> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", p.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&read(ca)?) {
        roots
            .add(c.map_err(|e| anyhow::anyhow!("`{}`: {e}", ca.display()))?)
            .map_err(|e| anyhow::anyhow!("`{}`: {e}", ca.display()))?;
    }
    let chain = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("`{}`: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&read(key)?)
        .map_err(|e| anyhow::anyhow!("`{}`: {e}", key.display()))?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)?;
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// Reads a key given inline or as a file holding it.
pub fn read_key_text(arg: &str) -> anyhow::Result<String> {
    let path = Path::new(arg);
    if path.is_file() {
        return std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", path.display()));
    }
    Ok(arg.to_owned())
}

async fn get_text(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let res = client.get(url).send().await?;
    let status = res.status();
    let text = res.text().await?;
    if !status.is_success() {
        anyhow::bail!("GET {url}: {status}: {text}");
    }
    Ok(text)
}

fn load_state(log_key: &VerifierKey, path: &Path) -> anyhow::Result<Option<Observed>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => anyhow::bail!("cannot read the state file `{}`: {e}", path.display()),
    };
    Ok(Some(witness::observe(log_key, &text).map_err(|e| {
        anyhow::anyhow!(
            "the state file `{}` does not hold a checkpoint of this log: {e}",
            path.display()
        )
    })?))
}

fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", path.display()))?;
    Ok(())
}

/// One witness run against the gateway at `opts.url` (see the module documentation).
pub async fn run_once(
    client: &reqwest::Client,
    opts: &WitnessOptions,
) -> anyhow::Result<WitnessOutcome> {
    let base = opts.url.trim_end_matches('/');
    let text = get_text(client, &format!("{base}/v1/audit/checkpoint")).await?;
    let now = witness::observe(&opts.log_key, &text)?;
    let earlier = load_state(&opts.log_key, &opts.state)?;
    let proof = match witness::proof_needed(earlier.as_ref(), &now) {
        Some((from, to)) => {
            let body = get_text(
                client,
                &format!("{base}/v1/audit/proof/consistency?from={from}&to={to}"),
            )
            .await?;
            let p: ConsistencyProof = serde_json::from_str(&body)
                .map_err(|e| anyhow::anyhow!("the consistency proof is malformed: {e}"))?;
            if p.from != from || p.to != to {
                anyhow::bail!("the gateway answered a consistency proof for other sizes");
            }
            p.hashes
        }
        None => Vec::new(),
    };
    let verdict = witness::judge(earlier.as_ref(), &now, &proof);
    let from = match verdict {
        Verdict::Conflict(reason) => {
            let evidence = opts.state.with_extension("conflict");
            let earlier_text = earlier.map(|e| e.note.to_text()).unwrap_or_default();
            write_atomically(
                &evidence,
                &format!(
                    "# {reason}\n# The checkpoint seen before:\n{earlier_text}\n# The checkpoint \
                     served now:\n{}",
                    now.note.to_text()
                ),
            )?;
            return Ok(WitnessOutcome::Conflict { reason, evidence });
        }
        Verdict::First => 0,
        Verdict::Same => now.head.size,
        Verdict::Extends { from } => from,
    };
    // Keep the verified checkpoint before cosigning: the next run checks against it whatever
    // happens to the post.
    let own = Note {
        body: now.note.body.clone(),
        signatures: now
            .note
            .signatures
            .iter()
            .filter(|s| s.name == opts.log_key.name && s.id == opts.log_key.id())
            .cloned()
            .collect(),
    };
    write_atomically(&opts.state, &own.to_text())?;
    let timestamp = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
    let mut cosigned = own.clone();
    cosigned
        .signatures
        .push(opts.witness.cosign(&own.body, timestamp));
    let res = client
        .post(format!("{base}/v1/audit/cosignatures"))
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(cosigned.to_text())
        .send()
        .await?;
    let status = res.status();
    if !status.is_success() {
        let text = res.text().await.unwrap_or_default();
        anyhow::bail!("the gateway refused the cosignature: {status}: {text}");
    }
    Ok(WitnessOutcome::Cosigned {
        size: now.head.size,
        from,
    })
}

/// A new witness key named `name`: the private key text and the vkey to register.
pub fn new_witness_key(name: &str) -> anyhow::Result<(String, String)> {
    let seed: [u8; 32] = rand::random();
    let s = NoteSigner::new(name, TYPE_COSIGNATURE, &seed)?;
    Ok((s.to_skey(), s.verifier().to_vkey()))
}
