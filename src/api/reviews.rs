//! The emergency-access review queue for compliance officers (the rules are the review
//! service's):
//!
//! - `GET /v1/reviews?state=open|closed|all&limit=N`: reviews with the stated basis and threat
//!   of the access that opened them;
//! - `POST /v1/reviews/{id}` `{"outcome": "justified" | "not-justified", "note": "..."}`:
//!   closes a review.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use tracing::instrument;

use super::json::BoundedJson;
use super::{AppState, Authenticated, NO_STORE, RequestMeta};
use crate::error::ApiError;
use crate::service::reviews::ReviewState;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    // One resource per path, so another method gets 405 with `Allow` (not 404).
    cfg.service(web::resource("/v1/reviews").route(web::get().to(list)))
        .service(web::resource("/v1/reviews/{id}").route(web::post().to(close)));
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
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

#[instrument(skip_all)]
async fn list(
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
            return Err(ApiError::BadRequest {
                code: "invalid_parameter",
                message: format!(
                    "query parameter `state`: use `open`, `closed` or `all`, not `{other}`"
                ),
                details: Some(json!({ "parameter": "state" })),
            });
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

#[instrument(skip_all)]
async fn close(
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
