//! User-token authentication, bound to the partner's client certificate.
//!
//! Security role: turns (verified client certificate, bearer token) into a [`Principal`] or a
//! refusal. The token is verified only with the keys registered for the partner that the
//! certificate names, each key pinned to one asymmetric algorithm, so `alg: none`, HMAC-with-
//! the-public-key (key confusion) and another partner's signature are all refused. `aud`,
//! `iss`, `exp` and `nbf` are checked (with a small leeway); the RFC 8705 `cnf.x5t#S256`
//! thumbprint must match the presented certificate when present and is required when the
//! registry says so. Refusals never echo the token.

mod cache;

use std::collections::BTreeSet;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode, decode_header};
use serde::Deserialize;

pub use cache::{TOKEN_CACHE, TokenCache};

use crate::domain::{PartnerId, Principal, Role, UserId};
use crate::policy::PartnerRegistry;
use crate::tls::PeerCertificate;

/// Token rules that come from the gateway's configuration.
#[derive(Debug, Clone)]
pub struct TokenRules {
    /// Required `aud`.
    pub audience: String,
    /// Leeway for `exp`/`nbf`, seconds.
    pub leeway_secs: u64,
}

/// Why authentication failed: a stable code, an explanation, and the status class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    /// 401 (identity not proven) or 403 (proven but refused).
    pub forbidden: bool,
    /// Stable code.
    pub code: &'static str,
    /// What was wrong and how to fix it.
    pub message: String,
}

impl AuthFailure {
    fn unauthenticated(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            forbidden: false,
            code,
            message: message.into(),
        }
    }

    fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            forbidden: true,
            code,
            message: message.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    cnf: Option<Confirmation>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Confirmation {
    #[serde(rename = "x5t#S256", default)]
    x5t_s256: Option<String>,
}

#[derive(Debug, Deserialize)]
struct UnverifiedIssuer {
    #[serde(default)]
    iss: Option<String>,
}

/// Extracts the token from an `Authorization` header value.
pub fn bearer_token(header: Option<&str>) -> Result<&str, AuthFailure> {
    let value = header.ok_or_else(|| {
        AuthFailure::unauthenticated(
            "token_missing",
            "no user token: send `Authorization: Bearer <token>` with a token from your \
             agency's identity provider",
        )
    })?;
    let (scheme, token) = value.split_once(' ').ok_or_else(|| {
        AuthFailure::unauthenticated(
            "token_malformed",
            "the Authorization header must be `Bearer <token>`",
        )
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthFailure::unauthenticated(
            "token_malformed",
            "the Authorization header must be `Bearer <token>`",
        ));
    }
    Ok(token.trim())
}

