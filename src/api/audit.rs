//! The compliance API over the disclosure log (the rules are the compliance services'):
//!
//! - `GET /v1/disclosures`: filtered, paginated listing (newest first);
//! - `GET /v1/disclosures/{seq}`: one entry;
//! - `GET /v1/subjects/{system}/{value}/accounting?format=json|csv`: a subject's accounting
//!   of disclosures (HIPAA 164.528) over the last six years;
//! - `POST /v1/accounting-suspensions`, `GET /v1/accounting-suspensions[?all=true]`;
//! - `GET /v1/audit/verify`: verifies the whole chain;
//! - `GET /v1/audit/checkpoints`: the signed checkpoints and the public key, for partners to
//!   keep copies.

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::query::{bad_param, checked, parse_time, unknown_param};
use super::{AppState, Authenticated, NO_STORE, RequestMeta};
use crate::audit::accounting;
use crate::audit::query::{EntryView, Filter, MAX_LIMIT};
use crate::audit::{CheckpointExport, EntryKind};
use crate::domain::Code;
use crate::domain::SubjectIdentifier;
use crate::error::ApiError;
use crate::service::compliance::SuspensionRequest;

/// Registers the routes.
pub(super) fn routes(r: &mut super::Routes<'_>) {
    r.get("/v1/disclosures", list)
        .get("/v1/disclosures/{seq}", one)
        .get("/v1/subjects/{system}/{value}/accounting", accounting)
        .post("/v1/accounting-suspensions", suspend)
        .get("/v1/accounting-suspensions", suspensions)
        .get("/v1/audit/verify", verify)
        .get("/v1/audit/checkpoints", checkpoints);
}

fn encode_cursor(seq: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{seq}"))
}

fn decode_cursor(v: &str) -> Result<u64, ApiError> {
    URL_SAFE_NO_PAD
        .decode(v)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("v1:").and_then(|n| n.parse::<u64>().ok()))
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            bad_param(
                "cursor",
                "pass the `next_cursor` of a previous page unchanged",
            )
        })
}

/// A subject identifier given as query or path parameters, in canonical form (the rules of
/// [`SubjectIdentifier::new`]); an error names the parameter at fault.
fn query_subject(system: &str, value: &str) -> Result<SubjectIdentifier, ApiError> {
    SubjectIdentifier::new(system, value).map_err(|e| {
        let param = if e.what.ends_with("system") {
            "subject_system"
        } else {
            "subject_value"
        };
        bad_param(param, e.rule)
    })
}

const LIST_PARAMS: [&str; 12] = [
    "subject_system",
    "subject_value",
    "recipient",
    "user",
    "purpose",
    "basis",
    "outcome",
    "kind",
    "since",
    "until",
    "cursor",
    "limit",
];

/// Parses the listing's query into a filter, a description for the log (no identifier) and the
/// subject identifier asked about, if any.
fn parse_filter(
    pairs: &[(String, String)],
) -> Result<(Filter, String, Option<SubjectIdentifier>), ApiError> {
    let params: BTreeMap<&str, &str> = checked(pairs, &LIST_PARAMS).collect::<Result<_, _>>()?;
    let mut f = Filter {
        limit: 100,
        kinds: vec![EntryKind::Disclosure],
        ..Filter::default()
    };
    let mut described: Vec<String> = Vec::new();
    let mut subject = None;
    match (params.get("subject_system"), params.get("subject_value")) {
        (Some(s), Some(v)) => {
            subject = Some(query_subject(s, v)?);
        }
        (Some(_), None) => {
            return Err(bad_param("subject_value", "required with `subject_system`"));
        }
        (None, Some(_)) => {
            return Err(bad_param("subject_system", "required with `subject_value`"));
        }
        (None, None) => {}
    }
    if let Some(v) = params.get("recipient") {
        let p: crate::domain::PartnerId = v.parse().map_err(|e| bad_param("recipient", e))?;
        f.recipient = Some(p.to_string());
    }
    if let Some(v) = params.get("user") {
        let u: crate::domain::UserId = v.parse().map_err(|e| bad_param("user", e))?;
        f.user = Some(u.to_string());
    }
    if let Some(v) = params.get("purpose") {
        let p: crate::domain::Purpose = v.parse().map_err(|e| bad_param("purpose", e))?;
        f.purpose = Some(p.to_string());
    }
    if let Some(v) = params.get("basis") {
        if !crate::audit::LegalBasis::KINDS.contains(v) {
            return Err(bad_param(
                "basis",
                "use `mou`, `consent`, `emergency`, `court_order` or `medical_emergency`",
            ));
        }
        f.basis = Some((*v).to_owned());
    }
    if let Some(v) = params.get("outcome") {
        if !["permit", "deny"].contains(v) {
            return Err(bad_param("outcome", "use `permit` or `deny`"));
        }
        f.outcome = Some((*v).to_owned());
    }
    if let Some(v) = params.get("kind") {
        f.kinds = if *v == "all" {
            Vec::new()
        } else {
            vec![v.parse().map_err(|_| {
                bad_param(
                    "kind",
                    "use `all` or an entry kind such as `disclosure`, `log_read`, \
                     `authentication_failed`, `handshake_refused`",
                )
            })?]
        };
    }
    if let Some(v) = params.get("since") {
        f.since_us = Some(parse_time("since", v)?.timestamp_micros());
    }
    if let Some(v) = params.get("until") {
        f.until_us = Some(parse_time("until", v)?.timestamp_micros());
    }
    if let (Some(a), Some(b)) = (f.since_us, f.until_us)
        && a > b
    {
        return Err(bad_param("until", "must not be before `since`"));
    }
    if let Some(v) = params.get("cursor") {
        f.before_seq = Some(decode_cursor(v)?);
    }
    if let Some(v) = params.get("limit") {
        f.limit = v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| bad_param("limit", format!("use a number from 1 to {MAX_LIMIT}")))?;
    }
    for (k, v) in &params {
        if !k.starts_with("subject_") {
            described.push(format!("{k}={v}"));
        }
    }
    Ok((f, described.join(" "), subject))
}

