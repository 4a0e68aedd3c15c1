//! `GET /healthz`: liveness over the same mTLS listener (a client certificate is required,
//! a user token is not).

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::error::ApiError;
use crate::startup::AppState;

/// Answers 200 when the database answers, 503 otherwise.
#[tracing::instrument(skip_all)]
pub(super) async fn healthz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state
        .store
        .ping()
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?;
    Ok(HttpResponse::Ok().json(json!({
        "status": "ok",
        "policy_set": state.policy.load().hash,
    })))
}
