//! `GET /v1/whoami`: who the gateway thinks the caller is.

use actix_web::{HttpResponse, web};
use serde::Serialize;

use super::{AppState, Authenticated};

/// The caller's identity.
#[derive(Debug, Serialize, serde::Deserialize)]
pub(super) struct WhoAmI {
    /// Partner id from the certificate.
    pub partner: String,
    /// Partner kind from the registry.
    pub partner_kind: String,
    /// Partner display name from the registry.
    pub partner_name: String,
    /// The token's subject.
    pub user: String,
    /// Roles from the token.
    pub roles: Vec<String>,
    /// SHA-256 of the client certificate, lower-case hex.
    pub certificate_sha256: String,
}

/// Answers with the authenticated principal.
#[utoipa::path(
    get,
    path = "/v1/whoami",
    tag = "health",
    operation_id = "whoami",
    summary = "The authenticated partner and user",
    responses(
        (status = 200, description = "`{partner, partner_kind, partner_name, user, roles, certificate_sha256}`", body = Object),
        (status = 401, description = "a `token_*` code: token missing, malformed, expired, not yet valid, wrongly bound, ...", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [], "bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(partner = %who.0.partner))]
pub(super) async fn whoami(who: Authenticated, state: web::Data<AppState>) -> HttpResponse {
    let p = who.0;
    let partner_name = state
        .services
        .policy
        .load()
        .partners
        .get(&p.partner)
        .map(|x| x.display_name.clone())
        .unwrap_or_default();
    HttpResponse::Ok().json(WhoAmI {
        partner: p.partner.to_string(),
        partner_kind: p.partner_kind.to_string(),
        partner_name,
        user: p.user.to_string(),
        roles: p.roles.iter().map(ToString::to_string).collect(),
        certificate_sha256: p.cert_fingerprint.to_hex(),
    })
}
