//! Referrals from police to mental-health agencies, and their life cycle.
//!
//! - `POST /v1/referrals` (police): creates a `referral` record in state SUBMITTED, linked to
//!   one of the agency's crisis incidents, the person, the receiving agency, the reason, the
//!   urgency and a consent reference.
//! - `POST /v1/referrals/{id}/transitions` `{"to", "note"?, "clinician_contact"?}`: the
//!   receiving agency moves it along the life cycle, the referring agency may withdraw it
//!   ([`crate::referral`]); a transition the life cycle does not allow is 409 with the states
//!   allowed next. Any other partner is told there is no such referral.
//! - `GET /v1/referrals/{id}` with `Purpose-Of-Use`: a disclosure like any record read,
//!   with the police status view ([`crate::disclosure`]).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::instrument;
use uuid::Uuid;

use super::json::BoundedJson;
use super::purpose::PurposeOfUse;
use super::records::{
    WriteError, change_entry, check_subjects, commit_with_entry, problems_error, read_one,
    refuse_write, write_detail,
};
use crate::audit::Outcome;
use crate::auth::Authenticated;
use crate::disclosure::{REFERRAL_KIND, log_error, record_error};
use crate::domain::{PartnerId, PartnerKind};
use crate::error::ApiError;
use crate::policy::schema;
use crate::referral::{self, Actor, ReferralState};
use crate::startup::AppState;
use crate::store::records::{self, Author, NewRecord, RecordId, RecordKind, SubjectIdentifier};

/// The record kind a referral is about.
const INCIDENT_KIND: &str = "crisis-incident";

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/referrals", web::post().to(create))
        .route("/v1/referrals/{id}", web::get().to(read))
        .route("/v1/referrals/{id}/transitions", web::post().to(move_to));
}

/// A new referral.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewReferral {
    incident_id: String,
    subjects: Vec<SubjectIdentifier>,
    receiving_agency: String,
    reason: String,
    urgency: String,
    #[serde(default)]
    consent_reference: Option<String>,
    #[serde(default)]
    subject_name: Option<String>,
    #[serde(default)]
    subject_phone: Option<String>,
}

/// A requested transition.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Transition {
    to: String,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    clinician_contact: Option<String>,
}

fn referral_kind() -> RecordKind {
    RecordKind::try_from(REFERRAL_KIND.to_owned())
        .unwrap_or_else(|_| unreachable!("`referral` is a valid kind name"))
}

fn referral_id(raw: &str) -> Result<RecordId, ApiError> {
    raw.parse()
        .map_err(|e: crate::domain::InvalidInput| ApiError::bad_request("invalid_path", e.to_string()))
}

fn not_found(id: &RecordId) -> ApiError {
    ApiError::not_found(
        "referral_not_found",
        format!("there is no referral `{id}` between your agency and a partner"),
    )
}

