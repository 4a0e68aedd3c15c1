//! The `cache_epochs` row: counters that tell every gateway replica on one database when its
//! in-memory caches went stale.
//!
//! `consents` moves in the same transaction as every consent change; `keys` moves with every
//! master-key operation. A replica reads both with each record (one round trip, see
//! [`super::records::read_current`]) and drops what it cached under older values before it
//! decides, so a change made through one replica governs the very next decision of every
//! other replica.

use super::{Conn, StoreError, on_conn};

/// The epochs as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Epochs {
    /// Moves with every consent creation or revocation.
    pub consents: i64,
    /// Moves with every master-key rotation, rewrap or retirement.
    pub keys: i64,
}

/// Reads the epochs.
pub async fn get(c: &mut Conn<'_>) -> Result<Epochs, StoreError> {
    let (consents, keys): (i64, i64) = on_conn!(c, |c| {
        sqlx::query_as("SELECT consents, keys FROM cache_epochs WHERE id = 1")
            .fetch_one(c)
            .await
    })?;
    Ok(Epochs { consents, keys })
}

/// Moves the consent epoch (inside the transaction that changes a consent).
pub async fn bump_consents(c: &mut Conn<'_>) -> Result<(), StoreError> {
    on_conn!(c, |c| {
        sqlx::query("UPDATE cache_epochs SET consents = consents + 1 WHERE id = 1")
            .execute(c)
            .await
            .map(|_| ())
    })?;
    Ok(())
}

/// Moves the key epoch (with a master-key operation).
pub async fn bump_keys(c: &mut Conn<'_>) -> Result<(), StoreError> {
    on_conn!(c, |c| {
        sqlx::query("UPDATE cache_epochs SET keys = keys + 1 WHERE id = 1")
            .execute(c)
            .await
            .map(|_| ())
    })?;
    Ok(())
}
