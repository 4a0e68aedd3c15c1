//! The emergency-access review queue for compliance officers (the rules are the review
//! service's):
//!
//! - `GET /v1/reviews?state=open|closed|all&limit=N`: reviews with the stated basis and threat
//!   of the access that opened them;
//! - `GET /v1/reviews/{id}`: one review with the disclosures counted in its window;
//! - `POST /v1/reviews/{id}` `{"outcome": "justified" | "not-justified", "note": "..."}`:
//!   closes a review.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use tracing::instrument;

use super::json::BoundedJson;
use super::query::bad_param;
use super::{AppState, Authenticated, NO_STORE, RequestMeta};
use crate::error::ApiError;
use crate::service::reviews::ReviewState;

pub(super) fn routes(r: &mut super::Routes<'_>) {
    r.get("/v1/reviews", list)
        .get("/v1/reviews/{id}", one)
        .post("/v1/reviews/{id}", close);
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    state: Option<String>,
    limit: Option<u32>,
}

/// The body of `POST /v1/reviews/{id}`: the outcome of an emergency-access review.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// `justified` or `not-justified`.
    pub outcome: String,
    /// Why.
    pub note: String,
}

#[utoipa::path(
    get,
    path = "/v1/reviews",
    tag = "compliance",
    operation_id = "list_reviews",
    summary = "Emergency-access reviews with the stated basis and threat",
    params(
        ("state" = Option<String>, Query, description = "`open` (default), `closed` or `all`"),
        ("limit" = Option<u32>, Query, description = "1 to 1000 (default 100)"),
    ),
    responses(
        (status = 200, description = "`{\"reviews\": [...]}`, oldest first", body = Object),
        (status = 400, description = "`invalid_parameter`, `invalid_query`", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 403, description = "`compliance_role_required` (the refusal is logged)", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[instrument(skip_all)]
pub(super) async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    Authenticated(who): Authenticated,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let meta = RequestMeta::of(&req);
    let caller = meta.caller(&who);
    state
        .services
        .authorize_compliance(&caller, "list emergency reviews")
        .await?;
    let filter = match query.state.as_deref().unwrap_or("open") {
        "all" => ReviewState::All,
        "open" => ReviewState::Open,
        "closed" => ReviewState::Closed,
        other => {
            return Err(bad_param(
                "state",
                format!("use `open`, `closed` or `all`, not `{other}`"),
            ));
        }
    };
    let reviews = state
        .services
        .reviews(&caller, filter, query.limit.unwrap_or(100))
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(NO_STORE)
        .json(json!({ "reviews": reviews })))
}

#[utoipa::path(
    get,
    path = "/v1/reviews/{id}",
    tag = "compliance",
    operation_id = "get_review",
    summary = "One review and the emergency disclosures counted in its window",
    params(
        ("id" = String, Path, description = "the review id"),
    ),
    responses(
        (status = 200, description = "`{\"review\": {...}, \"disclosures\": [entry, ...]}`", body = Object),
        (status = 404, description = "`review_not_found`", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 403, description = "`compliance_role_required` (the refusal is logged)", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[instrument(skip_all)]
pub(super) async fn one(
    state: web::Data<AppState>,
    req: HttpRequest,
    Authenticated(who): Authenticated,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let meta = RequestMeta::of(&req);
    let detail = state.services.review(&meta.caller(&who), &path).await?;
    Ok(HttpResponse::Ok().insert_header(NO_STORE).json(json!({
        "review": detail.review,
        "disclosures": detail.disclosure_views(),
    })))
}

#[utoipa::path(
    post,
    path = "/v1/reviews/{id}",
    tag = "compliance",
    operation_id = "close_review",
    summary = "Close a review with an outcome and a note",
    params(
        ("id" = String, Path, description = "the review id"),
    ),
    request_body(content = Object, description = "`{\"outcome\": \"justified\" | \"not-justified\", \"note\": \"...\"}`", content_type = "application/json"),
    responses(
        (status = 200, description = "the closed review", body = Object),
        (status = 400, description = "`invalid_outcome`, `invalid_note`, `invalid_json`", body = crate::error::ErrorBody),
        (status = 404, description = "`review_not_found`", body = crate::error::ErrorBody),
        (status = 409, description = "`review_closed`", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 403, description = "`compliance_role_required` (the refusal is logged)", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[instrument(skip_all)]
pub(super) async fn close(
    state: web::Data<AppState>,
    req: HttpRequest,
    Authenticated(who): Authenticated,
    path: web::Path<String>,
    body: BoundedJson<Decision>,
) -> Result<HttpResponse, ApiError> {
    let meta = RequestMeta::of(&req);
    let review = state
        .services
        .close_review(&meta.caller(&who), &path, &body.0.outcome, &body.0.note)
        .await?;
    Ok(HttpResponse::Ok().insert_header(NO_STORE).json(review))
}
