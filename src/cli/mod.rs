//! The command line: `demo`, `init`, `serve`, `token`, `policy`, `keys`, `audit`, `consent`,
//! `court-orders`, `restrictions`, `report`.
//!
//! This module parses the command line and hands each command to the module of its concern:
//! `serve` (`demo`, `serve`, `token`), `policy`, `keys`, `audit`, `consent`, `directives`
//! (`court-orders`, `restrictions`, `audit part2-disclosures`) and `report`; [`witness`] is what
//! `audit witness` runs. `init` is [`crate::devinit`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::devinit::{self, InitOptions};

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

mod audit;
mod consent;
mod directives;
mod keys;
mod policy;
mod policy_diff;
mod report;
mod serve;
pub mod witness;

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

/// The policy set in `dir` as of `now` (its problems printed, and an error, if it has any), and
/// the kind of the registered partner `partner`.
fn policy_and_partner(
    dir: &std::path::Path,
    now: chrono::DateTime<chrono::Utc>,
    partner: &str,
) -> anyhow::Result<(
    crate::policy::PolicySet,
    crate::domain::PartnerId,
    crate::domain::PartnerKind,
)> {
    let set = match crate::policy::PolicySet::load_unkeyed(dir, now) {
        Ok((set, _)) => set,
        Err(crate::policy::PolicyError::Invalid(report)) => {
            errln!("{}", report.render().trim_end_matches('\n'));
            anyhow::bail!("the policy set has errors; run `policy check` for details");
        }
        Err(e) => return Err(e.into()),
    };
    let partner: crate::domain::PartnerId = partner.parse()?;
    let kind = set
        .partner_kind(&partner)
        .ok_or_else(|| anyhow::anyhow!("partner `{partner}` is not registered"))?;
    Ok((set, partner, kind))
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
        command: policy::PolicyCommand,
    },
    /// Manage the master keys that protect data at rest.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Verify, export checkpoints of, or purge the disclosure log (offline, on the database).
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
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
        } => serve::demo(&dir, &policies, &listen).await,
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
            let settings = crate::config::Settings::load(&config)?;
            serve::serve(settings).await
        }
        Command::Token {
            config,
            partner,
            user,
            roles,
            ttl_secs,
            cert,
        } => {
            let token = serve::token(&config, &partner, &user, &roles, ttl_secs, cert.as_deref())?;
            outln!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command } => audit::run(command).await,
        Command::CourtOrders {
            command: DirectivesCommand::List(args),
        } => directives::list(directives::Which::CourtOrders, &args).await,
        Command::Restrictions {
            command: DirectivesCommand::List(args),
        } => directives::list(directives::Which::Restrictions, &args).await,
        Command::Policy { command } => policy::run(command),
        Command::Consent {
            command: ConsentCommand::Coverage(args),
        } => consent::run(&args).await,
        Command::Keys { command } => keys::run(command).await,
        Command::Report {
            command: ReportCommand::Run(args),
        } => report::run(&args).await,
    }
}
