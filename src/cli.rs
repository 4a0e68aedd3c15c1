//! The command line: `demo`, `init`, `serve`, `token`, `policy`, `audit`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{LogSettings, Settings};
use crate::devinit::{self, CONFIG_FILE, InitOptions, TokenRequest};
use crate::domain::PartnerId;
use crate::policy::PartnerRegistry;
use crate::startup::Application;

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
    /// Verify, export checkpoints of, or purge the disclosure log (offline, on the database).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate a policy directory; reports every problem and exits non-zero on errors.
    Check {
        /// Policy directory.
        #[arg(default_value = "policies")]
        dir: PathBuf,
    },
}

/// Parses the command line and runs it.
pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
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
            println!(
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
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command } => audit_command(command).await,
        Command::Policy {
            command: PolicyCommand::Check { dir },
        } => {
            let file = crate::policy::partners::RegistryFile::load(&dir)?;
            println!(
                "{}: {} partners, no problems found",
                dir.display(),
                file.partners.len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn demo(dir: &Path, policies: &Path, listen: &str) -> anyhow::Result<ExitCode> {
    let config = dir.join(CONFIG_FILE);
    if config.exists() {
        eprintln!("reusing dev material in {}", dir.display());
    } else {
        devinit::init(&InitOptions {
            dir: dir.to_owned(),
            policy_dir: policies.to_owned(),
            listen: listen.to_owned(),
            force: false,
        })?;
        eprintln!("generated dev material in {}", dir.display());
    }
    let settings = Settings::load(&config)?;
    let port = settings.server.listen.port();
    let d = dir.display();
    let cfg = config.display();
    println!(
        "\nThe gateway is starting on https://localhost:{port}. Try (from another terminal):\n\n  \
         curl --cacert {d}/ca.pem --cert {d}/county-mh.pem --key {d}/county-mh-key.pem \\\n    \
         -H \"Authorization: Bearer $(cargo run -q --release -- token --config {cfg} \
         --partner county-mh --user clin-7 --role clinician)\" \\\n    \
         https://localhost:{port}/v1/whoami\n"
    );
    serve(settings).await
}

async fn serve(settings: Settings) -> anyhow::Result<ExitCode> {
    crate::telemetry::init(&settings.log);
    let app = Application::build(settings).await?;
    tracing::info!(addr = %app.addr(), "gateway listening");
    let state = app.state();
    let handle = app.handle();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup())?;
        let reload_state = state.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match reload_state.reload() {
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
    state.store.close().await;
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
        /// A partner's copy of the checkpoints (the JSON of `GET /v1/audit/checkpoints`).
        #[arg(long)]
        checkpoints: Option<PathBuf>,
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
}

async fn audit_command(command: AuditCommand) -> anyhow::Result<ExitCode> {
    use crate::audit::{CheckpointExport, CheckpointSigner, retention, stored_checkpoints};
    let config = match &command {
        AuditCommand::Verify { config, .. }
        | AuditCommand::Checkpoints { config }
        | AuditCommand::Purge { config, .. } => config,
    };
    let settings = Settings::load(config)?;
    crate::telemetry::init(&LogSettings {
        filter: "warn".into(),
        ..LogSettings::default()
    });
    let store = crate::store::Store::open(&settings.storage).await?;
    let key = match &settings.audit.checkpoint_key_file {
        Some(p) => Some(CheckpointSigner::load(p)?.verifying_key()),
        None => None,
    };
    match command {
        AuditCommand::Verify { checkpoints, .. } => {
            let partner: Option<CheckpointExport> = match checkpoints {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", path.display()))?;
                    Some(serde_json::from_str(&text).map_err(|e| {
                        anyhow::anyhow!(
                            "`{}` is not a checkpoint export (GET /v1/audit/checkpoints): {e}",
                            path.display()
                        )
                    })?)
                }
                None => None,
            };
            let report = crate::audit::verify_store(&store, key.as_ref(), partner.as_ref()).await?;
            let s = &report.summary;
            match &s.failure {
                None => {
                    println!(
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
                    Ok(ExitCode::SUCCESS)
                }
                Some(f) => {
                    eprintln!(
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
            println!("{}", serde_json::to_string_pretty(&export)?);
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Purge { dry_run, .. } => {
            let log = crate::startup::open_log(&settings, store)?;
            let report = retention::purge(&log, chrono::Utc::now(), dry_run).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
