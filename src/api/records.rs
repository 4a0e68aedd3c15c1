//! Shared records: owners write them; everyone else reads them only through the read service.
//!
//! - `PUT /v1/records/{kind}/{id}`: a partner of the kind that owns `{kind}` creates or updates
//!   a record; the body is checked against the kind's schema and every problem is named.
//! - `GET /v1/records/{kind}/{id}` with `Purpose-Of-Use`: decide, log, redact, answer.
//! - `GET /v1/records/{kind}/{id}/versions`: the record's history (who changed which fields,
//!   when; no values), for its owner.
//! - `GET /v1/subjects/{system}/{value}/records[?kind=K]` with `Purpose-Of-Use`: every record
//!   of the subject the caller may see, each decided and logged on its own.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::instrument;

use super::json::BoundedJson;
use super::purpose::PurposeOfUse;
use super::{AppState, Authenticated, NO_STORE, RequestMeta, subject_param};
use crate::domain::{InvalidInput, Principal, RecordId, RecordKind, SubjectIdentifier};
use crate::error::{ApiError, DISCLOSURE_ID};
use crate::service::{Asker, RecordAnswer};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/records/{kind}/{id}", web::put().to(put))
        .route("/v1/records/{kind}/{id}", web::get().to(get))
        .route("/v1/records/{kind}/{id}/versions", web::get().to(versions))
        .route(
            "/v1/subjects/{system}/{value}/records",
            web::get().to(by_subject),
        );
}

/// The body of a record write.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordBody {
    /// The subject's identifiers (at least one).
    subjects: Vec<SubjectIdentifier>,
    /// Field values.
    fields: serde_json::Map<String, Value>,
}

pub(super) fn path_record(kind: &str, id: &str) -> Result<(RecordKind, RecordId), ApiError> {
    let kind: RecordKind = kind
        .parse()
        .map_err(|e: InvalidInput| ApiError::bad_request("invalid_path", e.to_string()))?;
    let id: RecordId = id
        .parse()
        .map_err(|e: InvalidInput| ApiError::bad_request("invalid_path", e.to_string()))?;
    Ok((kind, id))
}

#[instrument(skip_all)]
async fn put(
    state: web::Data<AppState>,
    req: HttpRequest,
    Authenticated(who): Authenticated,
    path: web::Path<(String, String)>,
    body: BoundedJson<RecordBody>,
) -> Result<HttpResponse, ApiError> {
    let (kind, id) = path_record(&path.0, &path.1)?;
    let meta = RequestMeta::of(&req);
    let body = body.0;
    let written = state
        .services
        .put_record(&meta.caller(&who), &kind, &id, body.subjects, body.fields)
        .await?;
    let o = &written.outcome;
    let status = if o.created {
        actix_web::http::StatusCode::CREATED
    } else {
        actix_web::http::StatusCode::OK
    };
    Ok(HttpResponse::build(status)
        .insert_header(NO_STORE)
        .json(json!({
            "kind": kind,
            "id": id,
            "version": o.version,
            "created": o.created,
            "changed_fields": o.changed_fields,
            "subjects_changed": o.subjects_changed,
        })))
}

#[instrument(skip_all)]
async fn get(
    state: web::Data<AppState>,
    req: HttpRequest,
    Authenticated(who): Authenticated,
    purpose: PurposeOfUse,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (kind, id) = path_record(&path.0, &path.1)?;
    read_one(&state, &req, &who, &purpose, &kind, &id).await
}

/// Answers a read of one record through the read service.
pub(super) async fn read_one(
    state: &AppState,
    req: &HttpRequest,
    who: &Principal,
    purpose: &PurposeOfUse,
    kind: &RecordKind,
    id: &RecordId,
) -> Result<HttpResponse, ApiError> {
    let meta = RequestMeta::of(req);
    let asker = Asker {
        caller: meta.caller(who),
        purpose: &purpose.purpose,
        emergency: purpose.emergency.as_ref(),
    };
    match state.services.read_record(&asker, kind, id).await? {
        RecordAnswer::Disclosed(d) if super::fhir::wants_fhir(req) => Ok(
            super::fhir::disclosure_bundle(state, who, std::slice::from_ref(&d), &d.disclosure_id.to_string()),
        ),
        RecordAnswer::Disclosed(d) => Ok(HttpResponse::Ok()
            .insert_header((DISCLOSURE_ID, d.disclosure_id.to_string()))
            .insert_header(NO_STORE)
            .json(d.body)),
        RecordAnswer::Denied(d) => Err(d.into_error().into()),
    }
}

#[instrument(skip_all)]
async fn versions(
    state: web::Data<AppState>,
    req: HttpRequest,
    Authenticated(who): Authenticated,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (kind, id) = path_record(&path.0, &path.1)?;
    let meta = RequestMeta::of(&req);
    let history = state
        .services
        .record_versions(&meta.caller(&who), &kind, &id)
        .await?;
    let versions: Vec<Value> = history
        .into_iter()
        .map(|v| {
            json!({
                "version": v.version,
                "author_partner": v.author_partner,
                "author_user": v.author_user,
                "at": v.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "changed_fields": v.changed_fields,
                "subjects_changed": v.subjects_changed,
            })
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header(NO_STORE)
        .json(json!({ "kind": kind, "id": id, "versions": versions })))
}

/// `?kind=` of the subject lookup.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KindQuery {
    kind: Option<String>,
}

#[instrument(skip_all)]
async fn by_subject(
    state: web::Data<AppState>,
    req: HttpRequest,
    Authenticated(who): Authenticated,
    purpose: PurposeOfUse,
    path: web::Path<(String, String)>,
    query: web::Query<KindQuery>,
) -> Result<HttpResponse, ApiError> {
    let subject = subject_param(&path.0, &path.1)?;
    let kind = match &query.kind {
        Some(k) => Some(k.parse::<RecordKind>().map_err(|e| {
            ApiError::bad_request("invalid_query", format!("query parameter `kind`: {e}"))
        })?),
        None => None,
    };
    let meta = RequestMeta::of(&req);
    let asker = Asker {
        caller: meta.caller(&who),
        purpose: &purpose.purpose,
        emergency: purpose.emergency.as_ref(),
    };
    let answer = state
        .services
        .read_subject(&asker, &subject, kind.as_ref())
        .await?;
    let ids: Vec<String> = answer
        .disclosure_ids
        .iter()
        .map(ToString::to_string)
        .collect();
    if super::fhir::wants_fhir(&req) {
        return Ok(super::fhir::disclosure_bundle(
            &state,
            &who,
            &answer.records,
            &ids.join(","),
        ));
    }
    let records: Vec<Value> = answer.records.into_iter().map(|r| r.body).collect();
    Ok(HttpResponse::Ok()
        .insert_header((DISCLOSURE_ID, ids.join(",")))
        .insert_header(NO_STORE)
        .json(json!({ "records": records })))
}
