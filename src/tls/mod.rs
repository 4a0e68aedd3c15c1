//! Mutual TLS: the gateway's server configuration and the partner-certificate verifier.
//!
//! Security role: this is the first gate. A connection that does not present a certificate
//! chaining to the configured partner CA bundle, that is expired or revoked (CRL), or whose URI
//! SAN names no registered partner never reaches HTTP. Every such refusal is recorded as a
//! security event with the peer address and the reason.
//!
//! rustls neither logs refused handshakes nor tells a verifier the peer address, so the
//! listener wraps each connection in [`HandshakeScope`] (a task-local that the verifier fills
//! with what the client presented) and reports the failure once the handshake ends.
//!
//! Session resumption is disabled (no session cache, no TLS 1.3 tickets): a resumed session
//! would skip the certificate and CRL checks. Revocation is also re-checked on every request
//! ([`PartnerCertVerifier::check_still_valid`]) so a CRL loaded after a connection was opened
//! still applies to it.
//!
//! CRLs are authenticated when they are loaded (the `crl` submodule): a forged, foreign,
//! ambiguous or rolled-back CRL refuses the whole set, so it can neither replace a good set nor make rustls
//! refuse every certificate of its issuer. A CRL past its nextUpdate is still used and warned
//! about (in the log at most once an hour, and in `/healthz`); past nextUpdate +
//! `tls.crl_grace_secs` its issuer's certificates are refused, in the handshake and on every
//! request, because their revocation status can no longer be known.

mod crl;
mod identity;

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};

use crl::CrlStatus;
pub use crl::{CrlHealth, CrlListHealth};
pub use identity::{PeerCertificate, RevocationKey, partner_from_san};

use crate::domain::{CertFingerprint, PartnerId};

/// A TLS set-up problem (start-up or reload).
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A file could not be read.
    #[error("cannot read `{path}`: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the material.
    #[error("TLS configuration refused: {0}")]
    Rustls(String),
    /// A CRL was refused; the whole set with it.
    #[error("CRL `{path}` refused: {reason}")]
    Crl {
        /// The file.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
}

/// The rustls crypto provider used everywhere in the gateway (one provider only: compiling in
/// two and calling `builder()` panics at run time).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsSetupError::File {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::File {
            path: path.to_owned(),
            message: "no PEM certificate in the file".into(),
        });
    }
    Ok(certs)
}

/// Reads a PEM private key (PKCS#8, SEC1 or PKCS#1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsSetupError::File {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// What the verifier holds; replaced whole on reload.
#[derive(Debug)]
struct VerifierState {
    webpki: Arc<dyn ClientCertVerifier>,
    trust_domain: String,
    registered: HashSet<PartnerId>,
    /// The authenticated CRLs, with the revoked (issuer DN, serial) keys for the per-request
    /// re-check.
    crls: crl::CrlSet,
}

/// Verifies partner client certificates: the chain and CRLs (rustls webpki), the freshness of
/// the issuer's CRL, then the partner URI SAN against the registry. Reloadable.
#[derive(Debug)]
pub struct PartnerCertVerifier {
    state: ArcSwap<VerifierState>,
    roots: Arc<RootCertStore>,
    cas: Vec<crl::ClientCa>,
    hints: Vec<DistinguishedName>,
    /// `tls.crl_grace_secs`.
    crl_grace_secs: u64,
    /// When the state of a stale or expired CRL was last logged (Unix seconds).
    crl_warned_at: AtomicI64,
    /// Serializes reloads, so each new set is compared with the one it replaces.
    reload_lock: Mutex<()>,
}

/// How often a stale or expired CRL is logged again while it stays so.
const CRL_WARNING_INTERVAL_SECS: i64 = 3600;

/// Why a presented certificate does not identify a registered partner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertIdentityError {
    /// The certificate cannot be parsed.
    #[error("the client certificate cannot be parsed")]
    Unparsable,
    /// No URI SAN of the form `spiffe://<trust-domain>/partner/<id>`.
    #[error("the client certificate has no URI SAN `spiffe://{0}/partner/<id>`")]
    NoPartnerSan(String),
    /// The SAN names a partner that is not in the registry.
    #[error("the client certificate names partner `{0}`, which is not registered")]
    Unregistered(String),
    /// The certificate has been revoked since the connection was opened.
    #[error("the client certificate has been revoked")]
    Revoked,
    /// The certificate expired while the connection was open.
    #[error("the client certificate is outside its validity period")]
    Expired,
    /// The CRL of the certificate's issuer is past its nextUpdate and the grace period.
    #[error(
        "crl_expired: the revocation list of the certificate's issuer `{issuer}` passed its \
         nextUpdate {next_update} and the grace period: revocation cannot be checked until the \
         gateway's operator installs a current CRL"
    )]
    CrlExpired {
        /// The issuing CA.
        issuer: String,
        /// The CRL's nextUpdate, RFC 3339.
        next_update: String,
    },
}

