//! `GET /v1/subjects/{system}/{value}/part2-disclosures?years=3&format=json|csv`: a patient's
//! list of disclosures of 42 CFR Part 2 information through the gateway (42 CFR 2.24), for
//! compliance officers (the rules are the compliance services').

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::query::{bad_param, unknown_param};
use super::{AppState, Authenticated, NO_STORE, RequestMeta, subject_param};
use crate::audit::part2;
use crate::error::ApiError;

/// Registers the route.
pub(super) fn routes(r: &mut super::Routes<'_>) {
    r.get("/v1/subjects/{system}/{value}/part2-disclosures", list);
}

/// `GET /v1/subjects/{system}/{value}/part2-disclosures`.
#[utoipa::path(
    get,
    path = "/v1/subjects/{system}/{value}/part2-disclosures",
    tag = "compliance",
    operation_id = "part2_disclosures",
    summary = "A patient's list of disclosures of 42 CFR Part 2 information (42 CFR 2.24; a compliance officer)",
    params(
        ("system" = String, Path, description = "identifier system, e.g. `county-mh`"),
        ("value" = String, Path, description = "identifier value"),
        ("years" = Option<u32>, Query, description = "1 to 3 (default 3)"),
        ("format" = Option<String>, Query, description = "`json` (default) or `csv`"),
    ),
    responses(
        (status = 200, description = "JSON, or CSV with `Content-Disposition: attachment`", body = Object),
        (status = 400, description = "`invalid_parameter` or `invalid_path`", body = crate::error::ErrorBody),
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
    path: web::Path<(String, String)>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let subject = subject_param(&path.0, &path.1)?;
    let mut years = part2::MAX_YEARS;
    let mut csv = false;
    for (k, v) in query.iter() {
        match (k.as_str(), v.as_str()) {
            ("years", n) => {
                years = n
                    .parse::<u32>()
                    .map_err(|_| bad_param("years", format!("use 1 to {}", part2::MAX_YEARS)))?;
            }
            ("format", "json") => csv = false,
            ("format", "csv") => csv = true,
            ("format", _) => return Err(bad_param("format", "use `json` or `csv`")),
            (other, _) => return Err(unknown_param(other, &["years", "format"])),
        }
    }
    let meta = RequestMeta::of(&req);
    let list = state
        .services
        .part2_disclosures(&meta.caller(&who.0), &subject, years)
        .await?;
    if csv {
        return Ok(HttpResponse::Ok()
            .insert_header(NO_STORE)
            .insert_header((
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"part2-disclosures.csv\"",
            ))
            .content_type("text/csv; charset=utf-8")
            .body(part2::to_csv(&list.disclosures)));
    }
    Ok(HttpResponse::Ok().insert_header(NO_STORE).json(list))
}
