//! `coresponse-gateway consent coverage`: which fields of each record kind would flow to a
//! recipient for a purpose, and why, offline on the database.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};

use crate::audit::SubjectKey;
use crate::config::{LogSettings, Settings};
use crate::consent::coverage::{CoverageQuery, compute_with};
use crate::consent::directive_cache;
use crate::consent::registry;
use crate::domain::{PartnerId, Purpose, Role, SubjectIdentifier, SubjectRef};
use crate::policy::PolicySet;
use crate::service::keys;
use crate::store::Store;

/// `coresponse-gateway consent coverage`: the arguments.
#[derive(Debug, clap::Args)]
pub(super) struct CoverageArgs {
    /// Config file.
    #[arg(long, env = "GATEWAY_CONFIG")]
    pub(super) config: PathBuf,
    /// The subject identifier's system, e.g. `county-mh`.
    #[arg(long)]
    pub(super) subject_system: String,
    /// The subject identifier's value.
    #[arg(long)]
    pub(super) subject_value: String,
    /// The partner that would receive, e.g. `metro-pd`.
    #[arg(long)]
    pub(super) recipient: String,
    /// The purpose of use, e.g. `crisis-response`.
    #[arg(long)]
    pub(super) purpose: String,
    /// One role of the recipient's users (default: each role the recipient registers).
    #[arg(long)]
    pub(super) role: Option<String>,
    /// Decision time, RFC 3339 (default: now).
    #[arg(long)]
    pub(super) at: Option<String>,
    /// Print the answer as JSON.
    #[arg(long)]
    pub(super) json: bool,
}

/// Runs `consent coverage`: opens the store (read-only) and keyring from the gateway
/// configuration (offline: no gateway needs to run), reads the subject's consents,
/// restrictions and court orders and prints the coverage.
pub(super) async fn run(a: &CoverageArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(&a.config)?;
    crate::telemetry::init(&LogSettings {
        filter: "warn".into(),
        ..LogSettings::default()
    });
    let at = match &a.at {
        Some(t) => DateTime::parse_from_rfc3339(t)
            .map_err(|e| anyhow::anyhow!("`--at {t}` is not an RFC 3339 time: {e}"))?
            .with_timezone(&Utc),
        None => Utc::now(),
    };
    let subject = SubjectIdentifier::new(a.subject_system.as_str(), a.subject_value.as_str())
        .map_err(|e| anyhow::anyhow!("the subject identifier: {e}"))?;
    let recipient: PartnerId = a.recipient.parse()?;
    let purpose: Purpose = a.purpose.parse()?;
    let role: Option<Role> = a.role.as_deref().map(str::parse).transpose()?;
    let set = match PolicySet::load_unkeyed(&settings.policy.dir, at) {
        Ok((set, _)) => set,
        Err(crate::policy::PolicyError::Invalid(report)) => {
            eprint!("{}", report.render());
            anyhow::bail!("the policy set has errors; run `policy check` for details");
        }
        Err(e) => return Err(e.into()),
    };
    // Read-only, like `audit verify`: the command changes nothing, and a running gateway's
    // locks cannot hold it up.
    let store = Store::open_read_only(&settings.storage).await?;
    let result = async {
        let keyring = keys::open_read_only(&settings.crypto.master_key_file, &store).await?;
        let pseudonym = SubjectKey::new(keyring.subject_pseudonym_key())
            .pseudonym(subject.system(), subject.value());
        let subject_ref: SubjectRef = pseudonym.to_hex().parse()?;
        let (consents, directives) = {
            let mut pooled = store.acquire().await?;
            let mut c = pooled.conn();
            let subjects = std::slice::from_ref(&subject);
            (
                registry::find(&mut c, &keyring, subjects).await?,
                directive_cache::load(&mut c, &keyring, subjects, &subject_ref).await?,
            )
        };
        let report = compute_with(
            &set,
            &consents,
            &directives,
            &subject_ref,
            &CoverageQuery {
                recipient: &recipient,
                purpose: &purpose,
                role: role.as_ref(),
                holder: None,
                at,
            },
        )?;
        // Through the CLI's writer: a reader that stops early ends the command quietly.
        if a.json {
            super::write_out(format_args!("{}", serde_json::to_string_pretty(&report)?))?;
        } else {
            super::write_out(format_args!("{}", report.render().trim_end()))?;
        }
        anyhow::Ok(ExitCode::SUCCESS)
    }
    .await;
    store.close().await;
    result
}
