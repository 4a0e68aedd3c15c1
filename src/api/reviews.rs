//! The emergency-access review queue for compliance officers ([`crate::emergency`]).
//!
//! - `GET /v1/reviews?state=open|closed|all&limit=N`: reviews with the stated basis and threat
//!   of the access that opened them (a read of the log, itself logged).
//! - `POST /v1/reviews/{id}` `{"outcome": "justified" | "not-justified", "note": "..."}`:
//!   closes a review; the outcome is a log entry committed with the change.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::instrument;

use super::audit::{authorize, read_entry};
use super::json::BoundedJson;
use crate::audit::{EntryKind, LegalBasis, NewEntry, Outcome, SubjectPseudonym, query};
use crate::auth::Authenticated;
use crate::emergency::{self, CloseError, Review, ReviewOutcome};
use crate::error::ApiError;
use crate::startup::AppState;

/// Longest reviewer note, in characters.
const MAX_NOTE: usize = 4000;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/reviews", web::get().to(list))
        .route("/v1/reviews/{id}", web::post().to(close));
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    limit: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    outcome: String,
    note: String,
}

async fn with_access(state: &AppState, r: &Review) -> Result<Value, ApiError> {
    let first = query::get(state.audit.store(), r.first_disclosure).await?;
    let (basis, threat) = match first.as_ref().map(|e| &e.data) {
        Some(d) => (
            match &d.basis {
                Some(LegalBasis::Emergency { stated_basis }) => Some(stated_basis.clone()),
                _ => None,
            },
            d.justification.clone(),
        ),
        None => (None, None),
    };
    let mut v = serde_json::to_value(r).map_err(|e| ApiError::Internal(e.into()))?;
    v["stated_basis"] = json!(basis);
    v["threat"] = json!(threat);
    Ok(v)
}

#[instrument(skip_all)]
async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    Authenticated(who): Authenticated,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, &who, "list emergency reviews").await?;
    let filter = match query.state.as_deref().unwrap_or("open") {
        "all" => None,
        s @ ("open" | "closed") => Some(s),
        other => {
            return Err(ApiError::BadRequest {
                code: "invalid_parameter",
                message: format!(
                    "query parameter `state`: use `open`, `closed` or `all`, not `{other}`"
                ),
                details: Some(json!({ "parameter": "state" })),
            });
        }
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let reviews = emergency::list(&state.store, filter, limit)
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?;
    let mut out = Vec::with_capacity(reviews.len());
    for r in &reviews {
        out.push(with_access(&state, r).await?);
    }
    state
        .audit
        .append(read_entry(
            &req,
            &who,
            Outcome::Permit,
            format!(
                "listed {} emergency review(s) (state {})",
                out.len(),
                filter.unwrap_or("all")
            ),
        ))
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "reviews": out })))
}

#[instrument(skip_all)]
async fn close(
    state: web::Data<AppState>,
    req: HttpRequest,
    Authenticated(who): Authenticated,
    path: web::Path<String>,
    body: BoundedJson<Decision>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, &who, "close an emergency review").await?;
    let body = body.0;
    let outcome = ReviewOutcome::parse(&body.outcome).ok_or_else(|| ApiError::BadRequest {
        code: "invalid_outcome",
        message: format!(
            "`outcome` must be `justified` or `not-justified`, not `{}`",
            body.outcome
        ),
        details: Some(json!({ "field": "outcome" })),
    })?;
    let note = body.note.trim();
    if note.is_empty() || note.chars().count() > MAX_NOTE {
        return Err(ApiError::BadRequest {
            code: "invalid_note",
            message: format!("`note` must say why, in 1 to {MAX_NOTE} characters"),
            details: Some(json!({ "field": "note" })),
        });
    }
    let now = Utc::now();
    let mut tx = state.audit.begin().await?;
    let review = emergency::close(
        &mut tx,
        &path,
        outcome,
        note,
        (who.partner.as_str(), who.user.as_str()),
        now,
    )
    .await
    .map_err(|e| match e {
        CloseError::NotFound(_) => ApiError::not_found("review_not_found", e.to_string()),
        CloseError::Closed(_) => ApiError::Conflict {
            code: "review_closed",
            message: e.to_string(),
            details: None,
        },
        CloseError::Store(e) => ApiError::Unavailable(e.into()),
    })?;
    let mut entry: NewEntry = read_entry(
        &req,
        &who,
        Outcome::Permit,
        format!(
            "emergency review {} of `{}`/`{}` (first disclosure {}, {} access(es)): {}",
            review.id,
            review.partner,
            review.user,
            review.first_disclosure,
            review.accesses,
            outcome.as_str()
        ),
    );
    entry.kind = EntryKind::EmergencyReviewed;
    entry.at = now;
    entry.justification = Some(note.to_owned());
    entry.subject = SubjectPseudonym::from_hex(&review.subject);
    state.audit.append_in_tx(&mut tx, entry).await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(with_access(&state, &review).await?))
}
