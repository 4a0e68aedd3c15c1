//! The compliance API over the disclosure log:
//!
//! - `GET /v1/disclosures`: filtered, paginated listing (newest first);
//! - `GET /v1/disclosures/{seq}`: one entry;
//! - `GET /v1/subjects/{system}/{value}/accounting?format=json|csv`: a subject's accounting
//!   of disclosures (HIPAA 164.528) over the last six years;
//! - `GET /v1/audit/verify`: verifies the whole chain;
//! - `GET /v1/audit/checkpoints`: the signed checkpoints and the public key, for partners to
//!   keep copies.
//!
//! Only users with role `compliance` of a partner of kind `compliance` may read the log
//! (checkpoints are public to every authenticated partner). Every access, allowed or refused,
//! is itself a `log_read` entry, durably committed before the answer leaves; if it cannot be
//! written the caller gets an opaque 503 and no data. Subject identifiers given in a request
//! are turned into pseudonyms at once and never logged.

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::audit::accounting::{self, AccountingLine};
use crate::audit::query::{self, EntryView, Filter, MAX_LIMIT};
use crate::audit::suspension;
use crate::audit::{
    CheckpointExport, EntryKind, NewEntry, Outcome, SubjectPseudonym, stored_checkpoints,
    verify_store,
};
use crate::auth::Authenticated;
use crate::domain::{PartnerKind, Principal};
use crate::error::ApiError;
use crate::startup::AppState;
use crate::domain::SubjectIdentifier;

/// The role a compliance officer holds.
pub const COMPLIANCE_ROLE: &str = "compliance";

/// The purpose recorded for reads of the log.
const AUDIT_PURPOSE: &str = "audit";

/// Registers the routes.
pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/disclosures", web::get().to(list))
        .route("/v1/disclosures/{seq}", web::get().to(one))
        .route(
            "/v1/subjects/{system}/{value}/accounting",
            web::get().to(accounting),
        )
        .route("/v1/accounting-suspensions", web::post().to(suspend))
        .route("/v1/accounting-suspensions", web::get().to(suspensions))
        .route("/v1/audit/verify", web::get().to(verify))
        .route("/v1/audit/checkpoints", web::get().to(checkpoints));
}

/// A `log_read` entry for this request with `outcome`.
pub(super) fn read_entry(
    req: &HttpRequest,
    who: &Principal,
    outcome: Outcome,
    detail: String,
) -> NewEntry {
    let mut e = super::actor_entry(req, who, EntryKind::LogRead, outcome);
    if who.has_role(COMPLIANCE_ROLE) {
        e.recipient_role = Some(COMPLIANCE_ROLE.to_owned());
    }
    e.purpose = Some(AUDIT_PURPOSE.to_owned());
    e.detail = Some(detail);
    e
}

/// Refuses (and logs the refusal of) anyone but a compliance officer of a compliance partner.
pub(super) async fn authorize(
    state: &AppState,
    req: &HttpRequest,
    who: &Principal,
    what: &str,
) -> Result<(), ApiError> {
    if who.partner_kind == PartnerKind::Compliance && who.has_role(COMPLIANCE_ROLE) {
        return Ok(());
    }
    let entry = read_entry(
        req,
        who,
        Outcome::deny("compliance_role_required"),
        format!("refused: {what}"),
    );
    state.audit.append(entry).await?;
    Err(ApiError::forbidden(
        "compliance_role_required",
        format!(
            "reading the disclosure log needs role `{COMPLIANCE_ROLE}` of a compliance partner; \
             `{}` is a {} partner",
            who.partner, who.partner_kind
        ),
    ))
}

fn bad_param(name: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest {
        code: "invalid_parameter",
        message: format!("query parameter `{name}`: {why}"),
        details: Some(json!({ "parameter": name })),
    }
}

fn parse_time(name: &str, v: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| bad_param(name, "use an RFC 3339 time such as `2026-01-31T00:00:00Z`"))
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

