//! The `report_privacy_ledger` table: what each public report run under differential privacy
//! charged to its series' budget.

use super::{Conn, StoreError, on_conn};

/// One run's charge.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Charge {
    /// The run (its log entry's decision id).
    pub run_id: String,
    /// The series charged.
    pub series: String,
    /// The report.
    pub report: String,
    /// SHA-256 of its definition.
    pub definition_hash: String,
    /// Epsilon in millionths.
    pub epsilon_micros: i64,
    /// The period's start (µs).
    pub period_from_us: i64,
    /// The period's end (µs).
    pub period_to_us: i64,
    /// When (µs).
    pub charged_at_us: i64,
    /// Who ran it (partner).
    pub charged_by_partner: String,
    /// Who ran it (user).
    pub charged_by_user: String,
}

/// Millionths of epsilon charged to `series` so far.
pub async fn spent(c: &mut Conn<'_>, series: &str) -> Result<i64, StoreError> {
    let (n,): (i64,) = on_conn!(c, |c| {
        sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(epsilon_micros), 0) AS BIGINT) \
             FROM report_privacy_ledger WHERE series = $1",
        )
        .bind(series)
        .fetch_one(c)
        .await
    })?;
    Ok(n)
}

/// Records a charge.
pub async fn charge(c: &mut Conn<'_>, row: &Charge) -> Result<(), StoreError> {
    on_conn!(c, |c| {
        sqlx::query(
            "INSERT INTO report_privacy_ledger (run_id, series, report, definition_hash, \
             epsilon_micros, period_from_us, period_to_us, charged_at_us, charged_by_partner, \
             charged_by_user) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&row.run_id)
        .bind(&row.series)
        .bind(&row.report)
        .bind(&row.definition_hash)
        .bind(row.epsilon_micros)
        .bind(row.period_from_us)
        .bind(row.period_to_us)
        .bind(row.charged_at_us)
        .bind(&row.charged_by_partner)
        .bind(&row.charged_by_user)
        .execute(c)
        .await
        .map(|_| ())
    })?;
    Ok(())
}
