//! The command line: `demo`, `init`, `serve`, `token`, `policy`, `keys`, `audit`, `consent`,
//! `court-orders`, `restrictions`, `report`.

mod consent;
mod directives;
mod policy_diff;
mod report;
pub mod witness;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{LogSettings, Settings};
use crate::devinit::{self, CONFIG_FILE, InitOptions, TokenRequest};
use crate::domain::PartnerId;
use crate::policy::PartnerRegistry;
use crate::startup::Application;

/// Standard output was closed by its reader (`... | head`): the command stops quietly.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
struct StdoutClosed;

/// Writes one line to standard output. A closed pipe ends the command quietly through the
/// [`StdoutClosed`] error; any other write error is an error.
macro_rules! outln {
    ($($arg:tt)*) => {
        crate::cli::write_out(format_args!($($arg)*))?
    };
}

/// Writes one line to standard error, ignoring a closed stream.
macro_rules! errln {
    ($($arg:tt)*) => {
        crate::cli::write_err(format_args!($($arg)*))
    };
}

pub(crate) fn write_out(line: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_fmt(line).and_then(|()| out.write_all(b"\n")) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::anyhow!("cannot write to standard output: {e}")),
    }
}

fn write_err(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(line).and_then(|()| err.write_all(b"\n"));
}

