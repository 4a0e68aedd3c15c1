//! # coresponse-gateway
//!
//! A privacy-preserving data-sharing gateway between police departments and mental-health
//! agencies that run co-responder programs.
//!
//! Each partner agency connects with mutual TLS using its own client certificate; each person
//! with a JWT from their agency, bound to that certificate. Every request states a purpose of
//! use; a pure decision combines the agencies' MOU rules, the subject's consent and hard legal
//! limits into a per-field plan, and every disclosure and denial is written to a tamper-evident
//! log before the answer leaves.
//!
//! ## Layers (a request flows down, the answer flows up)
//!
//! - [`tls`]: client certificate required and verified; partner identity from the URI SAN.
//! - [`auth`]: the user token verified with the partner's registered keys, bound to the
//!   certificate; produces a [`domain::Principal`].
//! - [`api`]: thin actix-web handlers; [`error::ApiError`] maps every failure to a status.
//! - [`policy`]: partner registry, record kinds and MOUs from `policies/`, validated with
//!   precise diagnostics, and the pure per-field decision.
//! - [`consent`]: consent directives as a decision input.
//! - [`redaction`]: applies a permit to a record (mask, generalize, pseudonymize, encrypt).
//! - [`store`]: sqlx over SQLite (default) or PostgreSQL.
//! - [`crypto`]: encryption at rest (envelope keys, field AEAD bound to its place, blind
//!   indexes, master-key rotation).
//! - [`audit`]: the hash-chained disclosure log, written before any answer leaves.
//! - [`reports`]: program outcome reports computed inside the gateway, released only after
//!   disclosure control.
//!
//! ## Non-features
//!
//! The gateway does not run an identity provider or a certificate authority: tokens and
//! certificates come from the partners. [`devinit`] generates throwaway material for
//! development and tests only.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod api;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod consent;
pub mod crypto;
pub mod devinit;
pub mod domain;
pub mod edge;
pub mod emergency;
pub mod error;
pub mod fhir;
pub mod metrics;
pub mod policy;
pub mod redaction;
pub mod referral;
pub mod reports;
pub mod security;
pub mod service;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod vault;
