//! The consent tables: `consents`, `consent_events`, `consent_subjects`.
//!
//! Rows only: the directive, every event and every identifier arrive sealed and leave sealed;
//! the consent registry (module `consent`, above this one) seals, opens and checks them.

use super::{Conn, StoreError, on_conn};

/// A `consents` row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ConsentRow {
    /// Consent id.
    pub id: String,
    /// The partner that collected it.
    pub collected_by: String,
    /// Its data key.
    pub data_key_id: String,
    /// `active` or `revoked`.
    pub status: String,
    /// Start (µs).
    pub valid_from_us: i64,
    /// End (µs), `None` when it ends on an event.
    pub expires_us: Option<i64>,
    /// When it was recorded (µs).
    pub created_at_us: i64,
    /// When it was revoked (µs).
    pub revoked_at_us: Option<i64>,
    /// Number of event rows.
    pub event_count: i64,
    /// The sealed directive.
    pub body: Vec<u8>,
}

/// A `consent_events` row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EventRow {
    /// Sequence within the consent, from 1.
    pub seq: i64,
    /// `created` or `revoked`.
    pub event: String,
    /// Acting partner.
    pub actor_partner: String,
    /// Acting user.
    pub actor_user: String,
    /// When (µs).
    pub at_us: i64,
    /// The sealed event.
    pub sealed: Vec<u8>,
}

/// A `consent_subjects` row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SubjectRow {
    /// Position in the directive's list, from 0.
    pub position: i64,
    /// Keyed blind index of the canonical identifier.
    pub blind_index: Vec<u8>,
    /// Sealed identifier.
    pub ciphertext: Vec<u8>,
}

/// Inserts a consent row.
pub async fn insert(c: &mut Conn<'_>, r: &ConsentRow) -> Result<(), StoreError> {
    on_conn!(c, |c| {
        sqlx::query(
            "INSERT INTO consents (id, collected_by, data_key_id, status, valid_from_us, \
             expires_us, created_at_us, revoked_at_us, event_count, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&r.id)
        .bind(&r.collected_by)
        .bind(&r.data_key_id)
        .bind(&r.status)
        .bind(r.valid_from_us)
        .bind(r.expires_us)
        .bind(r.created_at_us)
        .bind(r.revoked_at_us)
        .bind(r.event_count)
        .bind(&r.body)
        .execute(c)
        .await
        .map(|_| ())
    })?;
    Ok(())
}

/// Inserts a subject row of a consent.
pub async fn insert_subject(
    c: &mut Conn<'_>,
    consent_id: &str,
    s: &SubjectRow,
) -> Result<(), StoreError> {
    on_conn!(c, |c| {
        sqlx::query(
            "INSERT INTO consent_subjects (consent_id, position, blind_index, ciphertext) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(consent_id)
        .bind(s.position)
        .bind(&s.blind_index)
        .bind(&s.ciphertext)
        .execute(c)
        .await
        .map(|_| ())
    })?;
    Ok(())
}

/// Inserts an event row of a consent.
pub async fn insert_event(
    c: &mut Conn<'_>,
    consent_id: &str,
    e: &EventRow,
) -> Result<(), StoreError> {
    on_conn!(c, |c| {
        sqlx::query(
            "INSERT INTO consent_events (consent_id, seq, event, actor_partner, actor_user, \
             at_us, sealed) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(consent_id)
        .bind(e.seq)
        .bind(&e.event)
        .bind(&e.actor_partner)
        .bind(&e.actor_user)
        .bind(e.at_us)
        .bind(&e.sealed)
        .execute(c)
        .await
        .map(|_| ())
    })?;
    Ok(())
}

/// Marks an active consent revoked, if it still has `event_count - 1` events; returns whether
/// it did (it does not when a concurrent change won).
pub async fn mark_revoked(
    c: &mut Conn<'_>,
    id: &str,
    revoked_at_us: i64,
    event_count: i64,
) -> Result<bool, StoreError> {
    let done = on_conn!(c, |c| {
        sqlx::query(
            "UPDATE consents SET status = 'revoked', revoked_at_us = $1, event_count = $2 \
             WHERE id = $3 AND status = 'active' AND event_count = $4",
        )
        .bind(revoked_at_us)
        .bind(event_count)
        .bind(id)
        .bind(event_count - 1)
        .execute(c)
        .await
        .map(|d| d.rows_affected())
    })?;
    Ok(done == 1)
}

/// One consent row.
pub async fn get(c: &mut Conn<'_>, id: &str) -> Result<Option<ConsentRow>, StoreError> {
    Ok(on_conn!(c, |c| {
        sqlx::query_as(
            "SELECT id, collected_by, data_key_id, status, valid_from_us, expires_us, \
             created_at_us, revoked_at_us, event_count, body FROM consents WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(c)
        .await
    })?)
}

/// A consent's events, by sequence.
pub async fn events(c: &mut Conn<'_>, id: &str) -> Result<Vec<EventRow>, StoreError> {
    Ok(on_conn!(c, |c| {
        sqlx::query_as(
            "SELECT seq, event, actor_partner, actor_user, at_us, sealed FROM consent_events \
             WHERE consent_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(c)
        .await
    })?)
}

/// A consent's subject rows, by position.
pub async fn subjects(c: &mut Conn<'_>, id: &str) -> Result<Vec<SubjectRow>, StoreError> {
    Ok(on_conn!(c, |c| {
        sqlx::query_as(
            "SELECT position, blind_index, ciphertext FROM consent_subjects \
             WHERE consent_id = $1 ORDER BY position",
        )
        .bind(id)
        .fetch_all(c)
        .await
    })?)
}

/// `(consent id, position)` of every subject row with this blind index.
pub async fn find_by_blind_index(
    c: &mut Conn<'_>,
    index: &[u8],
) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(on_conn!(c, |c| {
        sqlx::query_as("SELECT consent_id, position FROM consent_subjects WHERE blind_index = $1")
            .bind(index)
            .fetch_all(c)
            .await
    })?)
}