/// Privacy-preserving data-sharing gateway between police and mental-health agencies.
#[derive(Debug, Parser)]
#[command(name = "coresponse-gateway", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a working demo gateway: on first run writes dev material into DIR, then serves.
    Demo {
        /// Directory for generated dev material, the database and the config.
        #[arg(long, default_value = "demo")]
        dir: PathBuf,
        /// Policy directory.
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
        /// Listen address (first run only; later runs use DIR/gateway.toml).
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: String,
    },
    /// Write dev certificates, keys and DIR/gateway.toml.
    Init {
        /// Directory to write into.
        #[arg(long)]
        dir: PathBuf,
        /// Policy directory whose partners.toml lists the partners to provision.
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
        /// Listen address written to the config.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: String,
        /// Overwrite existing material.
        #[arg(long)]
        force: bool,
    },
    /// Serve HTTPS with the given config. SIGHUP reloads policies and CRLs.
    Serve {
        /// Config file.
        #[arg(long, env = "GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// Print a dev user token signed with a partner's dev key, bound to its dev certificate.
    Token {
        /// Config file written by `init`.
        #[arg(long, env = "GATEWAY_CONFIG")]
        config: PathBuf,
        /// Partner id, e.g. `metro-pd`.
        #[arg(long)]
        partner: String,
        /// User id (the token's `sub`).
        #[arg(long)]
        user: String,
        /// Role; repeat for several.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 900)]
        ttl_secs: i64,
        /// Certificate to bind the token to (default: the partner's dev certificate).
        #[arg(long)]
        cert: Option<PathBuf>,
    },
    /// Check or explain policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Manage the master keys that protect data at rest.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Verify, export checkpoints of, or purge the disclosure log (offline, on the database).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Inspect the consent registry (offline, on the database).
    Consent {
        #[command(subcommand)]
        command: ConsentCommand,
    },
    /// Inspect recorded court orders (42 CFR 2.64, 2.65; offline, on the database).
    CourtOrders {
        #[command(subcommand)]
        command: DirectivesCommand,
    },
    /// Inspect recorded restrictions (HIPAA 164.522(a), 42 CFR 2.26; offline, on the
    /// database).
    Restrictions {
        #[command(subcommand)]
        command: DirectivesCommand,
    },
    /// Run program outcome reports (on the database; each run is logged).
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DirectivesCommand {
    /// List those in force (or, with `--all`, every one), optionally of one subject.
    List(Box<directives::ListArgs>),
}

#[derive(Debug, Subcommand)]
enum ReportCommand {
    /// Run a report for a period and print its JSON, or write its JSON, CSV and SVG files.
    Run(Box<report::RunArgs>),
}

#[derive(Debug, Subcommand)]
enum ConsentCommand {
    /// Which fields of each record kind would flow to a recipient for a purpose, given the
    /// subject's consents and the MOUs, and why.
    Coverage(Box<consent::CoverageArgs>),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
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

// Parsed once per process; boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum PolicyCommand {
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
    Diff(Box<policy_diff::DiffArgs>),
}

/// Parses the command line and runs it.
pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli).await {
        Ok(code) => code,
        // The reader of our output went away (`... | head`): nothing is wrong.
        Err(e) if e.is::<StdoutClosed>() => ExitCode::SUCCESS,
        Err(e) => {
            errln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo {
            dir,
            policies,
            listen,
        } => demo(&dir, &policies, &listen).await,
        Command::Init {
            dir,
            policies,
            listen,
            force,
        } => {
            let report = devinit::init(&InitOptions {
                dir,
                policy_dir: policies,
                listen,
                force,
            })?;
            outln!(
                "wrote dev material for {} partners and {}",
                report.partners.len(),
                report.config.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { config } => {
            let settings = Settings::load(&config)?;
            serve(settings).await
        }
        Command::Token {
            config,
            partner,
            user,
            roles,
            ttl_secs,
            cert,
        } => {
            let token = token(&config, &partner, &user, &roles, ttl_secs, cert.as_deref())?;
            outln!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command } => audit_command(command).await,
        Command::CourtOrders {
            command: DirectivesCommand::List(args),
        } => directives::list(directives::Which::CourtOrders, &args).await,
        Command::Restrictions {
            command: DirectivesCommand::List(args),
        } => directives::list(directives::Which::Restrictions, &args).await,
        Command::Policy {
            command: PolicyCommand::Diff(args),
        } => policy_diff::run(&args),
        Command::Consent {
            command: ConsentCommand::Coverage(args),
        } => consent::run(&args).await,
        Command::Policy {
            command: PolicyCommand::Check { dir },
        } => policy_check(&dir),
        Command::Policy {
            command: PolicyCommand::Explain(args),
        } => policy_explain(&args),
        Command::Keys { command } => keys(command).await,
        Command::Report {
            command: ReportCommand::Run(args),
        } => report::run(&args).await,
    }
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
struct ExplainArgs {
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
        EmergencyAssertion, Inputs, MedicalEmergency, Outcome, PolicySet, Request, decide_with,
    };

    let now = match &a.at {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|e| anyhow::anyhow!("`--at {t}` is not an RFC 3339 time: {e}"))?
            .with_timezone(&chrono::Utc),
        None => chrono::Utc::now(),
    };
    let set = match PolicySet::load_unkeyed(&a.dir, now) {
        Ok((set, _)) => set,
        Err(crate::policy::PolicyError::Invalid(report)) => {
            errln!("{}", report.render().trim_end_matches('\n'));
            anyhow::bail!("the policy set has errors; run `policy check` for details");
        }
        Err(e) => return Err(e.into()),
    };
    let partner: PartnerId = a.partner.parse()?;
    let partner_kind = set
        .partner_kind(&partner)
        .ok_or_else(|| anyhow::anyhow!("partner `{partner}` is not registered"))?;
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

async fn keys(command: KeysCommand) -> anyhow::Result<ExitCode> {
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
                    let report = keys::rewrap(&keyring, &store).await?;
                    record_rewrap(&log, &store, report).await?;
                    outln!(
                        "re-wrapped {} data key(s) under version {}",
                        report.rewrapped,
                        report.current
                    );
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
                let report = keys::rewrap(&keyring, &store).await?;
                record_rewrap(&log, &store, report).await?;
                outln!(
                    "re-wrapped {} data key(s) under version {}",
                    report.rewrapped,
                    report.current
                );
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

async fn demo(dir: &Path, policies: &Path, listen: &str) -> anyhow::Result<ExitCode> {
    let config = dir.join(CONFIG_FILE);
    if config.exists() {
        errln!("reusing dev material in {}", dir.display());
    } else {
        devinit::init(&InitOptions {
            dir: dir.to_owned(),
            policy_dir: policies.to_owned(),
            listen: listen.to_owned(),
            force: false,
        })?;
        errln!("generated dev material in {}", dir.display());
    }
    let settings = Settings::load(&config)?;
    let port = settings.server.listen.port();
    let d = dir.display();
    let cfg = config.display();
    // A compliance officer's token for the console link, as long-lived as the gateway allows.
    let ttl = i64::try_from(settings.identity.max_token_lifetime_secs.min(3600)).unwrap_or(3600);
    let console = dev_token(
        &settings,
        &config,
        "oversight",
        "aud-1",
        &["compliance".to_owned()],
        ttl,
        None,
    );
    let _ = write_out(format_args!(
        "\nThe gateway is starting on https://localhost:{port} with demo data. Try (from another \
         terminal; more journeys in the README, \"Try it\"):\n\n  \
         curl --cacert {d}/ca.pem --cert {d}/county-mh.pem --key {d}/county-mh-key.pem \\\n    \
         -H \"Authorization: Bearer $(cargo run -q --release -- token --config {cfg} \
         --partner county-mh --user clin-7 --role clinician)\" \\\n    \
         -H \"Purpose-Of-Use: treatment\" \\\n    \
         https://localhost:{port}/v1/records/crisis-incident/INC-2026-0042\n"
    ));
    match console {
        Ok(t) => {
            let _ = write_out(format_args!(
                "\nThe compliance console, signed in as `aud-1` of `oversight` (the link's token \
                 expires in {} minutes; `token --partner oversight --user aud-1 --role compliance` \
                 makes another). Import {d}/oversight.p12 into the browser first (password in \
                 {d}/{p12}) and trust {d}/ca.pem; see the README, \"Compliance console\":\n\n  \
                 https://localhost:{port}/console/#token={t}\n",
                ttl / 60,
                p12 = devinit::pkcs12::PASSWORD_FILE,
            ));
        }
        Err(e) => errln!("no console link: {e:#}"),
    }
    serve_with(settings, true).await
}

async fn serve(settings: Settings) -> anyhow::Result<ExitCode> {
    serve_with(settings, false).await
}

/// Runs the gateway; with `seed`, first writes the demo data into an empty database.
async fn serve_with(settings: Settings, seed: bool) -> anyhow::Result<ExitCode> {
    crate::telemetry::init(&settings.log);
    let app = Application::build(settings).await?;
    let state = app.state();
    if seed {
        let report = devinit::seed::seed(&state.services).await?;
        if report.records > 0 {
            tracing::info!(
                records = report.records,
                consents = report.consents,
                "demo data written"
            );
        }
    }
    tracing::info!(addr = %app.addr(), "gateway listening");
    let handle = app.handle();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup())?;
        let reload_state = state.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match reload_state.reload().await {
                    Ok(()) => tracing::info!("policy set reloaded"),
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "reload refused; running policy set kept")
                    }
                }
            }
        });
        let mut term = signal(SignalKind::terminate())?;
        let stop = handle.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
            tracing::info!("stopping");
            stop.stop(true).await;
        });
    }
    app.run_until_stopped().await?;
    state.services.store.close().await;
    Ok(ExitCode::SUCCESS)
}

