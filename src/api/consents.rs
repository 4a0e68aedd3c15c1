//! The consent registry API:
//!
//! - `POST /v1/consents`: record a consent directive (by a partner listed among its
//!   `disclosers`, the one that collected it);
//! - `GET /v1/consents/{id}`: one consent with its status and history;
//! - `POST /v1/consents/{id}/revoke`: revoke it (by a discloser partner), effective at once;
//! - `GET /v1/subjects/{system}/{value}/consents`: a subject's consents with status and history;
//! - `GET /v1/subjects/{system}/{value}/coverage?recipient=&purpose=[&role=]`: which fields of
//!   each record kind would flow to a recipient for a purpose, and why.
//!
//! Reads show a consent to the partners listed among its disclosers and to compliance officers
//! (role `compliance` of a compliance partner); other callers see none (not a refusal, so that
//! the answer does not reveal whether a consent exists). Every creation and revocation, and
//! every refused attempt, is a `consent_changed` entry in the disclosure log; a change commits in
//! the same transaction as its entry, so if the log cannot be written nothing changes and the
//! caller gets 503. Handlers log consent ids only, never identifiers, names or content.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{BoundedJson, COMPLIANCE_ROLE};
use crate::audit::{EntryKind, LegalBasis, NewEntry, Outcome, SubjectPseudonym};
use crate::auth::Authenticated;
use crate::consent::SubjectRef;
use crate::consent::coverage::{self, CoverageQuery};
use crate::consent::directive::{self, ConsentDirective, MAX_LONG_TEXT, Rejection};
use crate::consent::registry::{
    self, ConsentEvent, ConsentStoreError, ReceivedHow, Revocation, StoredConsent,
};
use crate::domain::{PartnerId, PartnerKind, Principal, Purpose, Role};
use crate::error::ApiError;
use crate::policy::PolicySet;
use crate::startup::AppState;
use crate::store::records::{Author, SubjectIdentifier};

/// How far in the future a revocation's `received_at` may be (clock skew).
const RECEIVED_AT_SKEW_SECS: i64 = 300;

/// Registers the routes.
pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/consents", web::post().to(create))
        .route("/v1/consents/{id}", web::get().to(one))
        .route("/v1/consents/{id}/revoke", web::post().to(revoke))
        .route(
            "/v1/subjects/{system}/{value}/consents",
            web::get().to(list),
        )
        .route(
            "/v1/subjects/{system}/{value}/coverage",
            web::get().to(coverage),
        );
}

impl From<ConsentStoreError> for ApiError {
    fn from(e: ConsentStoreError) -> Self {
        match e {
            ConsentStoreError::NotFound(id) => ApiError::not_found(
                "consent_not_found",
                format!(
                    "no consent `{id}` is recorded; check the id returned when it was recorded"
                ),
            ),
            ConsentStoreError::AlreadyRevoked { id, at } => ApiError::Conflict {
                code: "consent_already_revoked",
                message: format!(
                    "consent `{id}` was already revoked at {}; a revocation cannot be repeated",
                    at.to_rfc3339()
                ),
                details: Some(json!({ "revoked_at": at })),
            },
            ConsentStoreError::Conflict(id) => ApiError::Conflict {
                code: "consent_conflict",
                message: format!("consent `{id}` was changed at the same moment; retry"),
                details: None,
            },
            e @ (ConsentStoreError::Integrity { .. } | ConsentStoreError::Crypto(_)) => {
                ApiError::Internal(e.into())
            }
            e @ (ConsentStoreError::Key(_) | ConsentStoreError::Store(_)) => {
                ApiError::Unavailable(e.into())
            }
        }
    }
}

fn rejection(r: Rejection) -> ApiError {
    let message = r.message();
    match r {
        Rejection::Invalid(problems) => ApiError::BadRequest {
            code: "invalid_consent",
            message,
            details: Some(json!({ "problems": problems })),
        },
        Rejection::Incomplete { part2, missing } => {
            let elements: Vec<_> = missing
                .iter()
                .map(|e| {
                    json!({
                        "element": e.name(),
                        "paragraph": if part2 { e.paragraph() } else { None },
                        "what": e.what(),
                    })
                })
                .collect();
            ApiError::BadRequest {
                code: "consent_incomplete",
                message,
                details: Some(json!({
                    "part2": part2,
                    "missing": missing.iter().map(|e| e.name()).collect::<Vec<_>>(),
                    "elements": elements,
                })),
            }
        }
    }
}

fn bad_param(name: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest {
        code: "invalid_parameter",
        message: format!("query parameter `{name}`: {why}"),
        details: Some(json!({ "parameter": name })),
    }
}

fn is_compliance(who: &Principal) -> bool {
    who.partner_kind == PartnerKind::Compliance && who.has_role(COMPLIANCE_ROLE)
}

