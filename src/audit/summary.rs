//! Aggregates over the log for the compliance console's overview: disclosures per day by
//! recipient partner, purpose, outcome and basis kind; the log's extent; the newest
//! verification a compliance officer ran.
//!
//! Security role: these numbers name agencies, purposes and counts only, never a subject,
//! a user, a record or a field, so they carry no personal data. They are read from the log
//! itself (never from a copy that could drift from it) and never change it (CJIS AU-7).

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::LogError;
use super::entry::{Entry, EntryKind};
use crate::store::{Conn, on_conn};

/// Microseconds in a day.
const DAY_US: i64 = 86_400_000_000;

/// The text a chain verification requested over the API starts its `log_verified` entry's
/// detail with (format-1 entries: its `log_read` entry's, found by it).
pub const VERIFIED_PREFIX: &str = "verified the disclosure log (";

/// What the verification entry's detail says when the chain held.
pub const VERIFIED_OK: &str = "the chain verifies";

/// Disclosure entries of one day with the same recipient, purpose, outcome and basis kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DayCount {
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// The recipient partner (absent for requests refused before one was known).
    pub recipient: Option<String>,
    /// The purpose of use.
    pub purpose: Option<String>,
    /// `permit` or `deny`.
    pub outcome: String,
    /// `mou`, `consent` or `emergency` (absent for most denials).
    pub basis: Option<String>,
    /// How many entries.
    pub count: u64,
}

/// The extent of the stored log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Extent {
    /// Entries stored (the chain has no gaps; a purge removes a prefix).
    pub entries: u64,
    /// The first stored sequence number (greater than 1 after a purge).
    pub first_seq: Option<u64>,
    /// The newest sequence number.
    pub last_seq: Option<u64>,
}

/// The newest chain verification recorded in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LastVerification {
    /// The `log_read` entry that records it.
    pub seq: u64,
    /// When it ran (RFC 3339).
    pub at: String,
    /// Whether the chain verified.
    pub ok: bool,
    /// The entry's detail: how many entries were checked and, on failure, where it failed.
    pub detail: String,
}

type DayRow = (
    i64,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    i64,
);

/// Disclosure entries between `since_us` and `until_us` (inclusive), counted per UTC day,
/// recipient, purpose, outcome and basis kind; ordered by day, then the other keys.
pub async fn daily_disclosures(
    c: &mut Conn<'_>,
    since_us: i64,
    until_us: i64,
) -> Result<Vec<DayCount>, LogError> {
    let rows: Vec<DayRow> = on_conn!(c, |c| {
        sqlx::query_as(
            "SELECT at_us / 86400000000 AS day, recipient_partner, purpose, outcome, \
             basis_kind, COUNT(*) AS n FROM audit_log \
             WHERE kind = $1 AND at_us >= $2 AND at_us <= $3 \
             GROUP BY at_us / 86400000000, recipient_partner, purpose, outcome, basis_kind \
             ORDER BY 1, 2, 3, 4, 5",
        )
        .bind(EntryKind::Disclosure.as_str())
        .bind(since_us)
        .bind(until_us)
        .fetch_all(c)
        .await
    })?;
    Ok(rows
        .into_iter()
        .map(|(day, recipient, purpose, outcome, basis, n)| DayCount {
            day: day_name(day),
            recipient,
            purpose,
            outcome,
            basis,
            count: u64::try_from(n).unwrap_or(0),
        })
        .collect())
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01, UTC).
fn day_name(day: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(day.saturating_mul(DAY_US))
        .map(|t| t.date_naive())
        .unwrap_or(NaiveDate::MIN)
        .format("%Y-%m-%d")
        .to_string()
}

/// The stored log's first and last sequence numbers (read from the primary key, not by
/// counting rows).
pub async fn extent(c: &mut Conn<'_>) -> Result<Extent, LogError> {
    let (first, last): (Option<i64>, Option<i64>) = on_conn!(c, |c| {
        sqlx::query_as("SELECT MIN(seq), MAX(seq) FROM audit_log")
            .fetch_one(c)
            .await
    })?;
    let first = first.and_then(|s| u64::try_from(s).ok());
    let last = last.and_then(|s| u64::try_from(s).ok());
    let entries = match (first, last) {
        (Some(a), Some(b)) if b >= a => b - a + 1,
        _ => 0,
    };
    Ok(Extent {
        entries,
        first_seq: first,
        last_seq: last,
    })
}

/// The newest entry recording a chain verification requested over the API, if any: the
/// newest `log_verified` entry (found by kind, through the kind index), else, for a log
/// verified only before entries were sealed, the newest format-1 `log_read` entry whose clear
/// detail starts with [`VERIFIED_PREFIX`]. The entry is returned as stored: its detail is
/// sealed, and [`LastVerification::of`] needs it opened (the compliance services do that).
pub async fn last_verification(c: &mut Conn<'_>) -> Result<Option<Entry>, LogError> {
    let seq: Option<(i64,)> = on_conn!(c, |c| {
        sqlx::query_as("SELECT seq FROM audit_log WHERE kind = $1 ORDER BY seq DESC LIMIT 1")
            .bind(EntryKind::LogVerified.as_str())
            .fetch_optional(c)
            .await
    })?;
    let seq = match seq {
        Some(s) => Some(s),
        None => {
            let pattern = format!("{VERIFIED_PREFIX}%");
            on_conn!(c, |c| {
                sqlx::query_as(
                    "SELECT seq FROM audit_log WHERE kind = $1 AND detail LIKE $2 \
                     ORDER BY seq DESC LIMIT 1",
                )
                .bind(EntryKind::LogRead.as_str())
                .bind(&pattern)
                .fetch_optional(c)
                .await
            })?
        }
    };
    match seq.and_then(|(s,)| u64::try_from(s).ok()) {
        Some(seq) => super::query::get(c, seq).await,
        None => Ok(None),
    }
}

impl LastVerification {
    /// The verification `e` records. `e`'s sealed text must be opened: an entry whose detail
    /// is not a verification's (still sealed, or another entry) gives `None`, never a result
    /// that claims the chain held.
    pub fn of(e: &Entry) -> Option<Self> {
        let detail = e.data.detail.as_deref()?;
        if !detail.starts_with(VERIFIED_PREFIX) {
            return None;
        }
        Some(Self {
            seq: e.seq,
            at: super::query::rfc3339(&e.data.at),
            ok: detail.ends_with(VERIFIED_OK),
            detail: detail.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_numbers_name_utc_days() {
        assert_eq!(day_name(0), "1970-01-01");
        assert_eq!(day_name(20_000), "2024-10-04");
    }
}