/// `GET /v1/disclosures`.
#[utoipa::path(
    get,
    path = "/v1/disclosures",
    tag = "compliance",
    operation_id = "list_disclosures",
    summary = "Search the disclosure log (newest first, paged)",
    params(
        ("subject_system" = Option<String>, Query, description = "with `subject_value`: the subject (turned into its pseudonym; the person's linked identifiers are included)"),
        ("subject_value" = Option<String>, Query, description = "with `subject_system`"),
        ("recipient" = Option<String>, Query, description = "recipient partner id"),
        ("user" = Option<String>, Query, description = "recipient user id"),
        ("purpose" = Option<String>, Query, description = "purpose of use"),
        ("basis" = Option<String>, Query, description = "`mou`, `consent` or `emergency`"),
        ("outcome" = Option<String>, Query, description = "`permit` or `deny`"),
        ("kind" = Option<String>, Query, description = "`disclosure` (default), `all` or an entry kind such as `log_read`"),
        ("since" = Option<String>, Query, description = "RFC 3339, inclusive"),
        ("until" = Option<String>, Query, description = "RFC 3339, inclusive"),
        ("cursor" = Option<String>, Query, description = "the `next_cursor` of the previous page"),
        ("limit" = Option<u32>, Query, description = "1 to 500 (default 100)"),
    ),
    responses(
        (status = 200, description = "`{\"entries\": [entry, ...], \"next_cursor\"}`", body = Object),
        (status = 400, description = "`invalid_parameter` (with `details.parameter`)", body = crate::error::ErrorBody),
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
    let meta = RequestMeta::of(&req);
    let caller = meta.caller(&who.0);
    // Refuse (and log) a caller who may not read the log before saying anything about the
    // query it sent.
    state
        .services
        .authorize_compliance(&caller, "list disclosures")
        .await?;
    let (filter, described, subject) = parse_filter(&query)?;
    let limit = filter.limit;
    let (entries, more) = state
        .services
        .list_log(&caller, filter, subject.as_ref(), &described)
        .await?;
    let next_cursor = (more && entries.len() == limit as usize)
        .then(|| entries.last().map(|e| encode_cursor(e.seq)))
        .flatten();
    let views: Vec<EntryView<'_>> = entries.iter().map(EntryView::from).collect();
    Ok(HttpResponse::Ok()
        .insert_header(NO_STORE)
        .json(json!({ "entries": views, "next_cursor": next_cursor })))
}

/// `GET /v1/disclosures/{seq}`.
#[utoipa::path(
    get,
    path = "/v1/disclosures/{seq}",
    tag = "compliance",
    operation_id = "get_disclosure",
    summary = "One log entry, with its fields, transforms and per-field reasons",
    params(
        ("seq" = u64, Path, description = "the entry's sequence number (the `Disclosure-Id`)"),
    ),
    responses(
        (status = 200, description = "the entry: time, kind, recipient, user, role, purpose, basis, subject pseudonym, record, `fields_disclosed`, `field_reasons`, outcome, `decision_id`, `policy_hash`, `prev_hash`, `hash`", body = Object),
        (status = 400, description = "`invalid_path`", body = crate::error::ErrorBody),
        (status = 404, description = "`entry_not_found`", body = crate::error::ErrorBody),
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
    let meta = RequestMeta::of(&req);
    let caller = meta.caller(&who.0);
    state
        .services
        .authorize_compliance(&caller, "read one entry")
        .await?;
    let seq: u64 = path.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::bad_request(
            Code::InvalidPath,
            "the entry id is its sequence number, a positive integer",
        )
    })?;
    let e = state.services.log_entry(&caller, seq).await?;
    Ok(HttpResponse::Ok()
        .insert_header(NO_STORE)
        .json(EntryView::from(&e)))
}

