//! Offline commands over the database, opened read-only (no gateway needs to run; nothing is
//! changed): `audit part2-disclosures` (the 42 CFR 2.24 list of a patient's Part 2
//! disclosures), `court-orders list` and `restrictions list`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Utc;

use crate::audit::{LogTextKey, SubjectKey, part2, query};
use crate::config::{LogSettings, Settings};
use crate::consent::directives::{self, DirectiveBody, StoredDirective};
use crate::consent::orders::CourtOrderRecord;
use crate::consent::registry;
use crate::consent::restrictions::RestrictionRecord;
use crate::crypto::Keyring;
use crate::domain::SubjectIdentifier;
use crate::policy::PolicySet;
use crate::service::{keys, part2 as part2_service};
use crate::store::{Conn, Store};

/// `audit part2-disclosures`: the arguments.
#[derive(Debug, clap::Args)]
pub(super) struct Part2Args {
    /// Config file.
    #[arg(long, env = "GATEWAY_CONFIG")]
    pub(super) config: PathBuf,
    /// The subject identifier's system, e.g. `county-mh`.
    #[arg(long)]
    pub(super) subject_system: String,
    /// The subject identifier's value.
    #[arg(long)]
    pub(super) subject_value: String,
    /// How many years back (1 to 3; 42 CFR 2.24(a)(2)).
    #[arg(long, default_value_t = 3)]
    pub(super) years: u32,
    /// Print CSV (RFC 4180) instead of a table.
    #[arg(long, conflicts_with = "json")]
    pub(super) csv: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(super) json: bool,
}

/// `court-orders` and `restrictions`: list them.
#[derive(Debug, clap::Args)]
pub(super) struct ListArgs {
    /// Config file.
    #[arg(long, env = "GATEWAY_CONFIG")]
    pub(super) config: PathBuf,
    /// Only those naming this subject identifier's system (with `--subject-value`).
    #[arg(long, requires = "subject_value")]
    pub(super) subject_system: Option<String>,
    /// Only those naming this subject identifier's value (with `--subject-system`).
    #[arg(long, requires = "subject_system")]
    pub(super) subject_value: Option<String>,
    /// Also those ended or expired.
    #[arg(long)]
    pub(super) all: bool,
    /// Print JSON.
    #[arg(long)]
    pub(super) json: bool,
}

fn quiet_logs() {
    crate::telemetry::init(&LogSettings {
        filter: "warn".into(),
        ..LogSettings::default()
    });
}

fn subject(system: &str, value: &str) -> anyhow::Result<SubjectIdentifier> {
    SubjectIdentifier::new(system, value)
        .map_err(|e| anyhow::anyhow!("the subject identifier: {e}"))
}

/// The person's identifiers linked to `id` by their records and consents (one hop), as the
/// gateway's accounting gathers them.
async fn linked(
    c: &mut Conn<'_>,
    keyring: &Keyring,
    id: &SubjectIdentifier,
) -> anyhow::Result<Vec<SubjectIdentifier>> {
    let mut out = vec![id.clone()];
    for r in crate::vault::find_by_subject(c, keyring, id, None).await? {
        if let (Some(rec), _) = crate::vault::read_current(c, keyring, &r.kind, &r.id).await? {
            out.extend(rec.subjects.iter().cloned());
        }
    }
    for consent in registry::find(c, keyring, std::slice::from_ref(id)).await? {
        out.extend(consent.directive.subjects.iter().cloned());
    }
    let mut seen = BTreeSet::new();
    out.retain(|s| seen.insert(s.clone()));
    Ok(out)
}

