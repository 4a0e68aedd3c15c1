//! Emergency access reviews (HIPAA 164.512(j)).
//!
//! An emergency read needs a stated basis and threat (the `Emergency-*` headers); when it
//! discloses anything, it opens a *window* for that partner, user and subject, lasting
//! `[emergency] window_secs` (default one hour). Every disclosure inside the window is a flagged
//! log entry and counts towards the window's one review; after the window a new emergency read
//! (with its own stated basis) opens a new window and a new review. So every emergency access
//! lands in exactly one review, and one stated basis never lasts longer than the time box.
//!
//! The window is found or opened in the same database transaction as the disclosure's log
//! entry, after the log's head lock is taken, so concurrent emergency reads of one subject by
//! one user never open two reviews.
//!
//! Compliance officers list reviews (`GET /v1/reviews?state=open`) and close each with
//! `justified` or `not-justified` and a note (`POST /v1/reviews/{id}`); closing is logged.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::{Any, AnyConnection, Transaction};
use uuid::Uuid;

use crate::store::{Store, StoreError};

/// A review's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReviewOutcome {
    /// The access was justified.
    Justified,
    /// The access was not justified (follow up under the partner's sanctions policy).
    NotJustified,
}

impl ReviewOutcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Justified => "justified",
            Self::NotJustified => "not-justified",
        }
    }

    /// Parses a stored or submitted name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "justified" => Some(Self::Justified),
            "not-justified" => Some(Self::NotJustified),
            _ => None,
        }
    }
}

/// One review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Review {
    /// Its id.
    pub id: String,
    /// `open` or `closed`.
    pub state: String,
    /// When the window opened.
    pub opened_at: DateTime<Utc>,
    /// When the window ends (or ended).
    pub window_until: DateTime<Utc>,
    /// The partner whose user broke the glass.
    pub partner: String,
    /// The user.
    pub user: String,
    /// The subject's pseudonym (as in the disclosure log).
    pub subject: String,
    /// The log entry of the first disclosure in the window.
    pub first_disclosure: u64,
    /// How many disclosures the window held.
    pub accesses: u64,
    /// The outcome, once closed.
    pub outcome: Option<ReviewOutcome>,
    /// The reviewer's note.
    pub note: Option<String>,
    /// Who closed it (partner).
    pub reviewed_by_partner: Option<String>,
    /// Who closed it (user).
    pub reviewed_by_user: Option<String>,
    /// When it was closed.
    pub reviewed_at: Option<DateTime<Utc>>,
}

/// The review an emergency disclosure was counted in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewRef {
    /// The review.
    pub id: String,
    /// Whether this disclosure opened it.
    pub opened: bool,
}

/// Who is reviewed: the requester and the subject.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    /// Partner.
    pub partner: &'a str,
    /// User.
    pub user: &'a str,
    /// Subject pseudonym (hex).
    pub subject: &'a str,
}

/// Counts an emergency disclosure (log entry `seq`) in the open window of `access`, or opens
/// a window and its review. Call inside the transaction that appended the entry.
pub async fn record_access(
    tx: &mut Transaction<'_, Any>,
    access: Access<'_>,
    seq: u64,
    window: Duration,
    now: DateTime<Utc>,
) -> Result<ReviewRef, StoreError> {
    let conn: &mut AnyConnection = tx;
    let now_us = now.timestamp_micros();
    let open: Option<(String,)> = sqlx::query_as(
        "SELECT id FROM emergency_reviews WHERE partner = $1 AND user_id = $2 AND subject = $3 \
         AND window_until_us > $4 ORDER BY opened_at_us DESC LIMIT 1",
    )
    .bind(access.partner)
    .bind(access.user)
    .bind(access.subject)
    .bind(now_us)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((id,)) = open {
        sqlx::query("UPDATE emergency_reviews SET accesses = accesses + 1 WHERE id = $1")
            .bind(&id)
            .execute(&mut *conn)
            .await?;
        return Ok(ReviewRef { id, opened: false });
    }
    let id = Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO emergency_reviews (id, opened_at_us, window_until_us, partner, user_id, \
         subject, first_disclosure_seq, accesses, state) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 1, 'open')",
    )
    .bind(&id)
    .bind(now_us)
    .bind((now + window).timestamp_micros())
    .bind(access.partner)
    .bind(access.user)
    .bind(access.subject)
    .bind(i64::try_from(seq).unwrap_or(i64::MAX))
    .execute(&mut *conn)
    .await?;
    Ok(ReviewRef { id, opened: true })
}

