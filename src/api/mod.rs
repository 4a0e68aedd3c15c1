//! HTTP routes: thin handlers that parse input into domain types and call the layers below.
//!
//! Also the request plumbing every route shares: request ids, JSON/path/query error mapping to
//! [`ApiError`], the JSON 404/405 fallbacks.

mod audit;
mod consents;
mod health;
mod json;
mod middleware;
mod purpose;
mod records;
mod referrals;
mod reviews;
mod whoami;

use actix_web::{HttpMessage, HttpRequest, error::JsonPayloadError, web};

pub use audit::COMPLIANCE_ROLE;
pub use json::{BoundedJson, check_depth};
pub use middleware::{REQUEST_ID, RequestId, request_id};
pub use purpose::{
    EMERGENCY_BASIS, EMERGENCY_DESCRIPTION, EMERGENCY_SOURCE, PURPOSE_OF_USE, PurposeOfUse,
};

use crate::audit::{EntryKind, NewEntry, Outcome};
use crate::domain::Principal;
use crate::error::ApiError;
use crate::domain::SubjectIdentifier;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig, body_limit: usize) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(body_limit)
            .error_handler(move |e, _req| json_error(e, body_limit).into()),
    )
    .app_data(web::PayloadConfig::new(body_limit))
    .app_data(web::PathConfig::default().error_handler(|e, _| {
        ApiError::bad_request("invalid_path", format!("invalid path parameter: {e}")).into()
    }))
    .app_data(web::QueryConfig::default().error_handler(|e, _| {
        ApiError::bad_request("invalid_query", format!("invalid query string: {e}")).into()
    }))
    .route("/healthz", web::get().to(health::healthz))
    .route("/v1/whoami", web::get().to(whoami::whoami));
    audit::routes(cfg);
    consents::routes(cfg);
    records::routes(cfg);
    referrals::routes(cfg);
    reviews::routes(cfg);
}

/// A log entry of `kind` recording an act by the authenticated caller: request id, the caller's
/// partner, user and roles (as the entry's recipient), source address and certificate.
pub(crate) fn actor_entry(
    req: &HttpRequest,
    who: &Principal,
    kind: EntryKind,
    outcome: Outcome,
) -> NewEntry {
    let mut e = NewEntry::new(kind, chrono::Utc::now(), outcome);
    e.request_id = req.extensions().get::<RequestId>().map(|r| r.0.to_string());
    e.recipient_partner = Some(who.partner.to_string());
    e.recipient_user = Some(who.user.to_string());
    e.recipient_role = Some(
        who.roles
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    e.source_addr = req.peer_addr().map(|a| a.to_string());
    e.cert_sha256 = Some(who.cert_fingerprint.to_hex());
    e
}

/// A subject identifier from the path `/v1/subjects/{system}/{value}/...`, in canonical form.
pub(crate) fn subject_param(system: &str, value: &str) -> Result<SubjectIdentifier, ApiError> {
    SubjectIdentifier::new(system, value).map_err(|e| ApiError::BadRequest {
        code: "invalid_path",
        message: format!("{e}"),
        details: Some(serde_json::json!({ "parameter": e.what })),
    })
}

fn json_error(e: JsonPayloadError, limit: usize) -> ApiError {
    match e {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::PayloadTooLarge { limit }
        }
        JsonPayloadError::ContentType => ApiError::UnsupportedMediaType,
        JsonPayloadError::Deserialize(e) => {
            ApiError::bad_request("invalid_json", format!("invalid JSON body: {e}"))
        }
        other => ApiError::bad_request("invalid_body", format!("unreadable request body: {other}")),
    }
}

/// Fallback for unknown routes and methods.
pub async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found(
        "route_not_found",
        format!(
            "no route `{} {}`; see the API reference in the README",
            req.method(),
            req.path()
        ),
    ))
}
