//! `policy check`, `policy explain` and `policy diff`: the policy files, offline.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use crate::domain::PartnerId;

/// Runs a `policy` subcommand.
pub(super) fn run(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Check { dir } => policy_check(&dir),
        PolicyCommand::Explain(args) => policy_explain(&args),
        PolicyCommand::Diff(args) => super::policy_diff::run(&args),
    }
}

// Parsed once per process; boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub(super) enum PolicyCommand {
    /// Validate a policy directory; reports every problem and exits non-zero on errors.
    Check {
        /// Policy directory.
        #[arg(default_value = "policies")]
        dir: PathBuf,
    },
    /// Print the decision for a request, field by field, with the reasons.
    Explain(Box<ExplainArgs>),
    /// List every flow whose outcome differs between two policy directories; exit 3 when
    /// something is newly revealed.
    Diff(Box<super::policy_diff::DiffArgs>),
}

fn policy_check(dir: &Path) -> anyhow::Result<ExitCode> {
    let report = crate::policy::PolicySet::check(dir, chrono::Utc::now());
    if report.diagnostics.is_empty() {
        outln!("{}: no problems found", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    // Each problem once (file:line:column, the source excerpt, what is wrong and the hint),
    // then the count.
    errln!("{}", report.render().trim_end_matches('\n'));
    errln!("{}", report.summary());
    Ok(if report.has_errors() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The request `policy explain` decides.
#[derive(Debug, clap::Args)]
pub(super) struct ExplainArgs {
    /// Policy directory.
    #[arg(long, default_value = "policies")]
    dir: PathBuf,
    /// The requesting partner, e.g. `county-mh`.
    #[arg(long)]
    partner: String,
    /// A role of the requesting user; repeat for several.
    #[arg(long = "role", required = true)]
    roles: Vec<String>,
    /// Purpose of use, e.g. `treatment`.
    #[arg(long)]
    purpose: String,
    /// Record kind, e.g. `crisis-incident`.
    #[arg(long)]
    kind: String,
    /// The partner holding the record (default: the only registered partner of the kind's
    /// owner kind).
    #[arg(long)]
    holder: Option<String>,
    /// A consent file (TOML, one consent); repeat for several.
    #[arg(long = "consent")]
    consents: Vec<PathBuf>,
    /// The record's subject (default: the subject of the first consent).
    #[arg(long)]
    subject: Option<String>,
    /// Decision time, RFC 3339 (default: now).
    #[arg(long)]
    at: Option<String>,
    /// Emergency: the good-faith basis (with `--threat`, for purpose `emergency`).
    #[arg(long)]
    emergency_basis: Option<String>,
    /// Emergency: the threat.
    #[arg(long)]
    threat: Option<String>,
    /// A 42 CFR 2.51 medical emergency: the name of the medical personnel (with
    /// `--medical-nature`, for purpose `emergency`).
    #[arg(long, requires = "medical_nature")]
    medical_personnel: Option<String>,
    /// A 42 CFR 2.51 medical emergency: the nature of the emergency.
    #[arg(long, requires = "medical_personnel")]
    medical_nature: Option<String>,
    /// A restriction file (TOML, one restriction, see policies/README.md); repeat for several.
    #[arg(long = "restriction")]
    restrictions: Vec<PathBuf>,
    /// A court-order file (TOML, one order, see policies/README.md); repeat for several.
    #[arg(long = "court-order")]
    court_orders: Vec<PathBuf>,
    /// Print the decision as JSON.
    #[arg(long)]
    json: bool,
}

/// Reads one TOML file of a decision input (consent, restriction, court order).
fn read_input<T: serde::de::DeserializeOwned>(p: &Path, what: &str) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(p)
        .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", p.display()))?;
    toml_edit::de::from_str(&text)
        .map_err(|e| anyhow::anyhow!("`{}` is not a {what}: {e}", p.display()))
}

fn policy_explain(a: &ExplainArgs) -> anyhow::Result<ExitCode> {
    use crate::consent::{Consent, SubjectRef};
    use crate::domain::{CertFingerprint, CourtOrder, Principal, Purpose, Restriction, Role};
    use crate::policy::{
        EmergencyAssertion, Inputs, MedicalEmergency, Outcome, Request, decide_with,
    };

    let now = match &a.at {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|e| anyhow::anyhow!("`--at {t}` is not an RFC 3339 time: {e}"))?
            .with_timezone(&chrono::Utc),
        None => chrono::Utc::now(),
    };
    let (set, partner, partner_kind) = super::policy_and_partner(&a.dir, now, &a.partner)?;
    let roles = a
        .roles
        .iter()
        .map(|r| r.parse::<Role>())
        .collect::<Result<_, _>>()?;
    let purpose: Purpose = a.purpose.parse()?;
    let consents = a
        .consents
        .iter()
        .map(|p| read_input::<Consent>(p, "consent"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let restrictions = a
        .restrictions
        .iter()
        .map(|p| read_input::<Restriction>(p, "restriction"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let court_orders = a
        .court_orders
        .iter()
        .map(|p| read_input::<CourtOrder>(p, "court order"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let medical = match (&a.medical_personnel, &a.medical_nature) {
        (Some(personnel), Some(nature)) => Some(MedicalEmergency {
            personnel: personnel.clone(),
            nature: nature.clone(),
        }),
        _ => None,
    };
    let subject: SubjectRef = match (
        &a.subject,
        consents.first().map(|c| &c.subject),
        restrictions.first().map(|r| &r.subject),
        court_orders.first().map(|o| &o.subject),
    ) {
        (Some(s), ..) => s.parse()?,
        (None, Some(s), ..) | (None, None, Some(s), _) | (None, None, None, Some(s)) => s.clone(),
        (None, None, None, None) => "subject-under-review".parse()?,
    };
    let holder: PartnerId = match &a.holder {
        Some(h) => h.parse()?,
        None => {
            let owner = set
                .kinds
                .get(&a.kind)
                .map(|k| k.owner)
                .ok_or_else(|| anyhow::anyhow!("record kind `{}` is not declared", a.kind))?;
            let mut holders = set.partners.iter().filter(|p| p.kind == owner);
            match (holders.next(), holders.next()) {
                (Some(h), None) => h.id.clone(),
                _ => anyhow::bail!(
                    "several partners could hold `{}` records: pass --holder",
                    a.kind
                ),
            }
        }
    };
    let emergency = match (&a.emergency_basis, &a.threat) {
        (Some(basis), Some(threat)) => Some(EmergencyAssertion {
            basis: basis.clone(),
            threat: threat.clone(),
        }),
        _ => None,
    };
    let principal = Principal {
        partner,
        partner_kind,
        user: "policy-explain".parse()?,
        roles,
        cert_fingerprint: CertFingerprint::of_der(b""),
    };
    let req = Request {
        principal: &principal,
        purpose: &purpose,
        kind: &a.kind,
        holder: &holder,
        subject: &subject,
        emergency: emergency.as_ref(),
    };
    let decision = decide_with(
        &req,
        &Inputs {
            consents: &consents,
            restrictions: &restrictions,
            court_orders: &court_orders,
            medical_emergency: medical.as_ref(),
        },
        &set,
        now,
    );
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&decision)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "decision {} (policy set {})",
        decision.id,
        decision.policy_hash
    );
    match &decision.outcome {
        Outcome::Deny { reasons } => {
            outln!("DENY");
            for r in reasons {
                outln!("  because {}", r.describe());
            }
        }
        Outcome::Permit(permit) => {
            outln!(
                "PERMIT `{}` from `{}` to `{}`",
                permit.kind(),
                permit.holder(),
                permit.recipient()
            );
            let width = permit
                .fields()
                .iter()
                .map(|f| f.field.len())
                .max()
                .unwrap_or(0);
            for f in permit.fields() {
                outln!("  {:width$}  {}", f.field, f.transform.describe());
                for r in &f.reasons {
                    outln!("  {:width$}    because {}", "", r.describe());
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
