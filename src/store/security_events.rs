//! Security events: refused handshakes, failed authentications, policy reloads.

use super::{Store, StoreError};
use crate::security::SecurityEvent;

/// A security event as read back from the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSecurityEvent {
    /// Row id.
    pub id: i64,
    /// Time, Unix microseconds (UTC).
    pub occurred_at_us: i64,
    /// Event kind, e.g. `handshake_refused`.
    pub kind: String,
    /// Stable reason code.
    pub code: String,
    /// Peer socket address.
    pub peer: Option<String>,
    /// Partner named by the certificate, when known.
    pub partner: Option<String>,
    /// Certificate fingerprint, when one was presented.
    pub cert_sha256: Option<String>,
    /// Human-readable reason (never a token or secret).
    pub detail: String,
}

type Row = (
    i64,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);

impl Store {
    /// Appends a security event.
    pub async fn insert_security_event(&self, e: &SecurityEvent) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO security_events \
             (occurred_at_us, kind, code, peer, partner, cert_sha256, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(e.at.timestamp_micros())
        .bind(e.kind.as_str())
        .bind(e.code.as_str())
        .bind(e.peer.map(|p| p.to_string()))
        .bind(e.partner.as_ref().map(|p| p.to_string()))
        .bind(e.cert_fingerprint.map(|f| f.to_hex()))
        .bind(e.detail.as_str())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The most recent security events, newest first.
    pub async fn recent_security_events(
        &self,
        limit: i64,
    ) -> Result<Vec<StoredSecurityEvent>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, occurred_at_us, kind, code, peer, partner, cert_sha256, detail \
             FROM security_events ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, occurred_at_us, kind, code, peer, partner, cert_sha256, detail)| {
                    StoredSecurityEvent {
                        id,
                        occurred_at_us,
                        kind,
                        code,
                        peer,
                        partner,
                        cert_sha256,
                        detail,
                    }
                },
            )
            .collect())
    }
}
