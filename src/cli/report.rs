//! `coresponse-gateway report run`: runs a report on the gateway's database and prints its JSON
//! or writes its JSON, CSV and SVG files.
//!
//! The command runs where the gateway's configuration and keys are, so it is for the operators
//! of the gateway acting for a program manager: it names the partner, user and role it acts
//! for, and the run is checked against the definition's runners and logged exactly as over the
//! API (`report_generated`, with source `command-line`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{LogSettings, Settings};
use crate::domain::{CertFingerprint, Principal, Role};
use crate::reports::{Period, Released, facts, render};
use crate::service::{Caller, Services, keys};
use crate::store::Store;

/// `coresponse-gateway report run`: the arguments.
#[derive(Debug, clap::Args)]
pub(super) struct RunArgs {
    /// The report's id, e.g. `annual-report` (`policies/reports/*.toml`).
    pub(super) name: String,
    /// Config file.
    #[arg(long, env = "GATEWAY_CONFIG")]
    pub(super) config: PathBuf,
    /// First day of the period (`2026-01-01`, midnight UTC) or an RFC 3339 time.
    #[arg(long)]
    pub(super) from: String,
    /// The day after the period (exclusive), e.g. `2027-01-01`.
    #[arg(long)]
    pub(super) to: String,
    /// Write `<report>.json`, `<report>.csv` and per table `<report>-<table>.csv` and
    /// `<report>-<table>.svg` into this directory (created if missing) instead of printing the
    /// JSON.
    #[arg(long)]
    pub(super) out: Option<PathBuf>,
    /// The partner the run is for, e.g. `county-mh`.
    #[arg(long)]
    pub(super) partner: String,
    /// The user the run is for (recorded in the log).
    #[arg(long)]
    pub(super) user: String,
    /// A role of that user; repeat for several.
    #[arg(long = "role", required = true)]
    pub(super) roles: Vec<String>,
}

/// Runs `report run`.
pub(super) async fn run(a: &RunArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(&a.config)?;
    crate::telemetry::init(&LogSettings {
        filter: "warn".into(),
        ..LogSettings::default()
    });
    let period = {
        let bound = |name: &str, v: &str| {
            facts::parse_instant(v).ok_or_else(|| {
                anyhow::anyhow!(
                    "`--{name} {v}`: use a date such as `2026-01-01` (midnight UTC) or an RFC 3339 time"
                )
            })
        };
        Period::new(bound("from", &a.from)?, bound("to", &a.to)?)
            .map_err(|e| anyhow::anyhow!("the period: {e}"))?
    };
    let (set, partner, partner_kind) =
        super::policy_and_partner(&settings.policy.dir, chrono::Utc::now(), &a.partner)?;
    let principal = Principal {
        partner,
        partner_kind,
        user: a.user.parse()?,
        roles: a
            .roles
            .iter()
            .map(|r| r.parse::<Role>())
            .collect::<Result<_, _>>()?,
        // No certificate: the command line runs with the gateway's own configuration.
        cert_fingerprint: CertFingerprint::of_der(b""),
    };
    let store = Store::open(&settings.storage).await?;
    let result = async {
        let keyring = Arc::new(keys::open(&settings.crypto.master_key_file, &store).await?);
        let log = crate::startup::open_log(&settings, store.clone(), &keyring)?;
        let services = Services::new(
            store.clone(),
            keyring,
            Arc::new(ArcSwap::from_pointee(set)),
            log,
            crate::service::system_clock(),
            settings.emergency.window_secs,
        );
        let request_id = format!("cli-{}", uuid::Uuid::now_v7().simple());
        let caller = Caller {
            principal: &principal,
            request_id: Some(&request_id),
            source_addr: Some("command-line"),
        };
        let report = services
            .run_report(&caller, &a.name, period)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", e.code()))?;
        match &a.out {
            None => {
                super::write_out(format_args!("{}", serde_json::to_string_pretty(&report)?))?;
            }
            Some(dir) => {
                for f in write_files(dir, &report)? {
                    super::write_out(format_args!("wrote {}", f.display()))?;
                }
                super::write_out(format_args!(
                    "report `{}` for {}..{}: disclosure-log entry {}",
                    report.report,
                    report.period.from.to_rfc3339(),
                    report.period.to.to_rfc3339(),
                    report.log_entry
                ))?;
            }
        }
        anyhow::Ok(ExitCode::SUCCESS)
    }
    .await;
    store.close().await;
    result
}

/// Writes the report's files into `dir`; returns their paths.
pub(crate) fn write_files(dir: &Path, r: &Released) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", dir.display()))?;
    let mut written = Vec::new();
    let mut put = |name: String, body: String| -> anyhow::Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, body)
            .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", path.display()))?;
        written.push(path);
        Ok(())
    };
    put(
        format!("{}.json", r.report),
        serde_json::to_string_pretty(r)?,
    )?;
    put(format!("{}.csv", r.report), render::to_csv(r))?;
    let period = format!(
        "{} to {}",
        r.period.from.format("%Y-%m-%d"),
        r.period.to.format("%Y-%m-%d")
    );
    for t in &r.tables {
        put(format!("{}-{}.csv", r.report, t.id), render::table_csv(t))?;
        put(
            format!("{}-{}.svg", r.report, t.id),
            render::table_svg(&r.title, &period, t),
        )?;
    }
    Ok(written)
}