fn now_text(now: chrono::DateTime<Utc>) -> String {
    now.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[instrument(skip_all)]
async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    Authenticated(who): Authenticated,
    body: BoundedJson<NewReferral>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let policy = state.policy.load_full();
    let Some(schema_kind) = policy.kinds.get(REFERRAL_KIND) else {
        return Err(ApiError::Unavailable(anyhow::anyhow!(
            "the policy set declares no `referral` kind"
        )));
    };
    let id: RecordId = format!("REF-{}", Uuid::now_v7().simple())
        .parse()
        .map_err(|e: crate::domain::InvalidInput| ApiError::Internal(e.into()))?;
    let kind = referral_kind();
    if who.partner_kind != schema_kind.owner {
        let answer = ApiError::forbidden(
            "not_owner_kind",
            format!(
                "referrals are made by {} partners; `{}` is a {} partner",
                schema_kind.owner, who.partner, who.partner_kind
            ),
        );
        return Err(refuse_write(&state, &req, &who, (&kind, &id), answer).await);
    }
    check_subjects(&body.subjects)?;
    let receiving: PartnerId = body
        .receiving_agency
        .parse()
        .ok()
        .filter(|p| policy.partner_kind(p) == Some(PartnerKind::MentalHealth))
        .ok_or_else(|| {
            let mh: Vec<String> = policy
                .partners
                .iter()
                .filter(|p| p.kind == PartnerKind::MentalHealth)
                .map(|p| p.id.to_string())
                .collect();
            ApiError::BadRequest {
                code: "unknown_receiving_agency",
                message: format!(
                    "`receiving_agency` must be a registered mental-health partner: {}",
                    mh.join(", ")
                ),
                details: Some(json!({ "field": "receiving_agency" })),
            }
        })?;
    let incident_kind = RecordKind::try_from(INCIDENT_KIND.to_owned())
        .unwrap_or_else(|_| unreachable!("a valid kind name"));
    let incident: RecordId = body
        .incident_id
        .parse()
        .map_err(|e: crate::domain::InvalidInput| {
            ApiError::bad_request("unknown_incident", format!("`incident_id`: {e}"))
        })?;
    let owner = state
        .store
        .record_owner(&incident_kind, &incident)
        .await
        .map_err(record_error)?;
    if owner.as_ref() != Some(&who.partner) {
        return Err(ApiError::BadRequest {
            code: "unknown_incident",
            message: format!(
                "`{}` holds no crisis incident `{incident}`; write the incident first with \
                 `PUT /v1/records/crisis-incident/{incident}`",
                who.partner
            ),
            details: Some(json!({ "field": "incident_id" })),
        });
    }

    let now = Utc::now();
    let mut fields = serde_json::Map::new();
    let mut set = |k: &str, v: Value| {
        fields.insert(k.to_owned(), v);
    };
    set("referral_id", json!(id));
    set("incident_id", json!(incident));
    set("referring_officer", json!(who.user));
    set("referring_agency", json!(who.partner));
    set("receiving_agency", json!(receiving));
    set("reason", json!(body.reason));
    set("urgency", json!(body.urgency));
    set("status", json!(ReferralState::Submitted.as_str()));
    set("status_updated_at", json!(now_text(now)));
    for (k, v) in [
        ("consent_reference", body.consent_reference),
        ("subject_name", body.subject_name),
        ("subject_phone", body.subject_phone),
    ] {
        if let Some(v) = v {
            set(k, json!(v));
        }
    }
    let fields = schema::check_write(schema_kind, who.partner_kind, &fields, None)
        .map_err(problems_error)?;
    let author = Author {
        partner: who.partner.clone(),
        user: who.user.clone(),
    };
    let mut tx = state.audit.begin().await.map_err(log_error)?;
    let outcome = records::edit_record(
        &mut tx,
        &state.keyring,
        &kind,
        &id,
        &author,
        now,
        |current| -> Result<NewRecord, WriteError> {
            if current.is_some() {
                return Err(WriteError::Api(ApiError::Conflict {
                    code: "write_conflict",
                    message: "a referral with this id exists; retry".into(),
                    details: None,
                }));
            }
            Ok(NewRecord {
                kind: kind.clone(),
                id: id.clone(),
                owner: who.partner.clone(),
                subjects: body.subjects.clone(),
                fields,
            })
        },
    )
    .await?;
    let entry = change_entry(
        &req,
        &who,
        Outcome::Permit,
        (&kind, &id),
        body.subjects.first().map(|s| state.audit.pseudonym(s)),
        write_detail("referral submitted", &outcome),
    );
    commit_with_entry(&state, tx, entry, (&kind, &id)).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/referrals/{id}")))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "id": id,
            "status": ReferralState::Submitted,
            "version": outcome.version,
            "receiving_agency": receiving,
            "incident_id": incident,
        })))
}

