//! The transparency routes (the rules are the transparency services'): for any partner's
//! certificate, no user token needed.
//!
//! - `GET /v1/audit/checkpoint`: the latest signed tree head (C2SP `tlog-checkpoint` signed
//!   note, `text/plain`) with every witness cosignature the gateway holds for it;
//! - `GET /v1/audit/proof/inclusion?index=N&size=S`: RFC 6962 audit path of leaf `N`;
//! - `GET /v1/audit/proof/consistency?from=A&to=B`: RFC 6962 consistency proof;
//! - `POST /v1/audit/cosignatures`: a witness posts the checkpoint it cosigned (`text/plain`
//!   signed note carrying its `tlog-cosignature` line).

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::{AppState, NO_STORE, PartnerCertificate, RequestMeta};
use crate::audit::note::MAX_NOTE;
use crate::error::ApiError;
use crate::service::transparency::WitnessCaller;

/// Registers the routes.
pub(super) fn routes(r: &mut super::Routes<'_>) {
    r.get("/v1/audit/checkpoint", checkpoint)
        .get("/v1/audit/proof/inclusion", inclusion)
        .get("/v1/audit/proof/consistency", consistency)
        .post("/v1/audit/cosignatures", cosign);
}

/// The content type of signed notes.
const NOTE_TYPE: &str = "text/plain; charset=utf-8";

fn bad_param(name: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest {
        code: "invalid_parameter",
        message: format!("query parameter `{name}`: {why}"),
        details: Some(json!({ "parameter": name })),
    }
}

/// Exactly the parameters `names`, each a decimal number.
fn numbers<const N: usize>(req: &HttpRequest, names: [&str; N]) -> Result<[u64; N], ApiError> {
    let query: HashMap<String, String> = web::Query::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| {
            ApiError::bad_request("invalid_query", format!("invalid query string: {e}"))
        })?;
    if let Some(unknown) = query.keys().find(|k| !names.contains(&k.as_str())) {
        return Err(bad_param(
            unknown,
            format!("unknown parameter; this route takes {}", names.join(", ")),
        ));
    }
    let mut out = [0u64; N];
    for (slot, name) in out.iter_mut().zip(names) {
        let v = query
            .get(name)
            .ok_or_else(|| bad_param(name, "missing; give a decimal number"))?;
        *slot = v
            .parse::<u64>()
            .ok()
            .filter(|_| !v.starts_with('+'))
            .ok_or_else(|| bad_param(name, "not a decimal number"))?;
    }
    Ok(out)
}

/// `GET /v1/audit/checkpoint`.
#[tracing::instrument(skip_all)]
async fn checkpoint(
    _who: PartnerCertificate,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let note = state.services.latest_checkpoint().await?;
    Ok(HttpResponse::Ok()
        .insert_header(NO_STORE)
        .content_type(NOTE_TYPE)
        .body(note))
}

/// `GET /v1/audit/proof/inclusion?index=N&size=S`.
#[tracing::instrument(skip_all)]
async fn inclusion(
    _who: PartnerCertificate,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let [index, size] = numbers(&req, ["index", "size"])?;
    let proof = state.services.inclusion_proof(index, size).await?;
    Ok(HttpResponse::Ok().insert_header(NO_STORE).json(proof))
}

/// `GET /v1/audit/proof/consistency?from=A&to=B`.
#[tracing::instrument(skip_all)]
async fn consistency(
    _who: PartnerCertificate,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let [from, to] = numbers(&req, ["from", "to"])?;
    let proof = state.services.consistency_proof(from, to).await?;
    Ok(HttpResponse::Ok().insert_header(NO_STORE).json(proof))
}

/// `POST /v1/audit/cosignatures`.
#[tracing::instrument(skip_all)]
async fn cosign(
    who: PartnerCertificate,
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ct = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("text/plain") {
        return Err(ApiError::UnsupportedMediaType);
    }
    if body.len() > MAX_NOTE {
        return Err(ApiError::bad_request(
            "invalid_checkpoint",
            format!("a cosigned checkpoint is at most {MAX_NOTE} bytes"),
        ));
    }
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("invalid_checkpoint", "a signed note is UTF-8 text"))?;
    let meta = RequestMeta::of(&req);
    let caller = WitnessCaller {
        partner: &who.partner,
        fingerprint: &who.fingerprint,
        request_id: meta.request_id.as_deref(),
        source_addr: meta.peer.as_deref(),
    };
    let accepted = state.services.accept_cosignature(&caller, text).await?;
    Ok(HttpResponse::Created()
        .insert_header(NO_STORE)
        .json(accepted))
}