/// Whether `who` may see `c`: a partner listed among its disclosers, or a compliance officer.
fn may_see(who: &Principal, c: &StoredConsent) -> bool {
    is_compliance(who) || c.directive.disclosers.contains(&who.partner)
}

/// A `consent_changed` entry for this request.
fn change_entry(
    req: &HttpRequest,
    who: &Principal,
    outcome: Outcome,
    consent_id: Option<&str>,
    subjects: &[SubjectPseudonym],
    what: &str,
) -> NewEntry {
    let mut e = super::actor_entry(req, who, EntryKind::ConsentChanged, outcome);
    e.basis = consent_id.map(|id| LegalBasis::Consent {
        consent_id: id.to_owned(),
    });
    e.subject = subjects.first().copied();
    let mut detail = what.to_owned();
    if subjects.len() > 1 {
        let all: Vec<String> = subjects.iter().map(SubjectPseudonym::to_hex).collect();
        detail.push_str(&format!("; subject pseudonyms: {}", all.join(" ")));
    }
    e.detail = Some(detail);
    e
}

fn pseudonyms(state: &AppState, subjects: &[SubjectIdentifier]) -> Vec<SubjectPseudonym> {
    subjects.iter().map(|s| state.audit.pseudonym(s)).collect()
}

fn author(who: &Principal) -> Author {
    Author {
        partner: who.partner.clone(),
        user: who.user.clone(),
    }
}

/// A consent as the API shows it.
#[derive(Serialize)]
struct ConsentView<'a> {
    id: &'a str,
    status: &'static str,
    /// Whether the consent covers 42 CFR Part 2 information (under the current policy set).
    part2: bool,
    collected_by: &'a PartnerId,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    #[serde(flatten)]
    directive: &'a ConsentDirective,
    history: &'a [ConsentEvent],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    notes: &'a [String],
}

fn view<'a>(
    c: &'a StoredConsent,
    policy: &PolicySet,
    now: DateTime<Utc>,
    notes: &'a [String],
) -> ConsentView<'a> {
    ConsentView {
        id: &c.id,
        status: c.status(now).as_str(),
        part2: directive::covers_part2(&c.directive.scope, policy),
        collected_by: &c.collected_by,
        created_at: c.created_at,
        revoked_at: c.revoked_at,
        directive: &c.directive,
        history: &c.history,
        notes,
    }
}

fn check_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_path",
            "a consent id is 1 to 128 characters from A-Z, a-z, 0-9, `-`, `_` and `.`; use the \
             id returned when the consent was recorded",
        ))
    }
}

fn subject_from_path(system: &str, value: &str) -> Result<SubjectIdentifier, ApiError> {
    SubjectIdentifier::new(system, value).map_err(|e| {
        ApiError::bad_request(
            "invalid_path",
            format!("the subject identifier in the path: {e}"),
        )
    })
}

/// `POST /v1/consents`.
#[tracing::instrument(skip_all)]
async fn create(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    body: BoundedJson<ConsentDirective>,
) -> Result<HttpResponse, ApiError> {
    let who = who.0;
    let now = Utc::now();
    let policy = state.policy.load();
    let valid = directive::validate(&body.0, &policy, now).map_err(rejection)?;
    let subjects = pseudonyms(&state, &valid.directive.subjects);
    if !valid.directive.disclosers.contains(&who.partner) {
        state
            .audit
            .append(change_entry(
                &req,
                &who,
                Outcome::deny("not_a_discloser"),
                None,
                &subjects,
                "refused to record a consent: the caller's partner is not among its disclosers",
            ))
            .await?;
        return Err(ApiError::forbidden(
            "not_a_discloser",
            format!(
                "only a partner listed in the consent's `disclosers` (the partner that collected \
                 it) may record it; `{}` is not listed",
                who.partner
            ),
        ));
    }
    let id = format!("consent-{}", uuid::Uuid::now_v7());
    let mut tx = state.audit.begin().await?;
    let stored = registry::create(&mut tx, &state.keyring, &id, &valid, &author(&who), now).await?;
    let what = format!("consent {id} recorded");
    state
        .audit
        .append_in_tx(
            &mut tx,
            change_entry(&req, &who, Outcome::Permit, Some(&id), &subjects, &what),
        )
        .await?;
    tx.commit().await?;
    tracing::info!(consent = %id, "consent recorded");
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/consents/{id}")))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(view(&stored, &policy, now, &valid.notes)))
}

