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
use crate::audit;
use crate::domain::Code;
use crate::domain::{InvalidInput, Principal, RecordId, RecordKind, SubjectIdentifier};
use crate::error::{ApiError, DISCLOSURE_ID, LOG_LEAF_HASH, LOG_LEAF_INDEX};
use crate::service::RecordAnswer;

pub(super) fn routes(r: &mut super::Routes<'_>) {
    r.put("/v1/records/{kind}/{id}", put)
        .get("/v1/records/{kind}/{id}", get)
        .get("/v1/records/{kind}/{id}/versions", versions)
        .get("/v1/subjects/{system}/{value}/records", by_subject);
}

/// The body of a record write (`PUT /v1/records/{kind}/{id}`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordBody {
    /// The subject's identifiers (at least one).
    pub subjects: Vec<SubjectIdentifier>,
    /// Field values.
    pub fields: serde_json::Map<String, Value>,
}

pub(super) fn path_record(kind: &str, id: &str) -> Result<(RecordKind, RecordId), ApiError> {
    let kind: RecordKind = kind
        .parse()
        .map_err(|e: InvalidInput| ApiError::bad_request(Code::InvalidPath, e.to_string()))?;
    let id: RecordId = id
        .parse()
        .map_err(|e: InvalidInput| ApiError::bad_request(Code::InvalidPath, e.to_string()))?;
    Ok((kind, id))
}

