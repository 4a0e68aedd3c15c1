//! Referrals from police to mental-health agencies, and their life cycle.
//!
//! - `POST /v1/referrals` (police): creates a referral in state SUBMITTED.
//! - `POST /v1/referrals/{id}/transitions` `{"to", "note"?, "clinician_contact"?}`: moves it
//!   along the life cycle ([`crate::referral`]).
//! - `GET /v1/referrals/{id}` with `Purpose-Of-Use`: a disclosure like any record read, with the
//!   police status view.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use tracing::instrument;

use super::json::BoundedJson;
use super::purpose::PurposeOfUse;
use super::records::read_one;
use super::{AppState, Authenticated, NO_STORE, RequestMeta};
use crate::domain::Code;
use crate::domain::{InvalidInput, RecordId, SubjectIdentifier};
use crate::error::ApiError;
use crate::referral::ReferralState;
use crate::service::referrals::{NewReferral, Transition, referral_kind};

pub(super) fn routes(r: &mut super::Routes<'_>) {
    r.post("/v1/referrals", create)
        .get("/v1/referrals/{id}", read)
        .post("/v1/referrals/{id}/transitions", move_to);
}

/// A new referral (`POST /v1/referrals`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewReferralBody {
    /// The referring agency's crisis incident.
    pub incident_id: String,
    /// The person's identifiers.
    pub subjects: Vec<SubjectIdentifier>,
    /// The mental-health partner asked to follow up.
    pub receiving_agency: String,
    /// Why.
    pub reason: String,
    /// How urgent.
    pub urgency: String,
    /// The consent the referral relies on, if any.
    #[serde(default)]
    pub consent_reference: Option<String>,
    /// The person's name.
    #[serde(default)]
    pub subject_name: Option<String>,
    /// The person's phone number.
    #[serde(default)]
    pub subject_phone: Option<String>,
}

/// A requested transition (`POST /v1/referrals/{id}/transitions`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransitionBody {
    /// The state to move to.
    pub to: String,
    /// A note on the move.
    #[serde(default)]
    pub note: Option<String>,
    /// The clinician to contact.
    #[serde(default)]
    pub clinician_contact: Option<String>,
}

fn referral_id(raw: &str) -> Result<RecordId, ApiError> {
    raw.parse()
        .map_err(|e: InvalidInput| ApiError::bad_request(Code::InvalidPath, e.to_string()))
}

#[utoipa::path(
    post,
    path = "/v1/referrals",
    tag = "referrals",
    operation_id = "create_referral",
    summary = "Create a referral (police partners)",
    request_body(content = Object, description = "`{incident_id, subjects, receiving_agency, reason, urgency, consent_reference?, subject_name?, subject_phone?}`", content_type = "application/json"),
    responses(
        (status = 201, description = "`{id, status, version, receiving_agency, incident_id}`; `Location`", body = Object),
        (status = 400, description = "`unknown_incident`, `unknown_receiving_agency`, `invalid_fields`, `invalid_json`", body = crate::error::ErrorBody),
        (status = 403, description = "`not_owner_kind`", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[instrument(skip_all)]
pub(super) async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    Authenticated(who): Authenticated,
    body: BoundedJson<NewReferralBody>,
) -> Result<HttpResponse, ApiError> {
    let b = body.0;
    let meta = RequestMeta::of(&req);
    let created = state
        .services
        .create_referral(
            &meta.caller(&who),
            NewReferral {
                incident_id: b.incident_id,
                subjects: b.subjects,
                receiving_agency: b.receiving_agency,
                reason: b.reason,
                urgency: b.urgency,
                consent_reference: b.consent_reference,
                subject_name: b.subject_name,
                subject_phone: b.subject_phone,
            },
        )
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/referrals/{}", created.id)))
        .insert_header(NO_STORE)
        .json(json!({
            "id": created.id,
            "status": ReferralState::Submitted,
            "version": created.version,
            "receiving_agency": created.receiving_agency,
            "incident_id": created.incident_id,
        })))
}

#[utoipa::path(
    post,
    path = "/v1/referrals/{id}/transitions",
    tag = "referrals",
    operation_id = "move_referral",
    summary = "Move a referral along its life cycle",
    params(
        ("id" = String, Path, description = "referral id"),
    ),
    request_body(content = Object, description = "`{\"to\": STATE, \"note\"?, \"clinician_contact\"?}`", content_type = "application/json"),
    responses(
        (status = 200, description = "`{id, status, version, allowed_next}`", body = Object),
        (status = 400, description = "`unknown_state`, `not_writable`, `invalid_json`", body = crate::error::ErrorBody),
        (status = 404, description = "`referral_not_found`", body = crate::error::ErrorBody),
        (status = 409, description = "`invalid_transition` (with `details.allowed`), `write_conflict`", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[instrument(skip_all)]
pub(super) async fn move_to(
    state: web::Data<AppState>,
    req: HttpRequest,
    Authenticated(who): Authenticated,
    path: web::Path<String>,
    body: BoundedJson<TransitionBody>,
) -> Result<HttpResponse, ApiError> {
    let id = referral_id(&path)?;
    let b = body.0;
    let meta = RequestMeta::of(&req);
    let moved = state
        .services
        .move_referral(
            &meta.caller(&who),
            &id,
            Transition {
                to: b.to,
                note: b.note,
                clinician_contact: b.clinician_contact,
            },
        )
        .await?;
    Ok(HttpResponse::Ok().insert_header(NO_STORE).json(json!({
        "id": moved.id,
        "status": moved.status,
        "version": moved.version,
        "allowed_next": moved.allowed_next,
    })))
}

#[utoipa::path(
    get,
    path = "/v1/referrals/{id}",
    tag = "referrals",
    operation_id = "read_referral",
    summary = "Read a referral as the caller's MOU profile (and the police status view) allows",
    params(
        ("id" = String, Path, description = "referral id"),
        ("Purpose-Of-Use" = String, Header, description = "why you ask: `crisis-response`, `referral-followup`, `treatment`, `care-coordination`, `audit`, `emergency`, `investigation` or `prosecution`"),
        ("Emergency-Basis" = Option<String>, Header, description = "with purpose `emergency` only: `actual-knowledge` or `credible-representation` (HIPAA 164.512(j))"),
        ("Emergency-Source" = Option<String>, Header, description = "with `credible-representation`: who made the representation"),
        ("Emergency-Description" = Option<String>, Header, description = "with purpose `emergency`: the serious and imminent threat"),
    ),
    responses(
        (status = 200, description = "the disclosed referral; `Disclosure-Id` header", body = Object),
        (status = 400, description = "`header_missing`, `invalid_header` (with `details.header`), `unknown_purpose`, `invalid_path`", body = crate::error::ErrorBody),
        (status = 403, description = "`disclosure_denied` with `details.reasons` and `details.decision_id`; the `Disclosure-Id` header names the logged denial", body = crate::error::ErrorBody),
        (status = 404, description = "`referral_not_found`", body = crate::error::ErrorBody),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was disclosed or changed; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[instrument(skip_all)]
pub(super) async fn read(
    state: web::Data<AppState>,
    req: HttpRequest,
    Authenticated(who): Authenticated,
    purpose: PurposeOfUse,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = referral_id(&path)?;
    let kind = referral_kind()?;
    read_one(&state, &req, &who, &purpose, &kind, &id).await
}
