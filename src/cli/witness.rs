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

/// Replaces `path` with `text` so that a crash leaves the old file or the new one, on disk:
/// written to a temporary file, flushed, renamed over `path`, and the rename flushed.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let cannot =
        |p: &Path, e: std::io::Error| anyhow::anyhow!("cannot write `{}`: {e}", p.display());
    let mut f = std::fs::File::create(&tmp).map_err(|e| cannot(&tmp, e))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| cannot(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| cannot(path, e))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| cannot(path, e))?;
    Ok(())
}

/// How long a run waits for another run of the same witness to finish.
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// Takes `STATE.lock` for one run, waiting up to `wait` for a run that holds it. Overlapping
/// runs (a slow run and the next cron tick) take turns: otherwise the later could write back an
/// older checkpoint than the earlier had accepted, and a log rolled back to that older tree
/// would then be cosigned. The lock is the returned file's; it is released when the file is
/// dropped, or when the process ends.
async fn lock_state(state: &Path, wait: Duration) -> anyhow::Result<std::fs::File> {
    let path = state.with_extension("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open the lock file `{}`: {e}", path.display()))?;
    let deadline = std::time::Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "another run of this witness has held `{}` for {} s; runs overlap: let each \
                 finish before the next starts (run it less often)",
                path.display(),
                wait.as_secs()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                anyhow::bail!("cannot lock `{}`: {e}", path.display())
            }
        }
    }
}

/// One witness run against the gateway at `opts.url` (see the module documentation).
pub async fn run_once(
    client: &reqwest::Client,
    opts: &WitnessOptions,
) -> anyhow::Result<WitnessOutcome> {
    let _lock = lock_state(&opts.state, LOCK_WAIT).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overlapping_runs_take_turns_on_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("metro-pd.state");
        let first = lock_state(&state, Duration::ZERO).await.unwrap();
        let refused = lock_state(&state, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("another run of this witness has held"),
            "{refused}"
        );
        // The second waits for the first to finish, then runs.
        let waiting = tokio::spawn({
            let state = state.clone();
            async move { lock_state(&state, Duration::from_secs(10)).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(first);
        let second = waiting.await.unwrap();
        assert!(second.is_ok(), "{second:?}");
    }

    #[test]
    fn the_state_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("w.state");
        write_atomically(&state, "one\n").unwrap();
        write_atomically(&state, "two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&state).unwrap(), "two\n");
        assert!(!dir.path().join("w.tmp").exists());
    }
}
