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
//! - [`coverage`]: which fields would flow to a recipient for a purpose, and why;
//! - [`restrictions`] and [`orders`]: agreed restrictions (HIPAA 164.522(a), 42 CFR 2.26) and
//!   court orders (42 CFR 2.64, 2.65) as they are recorded, validated against the policy set;
//!   [`directives`]: both sealed at rest; [`directive_cache`]: their decision inputs, cached
//!   like consents.
//!
//! Security role: `decide` only counts a consent that [`Consent::is_active`] at the decision time
//! and that [`Consent::covers`] the exact flow; a revoked consent stops the very next decision.
//! Psychotherapy notes are covered only when a consent names the field itself
//! ([`Consent::names_field`]), never by a category or a whole record kind.

pub mod cache;
pub mod coverage;
pub mod directive;
pub mod directive_cache;
pub mod directives;
pub mod orders;
pub mod registry;
pub mod restrictions;

pub use crate::domain::{Consent, ConsentQuery, ConsentScope, SubjectRef};
