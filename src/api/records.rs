//! Shared records: owners write them; everyone else reads them only through the disclosure
//! path ([`crate::disclosure`]).
//!
//! - `PUT /v1/records/{kind}/{id}`: a partner of the kind that owns `{kind}` creates or updates
//!   a record; the body is checked against the kind's schema and every problem is named.
//! - `GET /v1/records/{kind}/{id}` with `Purpose-Of-Use`: decide, log, redact, answer.
//! - `GET /v1/records/{kind}/{id}/versions`: the record's history (who changed which fields,
//!   when; no values), for its owner.
//! - `GET /v1/subjects/{system}/{value}/records[?kind=K]` with `Purpose-Of-Use`: every record
//!   of the subject the caller may see, each decided and logged on its own.

use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::instrument;

use super::json::BoundedJson;
use super::purpose::PurposeOfUse;
use super::{RequestId, subject_param};
use crate::audit::{self, EntryKind, NewEntry, Outcome, SubjectPseudonym};
use crate::auth::Authenticated;
use crate::disclosure::{self, Asker, REFERRAL_KIND, RecordAnswer, log_error, record_error};
use crate::domain::Principal;
use crate::error::{ApiError, DISCLOSURE_ID};
use crate::policy::schema;
use crate::startup::AppState;
use crate::store::records::{
    self, Author, MAX_SUBJECT_IDENTIFIERS, NewRecord, RecordError, RecordId, RecordKind,
    SubjectIdentifier,
};

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
pub(super) struct RecordBody {
    /// The subject's identifiers (at least one).
    pub(super) subjects: Vec<SubjectIdentifier>,
    /// Field values.
    pub(super) fields: serde_json::Map<String, Value>,
}

pub(super) fn path_record(kind: &str, id: &str) -> Result<(RecordKind, RecordId), ApiError> {
    let kind: RecordKind = kind
        .parse()
        .map_err(|e: crate::domain::InvalidInput| ApiError::bad_request("invalid_path", e.to_string()))?;
    let id: RecordId = id
        .parse()
        .map_err(|e: crate::domain::InvalidInput| ApiError::bad_request("invalid_path", e.to_string()))?;
    Ok((kind, id))
}

pub(super) fn check_subjects(subjects: &[SubjectIdentifier]) -> Result<(), ApiError> {
    if subjects.is_empty() || subjects.len() > MAX_SUBJECT_IDENTIFIERS {
        return Err(ApiError::bad_request(
            "invalid_subjects",
            format!(
                "`subjects` must list 1 to {MAX_SUBJECT_IDENTIFIERS} identifiers of the person, e.g. \
                 {{\"system\": \"metro-pd\", \"value\": \"P-2231\"}}"
            ),
        ));
    }
    Ok(())
}

pub(super) fn asker<'a>(
    who: &'a Principal,
    purpose: &'a PurposeOfUse,
    request_id: &'a Option<String>,
    peer: &'a Option<String>,
) -> Asker<'a> {
    Asker {
        principal: who,
        purpose: &purpose.purpose,
        emergency: purpose.emergency.as_ref(),
        request_id: request_id.as_deref(),
        source_addr: peer.as_deref(),
    }
}

pub(super) fn request_meta(req: &HttpRequest) -> (Option<String>, Option<String>) {
    (
        req.extensions().get::<RequestId>().map(|r| r.0.to_string()),
        req.peer_addr().map(|a| a.to_string()),
    )
}

