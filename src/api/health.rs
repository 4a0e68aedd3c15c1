//! `GET /healthz`: readiness over the same mTLS listener (a client certificate is required, a
//! user token is not). The certificate is re-checked on every request like on every other
//! route, so a connection whose certificate was revoked, expired or unregistered since it
//! opened is refused (403 `certificate_refused`) here too.
//!
//! The answer comes from a readiness state that a background probe keeps fresh (one database
//! round trip every [`PROBE_EVERY`], bounded by the acquire timeout), not from a query per
//! request: a load balancer polling every replica cannot load the database, and when the
//! database is gone `/healthz` says so within about a second instead of waiting for it. A
//! readiness answer of 200 does not stand in for the disclosure path's own guarantee: every
//! disclosure still waits for its durable log entry.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use serde_json::json;

use super::AppState;
use crate::error::ApiError;
use crate::store::Store;

/// How often the background probe asks the database.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);

/// The readiness state: whether the last probe reached the database, and when it ran.
#[derive(Debug, Clone)]
pub struct Readiness {
    ok: Arc<AtomicBool>,
    checked_at_us: Arc<AtomicI64>,
}

impl Readiness {
    /// Starts the probe task (inside a Tokio runtime). The state starts as ready: the gateway
    /// has just opened the database and migrated it.
    pub fn spawn(store: Store) -> Self {
        let r = Self {
            ok: Arc::new(AtomicBool::new(true)),
            checked_at_us: Arc::new(AtomicI64::new(Utc::now().timestamp_micros())),
        };
        let probe = r.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROBE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let limit = store.acquire_timeout();
                let ok = matches!(tokio::time::timeout(limit, store.ping()).await, Ok(Ok(())));
                if ok != probe.ok.swap(ok, Ordering::Relaxed) {
                    if ok {
                        tracing::warn!("the database answers again: ready");
                    } else {
                        tracing::error!("the database does not answer: not ready");
                    }
                }
                probe
                    .checked_at_us
                    .store(Utc::now().timestamp_micros(), Ordering::Relaxed);
            }
        });
        r
    }

    /// Whether the last probe reached the database.
    pub fn is_ready(&self) -> bool {
        self.ok.load(Ordering::Relaxed)
    }
}

/// Answers 200 when the last probe reached the database and every CRL is within its grace
/// period, 503 otherwise. The `mou` member warns of MOUs expiring within
/// `policy.expiry_warning_days` days or expired. The `crl` member reports the revocation lists:
/// `ok`, `stale` (past nextUpdate, still used) or `expired` (past the grace period: the issuer's
/// certificates are refused, and the answer is 503 with code `crl_expired`).
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    operation_id = "healthz",
    summary = "Readiness (a partner certificate, no token)",
    responses(
        (status = 200, description = "`{status, policy_set, crl, mou}`: `mou` warns of MOUs expiring within `policy.expiry_warning_days` days or expired (a warning, never a 503)", body = Object),
        (status = 503, description = "`service_unavailable` (database unreachable) or `crl_expired`", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [])),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn healthz(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::auth::certified_partner(&state, &req)?;
    if !state.readiness.is_ready() {
        return Err(ApiError::Unavailable(anyhow::anyhow!(
            "readiness probe: the database does not answer"
        )));
    }
    let crl = state.verifier.crl_health(Utc::now().timestamp());
    let policy = state.services.policy.load();
    let policy_set = policy.hash.clone();
    let mou = mou_health(
        &policy,
        state.services.now(),
        state.settings.policy.expiry_warning_days,
    );
    if crl.is_expired() {
        return Ok(HttpResponse::ServiceUnavailable()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({
                "status": "unavailable",
                "code": "crl_expired",
                "message": crl.message,
                "policy_set": policy_set,
                "crl": crl,
                "mou": mou,
            })));
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "status": "ok",
            "policy_set": policy_set,
            "crl": crl,
            "mou": mou,
        })))
}

/// The MOU terms for `/healthz`: `status` is `expired` when an MOU has expired (its rules no
/// longer apply), `expiring` when one expires within `warn_days` days, `ok` otherwise; `terms`
/// lists every MOU with its last day and the days left. A warning, never a 503: the gateway
/// still answers, and what an expired MOU granted is refused.
fn mou_health(
    policy: &crate::policy::PolicySet,
    now: chrono::DateTime<Utc>,
    warn_days: u32,
) -> serde_json::Value {
    use crate::policy::term::{TermStatus, terms};
    let terms = terms(policy, now, warn_days);
    let status = if terms.iter().any(|t| t.status == TermStatus::Expired) {
        "expired"
    } else if terms.iter().any(|t| t.status == TermStatus::Expiring) {
        "expiring"
    } else {
        "ok"
    };
    json!({ "status": status, "warning_days": warn_days, "terms": terms })
}
