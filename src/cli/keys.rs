//! `keys status`, `rotate`, `rewrap` and `retire`: the master keys that protect data at rest,
//! each change recorded in the disclosure log.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub(super) enum KeysCommand {
    /// Show master-key versions and how many data keys each one wraps.
    Status {
        /// Config file.
        #[arg(long, env = "GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// Add a new master-key version to the key file; it becomes current. Restart every
    /// gateway, then run `keys rewrap` (or pass `--rewrap` when no gateway is running).
    Rotate {
        /// Config file.
        #[arg(long, env = "GATEWAY_CONFIG")]
        config: PathBuf,
        /// Re-wrap every data key under the new version straight away.
        #[arg(long)]
        rewrap: bool,
    },
    /// Re-wrap every data key under the current master-key version (field ciphertexts are not
    /// touched).
    Rewrap {
        /// Config file.
        #[arg(long, env = "GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// Remove an old master-key version from the key file; refused while any data key uses it.
    Retire {
        /// Config file.
        #[arg(long, env = "GATEWAY_CONFIG")]
        config: PathBuf,
        /// The version to retire.
        version: u32,
    },
}

/// Runs a `keys` subcommand.
pub(super) async fn run(command: KeysCommand) -> anyhow::Result<ExitCode> {
    use crate::crypto::MasterVersion;
    use crate::service::keys;
    use crate::store::Store;

    let config = match &command {
        KeysCommand::Status { config }
        | KeysCommand::Rotate { config, .. }
        | KeysCommand::Rewrap { config }
        | KeysCommand::Retire { config, .. } => config,
    };
    let settings = Settings::load(config)?;
    let key_file = &settings.crypto.master_key_file;
    if let KeysCommand::Status { .. } = command {
        let store = Store::open_read_only(&settings.storage).await?;
        let result = async {
            let (master, unrecorded) = keys::inspect(key_file, &store).await?;
            let counts = keys::data_key_versions(&store).await?;
            let current = master.current();
            for v in master.versions() {
                let n = counts
                    .iter()
                    .find(|(cv, _)| *cv == v.to_db())
                    .map_or(0, |(_, n)| *n);
                let fp = master.fingerprint(v).unwrap_or_default();
                let mark = if v == current { " (current)" } else { "" };
                let note = if unrecorded.contains(&v) {
                    "; not yet recorded in the database (no gateway has opened it)"
                } else {
                    ""
                };
                outln!(
                    "master key v{v}{mark}: check value {}..., wraps {n} data key(s){note}",
                    fp.get(..12).unwrap_or_default()
                );
            }
            anyhow::Ok(ExitCode::SUCCESS)
        }
        .await;
        store.close().await;
        return result;
    }
    let store = Store::open(&settings.storage).await?;
    let result = async {
        match command {
            KeysCommand::Status { .. } => {}
            KeysCommand::Rotate { rewrap, .. } => {
                let previous = keys::open(key_file, &store).await?.master().current();
                let version = keys::rotate(key_file, &store).await?;
                let keyring = keys::open(key_file, &store).await?;
                let log = crate::startup::open_log(&settings, store.clone(), &keyring)?;
                let counts = data_key_counts(&store).await?;
                record_key_event(
                    &log,
                    format!(
                        "keys rotate: master key version {version} added to the key file and \
                         made current (previous current version {previous}); data keys per \
                         master-key version: {counts}"
                    ),
                    &format!("master key version {version} was added to the key file"),
                )
                .await?;
                outln!(
                    "added master key version {version} to {} (now current)",
                    key_file.display()
                );
                if rewrap {
                    rewrap_all(&keyring, &store, &log).await?;
                } else {
                    outln!(
                        "restart every gateway so it holds the new version, then run \
                         `coresponse-gateway keys rewrap`"
                    );
                }
            }
            KeysCommand::Rewrap { .. } => {
                let keyring = keys::open(key_file, &store).await?;
                let log = crate::startup::open_log(&settings, store.clone(), &keyring)?;
                rewrap_all(&keyring, &store, &log).await?;
            }
            KeysCommand::Retire { version, .. } => {
                let version = MasterVersion::new(version)
                    .ok_or_else(|| anyhow::anyhow!("master key versions start at 1"))?;
                let keyring = keys::open(key_file, &store).await?;
                let log = crate::startup::open_log(&settings, store.clone(), &keyring)?;
                keys::retire(&keyring, &store, version).await?;
                let remaining: Vec<String> = keyring
                    .master()
                    .versions()
                    .filter(|v| *v != version)
                    .map(|v| v.to_string())
                    .collect();
                record_key_event(
                    &log,
                    format!(
                        "keys retire: master key version {version} removed from the key file \
                         (no data key was wrapped under it); versions left: {} (current {})",
                        remaining.join(", "),
                        keyring.master().current()
                    ),
                    &format!("master key version {version} was removed from the key file"),
                )
                .await?;
                outln!(
                    "retired master key version {version}: removed from {}; destroy any backup \
                     copy of it according to the agency's key policy",
                    key_file.display()
                );
            }
        }
        anyhow::Ok(ExitCode::SUCCESS)
    }
    .await;
    store.close().await;
    result
}

/// Data keys per master-key version, for a log entry: `v1: 3, v2: 12` (or `none`).
async fn data_key_counts(store: &crate::store::Store) -> anyhow::Result<String> {
    let counts = crate::service::keys::data_key_versions(store).await?;
    if counts.is_empty() {
        return Ok("none".into());
    }
    Ok(counts
        .iter()
        .map(|(v, n)| format!("v{v}: {n}"))
        .collect::<Vec<_>>()
        .join(", "))
}

/// Re-wraps every data key under the current master-key version, records it and says so.
async fn rewrap_all(
    keyring: &crate::crypto::Keyring,
    store: &crate::store::Store,
    log: &crate::audit::DisclosureLog,
) -> anyhow::Result<()> {
    let report = crate::service::keys::rewrap(keyring, store).await?;
    record_rewrap(log, store, report).await?;
    outln!(
        "re-wrapped {} data key(s) under version {}",
        report.rewrapped,
        report.current
    );
    Ok(())
}

/// Appends the `key_rotated` entry of a rewrap and waits for its durable commit.
async fn record_rewrap(
    log: &crate::audit::DisclosureLog,
    store: &crate::store::Store,
    report: crate::service::keys::RewrapReport,
) -> anyhow::Result<()> {
    let counts = data_key_counts(store).await?;
    record_key_event(
        log,
        format!(
            "keys rewrap: {} data key(s) re-wrapped under master key version {}; data keys per \
             master-key version now: {counts}",
            report.rewrapped, report.current
        ),
        &format!(
            "{} data key(s) were re-wrapped under master key version {}",
            report.rewrapped, report.current
        ),
    )
    .await
}

/// Appends a `key_rotated` entry describing a key operation that has taken place and waits
/// for its durable commit. `done` says what already changed, for the error if the entry
/// cannot be written.
async fn record_key_event(
    log: &crate::audit::DisclosureLog,
    detail: String,
    done: &str,
) -> anyhow::Result<()> {
    use crate::audit::{EntryKind, NewEntry, Outcome};
    let mut entry = NewEntry::new(EntryKind::KeyRotated, chrono::Utc::now(), Outcome::Permit);
    entry.detail = Some(detail);
    log.append(entry).await.map_err(|e| {
        anyhow::anyhow!(
            "{done}, but its disclosure-log entry could not be written ({e}); record the \
             operation by other means and check the database"
        )
    })?;
    Ok(())
}
