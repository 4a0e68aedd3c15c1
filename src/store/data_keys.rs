//! The `data_keys` table: data keys wrapped under a master-key version, never in clear.

use sqlx::{Any, AnyConnection, Transaction};

use super::{Store, StoreError};

/// A wrapped data key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKeyRow {
    /// Key id (UUID text).
    pub id: String,
    /// `record` or `blind-index`.
    pub purpose: String,
    /// Master-key version it is wrapped under.
    pub master_version: i64,
    /// `nonce || ciphertext || tag`.
    pub wrapped: Vec<u8>,
}

type Row = (String, String, i64, Vec<u8>);

fn row((id, purpose, master_version, wrapped): Row) -> WrappedKeyRow {
    WrappedKeyRow {
        id,
        purpose,
        master_version,
        wrapped,
    }
}

/// Inserts a wrapped data key.
pub(crate) async fn insert(
    conn: &mut AnyConnection,
    key: &WrappedKeyRow,
    created_at_us: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO data_keys (id, purpose, master_version, wrapped, created_at_us) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&key.id)
    .bind(&key.purpose)
    .bind(key.master_version)
    .bind(&key.wrapped)
    .bind(created_at_us)
    .execute(conn)
    .await?;
    Ok(())
}

/// Reads one wrapped data key.
pub(crate) async fn fetch(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<WrappedKeyRow>, StoreError> {
    let r: Option<Row> =
        sqlx::query_as("SELECT id, purpose, master_version, wrapped FROM data_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await?;
    Ok(r.map(row))
}

impl Store {
    /// Every master-key version that at least one data key is wrapped under, with counts.
    pub async fn data_key_versions(&self) -> Result<Vec<(i64, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT master_version, COUNT(*) FROM data_keys GROUP BY master_version \
             ORDER BY master_version",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// Up to `limit` data keys not wrapped under `version`.
    pub async fn data_keys_not_under(
        &self,
        version: i64,
        limit: i64,
    ) -> Result<Vec<WrappedKeyRow>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, purpose, master_version, wrapped FROM data_keys \
             WHERE master_version <> $1 ORDER BY id LIMIT $2",
        )
        .bind(version)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(row).collect())
    }

    /// Reads one wrapped data key.
    pub async fn data_key(&self, id: &str) -> Result<Option<WrappedKeyRow>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        fetch(&mut conn, id).await
    }

    /// Inserts a wrapped data key.
    pub async fn insert_data_key(
        &self,
        key: &WrappedKeyRow,
        created_at_us: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool().acquire().await?;
        insert(&mut conn, key, created_at_us).await
    }

    /// Deletes a data key that nothing references (a lost start-up race).
    pub async fn delete_unused_data_key(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM data_keys WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Every `gateway_meta` entry whose key starts with `prefix`.
    pub async fn meta_with_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT key, value FROM gateway_meta ORDER BY key")
                .fetch_all(self.pool())
                .await?;
        Ok(rows
            .into_iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .collect())
    }
}

/// Replaces the wrapping of one data key, if it is still wrapped under `old_version`.
/// Returns whether a row changed.
pub(crate) async fn rewrap_one(
    tx: &mut Transaction<'_, Any>,
    id: &str,
    old_version: i64,
    new_version: i64,
    wrapped: &[u8],
    at_us: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE data_keys SET master_version = $1, wrapped = $2, rewrapped_at_us = $3 \
         WHERE id = $4 AND master_version = $5",
    )
    .bind(new_version)
    .bind(wrapped)
    .bind(at_us)
    .bind(id)
    .bind(old_version)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}
