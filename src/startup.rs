//! Assembling and running the gateway.
//!
//! The listener is built from actix-server, actix-tls and actix-http directly (rather than
//! `actix_web::HttpServer`) so that each connection runs inside a [`HandshakeScope`]: when a
//! TLS handshake is refused the gateway knows the peer address, what certificate was presented
//! and why it was refused, and records a security event. Connections get `TCP_NODELAY`.
//!
//! Between the handshake and the HTTP dispatcher each connection passes the connection edge
//! ([`crate::edge`]): it takes a slot under its partner's connection cap (or is marked refused),
//! and its stream becomes an [`EdgeIo`], which gives the HTTP parser's own refusals the JSON
//! error body. How a connection ended is logged through the edge's throttle. At start-up the
//! open-file limit is raised and checked against the caps.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_http::{HttpService, Protocol, body::MessageBody};
use actix_server::Server;
use actix_service::{ServiceFactoryExt as _, apply_fn_factory, fn_service, map_config};
use actix_tls::accept::TlsError;
use actix_tls::accept::rustls_0_23::{Acceptor, TlsStream};
use actix_web::dev::AppConfig;
use actix_web::{App, middleware::from_fn, web};
use arc_swap::ArcSwap;
use chrono::Utc;
use tokio::net::TcpStream;

use crate::api::{self, health::Readiness};
use crate::audit::{CheckpointSigner, DisclosureLog, LogTextKey, SubjectKey};
use crate::auth::{TokenCache, TokenRules};
use crate::config::Settings;
use crate::crypto::Keyring;
use crate::domain::{CertFingerprint, HandshakeRefusal, SharedClock};
use crate::edge::{self, ConnectionLimiter, ConnectionScope, EdgeIo};
use crate::policy::PolicySet;
use crate::security::{SecurityEvent, SecurityEventKind, SecuritySink};
use crate::service::policy_changes::LoadTrigger;
use crate::service::{self, Services};
use crate::store::Store;
use crate::tls::{HandshakeNotes, HandshakeScope, PartnerCertVerifier, PeerCertificate};
use actix_http::error::DispatchError;

pub use crate::api::AppState;

/// A built, bound, not yet running gateway.
pub struct Application {
    addr: SocketAddr,
    server: Server,
    state: web::Data<AppState>,
    /// The metrics listener, when `[metrics] enabled`.
    metrics: Option<(actix_server::ServerHandle, SocketAddr)>,
}

