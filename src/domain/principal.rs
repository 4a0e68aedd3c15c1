//! The authenticated caller.

use std::collections::BTreeSet;

use super::{CertFingerprint, PartnerId, PartnerKind, Role, UserId};

/// Who is calling: the partner agency proven by the client certificate and the person proven
/// by a token from that agency's identity provider, bound to that certificate.
///
/// Only the authentication layer constructs one; every later layer takes it as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The partner named by the client certificate (and by the token's issuer).
    pub partner: PartnerId,
    /// The partner's kind, from the partner registry.
    pub partner_kind: PartnerKind,
    /// The token's subject.
    pub user: UserId,
    /// Roles from the token's roles claim.
    pub roles: BTreeSet<Role>,
    /// SHA-256 of the presented client certificate.
    pub cert_fingerprint: CertFingerprint,
}

impl Principal {
    /// Whether the principal holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r.as_str() == role)
    }
}

/// Who acts on stored data: a partner agency and one of its users (from their token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    /// The acting partner agency.
    pub partner: PartnerId,
    /// The acting user (token `sub`).
    pub user: UserId,
}

impl From<&Principal> for Author {
    fn from(p: &Principal) -> Self {
        Self {
            partner: p.partner.clone(),
            user: p.user.clone(),
        }
    }
}