pub(super) fn problems_error(problems: Vec<schema::FieldProblem>) -> ApiError {
    ApiError::BadRequest {
        code: "invalid_fields",
        message: format!(
            "the record does not fit its kind's schema: {}",
            problems
                .iter()
                .map(|p| format!("`{}`: {}", p.field, p.message))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        details: Some(json!({ "fields": problems })),
    }
}

/// A `record_changed` log entry for a write by `who` (the actor is logged as the entry's
/// recipient partner and user, as for every entry that records an act).
pub(super) fn change_entry(
    req: &HttpRequest,
    who: &Principal,
    outcome: Outcome,
    record: (&RecordKind, &RecordId),
    subject: Option<SubjectPseudonym>,
    detail: String,
) -> NewEntry {
    let mut e = super::actor_entry(req, who, EntryKind::RecordChanged, outcome);
    e.record = Some(audit::RecordRef {
        kind: record.0.to_string(),
        id: record.1.to_string(),
    });
    e.subject = subject;
    e.detail = Some(detail);
    e
}

/// Logs a refused write (403 or 404 to a partner without authority) durably, then returns the
/// answer: refusals of privileged acts are audit events (CJIS AU-2) like denied disclosures.
pub(super) async fn refuse_write(
    state: &AppState,
    req: &HttpRequest,
    who: &Principal,
    record: (&RecordKind, &RecordId),
    answer: ApiError,
) -> ApiError {
    let entry = change_entry(
        req,
        who,
        Outcome::deny(answer.code()),
        record,
        None,
        format!("write refused: {}", answer.code()),
    );
    match state.audit.append(entry).await {
        Ok(_) => answer,
        Err(e) => log_error(e),
    }
}

/// Appends the write's log entry in the write's transaction and commits both.
pub(super) async fn commit_with_entry(
    state: &AppState,
    mut tx: sqlx::Transaction<'static, sqlx::Any>,
    entry: NewEntry,
    record: (&RecordKind, &RecordId),
) -> Result<(), ApiError> {
    state
        .audit
        .append_in_tx(&mut tx, entry)
        .await
        .map_err(log_error)?;
    records::commit_write(tx, record.0, record.1)
        .await
        .map_err(record_error)
}

/// Describes a successful write for the log (field names only).
pub(super) fn write_detail(what: &str, outcome: &records::PutOutcome) -> String {
    let mut d = format!(
        "{what}: version {}{}",
        outcome.version,
        if outcome.created { " (created)" } else { "" }
    );
    if outcome.changed_fields.is_empty() && !outcome.subjects_changed {
        d.push_str("; nothing changed");
    } else {
        if !outcome.changed_fields.is_empty() {
            d.push_str(&format!("; fields: {}", outcome.changed_fields.join(", ")));
        }
        if outcome.subjects_changed {
            d.push_str("; subject identifiers changed");
        }
    }
    d
}

/// A write could not be applied: schema problems or a storage error.
pub(super) enum WriteError {
    Api(ApiError),
    Record(RecordError),
}

impl From<RecordError> for WriteError {
    fn from(e: RecordError) -> Self {
        Self::Record(e)
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Api(e) => e,
            WriteError::Record(e) => record_error(e),
        }
    }
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
    let body = body.0;
    check_subjects(&body.subjects)?;
    let policy = state.policy.load_full();
    let Some(schema_kind) = policy.kinds.get(kind.as_str()) else {
        return Err(ApiError::not_found(
            "unknown_kind",
            format!("there is no record kind `{kind}`"),
        ));
    };
    if kind.as_str() == REFERRAL_KIND {
        return Err(ApiError::bad_request(
            "use_referral_api",
            "referrals follow a life cycle: create them with `POST /v1/referrals` and move them \
             with `POST /v1/referrals/{id}/transitions`",
        ));
    }
    if who.partner_kind != schema_kind.owner {
        let answer = ApiError::forbidden(
            "not_owner_kind",
            format!(
                "`{kind}` records are held by {} partners; `{}` is a {} partner",
                schema_kind.owner, who.partner, who.partner_kind
            ),
        );
        return Err(refuse_write(&state, &req, &who, (&kind, &id), answer).await);
    }
    let author = Author {
        partner: who.partner.clone(),
        user: who.user.clone(),
    };
    let now = Utc::now();
    // The record change and its log entry commit together.
    let mut tx = state.audit.begin().await.map_err(log_error)?;
    let edited = records::edit_record(
        &mut tx,
        &state.keyring,
        &kind,
        &id,
        &author,
        now,
        |current| -> Result<NewRecord, WriteError> {
            if let Some(c) = &current
                && c.owner != &who.partner
            {
                return Err(RecordError::OwnerMismatch {
                    kind: kind.clone(),
                    id: id.clone(),
                }
                .into());
            }
            let fields = schema::check_write(
                schema_kind,
                who.partner_kind,
                &body.fields,
                current.as_ref().map(|c| c.fields),
            )
            .map_err(|p| WriteError::Api(problems_error(p)))?;
            Ok(NewRecord {
                kind: kind.clone(),
                id: id.clone(),
                owner: who.partner.clone(),
                subjects: body.subjects.clone(),
                fields,
            })
        },
    )
    .await;
    let outcome = match edited {
        Ok(o) => o,
        Err(WriteError::Record(e @ RecordError::OwnerMismatch { .. })) => {
            drop(tx);
            let answer = record_error(e);
            return Err(refuse_write(&state, &req, &who, (&kind, &id), answer).await);
        }
        Err(e) => return Err(e.into()),
    };
    let subject = body.subjects.first().map(|s| state.audit.pseudonym(s));
    let entry = change_entry(
        &req,
        &who,
        Outcome::Permit,
        (&kind, &id),
        subject,
        write_detail("record written", &outcome),
    );
    commit_with_entry(&state, tx, entry, (&kind, &id)).await?;
    let status = if outcome.created {
        actix_web::http::StatusCode::CREATED
    } else {
        actix_web::http::StatusCode::OK
    };
    Ok(HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "kind": kind,
            "id": id,
            "version": outcome.version,
            "created": outcome.created,
            "changed_fields": outcome.changed_fields,
            "subjects_changed": outcome.subjects_changed,
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

/// Answers a read of one record through the disclosure path.
pub(super) async fn read_one(
    state: &AppState,
    req: &HttpRequest,
    who: &Principal,
    purpose: &PurposeOfUse,
    kind: &RecordKind,
    id: &RecordId,
) -> Result<HttpResponse, ApiError> {
    let (request_id, peer) = request_meta(req);
    let asker = asker(who, purpose, &request_id, &peer);
    match disclosure::read_record(state, &asker, kind, id).await? {
        RecordAnswer::Disclosed(d) => Ok(HttpResponse::Ok()
            .insert_header((DISCLOSURE_ID, d.disclosure_id.to_string()))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(d.body)),
        RecordAnswer::Denied(d) => Err(d.into_error()),
    }
}

#[instrument(skip_all)]
async fn versions(
    state: web::Data<AppState>,
    Authenticated(who): Authenticated,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (kind, id) = path_record(&path.0, &path.1)?;
    let owner = state
        .store
        .record_owner(&kind, &id)
        .await
        .map_err(record_error)?;
    // Only the owner sees a record's history; anyone else cannot tell whether it exists.
    if owner.as_ref() != Some(&who.partner) {
        return Err(ApiError::not_found(
            "record_not_found",
            format!("`{}` holds no `{kind}` record `{id}`", who.partner),
        ));
    }
    let history = state
        .store
        .record_history(&state.keyring, &kind, &id)
        .await
        .map_err(record_error)?;
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
        .insert_header((header::CACHE_CONTROL, "no-store"))
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
    let (request_id, peer) = request_meta(&req);
    let asker = asker(&who, &purpose, &request_id, &peer);
    let answer = disclosure::read_subject(&state, &asker, &subject, kind.as_ref()).await?;
    let ids: Vec<String> = answer
        .disclosure_ids
        .iter()
        .map(ToString::to_string)
        .collect();
    let records: Vec<Value> = answer.records.into_iter().map(|r| r.body).collect();
    Ok(HttpResponse::Ok()
        .insert_header((DISCLOSURE_ID, ids.join(",")))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "records": records })))
}
