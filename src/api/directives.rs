//! The API of agreed restrictions and court orders (the rules are the directive services'):
//!
//! - `POST /v1/restrictions`: record a restriction the caller's agency agreed to (HIPAA
//!   164.522(a), 42 CFR 2.26); `GET /v1/restrictions/{id}`; `POST
//!   /v1/restrictions/{id}/terminate` (164.522(a)(2));
//! - `GET /v1/subjects/{system}/{value}/restrictions`;
//! - `POST /v1/court-orders`, `GET /v1/court-orders[?all=true]`, `GET /v1/court-orders/{id}`,
//!   `POST /v1/court-orders/{id}/end` (42 CFR 2.64, 2.65; compliance officers).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::query::bad_param;
use super::{AppState, Authenticated, BoundedJson, NO_STORE, RequestMeta, subject_param};
use crate::consent::orders::CourtOrderRequest;
use crate::consent::restrictions::RestrictionRequest;
use crate::error::ApiError;
use crate::service::directives::EndRequest;

/// Registers the routes.
pub(super) fn routes(r: &mut super::Routes<'_>) {
    r.post("/v1/restrictions", create_restriction)
        .get("/v1/restrictions/{id}", restriction)
        .post("/v1/restrictions/{id}/terminate", terminate_restriction)
        .get(
            "/v1/subjects/{system}/{value}/restrictions",
            subject_restrictions,
        )
        .post("/v1/court-orders", create_court_order)
        .get("/v1/court-orders", court_orders)
        .get("/v1/court-orders/{id}", court_order)
        .post("/v1/court-orders/{id}/end", end_court_order);
}

/// The body of `POST .../terminate` and `POST .../end`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EndBody {
    reason: String,
}

