//! The aggregate behind the compliance console's overview (the rules are the overview
//! service's):
//!
//! - `GET /v1/audit/overview?since=RFC3339&until=RFC3339`: disclosure entries per UTC day by
//!   recipient partner, purpose, outcome and basis kind; totals (disclosures, denials,
//!   emergency accesses); emergency reviews open and closed; the log's extent and its last
//!   verification. Counts, agencies and purposes only: never a subject, user, record or field.

use actix_web::{HttpRequest, HttpResponse, web};

use super::query::{checked, parse_time};
use super::{AppState, Authenticated, NO_STORE, RequestMeta};
use crate::error::ApiError;

/// Registers the routes.
pub(super) fn routes(cfg: &mut super::Routes<'_>) {
    cfg.get("/v1/audit/overview", overview);
}

/// `GET /v1/audit/overview`.
#[utoipa::path(
    get,
    path = "/v1/audit/overview",
    tag = "compliance",
    operation_id = "overview",
    summary = "The numbers behind the console's overview (counts only, no personal data)",
    description = "Disclosure entries per UTC day by recipient partner, purpose, outcome and \
        basis kind, with totals; emergency reviews open and closed; the stored log's extent and \
        the newest chain verification recorded in it. Default period: the last 30 days; at most \
        400 days. A `log_read` entry records every call.",
    params(
        ("since" = Option<String>, Query, description = "start, RFC 3339 (default: `until` minus 30 days)"),
        ("until" = Option<String>, Query, description = "end, RFC 3339 (default: now)"),
    ),
    responses(
        (status = 200, description = "the aggregate", body = super::openapi::Overview),
        (status = 400, description = "`invalid_parameter` (with `details.parameter`)", body = super::openapi::ErrorBody),
        (status = 401, description = "token missing or invalid", body = super::openapi::ErrorBody),
        (status = 403, description = "`compliance_role_required`", body = super::openapi::ErrorBody),
        (status = 503, description = "`service_unavailable`", body = super::openapi::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = []))
)]
#[tracing::instrument(skip_all)]
pub(super) async fn overview(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let meta = RequestMeta::of(&req);
    let caller = meta.caller(&who.0);
    state
        .services
        .authorize_compliance(&caller, "overview")
        .await?;
    let (mut since, mut until) = (None, None);
    for pair in checked(&query, &["since", "until"]) {
        let (k, v) = pair?;
        let t = Some(parse_time(k, v)?);
        if k == "since" {
            since = t;
        } else {
            until = t;
        }
    }
    let overview = state.services.overview(&caller, since, until).await?;
    Ok(HttpResponse::Ok().insert_header(NO_STORE).json(overview))
}
