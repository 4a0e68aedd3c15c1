//! The `security_events` table: refused handshakes, failed authentications, policy reloads.

use super::{Conn, StoreError, on_conn};

/// A security event as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
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
    /// Certificate fingerprint (hex), when one was presented.
    pub cert_sha256: Option<String>,
    /// Human-readable reason (never a token or secret).
    pub detail: String,
}

/// Appends a security event (`id` is assigned by the database and ignored here).
pub async fn insert(c: &mut Conn<'_>, e: &StoredSecurityEvent) -> Result<(), StoreError> {
    on_conn!(c, |c| {
        sqlx::query(
            "INSERT INTO security_events \
             (occurred_at_us, kind, code, peer, partner, cert_sha256, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(e.occurred_at_us)
        .bind(&e.kind)
        .bind(&e.code)
        .bind(e.peer.as_deref())
        .bind(e.partner.as_deref())
        .bind(e.cert_sha256.as_deref())
        .bind(&e.detail)
        .execute(c)
        .await
        .map(|_| ())
    })?;
    Ok(())
}

/// The most recent security events, newest first.
pub async fn recent(c: &mut Conn<'_>, limit: i64) -> Result<Vec<StoredSecurityEvent>, StoreError> {
    Ok(on_conn!(c, |c| {
        sqlx::query_as(
            "SELECT id, occurred_at_us, kind, code, peer, partner, cert_sha256, detail \
             FROM security_events ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(c)
        .await
    })?)
}