/// The pseudonyms of every identifier linked to `id` by the person's records and consents: a
/// disclosure is logged under its record's first identifier, so a query by any one of the
/// person's identifiers must look under all of them.
async fn linked_pseudonyms(
    state: &AppState,
    id: &SubjectIdentifier,
) -> Result<Vec<SubjectPseudonym>, ApiError> {
    Ok(crate::disclosure::linked_identifiers(state, id)
        .await?
        .iter()
        .map(|s| state.audit.pseudonym(s))
        .collect())
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
    state: &AppState,
    pairs: &[(String, String)],
) -> Result<(Filter, String, Option<SubjectIdentifier>), ApiError> {
    let mut params: BTreeMap<&str, &str> = BTreeMap::new();
    for (k, v) in pairs {
        if !LIST_PARAMS.contains(&k.as_str()) {
            return Err(bad_param(
                k,
                "unknown parameter; accepted: subject_system, subject_value, recipient, user, \
                 purpose, basis, outcome, kind, since, until, cursor, limit",
            ));
        }
        if params.insert(k.as_str(), v.as_str()).is_some() {
            return Err(bad_param(k, "given more than once"));
        }
    }
    let mut f = Filter {
        limit: 100,
        kinds: vec![EntryKind::Disclosure],
        ..Filter::default()
    };
    let mut described: Vec<String> = Vec::new();
    let mut subject = None;
    match (params.get("subject_system"), params.get("subject_value")) {
        (Some(s), Some(v)) => {
            let id = query_subject(s, v)?;
            let p = state.audit.pseudonym(&id);
            described.push(format!("subject={p}"));
            f.subject = Some(p);
            subject = Some(id);
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
        if !["mou", "consent", "emergency"].contains(v) {
            return Err(bad_param("basis", "use `mou`, `consent` or `emergency`"));
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
#[tracing::instrument(skip_all)]
async fn list(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let who = who.0;
    authorize(&state, &req, &who, "list disclosures").await?;
    let (mut filter, described, subject) = parse_filter(&state, &query)?;
    if let Some(id) = &subject {
        filter.also_subjects = linked_pseudonyms(&state, id).await?;
    }
    let entries = query::list(state.audit.store(), &filter).await?;
    let next_cursor = (entries.len() == filter.limit as usize)
        .then(|| entries.last().map(|e| encode_cursor(e.seq)))
        .flatten();
    let mut entry = read_entry(
        &req,
        &who,
        Outcome::Permit,
        format!(
            "listed {} entries of the disclosure log; filters: {described}",
            entries.len()
        ),
    );
    entry.subject = filter.subject;
    state.audit.append(entry).await?;
    let views: Vec<EntryView<'_>> = entries.iter().map(EntryView::from).collect();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "entries": views, "next_cursor": next_cursor })))
}

/// `GET /v1/disclosures/{seq}`.
#[tracing::instrument(skip_all)]
async fn one(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = who.0;
    authorize(&state, &req, &who, "read one entry").await?;
    let seq: u64 = path.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_path",
            "the entry id is its sequence number, a positive integer",
        )
    })?;
    let found = query::get(state.audit.store(), seq).await?;
    let mut entry = read_entry(
        &req,
        &who,
        Outcome::Permit,
        format!(
            "read entry {seq} of the disclosure log{}",
            if found.is_some() { "" } else { " (not found)" }
        ),
    );
    entry.subject = found.as_ref().and_then(|e| e.data.subject);
    state.audit.append(entry).await?;
    match found {
        Some(e) => Ok(HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(EntryView::from(&e))),
        None => Err(ApiError::not_found(
            "entry_not_found",
            format!("the disclosure log has no entry {seq} (it may be past retention)"),
        )),
    }
}

/// `GET /v1/subjects/{system}/{value}/accounting`.
#[tracing::instrument(skip_all)]
async fn accounting(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let who = who.0;
    authorize(&state, &req, &who, "subject accounting").await?;
    let mut csv = false;
    for (k, v) in query.iter() {
        match (k.as_str(), v.as_str()) {
            ("format", "json") => csv = false,
            ("format", "csv") => csv = true,
            ("format", _) => return Err(bad_param("format", "use `json` or `csv`")),
            (other, _) => return Err(bad_param(other, "unknown parameter; accepted: format")),
        }
    }
    let (system, value) = path.into_inner();
    let id = query_subject(&system, &value)?;
    let pseudonym = state.audit.pseudonym(&id);
    let now = Utc::now();
    let from = accounting::period_start(now);
    // A disclosure is logged under its record's first identifier: gather the person's other
    // identifiers (from their records and consents) so the accounting misses none.
    let filter = Filter {
        kinds: vec![EntryKind::Disclosure],
        subject: Some(pseudonym),
        also_subjects: linked_pseudonyms(&state, &id).await?,
        outcome: Some("permit".into()),
        since_us: Some(from.timestamp_micros()),
        until_us: Some(now.timestamp_micros()),
        ..Filter::default()
    };
    let mut subjects = vec![pseudonym];
    subjects.extend(filter.also_subjects.iter().copied());
    let mut entries = query::list_all_ascending(state.audit.store(), &filter).await?;
    // HIPAA 164.528(a)(2): disclosures to an agency whose suspension is in force are left out
    // until it ends (they stay in the log).
    let suspended: Vec<suspension::Suspension> = suspension::list(state.audit.store(), Some(now))
        .await?
        .into_iter()
        .filter(|s| s.applies(&subjects, now))
        .collect();
    let before = entries.len();
    entries.retain(|e| {
        !suspended
            .iter()
            .any(|s| e.data.recipient_partner.as_deref() == Some(s.recipient.as_str()))
    });
    let withheld_by_suspension = before - entries.len();
    let policy = state.policy.load();
    let lines: Vec<AccountingLine> = accounting::summarize(&entries, |id| {
        let id: crate::domain::PartnerId = id.parse().ok()?;
        policy
            .partners
            .get(&id)
            .map(|p| (p.display_name.clone(), p.postal_address.clone()))
    });
    let mut entry = read_entry(
        &req,
        &who,
        Outcome::Permit,
        format!(
            "accounting of disclosures ({}): {} disclosures in {} lines",
            if csv { "csv" } else { "json" },
            entries.len(),
            lines.len()
        ),
    );
    entry.subject = Some(pseudonym);
    state.audit.append(entry).await?;
    if csv {
        return Ok(HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"accounting-of-disclosures.csv\"",
            ))
            .content_type("text/csv; charset=utf-8")
            .body(accounting::to_csv(&lines)));
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "subject": pseudonym.to_hex(),
            "period": {
                "from": query::rfc3339(&from),
                "to": query::rfc3339(&now),
            },
            "disclosures": lines,
            // For the compliance officer; the CSV given to the individual does not say it.
            "suspended_disclosures": withheld_by_suspension,
        })))
}

