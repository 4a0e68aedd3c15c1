//! The `accounting_suspensions` table (HIPAA 164.528(a)(2)).

use super::{Conn, StoreError, on_conn};

/// A suspension as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SuspensionRow {
    /// Id.
    pub id: String,
    /// The agency whose disclosures the accounting leaves out.
    pub recipient: String,
    /// The subject's 32-byte pseudonym, or `None` for every subject.
    pub subject: Option<Vec<u8>>,
    /// The agency's statement.
    pub statement: String,
    /// When it ends (µs).
    pub ends_at_us: i64,
    /// Who recorded it (partner).
    pub recorded_by_partner: String,
    /// Who recorded it (user).
    pub recorded_by_user: String,
    /// When it was recorded (µs).
    pub recorded_at_us: i64,
}

/// Inserts a suspension.
pub async fn insert(c: &mut Conn<'_>, s: &SuspensionRow) -> Result<(), StoreError> {
    on_conn!(c, |c| {
        sqlx::query(
            "INSERT INTO accounting_suspensions (id, recipient, subject, statement, \
             ends_at_us, recorded_by_partner, recorded_by_user, recorded_at_us) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&s.id)
        .bind(&s.recipient)
        .bind(s.subject.as_deref())
        .bind(&s.statement)
        .bind(s.ends_at_us)
        .bind(&s.recorded_by_partner)
        .bind(&s.recorded_by_user)
        .bind(s.recorded_at_us)
        .execute(c)
        .await
        .map(|_| ())
    })?;
    Ok(())
}

/// Suspensions ending after `after_us`, oldest first.
pub async fn ending_after(
    c: &mut Conn<'_>,
    after_us: i64,
) -> Result<Vec<SuspensionRow>, StoreError> {
    Ok(on_conn!(c, |c| {
        sqlx::query_as(
            "SELECT id, recipient, subject, statement, ends_at_us, recorded_by_partner, \
             recorded_by_user, recorded_at_us FROM accounting_suspensions \
             WHERE ends_at_us > $1 ORDER BY recorded_at_us, id",
        )
        .bind(after_us)
        .fetch_all(c)
        .await
    })?)
}
