//! HTTP routes: thin handlers that parse input into domain types, call one service function and
//! map its error to [`ApiError`]. Nothing else: no transaction, no business rule, no log entry
//! is made here (the services own them).
//!
//! Also the request plumbing every route shares: the authentication extractor, request ids,
//! JSON/path/query error mapping, the JSON 404/405 fallbacks, and [`AppState`]. Each path is
//! registered once, as one `web::resource` with all its methods, so that a method the path does
//! not take is answered 405 with `Allow` rather than 404.

mod audit;
mod auth;
mod consents;
mod console;
mod directives;
pub mod fhir;
pub mod health;
mod json;
mod middleware;
pub mod openapi;
mod overview;
mod part2;
mod policy;
mod purpose;
mod query;
mod records;
mod referrals;
mod reports;
mod reviews;
mod routes;
mod state;
pub mod stats;
mod transparency;
mod whoami;

use actix_web::{HttpMessage, HttpRequest, error::JsonPayloadError, web};

pub use auth::{Authenticated, PartnerCertificate};
pub use json::{BoundedJson, check_depth};
pub use middleware::{REQUEST_ID, RequestId, body_guard, connection_gate, request_id};
pub use purpose::{
    EMERGENCY_BASIS, EMERGENCY_DESCRIPTION, EMERGENCY_PERSONNEL, EMERGENCY_SOURCE,
    MEDICAL_EMERGENCY, PURPOSE_OF_USE, PurposeOfUse,
};
pub use routes::{Registered, RouteInfo, Routes};
pub use state::AppState;

// The request body types, public so that they can be fuzzed without HTTP (`fuzz/`).
pub use audit::SuspensionBody;
pub use consents::RevokeBody;
pub use records::RecordBody;
pub use referrals::{NewReferralBody, TransitionBody};
pub use reviews::Decision as ReviewBody;

use crate::domain::Code;
use crate::domain::{Principal, SubjectIdentifier};
use crate::error::ApiError;
use crate::service::Caller;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig, body_limit: usize) {
    configure_recorded(cfg, body_limit);
}

/// Registers every route and returns each one's method and path (the OpenAPI document is
/// checked against this list).
pub fn configure_recorded(cfg: &mut web::ServiceConfig, body_limit: usize) -> Registered {
    let mut r = Routes::new(cfg);
    r.config()
        .app_data(
            web::JsonConfig::default()
                .limit(body_limit)
                .error_handler(move |e, _req| json_error(e, body_limit).into()),
        )
        .app_data(web::PayloadConfig::new(body_limit))
        .app_data(web::PathConfig::default().error_handler(|e, _| {
            ApiError::bad_request(Code::InvalidPath, format!("invalid path parameter: {e}")).into()
        }))
        .app_data(web::QueryConfig::default().error_handler(|e, _| {
            ApiError::bad_request(Code::InvalidQuery, format!("invalid query string: {e}")).into()
        }));
    r.get("/healthz", health::healthz)
        .get("/v1/whoami", whoami::whoami);
    audit::routes(&mut r);
    consents::routes(&mut r);
    records::routes(&mut r);
    referrals::routes(&mut r);
    reports::routes(&mut r);
    reviews::routes(&mut r);
    overview::routes(&mut r);
    openapi::routes(&mut r);
    console::routes(&mut r);
    directives::routes(&mut r);
    policy::routes(&mut r);
    part2::routes(&mut r);
    transparency::routes(&mut r);
    fhir::routes(&mut r);
    r.into_registered()
}

/// Every route the gateway serves, as `(method, path)`, the OpenAPI-described ones and those
/// described elsewhere.
pub fn registered_routes() -> Registered {
    let mut out = Registered::default();
    let _ = actix_web::App::new().configure(|cfg| out = configure_recorded(cfg, 1024));
    out
}

/// What the log records of a request: its id and the peer's address.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestMeta {
    request_id: Option<String>,
    peer: Option<String>,
}

impl RequestMeta {
    /// The request's id and peer address.
    pub(crate) fn of(req: &HttpRequest) -> Self {
        Self {
            request_id: req.extensions().get::<RequestId>().map(|r| r.0.to_string()),
            peer: req.peer_addr().map(|a| a.to_string()),
        }
    }

    /// The caller as the services see it.
    pub(crate) fn caller<'a>(&'a self, who: &'a Principal) -> Caller<'a> {
        Caller {
            principal: who,
            request_id: self.request_id.as_deref(),
            source_addr: self.peer.as_deref(),
        }
    }
}

/// A response header that tells every cache to keep nothing.
pub(crate) const NO_STORE: (actix_web::http::header::HeaderName, &str) =
    (actix_web::http::header::CACHE_CONTROL, "no-store");

/// A subject identifier from the path `/v1/subjects/{system}/{value}/...`, in canonical form.
pub(crate) fn subject_param(system: &str, value: &str) -> Result<SubjectIdentifier, ApiError> {
    SubjectIdentifier::new(system, value).map_err(|e| ApiError::BadRequest {
        code: Code::InvalidPath,
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
            ApiError::bad_request(Code::InvalidJson, format!("invalid JSON body: {e}"))
        }
        other => ApiError::bad_request(
            Code::InvalidBody,
            format!("unreadable request body: {other}"),
        ),
    }
}

/// Fallback for unknown paths (a known path asked with another method gets 405 from its
/// resource).
pub async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found(
        Code::RouteNotFound,
        format!(
            "no route `{} {}`; see the API reference in the README",
            req.method(),
            req.path()
        ),
    ))
}