/// `GET /v1/audit/verify`.
#[tracing::instrument(skip_all)]
async fn verify(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = who.0;
    authorize(&state, &req, &who, "verify the chain").await?;
    let key = state.audit.checkpoint_key();
    let report = verify_store(state.audit.store(), key.as_ref(), None).await?;
    let outcome = match &report.summary.failure {
        None => "the chain verifies".to_owned(),
        Some(f) => format!("the chain FAILS at entry {} ({})", f.seq, f.kind.as_str()),
    };
    state
        .audit
        .append(read_entry(
            &req,
            &who,
            Outcome::Permit,
            format!(
                "verified the disclosure log ({} entries): {outcome}",
                report.summary.entries_checked
            ),
        ))
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "ok": report.ok(), "report": report })))
}

/// `GET /v1/audit/checkpoints`: any authenticated partner may keep copies.
#[tracing::instrument(skip_all)]
async fn checkpoints(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = who.0;
    let Some(key) = state.audit.checkpoint_key() else {
        return Err(ApiError::not_found(
            "checkpoints_disabled",
            "this gateway signs no checkpoints (no `audit.checkpoint_key_file` configured)",
        ));
    };
    let list = stored_checkpoints(state.audit.store()).await?;
    state
        .audit
        .append(read_entry(
            &req,
            &who,
            Outcome::Permit,
            format!("exported {} signed checkpoints", list.len()),
        ))
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
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
struct SuspensionBody {
    recipient: String,
    #[serde(default)]
    subject_system: Option<String>,
    #[serde(default)]
    subject_value: Option<String>,
    statement: String,
    until: String,
}

fn bad_field(field: &'static str, why: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest {
        code: "invalid_suspension",
        message: format!("`{field}`: {why}"),
        details: Some(json!({ "field": field })),
    }
}

