//! The tables of agreed restrictions and court orders: `subject_directives` and
//! `subject_directive_subjects`.
//!
//! Rows only: each directive's body, its end and its subject identifiers arrive sealed and leave
//! sealed; the directive registry (module `consent::directives`, above this one) seals, opens
//! and checks them. `directive` tells the two kinds apart (`restriction`, `court_order`).

use super::{Conn, StoreError, on_conn};

/// A `subject_directives` row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DirectiveRow {
    /// Id.
    pub id: String,
    /// `restriction` or `court_order`.
    pub directive: String,
    /// The partner that recorded it.
    pub recorded_by: String,
    /// The user that recorded it.
    pub recorded_by_user: String,
    /// When (µs).
    pub recorded_at_us: i64,
    /// Its data key.
    pub data_key_id: String,
    /// Start (µs).
    pub valid_from_us: i64,
    /// End (µs); `None`: until ended.
    pub ends_at_us: Option<i64>,
    /// When it was ended (terminated, vacated), µs.
    pub ended_at_us: Option<i64>,
    /// Who ended it (partner).
    pub ended_by_partner: Option<String>,
    /// Who ended it (user).
    pub ended_by_user: Option<String>,
    /// The sealed body.
    pub body: Vec<u8>,
    /// The sealed end (who, when, why).
    pub end_sealed: Option<Vec<u8>>,
}

/// A `subject_directive_subjects` row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DirectiveSubjectRow {
    /// Position in the directive's list, from 0.
    pub position: i64,
    /// Keyed blind index of the canonical identifier.
    pub blind_index: Vec<u8>,
    /// Sealed identifier.
    pub ciphertext: Vec<u8>,
}

/// The columns of [`DirectiveRow`], in its order.
macro_rules! columns {
    () => {
        "id, directive, recorded_by, recorded_by_user, recorded_at_us, data_key_id, \
         valid_from_us, ends_at_us, ended_at_us, ended_by_partner, ended_by_user, body, \
         end_sealed"
    };
}

/// Inserts a directive row.
pub async fn insert(c: &mut Conn<'_>, r: &DirectiveRow) -> Result<(), StoreError> {
    on_conn!(c, |c| {
        sqlx::query(
            "INSERT INTO subject_directives (id, directive, recorded_by, recorded_by_user, \
             recorded_at_us, data_key_id, valid_from_us, ends_at_us, ended_at_us, \
             ended_by_partner, ended_by_user, body, end_sealed) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&r.id)
        .bind(&r.directive)
        .bind(&r.recorded_by)
        .bind(&r.recorded_by_user)
        .bind(r.recorded_at_us)
        .bind(&r.data_key_id)
        .bind(r.valid_from_us)
        .bind(r.ends_at_us)
        .bind(r.ended_at_us)
        .bind(r.ended_by_partner.as_deref())
        .bind(r.ended_by_user.as_deref())
        .bind(&r.body)
        .bind(r.end_sealed.as_deref())
        .execute(c)
        .await
        .map(|_| ())
    })?;
    Ok(())
}

/// Inserts a subject row of a directive.
pub async fn insert_subject(
    c: &mut Conn<'_>,
    directive_id: &str,
    s: &DirectiveSubjectRow,
) -> Result<(), StoreError> {
    on_conn!(c, |c| {
        sqlx::query(
            "INSERT INTO subject_directive_subjects (directive_id, position, blind_index, \
             ciphertext) VALUES ($1, $2, $3, $4)",
        )
        .bind(directive_id)
        .bind(s.position)
        .bind(&s.blind_index)
        .bind(&s.ciphertext)
        .execute(c)
        .await
        .map(|_| ())
    })?;
    Ok(())
}

/// Marks a directive ended, if it has not been; returns whether it did (it does not when it
/// was ended already, or concurrently).
pub async fn mark_ended(
    c: &mut Conn<'_>,
    id: &str,
    at_us: i64,
    partner: &str,
    user: &str,
    sealed: &[u8],
) -> Result<bool, StoreError> {
    let done = on_conn!(c, |c| {
        sqlx::query(
            "UPDATE subject_directives SET ended_at_us = $1, ended_by_partner = $2, \
             ended_by_user = $3, end_sealed = $4 WHERE id = $5 AND ended_at_us IS NULL",
        )
        .bind(at_us)
        .bind(partner)
        .bind(user)
        .bind(sealed)
        .bind(id)
        .execute(c)
        .await
        .map(|d| d.rows_affected())
    })?;
    Ok(done == 1)
}

/// One directive row.
pub async fn get(c: &mut Conn<'_>, id: &str) -> Result<Option<DirectiveRow>, StoreError> {
    Ok(on_conn!(c, |c| {
        sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM subject_directives WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(c)
        .await
    })?)
}

/// Every directive of one kind, oldest first.
pub async fn list(c: &mut Conn<'_>, directive: &str) -> Result<Vec<DirectiveRow>, StoreError> {
    Ok(on_conn!(c, |c| {
        sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM subject_directives WHERE directive = $1 ORDER BY recorded_at_us, id"
        ))
        .bind(directive)
        .fetch_all(c)
        .await
    })?)
}

/// A directive's subject rows, by position.
pub async fn subjects(c: &mut Conn<'_>, id: &str) -> Result<Vec<DirectiveSubjectRow>, StoreError> {
    Ok(on_conn!(c, |c| {
        sqlx::query_as(
            "SELECT position, blind_index, ciphertext FROM subject_directive_subjects \
             WHERE directive_id = $1 ORDER BY position",
        )
        .bind(id)
        .fetch_all(c)
        .await
    })?)
}

/// `(directive id, position)` of every subject row with this blind index.
pub async fn find_by_blind_index(
    c: &mut Conn<'_>,
    index: &[u8],
) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(on_conn!(c, |c| {
        sqlx::query_as(
            "SELECT directive_id, position FROM subject_directive_subjects \
             WHERE blind_index = $1",
        )
        .bind(index)
        .fetch_all(c)
        .await
    })?)
}