/// Runs `audit part2-disclosures`.
pub(super) async fn part2(a: &Part2Args) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(&a.config)?;
    quiet_logs();
    let years = part2_service::check_years(a.years).map_err(|e| anyhow::anyhow!("{e}"))?;
    let id = subject(&a.subject_system, &a.subject_value)?;
    let now = Utc::now();
    let current = PolicySet::load_unkeyed(&settings.policy.dir, now)
        .map_err(|e| anyhow::anyhow!("policy: {e}"))?
        .0;
    let store = Store::open_read_only(&settings.storage).await?;
    let result = async {
        let keyring = keys::open_read_only(&settings.crypto.master_key_file, &store).await?;
        let key = SubjectKey::new(keyring.subject_pseudonym_key());
        let mut pooled = store.acquire().await?;
        let mut c = pooled.conn();
        let pseudonym = key.pseudonym(id.system(), id.value());
        let others = linked(&mut c, &keyring, &id)
            .await?
            .iter()
            .map(|s| key.pseudonym(s.system(), s.value()))
            .collect();
        let f = part2_service::filter(pseudonym, others, now, years);
        let mut entries = query::list_all_ascending(&mut c, &f).await?;
        // The basis statement of a medical emergency quotes its sealed documentation.
        if let Some(k) = keyring.log_text_key() {
            let text = LogTextKey::new(&k);
            for e in &mut entries {
                text.open(e)?;
            }
        }
        let sets = part2_service::deciding_sets(&mut c, &entries, now)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let lines = part2_service::compute(&entries, &sets, &current);
        if a.csv {
            super::write_out(format_args!("{}", part2::to_csv(&lines).trim_end()))?;
        } else if a.json {
            super::write_out(format_args!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "subject": pseudonym.to_hex(),
                    "from": query::rfc3339(&part2::period_start(now, years)),
                    "to": query::rfc3339(&now),
                    "disclosures": lines,
                }))?
            ))?;
        } else {
            super::write_out(format_args!(
                "disclosures of 42 CFR Part 2 information about subject {} in the last {years} \
                 year(s) (42 CFR 2.24): {}",
                pseudonym.to_hex(),
                lines.len()
            ))?;
            for l in &lines {
                super::write_out(format_args!(
                    "{}  to {} ({})  {}  [{}; entry {}]",
                    l.date, l.recipient.name, l.recipient.id, l.description, l.purpose, l.seq
                ))?;
            }
        }
        anyhow::Ok(ExitCode::SUCCESS)
    }
    .await;
    store.close().await;
    result
}

async fn listed<T: DirectiveBody>(
    c: &mut Conn<'_>,
    keyring: &Keyring,
    a: &ListArgs,
) -> anyhow::Result<Vec<StoredDirective<T>>> {
    let now = Utc::now();
    let all = match (&a.subject_system, &a.subject_value) {
        (Some(s), Some(v)) => directives::find::<T>(c, keyring, &[subject(s, v)?]).await?,
        _ => directives::list::<T>(c, keyring).await?,
    };
    Ok(all
        .into_iter()
        .filter(|d| a.all || matches!(d.status(now), "active" | "pending"))
        .collect())
}

/// Which list `list` prints.
#[derive(Debug, Clone, Copy)]
pub(super) enum Which {
    /// Court orders.
    CourtOrders,
    /// Restrictions.
    Restrictions,
}

/// Runs `court-orders list` or `restrictions list`.
pub(super) async fn list(which: Which, a: &ListArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(&a.config)?;
    quiet_logs();
    let store = Store::open_read_only(&settings.storage).await?;
    let result = async {
        let keyring = keys::open_read_only(&settings.crypto.master_key_file, &store).await?;
        let mut pooled = store.acquire().await?;
        let mut c = pooled.conn();
        let now = Utc::now();
        match which {
            Which::CourtOrders => {
                let list = listed::<CourtOrderRecord>(&mut c, &keyring, a).await?;
                if a.json {
                    super::write_out(format_args!("{}", serde_json::to_string_pretty(&list)?))?;
                }
                for o in list.iter().filter(|_| !a.json) {
                    let r = &o.record;
                    super::write_out(format_args!(
                        "{}  {}  {} docket {} ({}, {})  to `{}` for {}  fields {}  until {}",
                        o.id,
                        o.status(now),
                        r.court,
                        r.docket,
                        r.order_date,
                        r.section.citation(),
                        r.recipient,
                        join(r.purposes.iter()),
                        join(r.fields.iter()),
                        r.until.to_rfc3339()
                    ))?;
                }
            }
            Which::Restrictions => {
                let list = listed::<RestrictionRecord>(&mut c, &keyring, a).await?;
                if a.json {
                    super::write_out(format_args!("{}", serde_json::to_string_pretty(&list)?))?;
                }
                for r in list.iter().filter(|_| !a.json) {
                    let x = &r.record;
                    let all = |s: String| if s.is_empty() { "all".to_owned() } else { s };
                    super::write_out(format_args!(
                        "{}  {}  by `{}`  to {} for {}  kinds {} categories {} fields {}  until {}",
                        r.id,
                        r.status(now),
                        x.discloser,
                        all(join(x.recipients.iter())),
                        all(join(x.purposes.iter())),
                        all(join(x.scope.kinds.iter())),
                        all(join(x.scope.categories.iter())),
                        join(x.scope.fields.iter()),
                        x.until
                            .map_or_else(|| "terminated".to_owned(), |u| u.to_rfc3339())
                    ))?;
                }
            }
        }
        anyhow::Ok(ExitCode::SUCCESS)
    }
    .await;
    store.close().await;
    result
}

fn join<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    items.map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}
