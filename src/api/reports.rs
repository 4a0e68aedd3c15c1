//! The report API (the rules are the report service's):
//!
//! - `GET /v1/reports`: the reports the caller may run, with their tables and privacy budget;
//! - `GET /v1/reports/{id}?from=&to=[&format=json|csv]`: runs one over `[from, to)`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde_json::json;

use super::query::{bad_param, checked};
use super::{AppState, Authenticated, NO_STORE, RequestMeta};
use crate::error::ApiError;
use crate::reports::{Period, facts, render};

/// Registers the routes.
pub(super) fn routes(r: &mut super::Routes<'_>) {
    r.get("/v1/reports", list).get("/v1/reports/{id}", run);
}

/// A date (`2026-01-01`, midnight UTC) or an RFC 3339 time.
fn parse_instant(name: &str, v: &str) -> Result<DateTime<Utc>, ApiError> {
    facts::parse_instant(v).ok_or_else(|| {
        bad_param(
            name,
            "use a date such as `2026-01-01` (midnight UTC) or an RFC 3339 time",
        )
    })
}

/// The period and format of a run from its query.
fn parse_run(pairs: &[(String, String)]) -> Result<(Period, bool), ApiError> {
    let (mut from, mut to, mut csv) = (None, None, None);
    for pair in checked(pairs, &["from", "to", "format"]) {
        let (k, v) = pair?;
        match k {
            "from" => from = Some(v),
            "to" => to = Some(v),
            _ => csv = Some(v),
        }
    }
    let csv = match csv {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(bad_param("format", "use `json` or `csv`")),
    };
    let from = from.ok_or_else(|| bad_param("from", "required: the first day of the period"))?;
    let to = to.ok_or_else(|| bad_param("to", "required: the day after the period ends"))?;
    let period = Period::new(parse_instant("from", from)?, parse_instant("to", to)?)
        .map_err(|e| bad_param("to", e))?;
    Ok((period, csv))
}

/// `GET /v1/reports`.
#[utoipa::path(
    get,
    path = "/v1/reports",
    tag = "reports",
    operation_id = "list_reports",
    summary = "The reports the caller may run, with their tables and privacy budget",
    responses(
        (status = 200, description = "`{\"reports\": [{id, title, description, release, definition_hash, file, runners, basis, tables, privacy?}]}`; `privacy` holds `epsilon`, `series`, `budget`, `spent` and `runs_left`", body = Object),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn list(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let meta = RequestMeta::of(&req);
    let reports = state.services.list_reports(&meta.caller(&who.0)).await?;
    Ok(HttpResponse::Ok()
        .insert_header(NO_STORE)
        .json(json!({ "reports": reports })))
}

/// `GET /v1/reports/{id}`.
#[utoipa::path(
    get,
    path = "/v1/reports/{id}",
    tag = "reports",
    operation_id = "run_report",
    summary = "Run a report over `[from, to)` after disclosure control (logged as `report_generated`)",
    params(
        ("id" = String, Path, description = "report id (a file in `policies/reports/`)"),
        ("from" = String, Query, description = "first day of the period (`2026-01-01`, midnight UTC) or an RFC 3339 time"),
        ("to" = String, Query, description = "the day after the period ends, or an RFC 3339 time; at most ten years after `from`"),
        ("format" = Option<String>, Query, description = "`json` (default) or `csv`"),
    ),
    responses(
        (status = 200, description = "the report (JSON: `{report, title, release, definition_hash, policy_hash, period, run_id, log_entry, disclosure_control, privacy?, tables}`; CSV: one line per number); `Report-Log-Entry` names its `report_generated` entry", body = Object),
        (status = 400, description = "`invalid_parameter` (with `details.parameter`: `from`, `to`, `format` or an unknown parameter)", body = crate::error::ErrorBody),
        (status = 403, description = "`report_not_permitted`: the caller is no runner of the report (logged)", body = crate::error::ErrorBody),
        (status = 404, description = "`unknown_report`", body = crate::error::ErrorBody),
        (status = 409, description = "`privacy_budget_exhausted` (with `details.series`, `epsilon`, `spent`, `budget`; logged)", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was released; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn run(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let meta = RequestMeta::of(&req);
    let (period, csv) = parse_run(&query)?;
    let report = state
        .services
        .run_report(&meta.caller(&who.0), &path, period)
        .await?;
    let mut res = HttpResponse::Ok();
    res.insert_header(NO_STORE)
        .insert_header(("Report-Log-Entry", report.log_entry.to_string()));
    if csv {
        let name = format!(
            "attachment; filename=\"{}-{}-{}.csv\"",
            report.report,
            period.from().format("%Y%m%d"),
            period.to().format("%Y%m%d")
        );
        res.insert_header((header::CONTENT_DISPOSITION, name))
            .content_type("text/csv; charset=utf-8");
        return Ok(res.body(render::to_csv(&report)));
    }
    Ok(res.json(&report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn parameter(e: ApiError) -> String {
        match e {
            ApiError::BadRequest { details, .. } => {
                details.unwrap()["parameter"].as_str().unwrap().to_owned()
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_period_is_parsed_from_dates_or_times() {
        let (p, csv) = parse_run(&q(&[
            ("from", "2026-01-01"),
            ("to", "2027-01-01T00:00:00Z"),
        ]))
        .unwrap();
        assert!(!csv);
        assert_eq!(p.from().to_rfc3339(), "2026-01-01T00:00:00+00:00");
        let (_, csv) = parse_run(&q(&[
            ("from", "2026-01-01"),
            ("to", "2026-02-01"),
            ("format", "csv"),
        ]))
        .unwrap();
        assert!(csv);
    }

    #[test]
    fn bad_parameters_are_named() {
        let named = |pairs: &[(&str, &str)]| parameter(parse_run(&q(pairs)).unwrap_err());
        assert_eq!(named(&[("to", "2026-01-01")]), "from");
        assert_eq!(named(&[("from", "2026-01-01")]), "to");
        assert_eq!(
            named(&[("from", "yesterday"), ("to", "2026-01-01")]),
            "from"
        );
        assert_eq!(named(&[("from", "2026-02-01"), ("to", "2026-01-01")]), "to");
        assert_eq!(
            named(&[
                ("from", "2026-01-01"),
                ("to", "2026-02-01"),
                ("format", "xml")
            ]),
            "format"
        );
        assert_eq!(
            named(&[
                ("from", "2026-01-01"),
                ("from", "2026-01-02"),
                ("to", "2026-02-01")
            ]),
            "from"
        );
        assert_eq!(
            named(&[("from", "2026-01-01"), ("to", "2026-02-01"), ("limit", "1")]),
            "limit"
        );
    }
}
