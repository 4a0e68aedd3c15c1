//! `GET /healthz`: liveness over the same mTLS listener (a client certificate is required,
//! a user token is not).

use actix_web::{HttpResponse, web};
use chrono::Utc;
use serde_json::json;

use crate::error::ApiError;
use crate::startup::AppState;

/// Answers 200 when the database answers and every CRL is within its grace period, 503
/// otherwise. The `crl` member reports the revocation lists: `ok`, `stale` (past nextUpdate,
/// still used) or `expired` (past the grace period: the issuer's certificates are refused, and
/// the answer is 503 with code `crl_expired`).
#[tracing::instrument(skip_all)]
pub(super) async fn healthz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state
        .store
        .ping()
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?;
    let crl = state.verifier.crl_health(Utc::now().timestamp());
    let policy_set = state.policy.load().hash.clone();
    if crl.is_expired() {
        return Ok(HttpResponse::ServiceUnavailable().json(json!({
            "status": "unavailable",
            "code": "crl_expired",
            "message": crl.message,
            "policy_set": policy_set,
            "crl": crl,
        })));
    }
    Ok(HttpResponse::Ok().json(json!({
        "status": "ok",
        "policy_set": policy_set,
        "crl": crl,
    })))
}
