//! The consent registry API (the rules are the consent services'):
//!
//! - `POST /v1/consents`: record a consent directive (by a partner listed among its
//!   `disclosers`, the one that collected it);
//! - `GET /v1/consents/{id}`: one consent with its status and history;
//! - `POST /v1/consents/{id}/revoke`: revoke it (by a discloser partner), effective at once;
//! - `GET /v1/subjects/{system}/{value}/consents`: a subject's consents with status and history;
//! - `GET /v1/subjects/{system}/{value}/coverage?recipient=&purpose=[&role=]`: which fields of
//!   each record kind would flow to a recipient for a purpose, and why.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::{AppState, Authenticated, BoundedJson, NO_STORE, RequestMeta};
use crate::consent::directive::{self, ConsentDirective};
use crate::consent::registry::ReceivedHow;
use crate::domain::{PartnerId, Purpose, Role, SubjectIdentifier};
use crate::error::ApiError;
use crate::service::consents::{ConsentAction, CoverageAsk, RevokeRequest};

/// Registers the routes.
pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    // One resource per path, so another method gets 405 with `Allow` (not 404).
    cfg.service(web::resource("/v1/consents").route(web::post().to(create)))
        .service(web::resource("/v1/consents/{id}").route(web::get().to(one)))
        .service(web::resource("/v1/consents/{id}/revoke").route(web::post().to(revoke)))
        .service(web::resource("/v1/subjects/{system}/{value}/consents").route(web::get().to(list)))
        .service(
            web::resource("/v1/subjects/{system}/{value}/coverage").route(web::get().to(coverage)),
        );
}

fn bad_param(name: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest {
        code: "invalid_parameter",
        message: format!("query parameter `{name}`: {why}"),
        details: Some(json!({ "parameter": name })),
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

/// A consent request whose body was refused: the refusal is logged (the code only, never the
/// body), then answered; if it cannot be logged, the answer is 503.
async fn refused(
    state: &AppState,
    caller: &crate::service::Caller<'_>,
    action: ConsentAction,
    e: ApiError,
) -> ApiError {
    match state
        .services
        .refused_consent_request(caller, action, e.code(), None)
        .await
    {
        Ok(()) => e,
        Err(log) => log.into(),
    }
}

/// `POST /v1/consents`.
#[tracing::instrument(skip_all)]
async fn create(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Result<BoundedJson<ConsentDirective>, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let meta = RequestMeta::of(&req);
    let caller = meta.caller(&who.0);
    let body = match body {
        Ok(b) => b,
        Err(e) => return Err(refused(&state, &caller, ConsentAction::Record, e).await),
    };
    let view = state.services.create_consent(&caller, body.0).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/consents/{}", view.id)))
        .insert_header(NO_STORE)
        .json(view))
}

/// `GET /v1/consents/{id}`.
#[tracing::instrument(skip_all)]
async fn one(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let meta = RequestMeta::of(&req);
    let view = state.services.consent(&meta.caller(&who.0), &path).await?;
    Ok(HttpResponse::Ok().insert_header(NO_STORE).json(view))
}

/// The body of `POST /v1/consents/{id}/revoke`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// When the partner received the revocation (RFC 3339).
    #[serde(deserialize_with = "de_received_at")]
    pub received_at: DateTime<Utc>,
    /// How it was received.
    pub received_how: ReceivedHow,
    /// An optional note.
    #[serde(default)]
    pub note: Option<String>,
}

fn de_received_at<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let s = String::deserialize(d)?;
    directive::parse_time_field("received_at", &s)
}

/// `POST /v1/consents/{id}/revoke`.
#[tracing::instrument(skip_all)]
async fn revoke(
    who: Authenticated,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Result<BoundedJson<RevokeBody>, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let meta = RequestMeta::of(&req);
    let caller = meta.caller(&who.0);
    let b = match body {
        Ok(b) => b.0,
        Err(e) => return Err(refused(&state, &caller, ConsentAction::Revoke, e).await),
    };
    let view = state
        .services
        .revoke_consent(
            &caller,
            &path,
            RevokeRequest {
                received_at: b.received_at,
                received_how: b.received_how,
                note: b.note,
            },
        )
        .await?;
    Ok(HttpResponse::Ok().insert_header(NO_STORE).json(view))
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
    if let Some((k, _)) = query.first() {
        return Err(bad_param(k, "unknown parameter; this route takes none"));
    }
    let (system, value) = path.into_inner();
    let subject = subject_from_path(&system, &value)?;
    let meta = RequestMeta::of(&req);
    let (pseudonym, consents) = state
        .services
        .subject_consents(&meta.caller(&who.0), &subject)
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(NO_STORE)
        .json(json!({ "subject": pseudonym.to_hex(), "consents": consents })))
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
    let meta = RequestMeta::of(&req);
    let report = state
        .services
        .coverage(
            &meta.caller(&who.0),
            &subject,
            &CoverageAsk {
                recipient,
                purpose,
                role,
            },
        )
        .await?;
    Ok(HttpResponse::Ok().insert_header(NO_STORE).json(report))
}