impl PartnerCertVerifier {
    /// Builds the verifier from the CA bundle, CRLs, grace period after a CRL's nextUpdate
    /// (seconds), trust domain and registered partners, at time `now` (Unix seconds). Every CRL
    /// must be issued and signed by a CA of the bundle.
    pub fn new(
        client_ca: &Path,
        crls: &[PathBuf],
        crl_grace_secs: u64,
        trust_domain: &str,
        registered: impl IntoIterator<Item = PartnerId>,
        now: i64,
    ) -> Result<Self, TlsSetupError> {
        let mut roots = RootCertStore::empty();
        let mut cas = Vec::new();
        for cert in load_certs(client_ca)? {
            cas.push(
                crl::ClientCa::from_der(&cert).map_err(|e| TlsSetupError::File {
                    path: client_ca.to_owned(),
                    message: e,
                })?,
            );
            roots
                .add(cert)
                .map_err(|e| TlsSetupError::Rustls(format!("client CA bundle: {e}")))?;
        }
        let roots = Arc::new(roots);
        let hints = roots.subjects();
        let state = Self::build_state(&roots, &cas, crls, None, trust_domain, registered)?;
        let verifier = Self {
            state: ArcSwap::from_pointee(state),
            roots,
            cas,
            hints,
            crl_grace_secs,
            crl_warned_at: AtomicI64::new(i64::MIN),
            reload_lock: Mutex::new(()),
        };
        verifier.log_crl_state(now, true);
        Ok(verifier)
    }

    fn build_state(
        roots: &Arc<RootCertStore>,
        cas: &[crl::ClientCa],
        crls: &[PathBuf],
        running: Option<&crl::CrlSet>,
        trust_domain: &str,
        registered: impl IntoIterator<Item = PartnerId>,
    ) -> Result<VerifierState, TlsSetupError> {
        let crls = crl::CrlSet::load(crls, cas, roots, running)?;
        // The nextUpdate of each CRL is judged by the gateway (see `check_crl_freshness`), so
        // webpki is told to ignore it, which is its default.
        let webpki = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .with_crls(crls.ders.clone())
            .only_check_end_entity_revocation()
            .build()
            .map_err(|e| TlsSetupError::Rustls(e.to_string()))?;
        Ok(VerifierState {
            webpki,
            trust_domain: trust_domain.to_owned(),
            registered: registered.into_iter().collect(),
            crls,
        })
    }

    /// Replaces CRLs and the registered partner set, at time `now` (Unix seconds). A CRL that
    /// is not authentic, or older than the one in force for its issuer, refuses the whole set;
    /// on error the running state is kept.
    pub fn reload(
        &self,
        crls: &[PathBuf],
        trust_domain: &str,
        registered: impl IntoIterator<Item = PartnerId>,
        now: i64,
    ) -> Result<(), TlsSetupError> {
        let _serial = self
            .reload_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let running = self.state.load();
        let state = Self::build_state(
            &self.roots,
            &self.cas,
            crls,
            Some(&running.crls),
            trust_domain,
            registered,
        )?;
        self.state.store(Arc::new(state));
        self.log_crl_state(now, true);
        Ok(())
    }

    /// The registered partner named by a certificate's URI SAN.
    pub fn partner_of(&self, der: &[u8]) -> Result<PartnerId, CertIdentityError> {
        let state = self.state.load();
        let id = partner_from_san(der, &state.trust_domain)?;
        if !state.registered.contains(&id) {
            return Err(CertIdentityError::Unregistered(id.to_string()));
        }
        Ok(id)
    }

    /// Per-request re-check of a certificate accepted at handshake time: still registered, not
    /// revoked by a CRL loaded since, its issuer's CRL not past the grace period, still within
    /// its validity period.
    pub fn check_still_valid(
        &self,
        peer: &PeerCertificate,
        now_unix: i64,
    ) -> Result<PartnerId, CertIdentityError> {
        let state = self.state.load();
        let id = peer.san_partner.clone()?;
        if !state.registered.contains(&id) {
            return Err(CertIdentityError::Unregistered(id.to_string()));
        }
        if state.crls.revoked.contains(&peer.revocation_key) {
            return Err(CertIdentityError::Revoked);
        }
        self.check_crl_freshness(&state, &peer.issuer, now_unix)?;
        if now_unix < peer.not_before || now_unix > peer.not_after {
            return Err(CertIdentityError::Expired);
        }
        Ok(id)
    }

    /// The state of the CRLs at `now` (Unix seconds), for `/healthz`.
    pub fn crl_health(&self, now: i64) -> CrlHealth {
        self.log_crl_state(now, false);
        self.state.load().crls.health(now, self.crl_grace_secs)
    }