fn token(
    config: &Path,
    partner: &str,
    user: &str,
    roles: &[String],
    ttl_secs: i64,
    cert: Option<&Path>,
) -> anyhow::Result<String> {
    let settings = Settings::load(config)?;
    crate::telemetry::init(&LogSettings::default());
    dev_token(&settings, config, partner, user, roles, ttl_secs, cert)
}

/// Mints a dev token with the dev signing key `init` wrote for `partner`.
fn dev_token(
    settings: &Settings,
    config: &Path,
    partner: &str,
    user: &str,
    roles: &[String],
    ttl_secs: i64,
    cert: Option<&Path>,
) -> anyhow::Result<String> {
    let partner: PartnerId = partner.parse()?;
    let registry =
        PartnerRegistry::load(&settings.policy.dir, &settings.identity.partner_keys_dir)?;
    let entry = registry.get(&partner).ok_or_else(|| {
        anyhow::anyhow!(
            "partner `{partner}` is not in the registry ({})",
            settings.policy.dir.display()
        )
    })?;
    let keys = &settings.identity.partner_keys_dir;
    let key_path = keys.join(format!("{partner}-signing-key.pem"));
    let key = std::fs::read(&key_path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the dev signing key `{}`: {e}; `token` works only with material \
             written by `init`",
            key_path.display()
        )
    })?;
    let config_dir = config.parent().unwrap_or(Path::new("."));
    let cert_path = cert
        .map(Path::to_path_buf)
        .unwrap_or_else(|| config_dir.join(format!("{partner}.pem")));
    let der = devinit::cert_der_from_pem_file(&cert_path)?;
    let kid = entry.token.keys.first().and_then(|k| k.kid.clone());
    devinit::mint_token(
        &key,
        &TokenRequest {
            issuer: &entry.token.issuer,
            audience: &settings.identity.audience,
            user,
            roles,
            roles_claim: &entry.token.roles_claim,
            ttl_secs,
            bind_to: Some(&der),
            kid: kid.as_deref(),
        },
    )
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
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
    /// on a conflict, with both checkpoints written to STATE.conflict.
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
    Part2Disclosures(Box<directives::Part2Args>),
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

async fn audit_command(command: AuditCommand) -> anyhow::Result<ExitCode> {
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
                crate::crypto::note::VerifierKey::parse(&witness::read_key_text(log_key)?)
                    .map_err(|e| anyhow::anyhow!("`--log-key`: {e}"))?;
            let signer = crate::crypto::note::NoteSigner::parse(
                &std::fs::read_to_string(witness_key)
                    .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", witness_key.display()))?,
            )
            .map_err(|e| anyhow::anyhow!("`{}`: {e}", witness_key.display()))?;
            let client = witness::client(cert, key, ca)?;
            let opts = witness::WitnessOptions {
                url: url.clone(),
                log_key,
                witness: std::sync::Arc::new(signer),
                state: state.clone(),
            };
            return match witness::run_once(&client, &opts).await? {
                witness::WitnessOutcome::Cosigned { size, from } => {
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
                witness::WitnessOutcome::Conflict { reason, evidence } => {
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
            let (skey, vkey) = witness::new_witness_key(name)?;
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
            let report = crate::audit::verify_store_against(
                &store,
                key.as_ref(),
                partner.as_ref(),
                &partner_heads,
                &witnesses,
            )
            .await?;
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
            directives::part2(&args).await
        }
        // Run above, without a database.
        AuditCommand::Witness { .. }
        | AuditCommand::WitnessKey { .. }
        | AuditCommand::Vkey { .. } => Ok(ExitCode::SUCCESS),
    }
}
