//! The policy-change API (CJIS AU-2), for compliance officers:
//!
//! - `GET /v1/policy/changes?cursor=&limit=1..100`: every policy load (start-up and `SIGHUP`),
//!   newest first, with the old and new policy-set hashes and the counts by change type;
//! - `GET /v1/policy/changes/{seq}`: one change with its full diff (every flow whose outcome
//!   changed, with the rules of each side).

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::query::{bad_param, unknown_param};
use super::{AppState, Authenticated, NO_STORE, RequestMeta};
use crate::domain::Code;
use crate::error::ApiError;

/// Most changes in one page.
const MAX_LIMIT: u32 = 100;

/// Registers the routes.
pub(super) fn routes(r: &mut super::Routes<'_>) {
    r.get("/v1/policy/changes", list)
        .get("/v1/policy/changes/{seq}", one);
}

/// `GET /v1/policy/changes`.
#[utoipa::path(
    get,
    path = "/v1/policy/changes",
    tag = "compliance",
    operation_id = "policy_changes",
    summary = "Every policy load, newest first (CJIS AU-2; a compliance officer)",
    params(
        ("cursor" = Option<String>, Query, description = "the `next_cursor` of a previous page"),
        ("limit" = Option<u32>, Query, description = "1 to 100"),
    ),
    responses(
        (status = 200, description = "`{\"changes\": [...], \"next_cursor\"}`: old and new policy-set hashes and the counts by change type", body = Object),
        (status = 400, description = "`invalid_parameter`", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 403, description = "`compliance_role_required` (the refusal is logged)", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn list(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let mut before = None;
    let mut limit = 20;
    for (k, v) in query.iter() {
        match k.as_str() {
            "cursor" => {
                before = Some(v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    bad_param(
                        "cursor",
                        "pass the `next_cursor` of a previous page unchanged",
                    )
                })?);
            }
            "limit" => {
                limit = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| bad_param("limit", format!("use 1 to {MAX_LIMIT}")))?;
            }
            other => return Err(unknown_param(other, &["cursor", "limit"])),
        }
    }
    let meta = RequestMeta::of(&req);
    let changes = state
        .services
        .policy_changes(&meta.caller(&who.0), before, limit)
        .await?;
    let next = (changes.len() == limit as usize)
        .then(|| changes.last().map(|c| c.seq.to_string()))
        .flatten();
    Ok(HttpResponse::Ok()
        .insert_header(NO_STORE)
        .json(json!({ "changes": changes, "next_cursor": next })))
}

/// `GET /v1/policy/changes/{seq}`.
#[utoipa::path(
    get,
    path = "/v1/policy/changes/{seq}",
    tag = "compliance",
    operation_id = "policy_change",
    summary = "One policy change with its full diff (a compliance officer)",
    params(
        ("seq" = u64, Path, description = "the change's log sequence number"),
    ),
    responses(
        (status = 200, description = "the change: every flow whose outcome changed, with the rules of each side", body = Object),
        (status = 400, description = "`invalid_path`", body = crate::error::ErrorBody),
        (status = 404, description = "`policy_change_not_found`", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 403, description = "`compliance_role_required` (the refusal is logged)", body = crate::error::ErrorBody),
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
    let seq = path.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::bad_request(
            Code::InvalidPath,
            "the change is named by the sequence number of its `policy_reloaded` entry, a \
             positive integer",
        )
    })?;
    let meta = RequestMeta::of(&req);
    let change = state
        .services
        .policy_change(&meta.caller(&who.0), seq)
        .await?;
    Ok(HttpResponse::Ok().insert_header(NO_STORE).json(change))
}