type Row = (
    String,
    String,
    i64,
    i64,
    String,
    String,
    String,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

macro_rules! select_reviews {
    ($rest:literal) => {
        concat!(
            "SELECT id, state, opened_at_us, window_until_us, partner, user_id, subject, \
             first_disclosure_seq, accesses, outcome, note, reviewed_by_partner, \
             reviewed_by_user, reviewed_at_us FROM emergency_reviews ",
            $rest
        )
    };
}

fn micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

fn from_row(r: Row) -> Review {
    Review {
        id: r.0,
        state: r.1,
        opened_at: micros(r.2),
        window_until: micros(r.3),
        partner: r.4,
        user: r.5,
        subject: r.6,
        first_disclosure: u64::try_from(r.7).unwrap_or(0),
        accesses: u64::try_from(r.8).unwrap_or(0),
        outcome: r.9.as_deref().and_then(ReviewOutcome::parse),
        note: r.10,
        reviewed_by_partner: r.11,
        reviewed_by_user: r.12,
        reviewed_at: r.13.map(micros),
    }
}

/// Reviews in `state` (`None`: all), oldest first, at most `limit`.
pub async fn list(
    store: &Store,
    state: Option<&str>,
    limit: u32,
) -> Result<Vec<Review>, StoreError> {
    let rows: Vec<Row> = match state {
        Some(s) => {
            sqlx::query_as(select_reviews!(
                "WHERE state = $1 ORDER BY opened_at_us, id LIMIT $2"
            ))
            .bind(s)
            .bind(i64::from(limit))
            .fetch_all(store.pool())
            .await?
        }
        None => {
            sqlx::query_as(select_reviews!("ORDER BY opened_at_us, id LIMIT $1"))
                .bind(i64::from(limit))
                .fetch_all(store.pool())
                .await?
        }
    };
    Ok(rows.into_iter().map(from_row).collect())
}

/// One review.
pub async fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<Review>, StoreError> {
    let row: Option<Row> = sqlx::query_as(select_reviews!("WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(from_row))
}

/// Why a review could not be closed.
#[derive(Debug, thiserror::Error)]
pub enum CloseError {
    /// No such review.
    #[error("there is no review `{0}`")]
    NotFound(String),
    /// Already closed.
    #[error("review `{0}` is already closed")]
    Closed(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Closes an open review inside `tx` (the caller appends the log entry in the same
/// transaction and commits).
pub async fn close(
    tx: &mut Transaction<'_, Any>,
    id: &str,
    outcome: ReviewOutcome,
    note: &str,
    by: (&str, &str),
    now: DateTime<Utc>,
) -> Result<Review, CloseError> {
    let conn: &mut AnyConnection = tx;
    let done = sqlx::query(
        "UPDATE emergency_reviews SET state = 'closed', outcome = $1, note = $2, \
         reviewed_by_partner = $3, reviewed_by_user = $4, reviewed_at_us = $5 \
         WHERE id = $6 AND state = 'open'",
    )
    .bind(outcome.as_str())
    .bind(note)
    .bind(by.0)
    .bind(by.1)
    .bind(now.timestamp_micros())
    .bind(id)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::from)?;
    let review = get(conn, id)
        .await?
        .ok_or_else(|| CloseError::NotFound(id.to_owned()))?;
    if done.rows_affected() == 0 {
        return Err(CloseError::Closed(id.to_owned()));
    }
    Ok(review)
}
