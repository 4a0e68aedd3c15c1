//! Domain newtypes, parsed once at the edge ("parse, don't validate"), and the vocabulary every
//! layer shares.
//!
//! Nothing in here knows about HTTP, TLS or SQL, and nothing in here imports another module of
//! the crate: every other layer imports this one. Every value that crosses a trust boundary (a
//! certificate SAN, a token claim, a header, a path segment, a policy file) becomes one of these
//! types through `FromStr`/`TryFrom` before any other layer sees it, so the rest of the gateway
//! never handles an unchecked partner id, role, purpose, record id or subject identifier.
//!
//! - [`ids`](PartnerId): partners, users, roles, purposes, certificate fingerprints;
//! - [`record`](RecordKind): record kinds and ids, subject identifiers in canonical form;
//! - [`labels`](Label): sensitivity labels, field types and transforms;
//! - [`consent`](Consent): the consent model the decision reads;
//! - [`directives`](Restriction): agreed restrictions and Part 2 court orders, which the
//!   decision reads too;
//! - [`clock`](Clock): time as a parameter;
//! - [`code`](Code): the machine-readable codes of the gateway's answers.

mod clock;
mod code;
mod consent;
mod directives;
mod ids;
mod labels;
mod principal;
mod record;
pub mod stats;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use code::{Code, HandshakeRefusal};
pub use consent::{Consent, ConsentQuery, ConsentScope, SubjectRef};
pub use directives::{CourtOrder, Restriction, RestrictionScope};
pub use ids::{CertFingerprint, IdError, PartnerId, PartnerKind, Purpose, Role, UserId};
pub use labels::{FieldType, Generalization, Label, MaskKeep, Transform};
pub use principal::{Author, Principal};
pub use record::{InvalidInput, MAX_SUBJECT_IDENTIFIERS, RecordId, RecordKind, SubjectIdentifier};