    /// Refuses a certificate whose issuer's CRL is past nextUpdate + grace.
    fn check_crl_freshness(
        &self,
        state: &VerifierState,
        issuer: &[u8],
        now: i64,
    ) -> Result<(), CertIdentityError> {
        self.log_crl_state(now, false);
        match state.crls.expired_for(issuer, now, self.crl_grace_secs) {
            None => Ok(()),
            Some(list) => Err(CertIdentityError::CrlExpired {
                issuer: list.issuer().to_owned(),
                next_update: crl::rfc3339(list.next_update()),
            }),
        }
    }

    /// Logs every CRL that is stale or expired at `now`: always when `loaded` (start-up and
    /// reload), otherwise at most once per [`CRL_WARNING_INTERVAL_SECS`].
    fn log_crl_state(&self, now: i64, loaded: bool) {
        let state = self.state.load();
        let lists = state.crls.not_current(now, self.crl_grace_secs);
        if lists.is_empty() {
            return;
        }
        let last = self.crl_warned_at.load(Ordering::Relaxed);
        if !loaded
            && (now.saturating_sub(last) < CRL_WARNING_INTERVAL_SECS
                || self
                    .crl_warned_at
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err())
        {
            return;
        }
        if loaded {
            self.crl_warned_at.store(now, Ordering::Relaxed);
        }
        for list in lists {
            let message = list.describe(now, self.crl_grace_secs);
            match list.status(now, self.crl_grace_secs) {
                CrlStatus::Expired => tracing::error!(target: "tls", "{message}"),
                _ => tracing::warn!(target: "tls", "{message}"),
            }
        }
    }
}

impl ClientCertVerifier for PartnerCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        HandshakeScope::note_presented(end_entity);
        let state = self.state.load();
        state
            .webpki
            .verify_client_cert(end_entity, intermediates, now)?;
        let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let issuer = identity::issuer_of(end_entity.as_ref()).ok_or_else(|| {
            HandshakeScope::note_refusal(&CertIdentityError::Unparsable.to_string());
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        if let Err(e) = self.check_crl_freshness(&state, &issuer, now_secs) {
            HandshakeScope::note_refusal(&e.to_string());
            let next_update = state
                .crls
                .for_issuer(&issuer)
                .map_or(0, |l| u64::try_from(l.next_update()).unwrap_or(0));
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ExpiredRevocationListContext {
                    time: now,
                    next_update: UnixTime::since_unix_epoch(Duration::from_secs(next_update)),
                },
            ));
        }
        match self.partner_of(end_entity) {
            Ok(id) => {
                HandshakeScope::note_partner(&id);
                Ok(ClientCertVerified::assertion())
            }
            Err(e) => {
                HandshakeScope::note_refusal(&e.to_string());
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.state
            .load()
            .webpki
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.state
            .load()
            .webpki
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.state.load().webpki.supported_verify_schemes()
    }
}

/// The server's rustls configuration: TLS 1.2 and 1.3 only, the provider's default (AEAD,
/// forward-secret) suites, mandatory partner client certificates, no session resumption.
pub fn server_config(
    cert: &Path,
    key: &Path,
    verifier: Arc<PartnerCertVerifier>,
) -> Result<ServerConfig, TlsSetupError> {
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| TlsSetupError::Rustls(format!("server certificate or key: {e}")))?;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// What the verifier learnt about the client during one handshake.
#[derive(Debug, Clone, Default)]
pub struct HandshakeNotes {
    /// Fingerprint of the presented leaf certificate, if any was presented.
    pub presented: Option<CertFingerprint>,
    /// The partner named by a certificate that passed every check.
    pub partner: Option<PartnerId>,
    /// The gateway's own refusal reason (beyond rustls' chain checks), if any.
    pub refusal: Option<String>,
}

tokio::task_local! {
    static NOTES: RefCell<HandshakeNotes>;
}

/// Scope in which one connection's handshake runs, so that the verifier can leave notes for the
/// code that reports a refused handshake.
pub struct HandshakeScope;

impl HandshakeScope {
    /// Runs `fut` (the connection) with a fresh notes slot; returns its output and the notes.
    pub async fn run<F: Future>(fut: F) -> (F::Output, HandshakeNotes) {
        NOTES
            .scope(RefCell::new(HandshakeNotes::default()), async move {
                let out = fut.await;
                let notes = NOTES.with(|n| n.borrow().clone());
                (out, notes)
            })
            .await
    }

    fn note_presented(der: &CertificateDer<'_>) {
        let _ = NOTES.try_with(|n| n.borrow_mut().presented = Some(CertFingerprint::of_der(der)));
    }

    fn note_partner(id: &PartnerId) {
        let _ = NOTES.try_with(|n| n.borrow_mut().partner = Some(id.clone()));
    }

    fn note_refusal(reason: &str) {
        let _ = NOTES.try_with(|n| n.borrow_mut().refusal = Some(reason.to_owned()));
    }
}
