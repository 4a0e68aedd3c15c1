//! The actix extractor that authenticates a request: the connection's certificate re-checked
//! (validity and revocation at this instant), then the bearer token, through the token cache.
//! The certificate re-check alone ([`certified_partner`]) guards `/healthz`, which needs no
//! token. A request carrying `Authorization` more than once is refused (400 `invalid_header`):
//! which of two credentials would count is exactly the ambiguity an attacker looks for.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest, http::header, web};
use chrono::Utc;

use super::AppState;
use crate::auth::{AuthFailure, bearer_token};
use crate::domain::Code;
use crate::domain::{PartnerId, Principal};
use crate::error::ApiError;
use crate::security::{SecurityEvent, SecurityEventKind};
use crate::tls::PeerCertificate;

/// A handler argument that exists only for an authenticated caller. Failures are recorded as
/// security events and answered with 401 or 403.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        if let Some(p) = req.extensions().get::<Authenticated>() {
            return ready(Ok(p.clone()));
        }
        let result = authenticate(req).map(Authenticated);
        if let Ok(p) = &result {
            req.extensions_mut().insert(p.clone());
        }
        ready(result)
    }
}

/// A handler argument for routes that need the partner's certificate only, no user token
/// (the transparency routes a partner's witness machine calls): the certificate is re-checked
/// (`certified_partner`: validity and revocation at this instant) and names a registered partner.
#[derive(Debug, Clone)]
pub struct PartnerCertificate {
    /// The partner the certificate names.
    pub partner: PartnerId,
    /// The certificate's SHA-256.
    pub fingerprint: crate::domain::CertFingerprint,
}

impl FromRequest for PartnerCertificate {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(certificate_only(req))
    }
}

fn certificate_only(req: &HttpRequest) -> Result<PartnerCertificate, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("application state missing")))?;
    let (partner, peer) = certified_partner(state, req)?;
    Ok(PartnerCertificate {
        partner,
        fingerprint: peer.fingerprint,
    })
}

fn record(
    state: &AppState,
    req: &HttpRequest,
    peer: &PeerCertificate,
    code: Code,
    partner: Option<PartnerId>,
    detail: &str,
) {
    state.security.record(SecurityEvent {
        at: Utc::now(),
        kind: SecurityEventKind::AuthenticationFailed,
        code: code.as_str().to_owned(),
        peer: req.peer_addr(),
        partner,
        cert_fingerprint: Some(peer.fingerprint),
        detail: detail.to_owned(),
    });
}

/// The partner of the connection's certificate, re-checked at this instant: still registered,
/// not revoked by a CRL loaded since the handshake, its issuer's CRL within its grace period,
/// within its validity period. A refusal is a security event and a 403 `certificate_refused`.
pub(super) fn certified_partner<'r>(
    state: &AppState,
    req: &'r HttpRequest,
) -> Result<(PartnerId, &'r PeerCertificate), ApiError> {
    let peer = req.conn_data::<PeerCertificate>().ok_or_else(|| {
        ApiError::forbidden(
            Code::CertificateRequired,
            "a partner client certificate is required",
        )
    })?;
    match state
        .verifier
        .check_still_valid(peer, Utc::now().timestamp())
    {
        Ok(p) => Ok((p, peer)),
        Err(e) => {
            record(
                state,
                req,
                peer,
                Code::CertificateRefused,
                None,
                &e.to_string(),
            );
            Err(ApiError::forbidden(
                Code::CertificateRefused,
                format!("{e}; connect with a current certificate issued to a registered partner"),
            ))
        }
    }
}

fn authenticate(req: &HttpRequest) -> Result<Principal, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("application state missing")))?;
    let (partner, peer) = certified_partner(state, req)?;
    let refused =
        |code: Code, partner, detail: &str| record(state, req, peer, code, partner, detail);
    let mut sent = req.headers().get_all(header::AUTHORIZATION);
    let first = sent.next();
    if sent.next().is_some() {
        let detail = "the request carries `Authorization` more than once";
        refused(Code::InvalidHeader, Some(partner), detail);
        return Err(ApiError::BadRequest {
            code: Code::InvalidHeader,
            message: "header `Authorization` is sent more than once; send one bearer token"
                .to_owned(),
            details: Some(serde_json::json!({ "header": "Authorization" })),
        });
    }
    // The generation first, then the registry: see `TokenCache`.
    let generation = state.tokens.generation();
    let policy = state.services.policy.load();
    let header = first.map(|v| v.to_str().unwrap_or(""));
    let now = state.services.now().timestamp();
    let result = bearer_token(header).and_then(|token| {
        state.tokens.verify(
            generation,
            &policy.partners,
            &state.token_rules,
            &partner,
            peer,
            token,
            now,
        )
    });
    result.map_err(|f: AuthFailure| {
        refused(f.code, Some(partner.clone()), &f.message);
        f.into()
    })
}
