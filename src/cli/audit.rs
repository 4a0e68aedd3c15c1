//! `audit verify`, `entries`, `witness`, `witness-key`, `vkey`, `checkpoints`, `purge` and
//! `part2-disclosures`: the disclosure log, offline on the database (the witness over HTTPS).

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

use crate::config::{LogSettings, Settings};

/// How often `audit verify` says how far it has come, on a terminal.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// `verifying: 3000000 of about 9000000 entries read (600000 entries/s)`.
fn progress_line(read: u64, head: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { read as f64 / secs } else { 0.0 };
    let of = if head >= read {
        format!(" of about {head}")
    } else {
        String::new()
    };
    format!("verifying: {read}{of} entries read ({rate:.0} entries/s)")
}

#[derive(Debug, Subcommand)]
pub(super) enum AuditCommand {
    /// Verify the whole chain; exits with status 2 naming the first failing entry.
    Verify {
        /// Config file.
        #[arg(long, env = "GATEWAY_CONFIG")]
        config: PathBuf,
        /// A partner's copy of the checkpoints: the JSON of `GET /v1/audit/checkpoints`, or a
        /// signed tree head (a C2SP checkpoint, such as a witness's state file or the text of
        /// `GET /v1/audit/checkpoint`).
        #[arg(long)]
        checkpoints: Option<PathBuf>,
        /// Partner ids whose witnesses must have cosigned a checkpoint (comma-separated, e.g.
        /// `metro-pd,county-mh`); their witness keys come from the partner registry.
        #[arg(long, value_delimiter = ',')]
        require_witnesses: Vec<String>,
    },
    /// Print entries with their sealed free text opened (compliance use; newest first).
    Entries {
        /// Config file.
        #[arg(long, env = "GATEWAY_CONFIG")]
        config: PathBuf,
        /// Only entries with a smaller sequence number.
        #[arg(long)]
        before: Option<u64>,
        /// How many (1 to 500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Witness the gateway's log (a partner runs this from cron): fetch the latest checkpoint,
    /// check it against the last one seen, cosign it and post the cosignature. Exit status 2
    /// on a conflict, with both checkpoints written to STATE.conflict. Runs of one witness take
    /// turns (STATE.lock).
    Witness {
        /// The gateway's base URL, e.g. `https://localhost:8443`.
        #[arg(long)]
        url: String,
        /// The log's note verifier key (vkey text, or a file holding it).
        #[arg(long)]
        log_key: String,
        /// This partner's witness private key file (written by `audit witness-key`).
        #[arg(long)]
        witness_key: PathBuf,
        /// Where the last verified checkpoint is kept between runs.
        #[arg(long)]
        state: PathBuf,
        /// This partner's client certificate (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// Its private key (PEM).
        #[arg(long)]
        key: PathBuf,
        /// The CA bundle the gateway's server certificate chains to.
        #[arg(long)]
        ca: PathBuf,
    },
    /// Make a witness key: writes the private key to OUT and prints the vkey to register as
    /// `[partner.witness] vkey` in `policies/partners.toml`.
    WitnessKey {
        /// The key name (the partner id, or a URL naming the witness).
        #[arg(long)]
        name: String,
        /// Where to write the private key (refused if it exists).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the log's note verifier key (vkey): the public key partners pin to check its
    /// signed checkpoints (`audit witness --log-key`). Reads `audit.checkpoint_key_file` and
    /// prints nothing secret; needs no database.
    Vkey {
        /// Config file.
        #[arg(long, env = "GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// Print the signed checkpoints and the public key as JSON.
    Checkpoints {
        /// Config file.
        #[arg(long, env = "GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// Remove entries past retention, up to the newest verified checkpoint that covers them.
    Purge {
        /// Config file.
        #[arg(long, env = "GATEWAY_CONFIG")]
        config: PathBuf,
        /// Only report what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// A patient's list of disclosures of 42 CFR Part 2 information in the last three years
    /// (42 CFR 2.24), read-only.
    Part2Disclosures(Box<super::directives::Part2Args>),
}

/// A partner's copy of the log's checkpoints for `audit verify --checkpoints`: the JSON export
/// of the chain checkpoints, or one signed tree head (C2SP checkpoint) whose signature is checked
/// here with the configured checkpoint key under the log's origin.
fn partner_copy(
    settings: &crate::config::Settings,
    path: &std::path::Path,
) -> anyhow::Result<(
    Option<crate::audit::CheckpointExport>,
    Vec<crate::audit::note::TreeHead>,
)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", path.display()))?;
    if text.trim_start().starts_with('{') {
        let export = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "`{}` is not a checkpoint export (GET /v1/audit/checkpoints): {e}",
                path.display()
            )
        })?;
        return Ok((Some(export), Vec::new()));
    }
    let Some(key_file) = &settings.audit.checkpoint_key_file else {
        anyhow::bail!(
            "`{}` is a signed tree head; checking its signature needs the log's key: configure \
             `audit.checkpoint_key_file`",
            path.display()
        );
    };
    let log_key = crate::audit::CheckpointSigner::load(key_file)?
        .with_origin(&crate::startup::log_origin(settings))?
        .note_verifier();
    let seen = crate::audit::witness::observe(&log_key, &text).map_err(|e| {
        anyhow::anyhow!(
            "`{}` is neither a checkpoint export (GET /v1/audit/checkpoints) nor a signed tree \
             head of this log (GET /v1/audit/checkpoint, a witness's state file): {e}",
            path.display()
        )
    })?;
    Ok((None, vec![seen.head]))
}

/// Runs an `audit` subcommand.
pub(super) async fn run(command: AuditCommand) -> anyhow::Result<ExitCode> {
    use crate::audit::{CheckpointExport, CheckpointSigner, retention, stored_checkpoints};
    let config = match &command {
        AuditCommand::Verify { config, .. }
        | AuditCommand::Checkpoints { config }
        | AuditCommand::Entries { config, .. }
        | AuditCommand::Purge { config, .. } => config,
        AuditCommand::Part2Disclosures(args) => &args.config,
        AuditCommand::Witness {
            url,
            log_key,
            witness_key,
            state,
            cert,
            key,
            ca,
        } => {
            let log_key =
                crate::crypto::note::VerifierKey::parse(&super::witness::read_key_text(log_key)?)
                    .map_err(|e| anyhow::anyhow!("`--log-key`: {e}"))?;
            let signer = crate::crypto::note::NoteSigner::parse(
                &std::fs::read_to_string(witness_key)
                    .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", witness_key.display()))?,
            )
            .map_err(|e| anyhow::anyhow!("`{}`: {e}", witness_key.display()))?;
            let client = super::witness::client(cert, key, ca)?;
            let opts = super::witness::WitnessOptions {
                url: url.clone(),
                log_key,
                witness: std::sync::Arc::new(signer),
                state: state.clone(),
            };
            return match super::witness::run_once(&client, &opts).await? {
                super::witness::WitnessOutcome::Cosigned { size, from } => {
                    outln!(
                        "cosigned the checkpoint of {size} entries ({})",
                        if from == 0 {
                            "first checkpoint seen: trusted on first use".to_owned()
                        } else if from == size {
                            "unchanged since the last run".to_owned()
                        } else {
                            format!("consistent with the {from} entries seen before")
                        }
                    );
                    Ok(ExitCode::SUCCESS)
                }
                super::witness::WitnessOutcome::Conflict { reason, evidence } => {
                    errln!(
                        "CONFLICT: {reason}. Nothing was cosigned; both signed checkpoints are \
                         in `{}`: keep them as evidence and alert the other partners",
                        evidence.display()
                    );
                    Ok(ExitCode::from(2))
                }
            };
        }
        AuditCommand::Vkey { config } => {
            let settings = Settings::load(config)?;
            let Some(key_file) = &settings.audit.checkpoint_key_file else {
                anyhow::bail!(
                    "no `audit.checkpoint_key_file` is configured in `{}`: the log signs no \
                     checkpoints, so it has no verifier key",
                    config.display()
                );
            };
            let vkey = CheckpointSigner::load(key_file)?
                .with_origin(&crate::startup::log_origin(&settings))?
                .note_verifier()
                .to_vkey();
            outln!("{vkey}");
            return Ok(ExitCode::SUCCESS);
        }
        AuditCommand::WitnessKey { name, out } => {
            if out.exists() {
                anyhow::bail!("`{}` exists; choose another file", out.display());
            }
            let (skey, vkey) = super::witness::new_witness_key(name)?;
            crate::devinit::write_secret_file(out, &skey)?;
            outln!("{vkey}");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let settings = Settings::load(config)?;
    crate::telemetry::init(&LogSettings {
        filter: "warn".into(),
        ..LogSettings::default()
    });
    // Verifying and exporting change nothing: the database is opened read-only (and not
    // migrated). A purge writes.
    let store = match command {
        AuditCommand::Purge { .. } => crate::store::Store::open(&settings.storage).await?,
        _ => crate::store::Store::open_read_only(&settings.storage).await?,
    };
    let key = match &settings.audit.checkpoint_key_file {
        Some(p) => Some(CheckpointSigner::load(p)?.verifying_key()),
        None => None,
    };
    match command {
        AuditCommand::Verify {
            checkpoints,
            require_witnesses,
            ..
        } => {
            let (partner, partner_heads) = match checkpoints {
                Some(path) => partner_copy(&settings, &path)?,
                None => (None, Vec::new()),
            };
            let witnesses = if require_witnesses.is_empty() {
                Vec::new()
            } else {
                let registry = crate::policy::partners::PartnerRegistry::load(
                    &settings.policy.dir,
                    &settings.identity.partner_keys_dir,
                )?;
                let mut out = Vec::new();
                for id in &require_witnesses {
                    let pid: crate::domain::PartnerId = id
                        .parse()
                        .map_err(|e| anyhow::anyhow!("`--require-witnesses`: {e}"))?;
                    let key = registry
                        .get(&pid)
                        .ok_or_else(|| anyhow::anyhow!("`--require-witnesses`: no partner `{id}`"))?
                        .witness
                        .clone()
                        .ok_or_else(|| {
                            anyhow::anyhow!(
                                "`--require-witnesses`: partner `{id}` has no witness key in \
                                 the partner registry"
                            )
                        })?;
                    out.push((id.clone(), key));
                }
                out
            };
            // On a terminal, a line every few seconds says how far it has come (years of log
            // take minutes); cron and pipes get only the result.
            let progress = crate::audit::Progress::default();
            let ticker = std::io::stderr().is_terminal().then(|| {
                let progress = progress.clone();
                tokio::spawn(async move {
                    let started = std::time::Instant::now();
                    let mut every = tokio::time::interval(PROGRESS_EVERY);
                    every.tick().await;
                    loop {
                        every.tick().await;
                        errln!(
                            "{}",
                            progress_line(
                                progress.entries_read(),
                                progress.head(),
                                started.elapsed()
                            )
                        );
                    }
                })
            });
            let report = crate::audit::verify_store_reporting(
                &store,
                key.as_ref(),
                partner.as_ref(),
                &partner_heads,
                &witnesses,
                &progress,
            )
            .await;
            if let Some(t) = ticker {
                t.abort();
            }
            let report = report?;
            let s = &report.summary;
            if s.failure.is_none()
                && let Some(t) = &report.tree
                && let Some(why) = &t.failure
            {
                errln!("FAILED: the Merkle tree: {why}");
                return Ok(ExitCode::from(2));
            }
            match &s.failure {
                None => {
                    outln!(
                        "ok: {} entries verified{}, last entry {} ({}); {} checkpoints checked{}",
                        s.entries_checked,
                        report
                            .first_seq
                            .filter(|f| *f > 1)
                            .map(|f| format!(" from entry {f} (anchored at a signed checkpoint)"))
                            .unwrap_or_default(),
                        s.last_seq,
                        s.last_hash,
                        report.checkpoints_checked,
                        if report.signatures_checked {
                            " with their signatures"
                        } else {
                            " (no checkpoint key configured: signatures not checked)"
                        },
                    );
                    if let Some(t) = &report.tree {
                        outln!(
                            "ok: Merkle tree of {} leaves (from entry {}) rebuilt; {} signed \
                             tree heads checked{}{}",
                            t.leaves,
                            t.tree_base + 1,
                            t.checkpoints_checked,
                            if t.partner_heads_checked > 0 {
                                format!(", and {} saved by a partner", t.partner_heads_checked)
                            } else {
                                String::new()
                            },
                            t.witnessed_size
                                .map(|n| format!(
                                    "; the newest checkpoint cosigned by {} is of {n} leaves",
                                    require_witnesses.join(", ")
                                ))
                                .unwrap_or_default()
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Some(f) => {
                    errln!(
                        "FAILED at entry {}: {}: {}",
                        f.seq,
                        f.kind.as_str(),
                        f.message
                    );
                    Ok(ExitCode::from(2))
                }
            }
        }
        AuditCommand::Checkpoints { .. } => {
            let key = key.ok_or_else(|| {
                anyhow::anyhow!("no `audit.checkpoint_key_file` is configured: no checkpoints")
            })?;
            let export = CheckpointExport::new(&key, stored_checkpoints(&store).await?);
            outln!("{}", serde_json::to_string_pretty(&export)?);
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Entries { before, limit, .. } => {
            let keyring =
                crate::service::keys::open_read_only(&settings.crypto.master_key_file, &store)
                    .await?;
            let text = keyring
                .log_text_key()
                .map(|k| crate::audit::LogTextKey::new(&k));
            let filter = crate::audit::query::Filter {
                before_seq: before,
                limit,
                ..Default::default()
            };
            let mut entries = {
                let mut pooled = store.acquire().await?;
                crate::audit::query::list(&mut pooled.conn(), &filter).await?
            };
            for e in &mut entries {
                if let Some(k) = &text {
                    k.open(e)?;
                }
                outln!(
                    "{}",
                    serde_json::to_string(&crate::audit::query::EntryView::from(&*e))?
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Purge { dry_run, .. } => {
            let keyring =
                crate::service::keys::open(&settings.crypto.master_key_file, &store).await?;
            let log = crate::startup::open_log(&settings, store, &keyring)?;
            let report = retention::purge(&log, chrono::Utc::now(), dry_run).await?;
            outln!("{}", serde_json::to_string_pretty(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Part2Disclosures(args) => {
            store.close().await;
            super::directives::part2(&args).await
        }
        // Run above, without a database.
        AuditCommand::Witness { .. }
        | AuditCommand::WitnessKey { .. }
        | AuditCommand::Vkey { .. } => Ok(ExitCode::SUCCESS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_says_how_far_and_how_fast() {
        assert_eq!(
            progress_line(3_000_000, 9_000_000, Duration::from_secs(5)),
            "verifying: 3000000 of about 9000000 entries read (600000 entries/s)"
        );
        // Entries appended meanwhile: no "of about" smaller than what was read.
        assert_eq!(
            progress_line(12, 10, Duration::from_secs(4)),
            "verifying: 12 entries read (3 entries/s)"
        );
        assert_eq!(
            progress_line(0, 0, Duration::ZERO),
            "verifying: 0 of about 0 entries read (0 entries/s)"
        );
    }
}