impl Application {
    /// Loads policy, opens the database, builds TLS and binds the listener, on the system
    /// clock. Call inside a Tokio runtime.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, service::system_clock()).await
    }

    /// [`Application::build`] with the services reading the time from `clock` (tests set it).
    pub async fn build_with_clock(settings: Settings, clock: SharedClock) -> anyhow::Result<Self> {
        let policy = PolicySet::load_at(
            &settings.policy.dir,
            &settings.identity.partner_keys_dir,
            clock.now(),
        )
        .map_err(|e| anyhow::anyhow!("policy: {e}"))?;
        log_policy_warnings(&policy);
        let store = Store::open(&settings.storage).await?;
        let keyring =
            Arc::new(service::keys::open(&settings.crypto.master_key_file, &store).await?);
        let audit = open_log(&settings, store.clone(), &keyring)?;
        let security = SecuritySink::spawn(store.clone(), audit.clone());
        let readiness = Readiness::spawn(store.clone(), keyring.clone());
        let server = &settings.server;
        if server.body_timeout_ms == 0 {
            anyhow::bail!("`server.body_timeout_ms` must be at least 1");
        }
        let sink = security.clone();
        let connections =
            ConnectionLimiter::new(server.max_connections_per_partner, move |e| sink.record(e))
                .map_err(anyhow::Error::msg)?;
        edge::nofile::raise_and_check(
            policy.partners.iter().count(),
            server.max_connections_per_partner,
            settings.storage.max_connections,
        );
        let verifier = Arc::new(PartnerCertVerifier::new(
            &settings.tls.client_ca,
            &settings.tls.crls,
            settings.tls.crl_grace_secs,
            &settings.identity.trust_domain,
            policy.partners.iter().map(|p| p.id.clone()),
            Utc::now().timestamp(),
        )?);
        let tls = crate::tls::server_config(
            &settings.tls.server_cert,
            &settings.tls.server_key,
            verifier.clone(),
        )?;
        let listener = TcpListener::bind(settings.server.listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.server.listen))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;

        let policy = Arc::new(policy);
        let services = Arc::new(Services::new(
            store,
            keyring,
            Arc::new(ArcSwap::from(Arc::clone(&policy))),
            audit,
            clock,
            settings.emergency.window_secs,
        ));
        // CJIS AU-2: the set loaded at start-up is recorded, with what it changes against the
        // set this database recorded last, before the gateway answers anything. A set whose
        // change cannot be recorded is not used.
        services
            .record_policy_load(&policy, None, LoadTrigger::StartUp)
            .await
            .map_err(|e| anyhow::anyhow!("recording the policy set loaded at start-up: {e}"))?;
        spawn_term_watch(Arc::clone(&services), settings.policy.expiry_warning_days);
        let state = web::Data::new(AppState {
            token_rules: TokenRules {
                audience: settings.identity.audience.clone(),
                leeway_secs: settings.identity.leeway_secs,
                max_lifetime_secs: settings.identity.max_token_lifetime_secs,
            },
            settings,
            services,
            verifier,
            tokens: TokenCache::default(),
            security,
            readiness,
            connections,
            http: Default::default(),
        });
        let server = serve(listener, state.clone(), tls)?;
        let metrics = if state.settings.metrics.enabled {
            let (m, maddr) = crate::metrics::serve(state.settings.metrics.listen, state.clone())?;
            let handle = m.handle();
            tokio::spawn(m);
            tracing::info!(addr = %maddr, "metrics listening (GET /metrics)");
            Some((handle, maddr))
        } else {
            None
        };
        Ok(Self {
            addr,
            server,
            state,
            metrics,
        })
    }

    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The metrics listener's address, when enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, a)| *a)
    }

    /// The shared state (for reloads and tests).
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// A handle to stop the server.
    pub fn handle(&self) -> actix_server::ServerHandle {
        self.server.handle()
    }

    /// Runs until the server stops.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        if let Some((metrics, _)) = self.metrics {
            metrics.stop(true).await;
        }
        result
    }
}

/// The origin line of the log's checkpoints: `audit.origin`, or
/// `<identity.trust_domain>/disclosure-log`.
pub fn log_origin(settings: &Settings) -> String {
    settings
        .audit
        .origin
        .clone()
        .unwrap_or_else(|| format!("{}/disclosure-log", settings.identity.trust_domain))
}

/// Starts the disclosure log writer: the pseudonym key is derived from the master key, the
/// checkpoint key is read from `audit.checkpoint_key_file` (if set).
pub fn open_log(
    settings: &Settings,
    store: Store,
    keyring: &Keyring,
) -> anyhow::Result<DisclosureLog> {
    let subjects = SubjectKey::new(keyring.subject_pseudonym_key());
    let text = keyring
        .log_text_key()
        .map(|k| LogTextKey::new(&k))
        .ok_or_else(|| anyhow::anyhow!("the disclosure log's free-text key is not loaded"))?;
    let signer = match &settings.audit.checkpoint_key_file {
        Some(path) => Some(CheckpointSigner::load(path)?.with_origin(&log_origin(settings))?),
        None => {
            tracing::warn!(
                "no `audit.checkpoint_key_file`: the disclosure log is not checkpointed and \
                 cannot be purged"
            );
            None
        }
    };
    Ok(DisclosureLog::start(
        store,
        subjects,
        text,
        signer,
        settings.audit.clone(),
    ))
}

/// Re-reads the policy directory and CRLs. A set that fails validation is refused and the
/// running one kept, and so is a set whose change cannot be recorded in the disclosure log; a
/// refusal is recorded as a security event. A new set is recorded (`policy_reloaded`, with the
/// old and new hashes and what changed) before it is put in force, and empties the token
/// cache (a removed key or partner takes effect at once).
pub async fn reload(state: &AppState) -> anyhow::Result<()> {
    state.reload().await
}