/// Verifies `token` for the partner `partner_id` (already proven by the certificate `peer`).
pub fn verify_token(
    registry: &PartnerRegistry,
    rules: &TokenRules,
    partner_id: &PartnerId,
    peer: &PeerCertificate,
    token: &str,
) -> Result<Principal, AuthFailure> {
    let partner = registry.get(partner_id).ok_or_else(|| {
        AuthFailure::forbidden(
            "partner_unregistered",
            format!("partner `{partner_id}` is not registered with this gateway"),
        )
    })?;
    let header = decode_header(token).map_err(|_| {
        AuthFailure::unauthenticated(
            "token_malformed",
            "the token is not a well-formed signed JWT (compact JWS with a supported `alg`; \
             `none` is never accepted)",
        )
    })?;

    // A token from another registered agency, presented over this agency's certificate, gets
    // a precise answer before any signature work.
    if let Ok(claims) = jsonwebtoken::dangerous::insecure_decode::<UnverifiedIssuer>(token)
        && let Some(iss) = claims.claims.iss.as_deref()
        && let Some(other) = registry.by_issuer(iss)
        && other.id != partner.id
    {
        return Err(AuthFailure::forbidden(
            "token_partner_mismatch",
            format!(
                "the token was issued for partner `{}` but the client certificate names \
                 partner `{}`; present each agency's tokens over its own certificate",
                other.id, partner.id
            ),
        ));
    }

    if !partner.token.algorithms.contains(&header.alg) {
        return Err(AuthFailure::unauthenticated(
            "token_algorithm_not_allowed",
            format!(
                "algorithm {:?} is not accepted for partner `{}`; accepted: {:?}",
                header.alg, partner.id, partner.token.algorithms
            ),
        ));
    }
    let candidates: Vec<_> = partner
        .token
        .keys
        .iter()
        .filter(|k| k.algorithm == header.alg)
        .filter(|k| match (&header.kid, &k.kid) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        })
        .collect();
    if candidates.is_empty() {
        return Err(AuthFailure::unauthenticated(
            "token_key_unknown",
            format!(
                "no registered key of partner `{}` matches the token's `kid`; check that the \
                 identity provider's current key is in the partner registry",
                partner.id
            ),
        ));
    }

    let mut validation = Validation::new(header.alg);
    validation.algorithms = vec![header.alg];
    validation.set_audience(&[rules.audience.as_str()]);
    validation.set_issuer(&[partner.token.issuer.as_str()]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = rules.leeway_secs;

    let mut last = None;
    let mut claims = None;
    for key in candidates {
        match decode::<Claims>(token, &key.key, &validation) {
            Ok(data) => {
                claims = Some(data.claims);
                break;
            }
            Err(e) => last = Some(e.into_kind()),
        }
    }
    let claims = match claims {
        Some(c) => c,
        None => return Err(map_jwt_error(last, &rules.audience, &partner.token.issuer)),
    };

    let expected = peer.fingerprint.to_x5t_s256();
    match claims.cnf.and_then(|c| c.x5t_s256) {
        Some(x5t) if x5t == expected => {}
        Some(_) => {
            return Err(AuthFailure::unauthenticated(
                "token_binding_mismatch",
                "the token is bound (cnf.x5t#S256) to a different certificate than the one \
                 presented; obtain a token bound to this connection's client certificate",
            ));
        }
        None if partner.token.binding_required => {
            return Err(AuthFailure::unauthenticated(
                "token_binding_missing",
                format!(
                    "partner `{}` requires certificate-bound tokens: the token must carry \
                     cnf.x5t#S256 with the client certificate's SHA-256 thumbprint",
                    partner.id
                ),
            ));
        }
        None => {}
    }

    let user: UserId = claims.sub.parse().map_err(|e: crate::domain::IdError| {
        AuthFailure::unauthenticated("token_claims_invalid", format!("`sub`: {e}"))
    })?;
    let roles = parse_roles(
        claims.other.get(&partner.token.roles_claim),
        &partner.token.roles_claim,
    )?;
    Ok(Principal {
        partner: partner.id.clone(),
        partner_kind: partner.kind,
        user,
        roles,
        cert_fingerprint: peer.fingerprint,
    })
}

fn parse_roles(
    value: Option<&serde_json::Value>,
    claim: &str,
) -> Result<BTreeSet<Role>, AuthFailure> {
    let invalid = |why: String| AuthFailure::unauthenticated("token_claims_invalid", why);
    let array = value.and_then(|v| v.as_array()).ok_or_else(|| {
        invalid(format!(
            "the token must carry `{claim}` as an array of role names"
        ))
    })?;
    array
        .iter()
        .map(|r| {
            r.as_str()
                .ok_or_else(|| invalid(format!("`{claim}` must hold strings")))?
                .parse::<Role>()
                .map_err(|e| invalid(format!("`{claim}`: {e}")))
        })
        .collect()
}

fn map_jwt_error(kind: Option<ErrorKind>, audience: &str, issuer: &str) -> AuthFailure {
    fn u(code: &'static str, message: impl Into<String>) -> AuthFailure {
        AuthFailure::unauthenticated(code, message)
    }
    match kind {
        Some(ErrorKind::ExpiredSignature) => u(
            "token_expired",
            "the token has expired; obtain a new one from your identity provider",
        ),
        Some(ErrorKind::ImmatureSignature) => u(
            "token_not_yet_valid",
            "the token's `nbf` is in the future; check the identity provider's clock",
        ),
        Some(ErrorKind::InvalidAudience) => u(
            "token_wrong_audience",
            format!("the token's `aud` must include `{audience}`"),
        ),
        Some(ErrorKind::InvalidIssuer) => u(
            "token_wrong_issuer",
            format!("the token's `iss` must be `{issuer}` for this partner"),
        ),
        Some(ErrorKind::MissingRequiredClaim(c)) => u(
            "token_claims_invalid",
            format!("the token lacks the required claim `{c}`"),
        ),
        Some(ErrorKind::InvalidSignature) => u(
            "token_signature_invalid",
            "the token's signature does not verify with any key registered for this partner",
        ),
        Some(ErrorKind::InvalidAlgorithm) => u(
            "token_algorithm_not_allowed",
            "the token's algorithm does not match the registered key",
        ),
        _ => u(
            "token_invalid",
            "the token could not be verified (malformed claims or key mismatch)",
        ),
    }
}