#[utoipa::path(
    put,
    path = "/v1/records/{kind}/{id}",
    tag = "records",
    operation_id = "put_record",
    summary = "Create or update a record (its owner only)",
    params(
        ("kind" = String, Path, description = "record kind, e.g. `crisis-incident`"),
        ("id" = String, Path, description = "record id"),
    ),
    request_body(content = Object, description = "`{\"subjects\": [{\"system\", \"value\"}], \"fields\": {...}}`", content_type = "application/json"),
    responses(
        (status = 200, description = "`{kind, id, version, created, changed_fields, subjects_changed}`", body = Object),
        (status = 201, description = "created", body = Object),
        (status = 400, description = "`invalid_fields` (with `details.fields`), `invalid_subjects`, `invalid_record`, `use_referral_api`, `invalid_json`, `json_too_deep`", body = crate::error::ErrorBody),
        (status = 403, description = "`not_owner_kind`, `not_record_owner`", body = crate::error::ErrorBody),
        (status = 404, description = "`unknown_kind`", body = crate::error::ErrorBody),
        (status = 409, description = "`write_conflict`", body = crate::error::ErrorBody),
        (status = 413, description = "`payload_too_large`", body = crate::error::ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry. `key_unavailable`: the data is wrapped under a master-key version this replica lacks (during a key rotation); nothing was disclosed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[instrument(skip_all)]
pub(super) async fn put(
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

#[utoipa::path(
    get,
    path = "/v1/records/{kind}/{id}",
    tag = "records",
    operation_id = "read_record",
    summary = "Read a record: the fields the decision permits, each transformed; logged before it leaves",
    params(
        ("kind" = String, Path, description = "record kind, e.g. `crisis-incident`"),
        ("id" = String, Path, description = "record id"),
        ("Purpose-Of-Use" = String, Header, description = "why you ask: `crisis-response`, `referral-followup`, `treatment`, `care-coordination`, `audit`, `emergency`, `investigation` or `prosecution`"),
        ("Emergency-Basis" = Option<String>, Header, description = "with purpose `emergency` only: `actual-knowledge` or `credible-representation` (HIPAA 164.512(j))"),
        ("Emergency-Source" = Option<String>, Header, description = "with `credible-representation`: who made the representation"),
        ("Emergency-Description" = Option<String>, Header, description = "with purpose `emergency`: the serious and imminent threat"),
    ),
    responses(
        (status = 200, description = "`{kind, id, version, disclosure_id, decision_id, purpose, fields, emergency?, notices?, refrains?}`; the receipt headers `Disclosure-Id`, `Log-Leaf-Index` and `Log-Leaf-Hash` (the entry's leaf in the log's Merkle tree)", body = Object),
        (status = 400, description = "`header_missing`, `invalid_header` (with `details.header`), `unknown_purpose`, `invalid_path`", body = crate::error::ErrorBody),
        (status = 403, description = "`disclosure_denied` with `details.reasons` and `details.decision_id`; the `Disclosure-Id`, `Log-Leaf-Index` and `Log-Leaf-Hash` headers name the logged denial", body = crate::error::ErrorBody),
        (status = 404, description = "`record_not_found` (only to a caller entitled to the kind outright), `unknown_kind`", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry. `key_unavailable`: the data is wrapped under a master-key version this replica lacks (during a key rotation); nothing was disclosed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[instrument(skip_all)]
pub(super) async fn get(
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
    let asker = purpose.asker(meta.caller(who));
    match state.services.read_record(&asker, kind, id).await? {
        RecordAnswer::Disclosed(d) if super::fhir::wants_fhir(req) => Ok(
            super::fhir::disclosure_bundle(state, who, std::slice::from_ref(&d)),
        ),
        RecordAnswer::Disclosed(d) => Ok(HttpResponse::Ok()
            .insert_header((DISCLOSURE_ID, d.disclosure_id.to_string()))
            .insert_header((LOG_LEAF_INDEX, d.disclosure_id.leaf_index.to_string()))
            .insert_header((LOG_LEAF_HASH, d.disclosure_id.leaf_hash_b64()))
            .insert_header(NO_STORE)
            .json(d.body)),
        RecordAnswer::Denied(d) => Err(d.into_error().into()),
    }
}

#[utoipa::path(
    get,
    path = "/v1/records/{kind}/{id}/versions",
    tag = "records",
    operation_id = "record_versions",
    summary = "Who changed which fields, when (no values; the owner only)",
    params(
        ("kind" = String, Path, description = "record kind, e.g. `crisis-incident`"),
        ("id" = String, Path, description = "record id"),
    ),
    responses(
        (status = 200, description = "`{kind, id, versions: [...]}`", body = Object),
        (status = 403, description = "`not_record_owner`", body = crate::error::ErrorBody),
        (status = 404, description = "`record_not_found`, `unknown_kind`", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry. `key_unavailable`: the data is wrapped under a master-key version this replica lacks (during a key rotation); nothing was disclosed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[instrument(skip_all)]
pub(super) async fn versions(
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
pub(super) struct KindQuery {
    kind: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/subjects/{system}/{value}/records",
    tag = "records",
    operation_id = "subject_records",
    summary = "The subject's records the caller may see, each decided and logged",
    params(
        ("system" = String, Path, description = "identifier system, e.g. `metro-pd`"),
        ("value" = String, Path, description = "identifier value, e.g. `P-2231`"),
        ("kind" = Option<String>, Query, description = "only this record kind"),
        ("Purpose-Of-Use" = String, Header, description = "why you ask: `crisis-response`, `referral-followup`, `treatment`, `care-coordination`, `audit`, `emergency`, `investigation` or `prosecution`"),
        ("Emergency-Basis" = Option<String>, Header, description = "with purpose `emergency` only: `actual-knowledge` or `credible-representation` (HIPAA 164.512(j))"),
        ("Emergency-Source" = Option<String>, Header, description = "with `credible-representation`: who made the representation"),
        ("Emergency-Description" = Option<String>, Header, description = "with purpose `emergency`: the serious and imminent threat"),
    ),
    responses(
        (status = 200, description = "`{\"records\": [...]}`; `Disclosure-Id` lists the entries, `Log-Leaf-Index` and `Log-Leaf-Hash` their leaves, in the same order", body = Object),
        (status = 400, description = "`header_missing`, `invalid_header` (with `details.header`), `unknown_purpose`, `invalid_path`", body = crate::error::ErrorBody),
        (status = 400, description = "`invalid_query`", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry. `key_unavailable`: the data is wrapped under a master-key version this replica lacks (during a key rotation); nothing was disclosed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[instrument(skip_all)]
pub(super) async fn by_subject(
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
            ApiError::bad_request(Code::InvalidQuery, format!("query parameter `kind`: {e}"))
        })?),
        None => None,
    };
    let meta = RequestMeta::of(&req);
    let asker = purpose.asker(meta.caller(&who));
    let answer = state
        .services
        .read_subject(&asker, &subject, kind.as_ref())
        .await?;
    let ids: Vec<String> = answer
        .disclosure_ids
        .iter()
        .map(ToString::to_string)
        .collect();
    let leaves: Vec<String> = answer
        .disclosure_ids
        .iter()
        .map(|r| r.leaf_index.to_string())
        .collect();
    let hashes: Vec<String> = answer
        .disclosure_ids
        .iter()
        .map(audit::LogRef::leaf_hash_b64)
        .collect();
    if super::fhir::wants_fhir(&req) {
        return Ok(super::fhir::disclosure_bundle(
            &state,
            &who,
            &answer.records,
        ));
    }
    let records: Vec<Value> = answer.records.into_iter().map(|r| r.body).collect();
    Ok(HttpResponse::Ok()
        .insert_header((DISCLOSURE_ID, ids.join(",")))
        .insert_header((LOG_LEAF_INDEX, leaves.join(",")))
        .insert_header((LOG_LEAF_HASH, hashes.join(",")))
        .insert_header(NO_STORE)
        .json(json!({ "records": records })))
}
