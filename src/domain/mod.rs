//! Domain newtypes, parsed once at the edge ("parse, don't validate").
//!
//! Nothing in here knows about HTTP, TLS or SQL. Every value that crosses a trust boundary
//! (a certificate SAN, a token claim, a header, a policy file) becomes one of these types
//! through `FromStr`/`TryFrom` before any other layer sees it, so the rest of the gateway
//! never handles an unchecked partner id, role or purpose.

mod ids;
mod principal;

pub use ids::{CertFingerprint, IdError, PartnerId, PartnerKind, Purpose, Role, UserId};
pub use principal::Principal;