impl AppState {
    /// See [`reload`].
    pub async fn reload(&self) -> anyhow::Result<()> {
        let services = &self.services;
        // One load at a time, so each is compared with the set it replaces.
        let _one = services.policy_lock.lock().await;
        let result = async {
            let s = &self.settings;
            let policy = Arc::new(PolicySet::load_at(
                &s.policy.dir,
                &s.identity.partner_keys_dir,
                services.now(),
            )?);
            log_policy_warnings(&policy);
            self.verifier.reload(
                &s.tls.crls,
                &s.identity.trust_domain,
                policy.partners.iter().map(|p| p.id.clone()),
                Utc::now().timestamp(),
            )?;
            let running = services.policy();
            let change = services
                .record_policy_load(&policy, Some(running), LoadTrigger::Reload)
                .await
                .map_err(|e| anyhow::anyhow!("the change could not be recorded: {e}"))?;
            services.policy.store(policy);
            self.tokens.clear();
            anyhow::Ok(change)
        }
        .await;
        match result {
            Ok(change) => {
                tracing::info!(
                    target: "policy",
                    seq = change.seq,
                    "policy set {} and CRLs loaded",
                    change.new_hash
                );
                Ok(())
            }
            Err(e) => {
                self.security.record(SecurityEvent {
                    at: Utc::now(),
                    kind: SecurityEventKind::PolicyReloadFailed,
                    code: "policy_reload_failed".to_owned(),
                    peer: None,
                    partner: None,
                    cert_fingerprint: None,
                    detail: format!("reload refused, running set kept: {e:#}"),
                });
                Err(e)
            }
        }
    }
}

/// Logs, once a day, a warning for each MOU expiring within `warn_days` days, and once each
/// MOU that has expired (its rules no longer apply). Checks every hour, on the services'
/// clock.
fn spawn_term_watch(services: Arc<Services>, warn_days: u32) {
    tokio::spawn(async move {
        let mut watch = crate::policy::term::TermWatch::default();
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let policy = services.policy();
            for notice in watch.due(&policy, services.now(), warn_days) {
                log_term_notice(&notice);
            }
        }
    });
}

fn log_term_notice(notice: &crate::policy::term::TermNotice) {
    use crate::policy::term::TermNotice;
    match notice {
        TermNotice::Expiring {
            id,
            expires,
            days_left,
        } => tracing::warn!(
            target: "policy",
            mou = %id,
            %expires,
            days_left,
            "MOU `{id}` expires on {expires} ({days_left} day(s) left): renew it and update \
             `expires`, or its rules stop applying"
        ),
        TermNotice::Expired { id, expires } => tracing::error!(
            target: "policy",
            mou = %id,
            %expires,
            "MOU `{id}` expired on {expires}: its rules no longer apply"
        ),
    }
}

fn app_factory(
    state: web::Data<AppState>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let limit = state.settings.server.body_limit_bytes;
    App::new()
        .app_data(state)
        .wrap(from_fn(api::connection_gate))
        .wrap(from_fn(api::request_id))
        // Outermost, so that it sees the answer as it is written.
        .wrap(from_fn(api::body_guard))
        .configure(|cfg| api::configure(cfg, limit))
        .default_service(web::to(api::not_found))
}

/// A connection's stream as the HTTP dispatcher sees it.
type Io = EdgeIo<TlsStream<TcpStream>>;