/// `GET /v1/consents/{id}`.
#[tracing::instrument(skip_all)]
async fn one(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = who.0;
    let id = path.into_inner();
    check_id(&id)?;
    let mut conn = state.store.pool().acquire().await?;
    let found = registry::get(&mut conn, &state.keyring, &id).await?;
    drop(conn);
    match found {
        Some(c) if may_see(&who, &c) => {
            let subjects = pseudonyms(&state, &c.directive.subjects);
            log_read(&state, &req, &who, Some(&id), &subjects, "read a consent").await?;
            let policy = state.policy.load();
            Ok(HttpResponse::Ok()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(view(&c, &policy, Utc::now(), &[])))
        }
        // Not shown to others, and not said to exist.
        _ => Err(ConsentStoreError::NotFound(id).into()),
    }
}

/// The body of `POST /v1/consents/{id}/revoke`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    #[serde(deserialize_with = "de_received_at")]
    received_at: DateTime<Utc>,
    received_how: ReceivedHow,
    #[serde(default)]
    note: Option<String>,
}

fn de_received_at<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let s = String::deserialize(d)?;
    directive::parse_time_field("received_at", &s)
}

fn invalid_revocation(field: &str, message: String) -> ApiError {
    ApiError::BadRequest {
        code: "invalid_revocation",
        message: format!("`{field}`: {message}"),
        details: Some(json!({ "field": field })),
    }
}

fn revocation(body: RevokeBody, now: DateTime<Utc>) -> Result<Revocation, ApiError> {
    if body.received_at > now + Duration::seconds(RECEIVED_AT_SKEW_SECS) {
        return Err(invalid_revocation(
            "received_at",
            "is in the future; give the time the revocation was received".into(),
        ));
    }
    let note = body
        .note
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    if let Some(n) = &note {
        if n.chars().count() > MAX_LONG_TEXT {
            return Err(invalid_revocation(
                "note",
                format!("use at most {MAX_LONG_TEXT} characters"),
            ));
        }
        if n.chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
        {
            return Err(invalid_revocation(
                "note",
                "remove control characters (line breaks and tabs are allowed)".into(),
            ));
        }
    }
    Ok(Revocation {
        received_at: body.received_at,
        received_how: body.received_how,
        note,
    })
}

/// `POST /v1/consents/{id}/revoke`.
#[tracing::instrument(skip_all)]
async fn revoke(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: BoundedJson<RevokeBody>,
) -> Result<HttpResponse, ApiError> {
    let who = who.0;
    let id = path.into_inner();
    check_id(&id)?;
    let now = Utc::now();
    let revocation = revocation(body.0, now)?;
    let mut tx = state.audit.begin().await?;
    let Some(stored) = registry::get(&mut tx, &state.keyring, &id).await? else {
        return Err(ConsentStoreError::NotFound(id).into());
    };
    let subjects = pseudonyms(&state, &stored.directive.subjects);
    if !stored.directive.disclosers.contains(&who.partner) {
        let entry = change_entry(
            &req,
            &who,
            Outcome::deny("not_a_discloser"),
            Some(&id),
            &subjects,
            &format!("refused to revoke consent {id}: the caller's partner is not a discloser"),
        );
        state.audit.append_in_tx(&mut tx, entry).await?;
        tx.commit().await?;
        return Err(ApiError::forbidden(
            "not_a_discloser",
            format!(
                "only a partner listed in the consent's `disclosers` may revoke it; `{}` is not \
                 listed",
                who.partner
            ),
        ));
    }
    match registry::revoke(
        &mut tx,
        &state.keyring,
        &stored,
        &revocation,
        &author(&who),
        now,
    )
    .await
    {
        Err(e @ ConsentStoreError::AlreadyRevoked { .. }) => {
            let entry = change_entry(
                &req,
                &who,
                Outcome::deny("consent_already_revoked"),
                Some(&id),
                &subjects,
                &format!("refused to revoke consent {id}: already revoked"),
            );
            state.audit.append_in_tx(&mut tx, entry).await?;
            tx.commit().await?;
            Err(e.into())
        }
        Err(e) => Err(e.into()),
        Ok(revoked) => {
            let entry = change_entry(
                &req,
                &who,
                Outcome::Permit,
                Some(&id),
                &subjects,
                &format!("consent {id} revoked"),
            );
            state.audit.append_in_tx(&mut tx, entry).await?;
            tx.commit().await?;
            tracing::info!(consent = %id, "consent revoked");
            let policy = state.policy.load();
            Ok(HttpResponse::Ok()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(view(&revoked, &policy, now, &[])))
        }
    }
}

/// The subject's consents visible to `who`, and the subject's pseudonym.
async fn visible_consents(
    state: &AppState,
    who: &Principal,
    subject: &SubjectIdentifier,
) -> Result<(Vec<StoredConsent>, SubjectPseudonym), ApiError> {
    let mut conn = state.store.pool().acquire().await?;
    let all = registry::find(&mut conn, &state.keyring, std::slice::from_ref(subject)).await?;
    drop(conn);
    let visible = all.into_iter().filter(|c| may_see(who, c)).collect();
    Ok((visible, state.audit.pseudonym(subject)))
}