#[instrument(skip_all)]
async fn move_to(
    state: web::Data<AppState>,
    req: HttpRequest,
    Authenticated(who): Authenticated,
    path: web::Path<String>,
    body: BoundedJson<Transition>,
) -> Result<HttpResponse, ApiError> {
    let id = referral_id(&path)?;
    let body = body.0;
    let to = ReferralState::parse(&body.to).ok_or_else(|| ApiError::BadRequest {
        code: "unknown_state",
        message: format!(
            "`to` must be a referral state (e.g. RECEIVED, ASSIGNED, WITHDRAWN), not `{}`",
            body.to
        ),
        details: Some(json!({ "field": "to" })),
    })?;
    let policy = state.policy.load_full();
    let Some(schema_kind) = policy.kinds.get(REFERRAL_KIND) else {
        return Err(ApiError::Unavailable(anyhow::anyhow!(
            "the policy set declares no `referral` kind"
        )));
    };
    let kind = referral_kind();
    let author = Author {
        partner: who.partner.clone(),
        user: who.user.clone(),
    };
    let now = Utc::now();
    let mut allowed_after = Vec::new();
    let mut moved_from = None;
    let mut subject = None;
    let mut tx = state.audit.begin().await.map_err(log_error)?;
    let edited = records::edit_record(
        &mut tx,
        &state.keyring,
        &kind,
        &id,
        &author,
        now,
        |current| -> Result<NewRecord, WriteError> {
            let current = current.ok_or_else(|| WriteError::Api(not_found(&id)))?;
            let receiver = current
                .fields
                .get("receiving_agency")
                .and_then(Value::as_str);
            let actor = if current.owner == &who.partner {
                Actor::Referrer
            } else if receiver == Some(who.partner.as_str()) {
                Actor::Receiver
            } else {
                return Err(WriteError::Api(not_found(&id)));
            };
            let from = current
                .fields
                .get("status")
                .and_then(Value::as_str)
                .and_then(ReferralState::parse)
                .ok_or_else(|| {
                    WriteError::Api(ApiError::Internal(anyhow::anyhow!(
                        "referral `{id}` holds no valid status"
                    )))
                })?;
            referral::transition(from, to, actor).map_err(|e| {
                WriteError::Api(ApiError::Conflict {
                    code: "invalid_transition",
                    message: e.to_string(),
                    details: Some(json!({
                        "from": e.from,
                        "to": e.to,
                        "allowed": e.allowed,
                    })),
                })
            })?;
            if body.clinician_contact.is_some() && actor != Actor::Receiver {
                return Err(WriteError::Api(ApiError::BadRequest {
                    code: "not_writable",
                    message: "`clinician_contact` is set by the receiving agency".into(),
                    details: Some(json!({ "field": "clinician_contact" })),
                }));
            }
            allowed_after = referral::allowed_next(to, actor);
            moved_from = Some(from);
            subject = current.subjects.first().map(|s| state.audit.pseudonym(s));
            let mut fields = current.fields.clone();
            fields.insert("status".into(), json!(to));
            fields.insert("status_updated_at".into(), json!(now_text(now)));
            match &body.note {
                Some(n) => fields.insert("status_note".into(), json!(n)),
                None => fields.remove("status_note"),
            };
            if let Some(c) = &body.clinician_contact {
                fields.insert("clinician_contact".into(), json!(c));
            }
            // Every value is checked against the schema again (a note or contact of the wrong
            // shape is a 400 naming it).
            let map: serde_json::Map<String, Value> = fields.clone().into_iter().collect();
            for (name, value) in &map {
                if let Some(def) = schema_kind.field(name)
                    && let Err(why) = schema::check_value(def, value)
                {
                    return Err(WriteError::Api(problems_error(vec![
                        schema::FieldProblem::wrong_type(name, why),
                    ])));
                }
            }
            Ok(NewRecord {
                kind: kind.clone(),
                id: id.clone(),
                owner: current.owner.clone(),
                subjects: current.subjects.to_vec(),
                fields,
            })
        },
    )
    .await;
    let outcome = match edited {
        Ok(o) => o,
        // A partner that is no party to the referral, or a move the life cycle does not allow:
        // refused acts, logged before the answer.
        Err(WriteError::Api(answer))
            if matches!(answer.code(), "referral_not_found" | "invalid_transition") =>
        {
            drop(tx);
            return Err(refuse_write(&state, &req, &who, (&kind, &id), answer).await);
        }
        Err(e) => return Err(e.into()),
    };
    let what = format!(
        "referral moved {} -> {to}",
        moved_from.map_or("?", ReferralState::as_str)
    );
    let entry = change_entry(
        &req,
        &who,
        Outcome::Permit,
        (&kind, &id),
        subject,
        write_detail(&what, &outcome),
    );
    commit_with_entry(&state, tx, entry, (&kind, &id)).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "id": id,
            "status": to,
            "version": outcome.version,
            "allowed_next": allowed_after,
        })))
}

#[instrument(skip_all)]
async fn read(
    state: web::Data<AppState>,
    req: HttpRequest,
    Authenticated(who): Authenticated,
    purpose: PurposeOfUse,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = referral_id(&path)?;
    read_one(&state, &req, &who, &purpose, &referral_kind(), &id).await
}