fn serve(
    listener: TcpListener,
    state: web::Data<AppState>,
    mut tls: rustls::ServerConfig,
) -> anyhow::Result<Server> {
    let server_settings = state.settings.server.clone();
    let workers = if server_settings.workers == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        server_settings.workers
    };
    // HTTP/1.1 only.
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let server = Server::build()
        .workers(workers)
        .disable_signals()
        .listen("gateway", listener, move || {
            let state = state.clone();
            let sink = state.security.clone();
            let connections = state.connections.clone();
            let http_stats = state.http.clone();
            let trust_domain = state.settings.identity.trust_domain.clone();
            let s = &state.settings.server;
            let http = HttpService::build()
                .client_request_timeout(s.request_timeout())
                .client_disconnect_timeout(s.disconnect_timeout())
                .keep_alive(s.keep_alive())
                .on_connect_ext(move |io: &Io, ext| {
                    // Counted while the connection's data lives, i.e. while it is open.
                    ext.insert(http_stats.connection());
                    if let Some(peer) = io.peer() {
                        ext.insert(peer.clone());
                    }
                    if let Some(refused) = io.refused() {
                        ext.insert(refused.clone());
                    }
                })
                .finish(map_config(app_factory(state.clone()), |_| {
                    AppConfig::default()
                }));
            let mut acceptor = Acceptor::new(tls.clone());
            acceptor.set_handshake_timeout(s.handshake_timeout());
            // After the handshake: the partner takes a slot under its cap, or is marked refused.
            let admit = fn_service(move |io: TlsStream<TcpStream>| {
                let peer_addr = io.get_ref().0.peer_addr().ok();
                let peer = io
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|leaf| PeerCertificate::from_der(leaf, &trust_domain));
                let admission = peer.as_ref().and_then(|p| {
                    let partner = p.san_partner.as_ref().ok()?;
                    Some(connections.admit(partner, peer_addr, Some(p.fingerprint)))
                });
                let io = EdgeIo::new(io, peer, admission);
                std::future::ready(Ok::<_, TlsError<std::io::Error, DispatchError>>((
                    io,
                    Protocol::Http1,
                    peer_addr,
                )))
            });
            let connection = acceptor
                .map_err(TlsError::into_service_error)
                .and_then(admit)
                .and_then(http.map_err(TlsError::Service));
            apply_fn_factory(connection, move |io: TcpStream, svc: &_| {
                let peer = io.peer_addr().ok();
                let _ = io.set_nodelay(true);
                let sink = sink.clone();
                // The handshake runs when the future is polled, inside the scopes.
                let conn = actix_service::Service::call(svc, io);
                async move {
                    let ((result, notes), edge_notes) =
                        ConnectionScope::run(HandshakeScope::run(conn)).await;
                    match result {
                        Err(TlsError::Tls(e)) => {
                            report_refused_handshake(&sink, peer, Some(&e), notes)
                        }
                        Err(TlsError::Timeout) => {
                            report_refused_handshake(&sink, peer, None, notes)
                        }
                        Err(TlsError::Service(e)) => {
                            edge::report_connection_end(
                                &e,
                                peer,
                                notes.partner.as_ref(),
                                &edge_notes,
                            );
                        }
                        Ok(()) => {}
                    }
                    Ok::<(), TlsError<std::io::Error, DispatchError>>(())
                }
            })
        })?
        .run();
    Ok(server)
}

fn report_refused_handshake(
    sink: &SecuritySink,
    peer: Option<SocketAddr>,
    err: Option<&std::io::Error>,
    notes: HandshakeNotes,
) {
    let rustls_err = err
        .and_then(|e| e.get_ref())
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    use HandshakeRefusal as R;
    let (code, reason) = match rustls_err {
        Some(rustls::Error::NoCertificatesPresented) => (
            R::CertificateMissing,
            "the client presented no certificate".to_owned(),
        ),
        Some(rustls::Error::InvalidCertificate(c)) => {
            use rustls::CertificateError as C;
            let code = match c {
                C::UnknownIssuer | C::BadSignature => R::CertificateUnknownIssuer,
                C::Expired | C::ExpiredContext { .. } => R::CertificateExpired,
                C::NotValidYet | C::NotValidYetContext { .. } => R::CertificateNotYetValid,
                C::Revoked => R::CertificateRevoked,
                C::ExpiredRevocationList | C::ExpiredRevocationListContext { .. } => R::CrlExpired,
                C::ApplicationVerificationFailure => R::CertificateUnregisteredPartner,
                _ => R::CertificateInvalid,
            };
            let reason = notes
                .refusal
                .clone()
                .unwrap_or_else(|| format!("invalid client certificate: {c:?}"));
            (code, reason)
        }
        Some(other) => (R::HandshakeFailed, format!("TLS handshake failed: {other}")),
        None => match err {
            None => (
                R::HandshakeTimeout,
                "the client did not complete the TLS handshake in time".to_owned(),
            ),
            Some(e) => (R::HandshakeFailed, format!("TLS handshake failed: {e}")),
        },
    };
    let fingerprint: Option<CertFingerprint> = notes.presented;
    sink.record(SecurityEvent {
        at: Utc::now(),
        kind: SecurityEventKind::HandshakeRefused,
        code: code.as_str().to_owned(),
        peer,
        partner: notes.partner,
        cert_fingerprint: fingerprint,
        detail: reason,
    });
}

/// Reports what validation found worth a warning but not a refusal (e.g. an expired MOU,
/// whose rules no longer apply), so an operator sees it at start-up and on reload.
fn log_policy_warnings(policy: &PolicySet) {
    for w in &policy.warnings {
        tracing::warn!(
            target: "policy",
            code = w.code,
            file = %w.file,
            line = w.line,
            column = w.column,
            "{}",
            w.message
        );
    }
}
