//! The `emergency_reviews` table: one row per emergency-access window and its review.

use super::{Conn, StoreError, on_conn};

/// A review as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReviewRow {
    /// Id (UUID text).
    pub id: String,
    /// `open` or `closed`.
    pub state: String,
    /// When the window opened (µs).
    pub opened_at_us: i64,
    /// When the window ends (µs).
    pub window_until_us: i64,
    /// The partner whose user broke the glass.
    pub partner: String,
    /// The user.
    pub user_id: String,
    /// The subject's pseudonym (hex), or a record reference when the record names nobody.
    pub subject: String,
    /// The log entry of the first disclosure in the window.
    pub first_disclosure_seq: i64,
    /// Disclosures counted in the window.
    pub accesses: i64,
    /// `justified` or `not-justified`, once closed.
    pub outcome: Option<String>,
    /// The reviewer's note.
    pub note: Option<String>,
    /// Who closed it (partner).
    pub reviewed_by_partner: Option<String>,
    /// Who closed it (user).
    pub reviewed_by_user: Option<String>,
    /// When it was closed (µs).
    pub reviewed_at_us: Option<i64>,
}

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

/// The id of the window of `(partner, user, subject)` still open at `now_us`, if any.
pub async fn open_window(
    c: &mut Conn<'_>,
    partner: &str,
    user: &str,
    subject: &str,
    now_us: i64,
) -> Result<Option<String>, StoreError> {
    let row: Option<(String,)> = on_conn!(c, |c| {
        sqlx::query_as(
            "SELECT id FROM emergency_reviews WHERE partner = $1 AND user_id = $2 \
             AND subject = $3 AND window_until_us > $4 ORDER BY opened_at_us DESC LIMIT 1",
        )
        .bind(partner)
        .bind(user)
        .bind(subject)
        .bind(now_us)
        .fetch_optional(c)
        .await
    })?;
    Ok(row.map(|r| r.0))
}

/// Counts one more disclosure in a window.
pub async fn count_access(c: &mut Conn<'_>, id: &str) -> Result<(), StoreError> {
    on_conn!(c, |c| {
        sqlx::query("UPDATE emergency_reviews SET accesses = accesses + 1 WHERE id = $1")
            .bind(id)
            .execute(c)
            .await
            .map(|_| ())
    })?;
    Ok(())
}

/// Opens a window and its review, counting its first disclosure.
pub async fn open(c: &mut Conn<'_>, row: &ReviewRow) -> Result<(), StoreError> {
    on_conn!(c, |c| {
        sqlx::query(
            "INSERT INTO emergency_reviews (id, opened_at_us, window_until_us, partner, \
             user_id, subject, first_disclosure_seq, accesses, state) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open')",
        )
        .bind(&row.id)
        .bind(row.opened_at_us)
        .bind(row.window_until_us)
        .bind(&row.partner)
        .bind(&row.user_id)
        .bind(&row.subject)
        .bind(row.first_disclosure_seq)
        .bind(row.accesses)
        .execute(c)
        .await
        .map(|_| ())
    })?;
    Ok(())
}

/// Reviews in `state` (`None`: all), oldest first, at most `limit`.
pub async fn list(
    c: &mut Conn<'_>,
    state: Option<&str>,
    limit: u32,
) -> Result<Vec<ReviewRow>, StoreError> {
    let limit = i64::from(limit);
    Ok(match state {
        Some(s) => on_conn!(c, |c| {
            sqlx::query_as(select_reviews!(
                "WHERE state = $1 ORDER BY opened_at_us, id LIMIT $2"
            ))
            .bind(s)
            .bind(limit)
            .fetch_all(c)
            .await
        })?,
        None => on_conn!(c, |c| {
            sqlx::query_as(select_reviews!("ORDER BY opened_at_us, id LIMIT $1"))
                .bind(limit)
                .fetch_all(c)
                .await
        })?,
    })
}

/// One review.
pub async fn get(c: &mut Conn<'_>, id: &str) -> Result<Option<ReviewRow>, StoreError> {
    Ok(on_conn!(c, |c| {
        sqlx::query_as(select_reviews!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(c)
            .await
    })?)
}

/// Closes a review if it is open; returns whether it was.
pub async fn close(
    c: &mut Conn<'_>,
    id: &str,
    outcome: &str,
    note: &str,
    by: (&str, &str),
    at_us: i64,
) -> Result<bool, StoreError> {
    let done = on_conn!(c, |c| {
        sqlx::query(
            "UPDATE emergency_reviews SET state = 'closed', outcome = $1, note = $2, \
             reviewed_by_partner = $3, reviewed_by_user = $4, reviewed_at_us = $5 \
             WHERE id = $6 AND state = 'open'",
        )
        .bind(outcome)
        .bind(note)
        .bind(by.0)
        .bind(by.1)
        .bind(at_us)
        .bind(id)
        .execute(c)
        .await
        .map(|d| d.rows_affected())
    })?;
    Ok(done == 1)
}

/// How many reviews are in `state` (`open` or `closed`).
pub async fn count(c: &mut Conn<'_>, state: &str) -> Result<u64, StoreError> {
    let (n,): (i64,) = on_conn!(c, |c| {
        sqlx::query_as("SELECT COUNT(*) FROM emergency_reviews WHERE state = $1")
            .bind(state)
            .fetch_one(c)
            .await
    })?;
    Ok(u64::try_from(n).unwrap_or(0))
}
