//! `demo`, `serve` and `token`: running the gateway, and dev tokens for it.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{LogSettings, Settings};
use crate::devinit::{self, CONFIG_FILE, InitOptions, TokenRequest};
use crate::domain::PartnerId;
use crate::policy::PartnerRegistry;
use crate::startup::Application;

pub(super) async fn demo(dir: &Path, policies: &Path, listen: &str) -> anyhow::Result<ExitCode> {
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
    let _ = super::write_out(format_args!(
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
            let _ = super::write_out(format_args!(
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

pub(super) async fn serve(settings: Settings) -> anyhow::Result<ExitCode> {
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

pub(super) fn token(
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
