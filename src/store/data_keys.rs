//! The `data_keys` table: data keys wrapped under a master-key version, never in clear.

use super::{Conn, StoreError, on_conn};

pub use crate::crypto::WrappedKey;

type Row = (String, String, i64, Vec<u8>);

fn row((id, purpose, master_version, wrapped): Row) -> WrappedKey {
    WrappedKey {
        id,
        purpose,
        master_version,
        wrapped,
    }
}

/// Inserts a wrapped data key.
pub async fn insert(
    c: &mut Conn<'_>,
    key: &WrappedKey,
    created_at_us: i64,
) -> Result<(), StoreError> {
    on_conn!(c, |c| {
        sqlx::query(
            "INSERT INTO data_keys (id, purpose, master_version, wrapped, created_at_us) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&key.id)
        .bind(&key.purpose)
        .bind(key.master_version)
        .bind(&key.wrapped)
        .bind(created_at_us)
        .execute(c)
        .await
        .map(|_| ())
    })?;
    Ok(())
}

/// Reads one wrapped data key.
pub async fn get(c: &mut Conn<'_>, id: &str) -> Result<Option<WrappedKey>, StoreError> {
    let r: Option<Row> = on_conn!(c, |c| {
        sqlx::query_as("SELECT id, purpose, master_version, wrapped FROM data_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(c)
            .await
    })?;
    Ok(r.map(row))
}

/// Every master-key version that at least one data key is wrapped under, with counts.
pub async fn versions(c: &mut Conn<'_>) -> Result<Vec<(i64, i64)>, StoreError> {
    Ok(on_conn!(c, |c| {
        sqlx::query_as(
            "SELECT master_version, COUNT(*) FROM data_keys GROUP BY master_version \
             ORDER BY master_version",
        )
        .fetch_all(c)
        .await
    })?)
}

/// Up to `limit` data keys not wrapped under `version`.
pub async fn not_under(
    c: &mut Conn<'_>,
    version: i64,
    limit: i64,
) -> Result<Vec<WrappedKey>, StoreError> {
    let rows: Vec<Row> = on_conn!(c, |c| {
        sqlx::query_as(
            "SELECT id, purpose, master_version, wrapped FROM data_keys \
             WHERE master_version <> $1 ORDER BY id LIMIT $2",
        )
        .bind(version)
        .bind(limit)
        .fetch_all(c)
        .await
    })?;
    Ok(rows.into_iter().map(row).collect())
}

/// Deletes a data key that nothing references (a lost start-up race).
pub async fn delete_unused(c: &mut Conn<'_>, id: &str) -> Result<(), StoreError> {
    on_conn!(c, |c| {
        sqlx::query("DELETE FROM data_keys WHERE id = $1")
            .bind(id)
            .execute(c)
            .await
            .map(|_| ())
    })?;
    Ok(())
}

/// Replaces the wrapping of one data key, if it is still wrapped under `old_version`.
/// Returns whether a row changed.
pub async fn rewrap_one(
    c: &mut Conn<'_>,
    id: &str,
    old_version: i64,
    new_version: i64,
    wrapped: &[u8],
    at_us: i64,
) -> Result<bool, StoreError> {
    let done = on_conn!(c, |c| {
        sqlx::query(
            "UPDATE data_keys SET master_version = $1, wrapped = $2, rewrapped_at_us = $3 \
             WHERE id = $4 AND master_version = $5",
        )
        .bind(new_version)
        .bind(wrapped)
        .bind(at_us)
        .bind(id)
        .bind(old_version)
        .execute(c)
        .await
        .map(|d| d.rows_affected())
    })?;
    Ok(done == 1)
}
