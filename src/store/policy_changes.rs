//! The tables of policy sets and policy changes: `policy_sets` (the files of every set a
//! gateway ran with, by content hash) and `policy_changes` (one row per policy load, keyed by
//! the sequence number of its `policy_reloaded` entry in the disclosure log, with the full
//! diff).
//!
//! Rows only. A set's files are checked against their hash, and a change's diff against the
//! digest its log entry carries, by the layers above.

use super::{Conn, StoreError, on_conn};

/// A `policy_changes` row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PolicyChangeRow {
    /// The sequence number of the `policy_reloaded` entry.
    pub seq: i64,
    /// When (µs).
    pub at_us: i64,
    /// `start-up` or `reload`.
    pub trigger: String,
    /// The hash of the set in force before, if any.
    pub previous_hash: Option<String>,
    /// The hash of the set loaded.
    pub new_hash: String,
    /// The summary (JSON).
    pub summary: String,
    /// The full diff (JSON), when the two sets could be compared.
    pub diff: Option<String>,
}

/// Stores a set's files under its hash, unless a set with that hash is stored already.
pub async fn insert_set(
    c: &mut Conn<'_>,
    hash: &str,
    files: &str,
    at_us: i64,
) -> Result<(), StoreError> {
    on_conn!(c, |c| {
        sqlx::query(
            "INSERT INTO policy_sets (hash, files, first_loaded_at_us) VALUES ($1, $2, $3) \
             ON CONFLICT (hash) DO NOTHING",
        )
        .bind(hash)
        .bind(files)
        .bind(at_us)
        .execute(c)
        .await
        .map(|_| ())
    })?;
    Ok(())
}

/// The files of the set with this hash (JSON), if stored.
pub async fn get_set(c: &mut Conn<'_>, hash: &str) -> Result<Option<String>, StoreError> {
    let row: Option<(String,)> = on_conn!(c, |c| {
        sqlx::query_as("SELECT files FROM policy_sets WHERE hash = $1")
            .bind(hash)
            .fetch_optional(c)
            .await
    })?;
    Ok(row.map(|r| r.0))
}

/// Inserts a change row.
pub async fn insert_change(c: &mut Conn<'_>, r: &PolicyChangeRow) -> Result<(), StoreError> {
    on_conn!(c, |c| {
        sqlx::query(
            "INSERT INTO policy_changes (seq, at_us, trigger, previous_hash, new_hash, \
             summary, diff) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(r.seq)
        .bind(r.at_us)
        .bind(&r.trigger)
        .bind(r.previous_hash.as_deref())
        .bind(&r.new_hash)
        .bind(&r.summary)
        .bind(r.diff.as_deref())
        .execute(c)
        .await
        .map(|_| ())
    })?;
    Ok(())
}

/// The most recent change (the set loaded last by any gateway on this database).
pub async fn latest(c: &mut Conn<'_>) -> Result<Option<PolicyChangeRow>, StoreError> {
    Ok(on_conn!(c, |c| {
        sqlx::query_as(
            "SELECT seq, at_us, trigger, previous_hash, new_hash, summary, CAST(NULL AS TEXT) AS diff \
             FROM policy_changes ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(c)
        .await
    })?)
}

/// Changes with a sequence number below `before` (all with `None`), newest first, at most
/// `limit`, without their diffs.
pub async fn list(
    c: &mut Conn<'_>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<PolicyChangeRow>, StoreError> {
    Ok(on_conn!(c, |c| {
        sqlx::query_as(
            "SELECT seq, at_us, trigger, previous_hash, new_hash, summary, CAST(NULL AS TEXT) AS diff \
             FROM policy_changes WHERE seq < $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(c)
        .await
    })?)
}

/// One change, with its diff.
pub async fn get(c: &mut Conn<'_>, seq: i64) -> Result<Option<PolicyChangeRow>, StoreError> {
    Ok(on_conn!(c, |c| {
        sqlx::query_as(
            "SELECT seq, at_us, trigger, previous_hash, new_hash, summary, diff \
             FROM policy_changes WHERE seq = $1",
        )
        .bind(seq)
        .fetch_optional(c)
        .await
    })?)
}
