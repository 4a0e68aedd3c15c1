//! Fault tests: the real gateway binary killed with SIGKILL under load and restarted on the
//! same database (SQLite, and PostgreSQL with `fsync = on`), and a PostgreSQL outage under load.
//! Each test owns its database (the PostgreSQL tests start their own cluster and remove it).
//! The tests of this binary run one at a time: each measures a gateway under load on a shared
//! machine.

// Test and benchmark code may unwrap, expect, panic and index: a failure here is a failed
// test, not an outage (library code denies all four, see Cargo.toml).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod cluster;
mod crash;
mod gateway;
mod load;
mod outage;

/// Held by each test for its whole run, so the tests of this binary never overlap.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static ONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    ONE.lock().await
}
