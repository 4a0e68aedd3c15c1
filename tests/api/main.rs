//! Integration tests: the real gateway on port 0, real TLS handshakes with real certificates,
//! real signed tokens, a real database (SQLite and a throwaway PostgreSQL cluster).

// Test and benchmark code may unwrap, expect, panic and index: a failure here is a failed
// test, not an outage (library code denies all four, see Cargo.toml).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod audit;
mod browser;
mod cli;
mod consent_live;
mod consents;
mod console;
mod crl;
mod demo;
mod directives;
mod edges;
mod emergency;
mod fhir;
mod handshake;
mod key_rollout;
mod metrics;
mod params;
mod policy_changes;
mod quick_start;
mod records_api;
mod records_store;
mod reload;
mod replicas;
mod reports;
mod robustness;
mod rollback;
mod saved_tree_heads;
mod sealed_log;
mod storage;
mod support;
mod token_times;
mod tokens;
mod transparency;
mod write_failures;
