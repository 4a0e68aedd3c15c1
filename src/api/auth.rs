//! The actix extractor that authenticates a request: the connection's certificate re-checked
//! (validity and revocation at this instant), then the bearer token, through the token cache.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest, http::header, web};
use chrono::Utc;

use super::AppState;
use crate::auth::{AuthFailure, bearer_token};
use crate::domain::Principal;
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
/// (validity and revocation at this instant) and names a registered partner.
#[derive(Debug, Clone)]
pub struct PartnerCertificate {
    /// The partner the certificate names.
    pub partner: crate::domain::PartnerId,
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
    let peer = req.conn_data::<PeerCertificate>().ok_or_else(|| {
        ApiError::forbidden(
            "certificate_required",
            "a partner client certificate is required",
        )
    })?;
    match state
        .verifier
        .check_still_valid(peer, Utc::now().timestamp())
    {
        Ok(partner) => Ok(PartnerCertificate {
            partner,
            fingerprint: peer.fingerprint,
        }),
        Err(e) => {
            state.security.record(SecurityEvent {
                at: Utc::now(),
                kind: SecurityEventKind::AuthenticationFailed,
                code: "certificate_refused".to_owned(),
                peer: req.peer_addr(),
                partner: None,
                cert_fingerprint: Some(peer.fingerprint),
                detail: e.to_string(),
            });
            Err(ApiError::forbidden(
                "certificate_refused",
                format!("{e}; connect with a current certificate issued to a registered partner"),
            ))
        }
    }
}

fn authenticate(req: &HttpRequest) -> Result<Principal, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("application state missing")))?;
    let peer = req.conn_data::<PeerCertificate>().ok_or_else(|| {
        ApiError::forbidden(
            "certificate_required",
            "a partner client certificate is required",
        )
    })?;
    let record = |code: &str, partner, detail: &str| {
        state.security.record(SecurityEvent {
            at: Utc::now(),
            kind: SecurityEventKind::AuthenticationFailed,
            code: code.to_owned(),
            peer: req.peer_addr(),
            partner,
            cert_fingerprint: Some(peer.fingerprint),
            detail: detail.to_owned(),
        });
    };

    let partner = match state
        .verifier
        .check_still_valid(peer, Utc::now().timestamp())
    {
        Ok(p) => p,
        Err(e) => {
            record("certificate_refused", None, &e.to_string());
            return Err(ApiError::forbidden(
                "certificate_refused",
                format!("{e}; connect with a current certificate issued to a registered partner"),
            ));
        }
    };
    // The generation first, then the registry: see `TokenCache`.
    let generation = state.tokens.generation();
    let policy = state.services.policy.load();
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
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
        record(f.code, Some(partner.clone()), &f.message);
        f.into()
    })
}