/// `GET /v1/subjects/{system}/{value}/consents`.
#[tracing::instrument(skip_all)]
async fn list(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let who = who.0;
    if let Some((k, _)) = query.first() {
        return Err(bad_param(k, "unknown parameter; this route takes none"));
    }
    let (system, value) = path.into_inner();
    let subject = subject_from_path(&system, &value)?;
    let (consents, pseudonym) = visible_consents(&state, &who, &subject).await?;
    let what = format!("listed {} consent(s) of a subject", consents.len());
    log_read(&state, &req, &who, None, &[pseudonym], &what).await?;
    let policy = state.policy.load();
    let now = Utc::now();
    let views: Vec<ConsentView<'_>> = consents
        .iter()
        .map(|c| view(c, &policy, now, &[]))
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "subject": pseudonym.to_hex(), "consents": views })))
}

/// `GET /v1/subjects/{system}/{value}/coverage`.
#[tracing::instrument(skip_all)]
async fn coverage(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let who = who.0;
    let (mut recipient, mut purpose, mut role) = (None, None, None);
    for (k, v) in query.iter() {
        let slot = match k.as_str() {
            "recipient" => &mut recipient,
            "purpose" => &mut purpose,
            "role" => &mut role,
            other => {
                return Err(bad_param(
                    other,
                    "unknown parameter; accepted: recipient, purpose, role",
                ));
            }
        };
        if slot.replace(v.as_str()).is_some() {
            return Err(bad_param(k, "given more than once"));
        }
    }
    let recipient: PartnerId = recipient
        .ok_or_else(|| bad_param("recipient", "required: the partner that would receive"))?
        .parse()
        .map_err(|e| bad_param("recipient", e))?;
    let purpose: Purpose = purpose
        .ok_or_else(|| bad_param("purpose", "required: the purpose of use"))?
        .parse()
        .map_err(|e| bad_param("purpose", e))?;
    let role: Option<Role> = role
        .map(str::parse)
        .transpose()
        .map_err(|e| bad_param("role", e))?;
    let (system, value) = path.into_inner();
    let subject = subject_from_path(&system, &value)?;
    let (consents, pseudonym) = visible_consents(&state, &who, &subject).await?;
    let subject_ref: SubjectRef = pseudonym
        .to_hex()
        .parse()
        .map_err(|e: crate::domain::IdError| ApiError::Internal(e.into()))?;
    let policy = state.policy.load();
    // A partner sees what it would disclose itself; a compliance officer sees every holder.
    let holder = (!is_compliance(&who)).then_some(&who.partner);
    let report = coverage::compute(
        &policy,
        &consents,
        &subject_ref,
        &CoverageQuery {
            recipient: &recipient,
            purpose: &purpose,
            role: role.as_ref(),
            holder,
            at: Utc::now(),
        },
    )
    .map_err(|e| bad_param(e.parameter, e.message))?;
    let what = format!(
        "coverage for `{recipient}` and purpose `{purpose}` ({} consent(s) considered)",
        consents.len()
    );
    log_read(&state, &req, &who, None, &[pseudonym], &what).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(report))
}

/// Logs a read of consent directives (`consent_read`) durably before the answer leaves:
/// a consent reveals, for one, that a person is in treatment.
async fn log_read(
    state: &AppState,
    req: &HttpRequest,
    who: &Principal,
    consent_id: Option<&str>,
    subjects: &[SubjectPseudonym],
    what: &str,
) -> Result<(), ApiError> {
    let mut e = change_entry(req, who, Outcome::Permit, consent_id, subjects, what);
    e.kind = EntryKind::ConsentRead;
    state.audit.append(e).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consent_ids_are_checked() {
        assert!(check_id("consent-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").is_ok());
        assert!(check_id("").is_err());
        assert!(check_id("a/b").is_err());
        assert!(check_id(&"a".repeat(129)).is_err());
    }

    #[test]
    fn revocations_are_checked() {
        let now: DateTime<Utc> = "2026-03-01T12:00:00Z".parse().unwrap();
        let body = |received_at: &str, note: Option<&str>| RevokeBody {
            received_at: received_at.parse().unwrap(),
            received_how: ReceivedHow::Written,
            note: note.map(str::to_owned),
        };
        assert!(revocation(body("2026-03-01T11:00:00Z", None), now).is_ok());
        assert_eq!(
            revocation(body("2026-03-02T11:00:00Z", None), now)
                .unwrap_err()
                .code(),
            "invalid_revocation"
        );
        assert!(revocation(body("2026-03-01T11:00:00Z", Some("a\u{7}b")), now).is_err());
        let r = revocation(body("2026-03-01T11:00:00Z", Some("  ")), now).unwrap();
        assert_eq!(r.note, None);
    }
}
