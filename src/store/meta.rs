//! The `gateway_meta` table: small named values the gateway records once (key check values,
//! the ids of the stable keys).

use super::{Conn, StoreError, on_conn};

/// Reads a value.
pub async fn get(c: &mut Conn<'_>, key: &str) -> Result<Option<String>, StoreError> {
    let row: Option<(String,)> = on_conn!(c, |c| {
        sqlx::query_as("SELECT value FROM gateway_meta WHERE key = $1")
            .bind(key)
            .fetch_optional(c)
            .await
    })?;
    Ok(row.map(|r| r.0))
}

/// Writes a value only if the key is absent; returns the value now stored.
pub async fn init(c: &mut Conn<'_>, key: &str, value: &str) -> Result<String, StoreError> {
    on_conn!(c, |c| {
        sqlx::query(
            "INSERT INTO gateway_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(c)
        .await
        .map(|_| ())
    })?;
    Ok(get(c, key).await?.unwrap_or_default())
}

/// Every entry whose key starts with `prefix`, by key.
pub async fn with_prefix(
    c: &mut Conn<'_>,
    prefix: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let rows: Vec<(String, String)> = on_conn!(c, |c| {
        sqlx::query_as("SELECT key, value FROM gateway_meta ORDER BY key")
            .fetch_all(c)
            .await
    })?;
    Ok(rows
        .into_iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .collect())
}
