//! Security events (CJIS AU-2: failed authentications, refused connections, policy changes).
//!
//! Each event is emitted as a structured `tracing` event on the `security` target and queued
//! for the database, where it is stored in `security_events` and appended to the hash-chained
//! disclosure log ([`crate::audit`]) as an entry of its kind. Events name who (partner,
//! certificate fingerprint), from where (peer address) and why (a stable code and a reason);
//! they never hold a token, key or personal data. Nothing is disclosed when one of these
//! events happens, so recording them is best effort and bounded: under a flood of refused
//! handshakes, events beyond the queue's capacity are counted and dropped rather than letting
//! an attacker exhaust memory or crowd disclosures out of the log's writer; the count is
//! reported with the next event that gets through (also in its log entry).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::audit::{DisclosureLog, EntryKind, NewEntry, Outcome};
use crate::domain::{CertFingerprint, PartnerId};
use crate::store::security_events::{self, StoredSecurityEvent};
use crate::store::{Store, StoreError};

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
    /// Connections were refused after the handshake (a partner over its connection cap).
    ConnectionRefused,
}

impl SecurityEventKind {
    /// Stable name stored with the event.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HandshakeRefused => "handshake_refused",
            Self::AuthenticationFailed => "authentication_failed",
            Self::PolicyReloaded => "policy_reloaded",
            Self::PolicyReloadFailed => "policy_reload_failed",
            Self::ConnectionRefused => "connection_refused",
        }
    }

    /// The disclosure-log entry kind of this event.
    pub fn entry_kind(self) -> EntryKind {
        match self {
            Self::HandshakeRefused => EntryKind::HandshakeRefused,
            Self::AuthenticationFailed => EntryKind::AuthenticationFailed,
            Self::PolicyReloaded => EntryKind::PolicyReloaded,
            Self::PolicyReloadFailed => EntryKind::PolicyReloadFailed,
            Self::ConnectionRefused => EntryKind::ConnectionRefused,
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

impl SecurityEvent {
    /// The disclosure-log entry recording this event; `dropped_before` events were dropped
    /// under load just before it.
    pub fn to_entry(&self, dropped_before: u64) -> NewEntry {
        let outcome = match self.kind {
            SecurityEventKind::PolicyReloaded => Outcome::Permit,
            _ => Outcome::deny(self.code.clone()),
        };
        let mut e = NewEntry::new(self.kind.entry_kind(), self.at, outcome);
        e.recipient_partner = self.partner.as_ref().map(ToString::to_string);
        e.source_addr = self.peer.map(|p| p.to_string());
        e.cert_sha256 = self.cert_fingerprint.map(|f| f.to_hex());
        let mut detail: String = self.detail.chars().take(2048).collect();
        if dropped_before > 0 {
            detail.push_str(&format!(
                " ({dropped_before} earlier security events were dropped under load)"
            ));
        }
        e.detail = Some(detail);
        e
    }
}

/// Stores a batch of events in `security_events`, in one transaction.
async fn store_events(store: &Store, batch: &[(SecurityEvent, u64)]) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    for (e, _) in batch {
        security_events::insert(
            &mut tx.conn(),
            &StoredSecurityEvent {
                id: 0,
                occurred_at_us: e.at.timestamp_micros(),
                kind: e.kind.as_str().to_owned(),
                code: e.code.clone(),
                peer: e.peer.map(|p| p.to_string()),
                partner: e.partner.as_ref().map(|p| p.to_string()),
                cert_sha256: e.cert_fingerprint.map(|f| f.to_hex()),
                detail: e.detail.clone(),
            },
        )
        .await?;
    }
    tx.commit().await
}

/// Where security events go.
#[derive(Debug, Clone)]
pub struct SecuritySink {
    tx: mpsc::Sender<(SecurityEvent, u64)>,
    dropped: Arc<AtomicU64>,
}

const QUEUE: usize = 4096;
/// Most events appended to the log at once (they share one group commit).
const LOG_BATCH: usize = 256;

impl SecuritySink {
    /// Starts the writer task that stores events and appends them to the disclosure log.
    /// Must be called inside a Tokio runtime.
    pub fn spawn(store: Store, log: DisclosureLog) -> Self {
        let (tx, mut rx) = mpsc::channel::<(SecurityEvent, u64)>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(LOG_BATCH);
            while let Some(first) = rx.recv().await {
                batch.push(first);
                while batch.len() < LOG_BATCH {
                    match rx.try_recv() {
                        Ok(e) => batch.push(e),
                        Err(_) => break,
                    }
                }
                if let Err(e) = store_events(&store, &batch).await {
                    tracing::error!(target: "security", error = %e, "cannot store security events");
                }
                let appends = batch
                    .drain(..)
                    .map(|(event, dropped)| log.append(event.to_entry(dropped)));
                for r in futures_util::future::join_all(appends).await {
                    if let Err(e) = r {
                        tracing::error!(target: "security", error = %e, "cannot log a security event");
                    }
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
        if self.tx.try_send((event, dropped)).is_err() {
            self.dropped.fetch_add(dropped + 1, Ordering::Relaxed);
        }
    }
}
