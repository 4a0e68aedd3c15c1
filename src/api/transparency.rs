//! The transparency routes (the rules are the transparency services'): for any partner's
//! certificate, no user token needed.
//!
//! - `GET /v1/audit/checkpoint`: the latest signed tree head (C2SP `tlog-checkpoint` signed
//!   note, `text/plain`) with every witness cosignature the gateway holds for it;
//! - `GET /v1/audit/proof/inclusion?index=N&size=S`: RFC 6962 audit path of leaf `N`;
//! - `GET /v1/audit/proof/consistency?from=A&to=B`: RFC 6962 consistency proof;
//! - `POST /v1/audit/cosignatures`: a witness posts the checkpoint it cosigned (`text/plain`
//!   signed note carrying its `tlog-cosignature` line).

use actix_web::{HttpRequest, HttpResponse, web};

use super::query::{bad_param, checked};
use super::{AppState, NO_STORE, PartnerCertificate, RequestMeta};
use crate::audit::note::MAX_NOTE;
use crate::domain::Code;
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

/// Exactly the parameters `names`, each once and a decimal number (checked in the order
/// given, as every route checks its query: see [`checked`]).
fn numbers<const N: usize>(req: &HttpRequest, names: [&str; N]) -> Result<[u64; N], ApiError> {
    let pairs: Vec<(String, String)> = web::Query::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| {
            ApiError::bad_request(Code::InvalidQuery, format!("invalid query string: {e}"))
        })?;
    let mut given: [Option<&str>; N] = [None; N];
    for pair in checked(&pairs, &names) {
        let (k, v) = pair?;
        if let Some(slot) = names
            .iter()
            .position(|n| *n == k)
            .and_then(|i| given.get_mut(i))
        {
            *slot = Some(v);
        }
    }
    let mut out = [0u64; N];
    for ((slot, name), v) in out.iter_mut().zip(names).zip(given) {
        let v = v.ok_or_else(|| bad_param(name, "missing; give a decimal number"))?;
        *slot = v
            .parse::<u64>()
            .ok()
            .filter(|_| !v.starts_with('+'))
            .ok_or_else(|| bad_param(name, "not a decimal number"))?;
    }
    Ok(out)
}

/// `GET /v1/audit/checkpoint`.
#[utoipa::path(
    get,
    path = "/v1/audit/checkpoint",
    tag = "transparency",
    operation_id = "tree_checkpoint",
    summary = "The latest signed tree head, a C2SP `tlog-checkpoint` signed note, with the witness cosignatures held for it (a partner certificate, no token; not logged)",
    responses(
        (status = 200, description = "the signed note: origin, tree size, base64 root hash, an empty line, then `— <key name> base64(key id || Ed25519 signature)` lines (the gateway's, then each witness's `tlog-cosignature`)", body = String, content_type = "text/plain; charset=utf-8"),
        (status = 404, description = "`checkpoints_disabled` (no `audit.checkpoint_key_file`) or `no_checkpoint` (none signed yet: retry later)", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [])),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn checkpoint(
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
#[utoipa::path(
    get,
    path = "/v1/audit/proof/inclusion",
    tag = "transparency",
    operation_id = "inclusion_proof",
    summary = "The RFC 6962 audit path of one leaf in a tree of a given size (a partner certificate, no token; not logged)",
    params(
        ("index" = u64, Query, description = "the leaf index (a receipt's `Log-Leaf-Index`)"),
        ("size" = u64, Query, description = "the tree size, greater than `index` and at most the log's size (take it from a signed checkpoint)"),
    ),
    responses(
        (status = 200, description = "`{\"index\", \"size\", \"leaf_hash\", \"hashes\"}`: base64 hashes, from the leaf up (RFC 9162 section 2.1.3.2 verifies them)", body = Object),
        (status = 400, description = "`invalid_parameter` (`details.parameter` names it: missing, not a decimal number, unknown, or out of range) or `invalid_query`", body = crate::error::ErrorBody),
        (status = 404, description = "`checkpoints_disabled`", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [])),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn inclusion(
    _who: PartnerCertificate,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let [index, size] = numbers(&req, ["index", "size"])?;
    let proof = state.services.inclusion_proof(index, size).await?;
    Ok(HttpResponse::Ok().insert_header(NO_STORE).json(proof))
}

/// `GET /v1/audit/proof/consistency?from=A&to=B`.
#[utoipa::path(
    get,
    path = "/v1/audit/proof/consistency",
    tag = "transparency",
    operation_id = "consistency_proof",
    summary = "The RFC 6962 consistency proof between two tree sizes (a partner certificate, no token; not logged)",
    params(
        ("from" = u64, Query, description = "the older tree size"),
        ("to" = u64, Query, description = "the newer tree size, at least `from` and at most the log's size"),
    ),
    responses(
        (status = 200, description = "`{\"from\", \"to\", \"hashes\"}`: base64 hashes (RFC 9162 section 2.1.4.2 verifies them)", body = Object),
        (status = 400, description = "`invalid_parameter` (`details.parameter` names it) or `invalid_query`", body = crate::error::ErrorBody),
        (status = 404, description = "`checkpoints_disabled`", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [])),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn consistency(
    _who: PartnerCertificate,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let [from, to] = numbers(&req, ["from", "to"])?;
    let proof = state.services.consistency_proof(from, to).await?;
    Ok(HttpResponse::Ok().insert_header(NO_STORE).json(proof))
}

/// `POST /v1/audit/cosignatures`.
#[utoipa::path(
    post,
    path = "/v1/audit/cosignatures",
    tag = "transparency",
    operation_id = "post_cosignature",
    summary = "A witness posts a checkpoint the gateway issued with its `tlog-cosignature` line (a partner with a registered witness key, its certificate, no token; logged)",
    request_body(content = String, content_type = "text/plain", description = "the signed note exactly as served by `GET /v1/audit/checkpoint`, with the witness's cosignature line added"),
    responses(
        (status = 201, description = "`{\"size\", \"root_hash\", \"cosigned_at\"}`", body = Object),
        (status = 400, description = "`invalid_checkpoint` (not a signed note, too large, not UTF-8) or `cosignature_invalid` (no cosignature of the registered key, or it does not verify)", body = crate::error::ErrorBody),
        (status = 403, description = "`witness_not_registered`: the posting partner has no witness key in the registry", body = crate::error::ErrorBody),
        (status = 404, description = "`checkpoints_disabled`", body = crate::error::ErrorBody),
        (status = 409, description = "`checkpoint_unknown`: the body is not a checkpoint this gateway issued", body = crate::error::ErrorBody),
        (status = 415, description = "`unsupported_media_type`: send `text/plain`", body = crate::error::ErrorBody),
        (status = 503, description = "`service_unavailable`: nothing was stored; retry", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [])),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn cosign(
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
            Code::InvalidCheckpoint,
            format!("a cosigned checkpoint is at most {MAX_NOTE} bytes"),
        ));
    }
    let text = std::str::from_utf8(&body).map_err(|_| {
        ApiError::bad_request(Code::InvalidCheckpoint, "a signed note is UTF-8 text")
    })?;
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
