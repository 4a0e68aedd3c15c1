//! The `cache_epochs` row: counters that tell every gateway replica on one database when its
//! in-memory caches went stale.
//!
//! `consents` moves in the same transaction as every consent change; `keys` moves with every
//! master-key operation. A replica reads both with each record (one round trip, see
//! [`super::records::read_current`]) and uses what it cached only under the very value it
//! reads, so a change made through one replica governs the very next decision of every other
//! replica.
//!
//! An epoch moves to a fresh random value, not to the next integer, and a cache compares for
//! equality only: values are never reused, so a database that goes back to an earlier state
//! (a failover to a standby that lacks the last commits, a restore from a backup) can never
//! present a value under which a replica cached data the database no longer holds. With a
//! counter, the lost change's value would come round again with the next change.

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

/// Moves the consent epoch to a fresh value (inside the transaction that changes a consent).
pub async fn bump_consents(c: &mut Conn<'_>) -> Result<(), StoreError> {
    let value = fresh();
    on_conn!(c, |c| {
        sqlx::query("UPDATE cache_epochs SET consents = $1 WHERE id = 1")
            .bind(value)
            .execute(c)
            .await
            .map(|_| ())
    })?;
    Ok(())
}

/// Moves the key epoch to a fresh value (with a master-key operation).
pub async fn bump_keys(c: &mut Conn<'_>) -> Result<(), StoreError> {
    let value = fresh();
    on_conn!(c, |c| {
        sqlx::query("UPDATE cache_epochs SET keys = $1 WHERE id = 1")
            .bind(value)
            .execute(c)
            .await
            .map(|_| ())
    })?;
    Ok(())
}

/// A fresh epoch value: 63 random bits, so two moves (on this database or on any earlier
/// state of it) practically never give the same value; never 0, the value of a new database.
fn fresh() -> i64 {
    let v = rand::random::<i64>() & i64::MAX;
    v.max(1)
}
