//! Scale-out under faults, with the real binary as separate processes: three replicas behind
//! HAProxy on one PostgreSQL (`topology`), backups that stay verifiable (`backup`) and a
//! failover to a synchronous standby (`failover`). Each test starts its own PostgreSQL
//! cluster(s) with fsync on and removes everything it started; they run one at a time.
//!
//! Needs the PostgreSQL 15 server and client programs and HAProxy (`bash .ci/run` installs
//! them); without HAProxy the topology test fails, it never skips.

// Test code may unwrap, expect, panic and index: a failure here is a failed test, not an
// outage (library code denies all four, see Cargo.toml).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod backup;
mod failover;
mod support;
mod topology;