/// `POST /v1/accounting-suspensions`: records an agency's suspension of the accounting
/// (HIPAA 164.528(a)(2)), with its log entry in the same transaction.
#[tracing::instrument(skip_all)]
async fn suspend(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    body: super::BoundedJson<SuspensionBody>,
) -> Result<HttpResponse, ApiError> {
    let who = who.0;
    authorize(&state, &req, &who, "suspend an accounting").await?;
    let body = body.0;
    let now = Utc::now();
    let policy = state.policy.load();
    let recipient: crate::domain::PartnerId = body
        .recipient
        .parse()
        .map_err(|e| bad_field("recipient", e))?;
    match policy.partner_kind(&recipient) {
        Some(PartnerKind::Police | PartnerKind::Compliance) => {}
        _ => {
            return Err(bad_field(
                "recipient",
                "a suspension is requested by a registered law-enforcement or health-oversight \
                 partner",
            ));
        }
    }
    let subject = match (
        body.subject_system.as_deref(),
        body.subject_value.as_deref(),
    ) {
        (Some(sys), Some(val)) => Some(
            SubjectIdentifier::new(sys, val)
                .map(|id| state.audit.pseudonym(&id))
                .map_err(|e| bad_field("subject_value", e))?,
        ),
        (None, None) => None,
        _ => {
            return Err(bad_field(
                "subject_system",
                "give `subject_system` and `subject_value` together, or neither (every subject)",
            ));
        }
    };
    let statement = body.statement.trim();
    if statement.is_empty() || statement.chars().count() > 4000 {
        return Err(bad_field(
            "statement",
            "quote the agency's statement (or its reference) in 1 to 4000 characters",
        ));
    }
    let ends_at = parse_time("until", &body.until).map_err(|_| {
        bad_field(
            "until",
            "use an RFC 3339 time such as `2027-01-31T00:00:00Z`",
        )
    })?;
    if ends_at <= now {
        return Err(bad_field("until", "the suspension must end in the future"));
    }
    let s = suspension::Suspension {
        id: format!("susp-{}", uuid::Uuid::now_v7()),
        recipient: recipient.to_string(),
        subject,
        statement: statement.to_owned(),
        ends_at,
        recorded_by_partner: who.partner.to_string(),
        recorded_by_user: who.user.to_string(),
        recorded_at: now,
    };
    let mut entry = super::actor_entry(&req, &who, EntryKind::AccountingSuspended, Outcome::Permit);
    entry.subject = subject;
    entry.justification = Some(s.statement.clone());
    entry.detail = Some(format!(
        "suspension {} of the accounting of disclosures to `{recipient}` until {}",
        s.id,
        query::rfc3339(&ends_at)
    ));
    let mut tx = state.audit.begin().await?;
    suspension::insert(&mut tx, &s).await?;
    state.audit.append_in_tx(&mut tx, entry).await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(&s))
}

/// `GET /v1/accounting-suspensions[?all=true]`: those in force (or all).
#[tracing::instrument(skip_all)]
async fn suspensions(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let who = who.0;
    authorize(&state, &req, &who, "list accounting suspensions").await?;
    let mut all = false;
    for (k, v) in query.iter() {
        match (k.as_str(), v.as_str()) {
            ("all", "true") => all = true,
            ("all", "false") => all = false,
            ("all", _) => return Err(bad_param("all", "use `true` or `false`")),
            (other, _) => return Err(bad_param(other, "unknown parameter; accepted: all")),
        }
    }
    let list = suspension::list(state.audit.store(), (!all).then(Utc::now)).await?;
    state
        .audit
        .append(read_entry(
            &req,
            &who,
            Outcome::Permit,
            format!("listed {} accounting suspension(s)", list.len()),
        ))
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "suspensions": list })))
}
