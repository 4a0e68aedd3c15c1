//! Security events (CJIS AU-2: failed authentications, refused connections, policy changes).
//!
//! Each event is emitted as a structured `tracing` event on the `security` target and queued
//! for the database. Events name who (partner, certificate fingerprint), from where (peer
//! address) and why (a stable code and a reason); they never hold a token, key or personal
//! data. The queue is bounded: under a flood of refused handshakes, events beyond its capacity
//! are counted and dropped rather than letting an attacker exhaust memory; the count is
//! reported with the next event that gets through.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::domain::{CertFingerprint, PartnerId};
use crate::store::Store;

/// What kind of security event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityEventKind {
    /// A TLS handshake was refused (no, foreign, expired, revoked or unregistered certificate).
    HandshakeRefused,
    /// A request's certificate or token was refused.
    AuthenticationFailed,
    /// The policy set was reloaded.
    PolicyReloaded,
    /// A policy reload was refused; the running set was kept.
    PolicyReloadFailed,
}

impl SecurityEventKind {
    /// Stable name stored with the event.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HandshakeRefused => "handshake_refused",
            Self::AuthenticationFailed => "authentication_failed",
            Self::PolicyReloaded => "policy_reloaded",
            Self::PolicyReloadFailed => "policy_reload_failed",
        }
    }
}

/// One security event.
#[derive(Debug, Clone)]
pub struct SecurityEvent {
    /// When.
    pub at: DateTime<Utc>,
    /// What.
    pub kind: SecurityEventKind,
    /// Stable reason code (e.g. `token_expired`, `certificate_unknown_issuer`).
    pub code: String,
    /// From where.
    pub peer: Option<SocketAddr>,
    /// Who (the partner named by the certificate), when known.
    pub partner: Option<PartnerId>,
    /// The presented certificate, when there was one.
    pub cert_fingerprint: Option<CertFingerprint>,
    /// Why, in words. Never a token, key or personal data.
    pub detail: String,
}

/// Where security events go.
#[derive(Debug, Clone)]
pub struct SecuritySink {
    tx: mpsc::Sender<SecurityEvent>,
    dropped: Arc<AtomicU64>,
}

const QUEUE: usize = 4096;

impl SecuritySink {
    /// Starts the writer task that stores events. Must be called inside a Tokio runtime.
    pub fn spawn(store: Store) -> Self {
        let (tx, mut rx) = mpsc::channel::<SecurityEvent>(QUEUE);
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                if let Err(e) = store.insert_security_event(&event).await {
                    tracing::error!(target: "security", error = %e, "cannot store a security event");
                }
            }
        });
        Self {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records an event: logs it and queues it for storage.
    pub fn record(&self, event: SecurityEvent) {
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        tracing::warn!(
            target: "security",
            kind = event.kind.as_str(),
            code = %event.code,
            peer = ?event.peer,
            partner = event.partner.as_ref().map(|p| p.as_str()),
            cert_sha256 = event.cert_fingerprint.map(|f| f.to_hex()),
            dropped_before = dropped,
            "{}",
            event.detail
        );
        if self.tx.try_send(event).is_err() {
            self.dropped.fetch_add(dropped + 1, Ordering::Relaxed);
        }
    }
}
