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
use uuid::Uuid;

use crate::store::reviews::{self, ReviewRow};
use crate::store::{Conn, StoreError};

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
    c: &mut Conn<'_>,
    access: Access<'_>,
    seq: u64,
    window: Duration,
    now: DateTime<Utc>,
) -> Result<ReviewRef, StoreError> {
    let now_us = now.timestamp_micros();
    if let Some(id) =
        reviews::open_window(c, access.partner, access.user, access.subject, now_us).await?
    {
        reviews::count_access(c, &id).await?;
        return Ok(ReviewRef { id, opened: false });
    }
    let id = Uuid::now_v7().to_string();
    reviews::open(
        c,
        &ReviewRow {
            id: id.clone(),
            state: "open".into(),
            opened_at_us: now_us,
            window_until_us: (now + window).timestamp_micros(),
            partner: access.partner.to_owned(),
            user_id: access.user.to_owned(),
            subject: access.subject.to_owned(),
            first_disclosure_seq: crate::store::to_i64(seq, "log sequence number")?,
            accesses: 1,
            outcome: None,
            note: None,
            reviewed_by_partner: None,
            reviewed_by_user: None,
            reviewed_at_us: None,
        },
    )
    .await?;
    Ok(ReviewRef { id, opened: true })
}

fn micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

impl From<ReviewRow> for Review {
    fn from(r: ReviewRow) -> Self {
        Review {
            id: r.id,
            state: r.state,
            opened_at: micros(r.opened_at_us),
            window_until: micros(r.window_until_us),
            partner: r.partner,
            user: r.user_id,
            subject: r.subject,
            first_disclosure: u64::try_from(r.first_disclosure_seq).unwrap_or(0),
            accesses: u64::try_from(r.accesses).unwrap_or(0),
            outcome: r.outcome.as_deref().and_then(ReviewOutcome::parse),
            note: r.note,
            reviewed_by_partner: r.reviewed_by_partner,
            reviewed_by_user: r.reviewed_by_user,
            reviewed_at: r.reviewed_at_us.map(micros),
        }
    }
}

/// Reviews in `state` (`None`: all), oldest first, at most `limit`.
pub async fn list(
    c: &mut Conn<'_>,
    state: Option<&str>,
    limit: u32,
) -> Result<Vec<Review>, StoreError> {
    Ok(reviews::list(c, state, limit)
        .await?
        .into_iter()
        .map(Review::from)
        .collect())
}

/// One review.
pub async fn get(c: &mut Conn<'_>, id: &str) -> Result<Option<Review>, StoreError> {
    Ok(reviews::get(c, id).await?.map(Review::from))
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

/// Closes an open review inside the caller's transaction (the caller appends the log entry in
/// the same transaction and commits).
pub async fn close(
    c: &mut Conn<'_>,
    id: &str,
    outcome: ReviewOutcome,
    note: &str,
    by: (&str, &str),
    now: DateTime<Utc>,
) -> Result<Review, CloseError> {
    let closed = reviews::close(c, id, outcome.as_str(), note, by, now.timestamp_micros()).await?;
    let review = get(c, id)
        .await?
        .ok_or_else(|| CloseError::NotFound(id.to_owned()))?;
    if !closed {
        return Err(CloseError::Closed(id.to_owned()));
    }
    Ok(review)
}