/// `GET /v1/subjects/{system}/{value}/accounting`.
#[utoipa::path(
    get,
    path = "/v1/subjects/{system}/{value}/accounting",
    tag = "compliance",
    operation_id = "accounting",
    summary = "A subject's accounting of disclosures (HIPAA 164.528), six years",
    params(
        ("system" = String, Path, description = "identifier system, e.g. `metro-pd`"),
        ("value" = String, Path, description = "identifier value, e.g. `P-2231`"),
        ("format" = Option<String>, Query, description = "`json` (default) or `csv`"),
    ),
    responses(
        (status = 200, description = "JSON `{subject, period, disclosures, suspended_disclosures}`, or CSV with `Content-Disposition: attachment`", body = Object),
        (status = 400, description = "`invalid_parameter`", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 403, description = "`compliance_role_required` (the refusal is logged)", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn accounting(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let meta = RequestMeta::of(&req);
    let caller = meta.caller(&who.0);
    state
        .services
        .authorize_compliance(&caller, "subject accounting")
        .await?;
    let mut csv = false;
    for (k, v) in query.iter() {
        match (k.as_str(), v.as_str()) {
            ("format", "json") => csv = false,
            ("format", "csv") => csv = true,
            ("format", _) => return Err(bad_param("format", "use `json` or `csv`")),
            (other, _) => return Err(unknown_param(other, &["format"])),
        }
    }
    let (system, value) = path.into_inner();
    let id = query_subject(&system, &value)?;
    let report = state
        .services
        .accounting(&caller, &id, if csv { "csv" } else { "json" })
        .await?;
    if csv {
        return Ok(HttpResponse::Ok()
            .insert_header(NO_STORE)
            .insert_header((
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"accounting-of-disclosures.csv\"",
            ))
            .content_type("text/csv; charset=utf-8")
            .body(accounting::to_csv(&report.disclosures)));
    }
    Ok(HttpResponse::Ok().insert_header(NO_STORE).json(report))
}

/// `GET /v1/audit/verify`.
#[utoipa::path(
    get,
    path = "/v1/audit/verify",
    tag = "compliance",
    operation_id = "verify_log",
    summary = "Verify the whole chain and the signed checkpoints",
    responses(
        (status = 200, description = "`{\"ok\", \"report\"}`: entries checked, last hash, checkpoints checked and the first failure (`seq`, `kind`, `message`)", body = Object),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 403, description = "`compliance_role_required` (the refusal is logged)", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn verify(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let meta = RequestMeta::of(&req);
    let report = state.services.verify_log(&meta.caller(&who.0)).await?;
    Ok(HttpResponse::Ok()
        .insert_header(NO_STORE)
        .json(json!({ "ok": report.ok(), "report": report })))
}

/// `GET /v1/audit/checkpoints`: any authenticated partner may keep copies.
#[utoipa::path(
    get,
    path = "/v1/audit/checkpoints",
    tag = "compliance",
    operation_id = "checkpoints",
    summary = "The signed checkpoints and the checkpoint public key (any authenticated partner)",
    responses(
        (status = 200, description = "`{algorithm, public_key, key_id, message, checkpoints: [{seq, head_hash, at_us, key_id, signature}]}`", body = Object),
        (status = 404, description = "`checkpoints_disabled`", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn checkpoints(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let meta = RequestMeta::of(&req);
    let (key, list) = state.services.checkpoints(&meta.caller(&who.0)).await?;
    Ok(HttpResponse::Ok()
        .insert_header(NO_STORE)
        .json(CheckpointExport::new(&key, list)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_forgeries() {
        assert_eq!(decode_cursor(&encode_cursor(42)).unwrap(), 42);
        assert!(decode_cursor("42").is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("v1:0")).is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("v2:5")).is_err());
    }

    #[test]
    fn an_unknown_or_repeated_listing_parameter_is_named() {
        let message = |q: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = q
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            match parse_filter(&pairs).unwrap_err() {
                ApiError::BadRequest { message, .. } => message,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(
            message(&[("colour", "red")]),
            "query parameter `colour`: unknown parameter; accepted: subject_system, \
             subject_value, recipient, user, purpose, basis, outcome, kind, since, until, \
             cursor, limit"
        );
        assert_eq!(
            message(&[("limit", "5"), ("limit", "6")]),
            "query parameter `limit`: given more than once"
        );
    }

    #[test]
    fn subject_parameters_are_checked_and_named() {
        assert!(query_subject("mrn", "A-12345").is_ok());
        assert!(query_subject("state.id-2", " A  1 ").is_ok());
        let named = |sys: &str, val: &str| match query_subject(sys, val).unwrap_err() {
            ApiError::BadRequest { details, .. } => details.unwrap()["parameter"].clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(named("MRN", "1"), "subject_system");
        assert_eq!(named("", "1"), "subject_system");
        assert_eq!(named("mrn", "a\nb"), "subject_value");
        assert_eq!(named("mrn", ""), "subject_value");
    }
}

/// The body of `POST /v1/accounting-suspensions`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuspensionBody {
    /// The agency whose disclosures are left out of the accounting.
    pub recipient: String,
    /// The subject's identifier system (with `subject_value`; neither: every subject).
    #[serde(default)]
    pub subject_system: Option<String>,
    /// The subject's identifier value.
    #[serde(default)]
    pub subject_value: Option<String>,
    /// The agency's statement.
    pub statement: String,
    /// When the suspension ends (RFC 3339).
    pub until: String,
}

fn bad_field(field: &'static str, why: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest {
        code: Code::InvalidSuspension,
        message: format!("`{field}`: {why}"),
        details: Some(json!({ "field": field })),
    }
}

/// `POST /v1/accounting-suspensions`: records an agency's suspension of the accounting
/// (HIPAA 164.528(a)(2)).
#[utoipa::path(
    post,
    path = "/v1/accounting-suspensions",
    tag = "compliance",
    operation_id = "suspend_accounting",
    summary = "Record an agency's suspension of the accounting (HIPAA 164.528(a)(2))",
    request_body(content = Object, description = "`{\"recipient\", \"subject_system\"?, \"subject_value\"?, \"statement\", \"until\"}`", content_type = "application/json"),
    responses(
        (status = 201, description = "the recorded suspension", body = Object),
        (status = 400, description = "`invalid_suspension` (with `details.field`), `invalid_json`", body = crate::error::ErrorBody),
        (status = 413, description = "`payload_too_large`", body = crate::error::ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 403, description = "`compliance_role_required` (the refusal is logged)", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn suspend(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    body: super::BoundedJson<SuspensionBody>,
) -> Result<HttpResponse, ApiError> {
    let meta = RequestMeta::of(&req);
    let caller = meta.caller(&who.0);
    state
        .services
        .authorize_compliance(&caller, "suspend an accounting")
        .await?;
    let body = body.0;
    let subject = match (
        body.subject_system.as_deref(),
        body.subject_value.as_deref(),
    ) {
        (Some(sys), Some(val)) => {
            Some(SubjectIdentifier::new(sys, val).map_err(|e| bad_field("subject_value", e))?)
        }
        (None, None) => None,
        _ => {
            return Err(bad_field(
                "subject_system",
                "give `subject_system` and `subject_value` together, or neither (every subject)",
            ));
        }
    };
    let until = parse_time("until", &body.until).map_err(|_| {
        bad_field(
            "until",
            "use an RFC 3339 time such as `2027-01-31T00:00:00Z`",
        )
    })?;
    let s = state
        .services
        .suspend_accounting(
            &caller,
            SuspensionRequest {
                recipient: body.recipient,
                subject,
                statement: body.statement,
                until,
            },
        )
        .await?;
    Ok(HttpResponse::Created().insert_header(NO_STORE).json(&s))
}

/// `GET /v1/accounting-suspensions[?all=true]`: those in force (or all).
#[utoipa::path(
    get,
    path = "/v1/accounting-suspensions",
    tag = "compliance",
    operation_id = "list_suspensions",
    summary = "The accounting suspensions in force (or all)",
    params(
        ("all" = Option<bool>, Query, description = "`true`: every suspension recorded"),
    ),
    responses(
        (status = 200, description = "`{\"suspensions\": [...]}`", body = Object),
        (status = 400, description = "`invalid_parameter`", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 403, description = "`compliance_role_required` (the refusal is logged)", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn suspensions(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let meta = RequestMeta::of(&req);
    let caller = meta.caller(&who.0);
    state
        .services
        .authorize_compliance(&caller, "list accounting suspensions")
        .await?;
    let mut all = false;
    for (k, v) in query.iter() {
        match (k.as_str(), v.as_str()) {
            ("all", "true") => all = true,
            ("all", "false") => all = false,
            ("all", _) => return Err(bad_param("all", "use `true` or `false`")),
            (other, _) => return Err(unknown_param(other, &["all"])),
        }
    }
    let list = state.services.suspensions(&caller, all).await?;
    Ok(HttpResponse::Ok()
        .insert_header(NO_STORE)
        .json(json!({ "suspensions": list })))
}
