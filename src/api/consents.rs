//! The consent registry API (the rules are the consent services'):
//!
//! - `POST /v1/consents`: record a consent directive (by a partner listed among its
//!   `disclosers`, the one that collected it);
//! - `GET /v1/consents/{id}`: one consent with its status and history;
//! - `POST /v1/consents/{id}/revoke`: revoke it (by a discloser partner), effective at once;
//! - `GET /v1/subjects/{system}/{value}/consents`: a subject's consents with status and history;
//! - `GET /v1/subjects/{system}/{value}/coverage?recipient=&purpose=[&role=]`: which fields of
//!   each record kind would flow to a recipient for a purpose, and why.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::query::{bad_param, checked};
use super::{AppState, Authenticated, BoundedJson, NO_STORE, RequestMeta};
use crate::consent::directive::{self, ConsentDirective};
use crate::consent::registry::ReceivedHow;
use crate::domain::Code;
use crate::domain::{PartnerId, Purpose, Role, SubjectIdentifier};
use crate::error::ApiError;
use crate::service::consents::{ConsentAction, CoverageAsk, RevokeRequest};

/// Registers the routes.
pub(super) fn routes(r: &mut super::Routes<'_>) {
    r.post("/v1/consents", create)
        .get("/v1/consents/{id}", one)
        .post("/v1/consents/{id}/revoke", revoke)
        .get("/v1/subjects/{system}/{value}/consents", list)
        .get("/v1/subjects/{system}/{value}/coverage", coverage);
}

fn subject_from_path(system: &str, value: &str) -> Result<SubjectIdentifier, ApiError> {
    SubjectIdentifier::new(system, value).map_err(|e| {
        ApiError::bad_request(
            Code::InvalidPath,
            format!("the subject identifier in the path: {e}"),
        )
    })
}

/// A consent request whose body was refused: the refusal is logged (the code only, never the
/// body), then answered; if it cannot be logged, the answer is 503.
async fn refused(
    state: &AppState,
    caller: &crate::service::Caller<'_>,
    action: ConsentAction,
    e: ApiError,
) -> ApiError {
    match state
        .services
        .refused_consent_request(caller, action, e.code(), None)
        .await
    {
        Ok(()) => e,
        Err(log) => log.into(),
    }
}