/// `POST /v1/restrictions`.
#[utoipa::path(
    post,
    path = "/v1/restrictions",
    tag = "consents",
    operation_id = "create_restriction",
    summary = "Record a restriction the caller's agency agreed to (HIPAA 164.522(a), 42 CFR 2.26)",
    request_body(content = Object, content_type = "application/json", description = "the restriction: subject, recipients, purposes, fields and term"),
    responses(
        (status = 201, description = "the recorded restriction; `Location: /v1/restrictions/{id}`", body = Object),
        (status = 400, description = "`invalid_restriction` with `details.problems` (`[{field, code, message}]`), or `invalid_json`", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 403, description = "`not_a_holder`: the caller's agency holds no records to restrict", body = crate::error::ErrorBody),
        (status = 409, description = "`directive_conflict`: retry", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn create_restriction(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    body: BoundedJson<RestrictionRequest>,
) -> Result<HttpResponse, ApiError> {
    let meta = RequestMeta::of(&req);
    let view = state
        .services
        .create_restriction(&meta.caller(&who.0), body.0)
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/restrictions/{}", view.id)))
        .insert_header(NO_STORE)
        .json(view))
}

/// `GET /v1/restrictions/{id}`.
#[utoipa::path(
    get,
    path = "/v1/restrictions/{id}",
    tag = "consents",
    operation_id = "get_restriction",
    summary = "One restriction with its status (its discloser, or a compliance officer)",
    params(
        ("id" = String, Path, description = "the id"),
    ),
    responses(
        (status = 200, description = "the restriction", body = Object),
        (status = 404, description = "`restriction_not_found` (also for a caller who may not see it)", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn restriction(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let meta = RequestMeta::of(&req);
    let view = state
        .services
        .restriction(&meta.caller(&who.0), &path)
        .await?;
    Ok(HttpResponse::Ok().insert_header(NO_STORE).json(view))
}

/// `POST /v1/restrictions/{id}/terminate`.
#[utoipa::path(
    post,
    path = "/v1/restrictions/{id}/terminate",
    tag = "consents",
    operation_id = "terminate_restriction",
    summary = "End a restriction now (HIPAA 164.522(a)(2); its discloser)",
    params(
        ("id" = String, Path, description = "the id"),
    ),
    request_body(content = Object, content_type = "application/json", description = "`{\"reason\"}`"),
    responses(
        (status = 200, description = "the ended restriction", body = Object),
        (status = 400, description = "`invalid_end` (with `details.field`)", body = crate::error::ErrorBody),
        (status = 404, description = "`restriction_not_found`", body = crate::error::ErrorBody),
        (status = 409, description = "`restriction_ended` (with `details.ended_at`) or `directive_conflict` (retry)", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn terminate_restriction(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: BoundedJson<EndBody>,
) -> Result<HttpResponse, ApiError> {
    let meta = RequestMeta::of(&req);
    let view = state
        .services
        .terminate_restriction(
            &meta.caller(&who.0),
            &path,
            EndRequest {
                reason: body.0.reason,
            },
        )
        .await?;
    Ok(HttpResponse::Ok().insert_header(NO_STORE).json(view))
}

/// `GET /v1/subjects/{system}/{value}/restrictions`.
#[utoipa::path(
    get,
    path = "/v1/subjects/{system}/{value}/restrictions",
    tag = "consents",
    operation_id = "subject_restrictions",
    summary = "A subject's restrictions the caller may see",
    params(
        ("system" = String, Path, description = "identifier system, e.g. `county-mh`"),
        ("value" = String, Path, description = "identifier value"),
    ),
    responses(
        (status = 200, description = "`{\"subject\": \"<pseudonym>\", \"restrictions\": [...]}`", body = Object),
        (status = 400, description = "`invalid_parameter` or `invalid_path`", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn subject_restrictions(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let subject = subject_param(&path.0, &path.1)?;
    let meta = RequestMeta::of(&req);
    let (pseudonym, list) = state
        .services
        .subject_restrictions(&meta.caller(&who.0), &subject)
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(NO_STORE)
        .json(json!({ "subject": pseudonym.to_hex(), "restrictions": list })))
}

/// `POST /v1/court-orders`.
#[utoipa::path(
    post,
    path = "/v1/court-orders",
    tag = "compliance",
    operation_id = "create_court_order",
    summary = "Record a court order (42 CFR 2.64, 2.65; a compliance officer)",
    request_body(content = Object, content_type = "application/json", description = "the order: subject, court, docket, what it authorizes and its term"),
    responses(
        (status = 201, description = "the recorded order; `Location: /v1/court-orders/{id}`", body = Object),
        (status = 400, description = "`invalid_court_order` with `details.problems`, or `invalid_json`", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 403, description = "`compliance_role_required` (the refusal is logged)", body = crate::error::ErrorBody),
        (status = 409, description = "`directive_conflict`: retry", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn create_court_order(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    body: BoundedJson<CourtOrderRequest>,
) -> Result<HttpResponse, ApiError> {
    let meta = RequestMeta::of(&req);
    let view = state
        .services
        .create_court_order(&meta.caller(&who.0), body.0)
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/court-orders/{}", view.id)))
        .insert_header(NO_STORE)
        .json(view))
}

/// `GET /v1/court-orders[?all=true]`.
#[utoipa::path(
    get,
    path = "/v1/court-orders",
    tag = "compliance",
    operation_id = "court_orders",
    summary = "The court orders in force, or all (a compliance officer)",
    params(
        ("all" = Option<bool>, Query, description = "`true`: every order recorded"),
    ),
    responses(
        (status = 200, description = "`{\"court_orders\": [...]}`", body = Object),
        (status = 400, description = "`invalid_parameter`", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 403, description = "`compliance_role_required` (the refusal is logged)", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn court_orders(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let mut all = false;
    for (k, v) in query.iter() {
        match (k.as_str(), v.as_str()) {
            ("all", "true") => all = true,
            ("all", "false") => all = false,
            (name, _) => {
                return Err(bad_param(name, "the only parameter is `all=true|false`"));
            }
        }
    }
    let meta = RequestMeta::of(&req);
    let list = state
        .services
        .court_orders(&meta.caller(&who.0), all)
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(NO_STORE)
        .json(json!({ "court_orders": list })))
}

/// `GET /v1/court-orders/{id}`.
#[utoipa::path(
    get,
    path = "/v1/court-orders/{id}",
    tag = "compliance",
    operation_id = "get_court_order",
    summary = "One court order with its status (a compliance officer)",
    params(
        ("id" = String, Path, description = "the id"),
    ),
    responses(
        (status = 200, description = "the order", body = Object),
        (status = 404, description = "`court_order_not_found`", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 403, description = "`compliance_role_required` (the refusal is logged)", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn court_order(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let meta = RequestMeta::of(&req);
    let view = state
        .services
        .court_order(&meta.caller(&who.0), &path)
        .await?;
    Ok(HttpResponse::Ok().insert_header(NO_STORE).json(view))
}

/// `POST /v1/court-orders/{id}/end`.
#[utoipa::path(
    post,
    path = "/v1/court-orders/{id}/end",
    tag = "compliance",
    operation_id = "end_court_order",
    summary = "End a court order now: vacated or withdrawn (a compliance officer)",
    params(
        ("id" = String, Path, description = "the id"),
    ),
    request_body(content = Object, content_type = "application/json", description = "`{\"reason\"}`"),
    responses(
        (status = 200, description = "the ended order", body = Object),
        (status = 400, description = "`invalid_end` (with `details.field`)", body = crate::error::ErrorBody),
        (status = 404, description = "`court_order_not_found`", body = crate::error::ErrorBody),
        (status = 409, description = "`court_order_ended` (with `details.ended_at`) or `directive_conflict` (retry)", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 403, description = "`compliance_role_required` (the refusal is logged)", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn end_court_order(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: BoundedJson<EndBody>,
) -> Result<HttpResponse, ApiError> {
    let meta = RequestMeta::of(&req);
    let view = state
        .services
        .end_court_order(
            &meta.caller(&who.0),
            &path,
            EndRequest {
                reason: body.0.reason,
            },
        )
        .await?;
    Ok(HttpResponse::Ok().insert_header(NO_STORE).json(view))
}
