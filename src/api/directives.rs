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
struct EndBody {
    reason: String,
}

/// `POST /v1/restrictions`.
#[tracing::instrument(skip_all)]
async fn create_restriction(
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
#[tracing::instrument(skip_all)]
async fn restriction(
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
#[tracing::instrument(skip_all)]
async fn terminate_restriction(
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
#[tracing::instrument(skip_all)]
async fn subject_restrictions(
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
#[tracing::instrument(skip_all)]
async fn create_court_order(
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
#[tracing::instrument(skip_all)]
async fn court_orders(
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
                return Err(ApiError::BadRequest {
                    code: "invalid_parameter",
                    message: format!(
                        "query parameter `{name}`: the only parameter is `all=true|false`"
                    ),
                    details: Some(json!({ "parameter": name })),
                });
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
#[tracing::instrument(skip_all)]
async fn court_order(
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
#[tracing::instrument(skip_all)]
async fn end_court_order(
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