/// `POST /v1/consents`.
#[utoipa::path(
    post,
    path = "/v1/consents",
    tag = "consents",
    operation_id = "create_consent",
    summary = "Record a consent directive (42 CFR 2.31 checked for Part 2 scopes)",
    request_body(content = Object, description = "the directive: `subjects`, `patient_name`, `disclosers`, `recipients`, `purposes`, `scope`, `valid_from`, `expires`/`expiry_event`, `signature_reference`, `signed_on`, `revocation_statement` (see the README)", content_type = "application/json"),
    responses(
        (status = 201, description = "the recorded consent; `Location: /v1/consents/{id}`", body = Object),
        (status = 400, description = "`consent_incomplete` (with `details.missing`), `invalid_consent` (with `details.problems`), `invalid_json`", body = crate::error::ErrorBody),
        (status = 403, description = "`not_a_discloser`", body = crate::error::ErrorBody),
        (status = 409, description = "`consent_conflict`", body = crate::error::ErrorBody),
        (status = 413, description = "`payload_too_large`", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn create(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Result<BoundedJson<ConsentDirective>, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let meta = RequestMeta::of(&req);
    let caller = meta.caller(&who.0);
    let body = match body {
        Ok(b) => b,
        Err(e) => return Err(refused(&state, &caller, ConsentAction::Record, e).await),
    };
    let view = state.services.create_consent(&caller, body.0).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/consents/{}", view.id)))
        .insert_header(NO_STORE)
        .json(view))
}

/// `GET /v1/consents/{id}`.
#[utoipa::path(
    get,
    path = "/v1/consents/{id}",
    tag = "consents",
    operation_id = "get_consent",
    summary = "One consent with status and history",
    params(
        ("id" = String, Path, description = "the consent id"),
    ),
    responses(
        (status = 200, description = "the consent", body = Object),
        (status = 404, description = "`consent_not_found` (also for a caller who may not see it)", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn one(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let meta = RequestMeta::of(&req);
    let view = state.services.consent(&meta.caller(&who.0), &path).await?;
    Ok(HttpResponse::Ok().insert_header(NO_STORE).json(view))
}

/// The body of `POST /v1/consents/{id}/revoke`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// When the partner received the revocation (RFC 3339).
    #[serde(deserialize_with = "de_received_at")]
    pub received_at: DateTime<Utc>,
    /// How it was received.
    pub received_how: ReceivedHow,
    /// An optional note.
    #[serde(default)]
    pub note: Option<String>,
}

fn de_received_at<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let s = String::deserialize(d)?;
    directive::parse_time_field("received_at", &s)
}

/// `POST /v1/consents/{id}/revoke`.
#[utoipa::path(
    post,
    path = "/v1/consents/{id}/revoke",
    tag = "consents",
    operation_id = "revoke_consent",
    summary = "Revoke a consent",
    params(
        ("id" = String, Path, description = "the consent id"),
    ),
    request_body(content = Object, description = "`{\"received_at\": RFC 3339, \"received_how\": \"written\" | \"oral\" | \"electronic\", \"note\"?}`", content_type = "application/json"),
    responses(
        (status = 200, description = "the revoked consent", body = Object),
        (status = 400, description = "`invalid_revocation` (with `details.field`), `invalid_json`", body = crate::error::ErrorBody),
        (status = 403, description = "`not_a_discloser`", body = crate::error::ErrorBody),
        (status = 404, description = "`consent_not_found`", body = crate::error::ErrorBody),
        (status = 409, description = "`consent_already_revoked`, `consent_conflict`", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn revoke(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Result<BoundedJson<RevokeBody>, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let meta = RequestMeta::of(&req);
    let caller = meta.caller(&who.0);
    let b = match body {
        Ok(b) => b.0,
        Err(e) => return Err(refused(&state, &caller, ConsentAction::Revoke, e).await),
    };
    let view = state
        .services
        .revoke_consent(
            &caller,
            &path,
            RevokeRequest {
                received_at: b.received_at,
                received_how: b.received_how,
                note: b.note,
            },
        )
        .await?;
    Ok(HttpResponse::Ok().insert_header(NO_STORE).json(view))
}

/// `GET /v1/subjects/{system}/{value}/consents`.
#[utoipa::path(
    get,
    path = "/v1/subjects/{system}/{value}/consents",
    tag = "consents",
    operation_id = "subject_consents",
    summary = "A subject's consents (disclosers see theirs, compliance officers all)",
    params(
        ("system" = String, Path, description = "identifier system, e.g. `metro-pd`"),
        ("value" = String, Path, description = "identifier value, e.g. `P-2231`"),
    ),
    responses(
        (status = 200, description = "`{\"subject\": pseudonym, \"consents\": [...]}`", body = Object),
        (status = 400, description = "`invalid_path`, `invalid_parameter`", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn list(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    super::query::takes_none(&query)?;
    let (system, value) = path.into_inner();
    let subject = subject_from_path(&system, &value)?;
    let meta = RequestMeta::of(&req);
    let (pseudonym, consents) = state
        .services
        .subject_consents(&meta.caller(&who.0), &subject)
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(NO_STORE)
        .json(json!({ "subject": pseudonym.to_hex(), "consents": consents })))
}

/// `GET /v1/subjects/{system}/{value}/coverage`.
#[utoipa::path(
    get,
    path = "/v1/subjects/{system}/{value}/coverage",
    tag = "consents",
    operation_id = "coverage",
    summary = "Which fields would flow to a recipient for a purpose, field by field, and why",
    params(
        ("system" = String, Path, description = "identifier system, e.g. `metro-pd`"),
        ("value" = String, Path, description = "identifier value, e.g. `P-2231`"),
        ("recipient" = String, Query, description = "the partner that would receive"),
        ("purpose" = String, Query, description = "the purpose of use"),
        ("role" = Option<String>, Query, description = "one role of the recipient (default: each)"),
    ),
    responses(
        (status = 200, description = "per record kind and role, each field: flows or not, transform, consents and MOU rules, or the reason it does not", body = Object),
        (status = 400, description = "`invalid_parameter`, `invalid_path`", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn coverage(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let (mut recipient, mut purpose, mut role) = (None, None, None);
    for pair in checked(&query, &["recipient", "purpose", "role"]) {
        let (k, v) = pair?;
        match k {
            "recipient" => recipient = Some(v),
            "purpose" => purpose = Some(v),
            _ => role = Some(v),
        }
    }
    let recipient: PartnerId = recipient
        .ok_or_else(|| bad_param("recipient", "required: the partner that would receive"))?
        .parse()
        .map_err(|e| bad_param("recipient", e))?;
    let purpose: Purpose = purpose
        .ok_or_else(|| bad_param("purpose", "required: the purpose of use"))?
        .parse()
        .map_err(|e| bad_param("purpose", e))?;
    let role: Option<Role> = role
        .map(str::parse)
        .transpose()
        .map_err(|e| bad_param("role", e))?;
    let (system, value) = path.into_inner();
    let subject = subject_from_path(&system, &value)?;
    let meta = RequestMeta::of(&req);
    let report = state
        .services
        .coverage(
            &meta.caller(&who.0),
            &subject,
            &CoverageAsk {
                recipient,
                purpose,
                role,
            },
        )
        .await?;
    Ok(HttpResponse::Ok().insert_header(NO_STORE).json(report))
}
