//! Consent directives: the decision input, the registry that keeps them, and coverage.
//!
//! A [`Consent`] is the person's authorization for one flow: who may disclose, to whom, for which
//! purposes, what information (whole record kinds, sensitivity categories or named fields), from
//! when until when (a date, or an event), and whether it has been revoked. It is a plain data
//! type with pure queries. Around it:
//!
//! - [`directive`]: the directive as a partner submits it, validated against the policy set and
//!   the elements of 42 CFR 2.31;
//! - [`registry`]: directives sealed at rest with their history (creation, revocation), and
//!   [`registry::for_subjects`], the decision inputs for a record's subject;
//! - [`coverage`]: which fields would flow to a recipient for a purpose, and why.
//!
//! Security role: `decide` only counts a consent that [`Consent::is_active`] at the decision time
//! and that [`Consent::covers`] the exact flow; a revoked consent stops the very next decision.
//! Psychotherapy notes are covered only when a consent names the field itself
//! ([`Consent::names_field`]), never by a category or a whole record kind.

pub mod cache;
pub mod coverage;
pub mod directive;
pub mod registry;

pub use crate::domain::{Consent, ConsentQuery, ConsentScope, SubjectRef};
