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
//!
//! The probe also keeps the start-up key check true while the gateway runs: whenever the
//! database's key epoch moves (`keys rotate`, `rewrap`, `retire` on any replica) and whenever a
//! read met a data key under a master-key version this gateway lacks, it re-checks the key
//! file against the database ([`crate::service::keys::check_versions`]). A gateway whose key file
//! lacks a version that data keys are wrapped under answers 503 `key_version_missing` until
//! it is restarted with the current key file, so a load balancer sends its requests to the
//! replicas that can open them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use arc_swap::ArcSwapOption;
use chrono::Utc;
use serde_json::json;

use super::AppState;
use crate::crypto::Keyring;
use crate::domain::Code;
use crate::error::ApiError;
use crate::service::keys::{self, KeyringError};
use crate::store::{Store, epochs};
use crate::tls::CrlHealth;

/// How often the background probe asks the database.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);

/// Longest a key re-check may take (it counts the data keys per master-key version).
const KEY_CHECK_LIMIT: Duration = Duration::from_secs(30);

/// Least time between two key re-checks prompted by failed reads (not by a moved epoch).
const KEY_RECHECK_AFTER_MISS: Duration = Duration::from_secs(2);

/// The readiness state: whether the last probe reached the database, when it ran, and whether
/// this gateway's key file still covers the database's data keys.
#[derive(Debug, Clone)]
pub struct Readiness {
    ok: Arc<AtomicBool>,
    checked_at_us: Arc<AtomicI64>,
    key_problem: Arc<ArcSwapOption<String>>,
}

impl Readiness {
    /// Starts the probe task (inside a Tokio runtime). The state starts as ready: the gateway
    /// has just opened the database, migrated it and checked `keyring` against it.
    pub fn spawn(store: Store, keyring: Arc<Keyring>) -> Self {
        let r = Self {
            ok: Arc::new(AtomicBool::new(true)),
            checked_at_us: Arc::new(AtomicI64::new(Utc::now().timestamp_micros())),
            key_problem: Arc::new(ArcSwapOption::empty()),
        };
        let probe = r.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROBE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut watch = KeyWatch::default();
            loop {
                tick.tick().await;
                let limit = store.acquire_timeout();
                // One round trip, as a ping would be, that also brings the key epoch.
                let read = tokio::time::timeout(limit, read_epochs(&store)).await;
                let key_epoch = match read {
                    Ok(Ok(e)) => Some(e.keys),
                    _ => None,
                };
                let ok = key_epoch.is_some();
                if ok != probe.ok.swap(ok, Ordering::Relaxed) {
                    if ok {
                        tracing::warn!("the database answers again: ready");
                    } else {
                        tracing::error!("the database does not answer: not ready");
                    }
                }
                if let Some(epoch) = key_epoch
                    && watch.due(epoch, keyring.missing_version_reads(), probe.key_problem())
                {
                    probe.check_keys(&store, &keyring, &mut watch, epoch).await;
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

    /// Whether this replica should get requests, given the revocation lists' health `crl`:
    /// the one verdict behind both `/healthz`'s status and the `gateway_ready` metric, so
    /// that the two cannot disagree. The first reason found, in the order `/healthz` reports
    /// them: the database, the key file, the CRLs.
    pub fn verdict(&self, crl: &CrlHealth) -> Result<(), NotReady> {
        if !self.is_ready() {
            return Err(NotReady::Database);
        }
        if let Some(problem) = self.key_problem() {
            return Err(NotReady::KeyVersionMissing(problem));
        }
        if crl.is_expired() {
            return Err(NotReady::CrlExpired);
        }
        Ok(())
    }

    /// Why this gateway's key file no longer covers the database's data keys, if it does not.
    pub fn key_problem(&self) -> Option<Arc<String>> {
        self.key_problem.load_full()
    }

    async fn check_keys(&self, store: &Store, keyring: &Keyring, w: &mut KeyWatch, epoch: i64) {
        let checked = tokio::time::timeout(KEY_CHECK_LIMIT, keys::check_versions(keyring, store));
        // What `/healthz` says (no file names); the log line carries the whole error.
        let problem = match checked.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => match unfit(&e) {
                Some(public) => Some((public, e.to_string())),
                // The database failed: no verdict, try again on the next probe.
                None => {
                    tracing::warn!(error = %e, "cannot re-check the master key file; retrying");
                    return;
                }
            },
            Err(_) => {
                tracing::warn!("re-checking the master key file timed out; retrying");
                return;
            }
        };
        w.checked(epoch, keyring.missing_version_reads());
        match (&problem, self.key_problem().is_some()) {
            (Some((_, detail)), false) => {
                // Operators alert on this line: the replica is out of service until restarted
                // with the current key file.
                tracing::error!(alert = "master_key_version_missing", "not ready: {detail}");
            }
            (None, true) => {
                tracing::warn!("the master key file covers every data key again: ready");
            }
            _ => {}
        }
        self.key_problem
            .store(problem.map(|(public, _)| Arc::new(public)));
    }
}

/// Why `/healthz` answers 503 (and `gateway_ready` is 0).
#[derive(Debug, Clone)]
pub enum NotReady {
    /// The last probe did not reach the database (`service_unavailable`).
    Database,
    /// This gateway's key file lacks a master-key version the data keys are wrapped under, or
    /// holds another key under a version's number (`key_version_missing`); what `/healthz`
    /// says of it (no file names).
    KeyVersionMissing(Arc<String>),
    /// A CA's CRL is past its grace period, so its partners' certificates are refused
    /// (`crl_expired`).
    CrlExpired,
}

/// What `/healthz` says when the key check finds this gateway unfit for its database (no file
/// names: the log line carries the whole error); `None` for other failures.
fn unfit(e: &KeyringError) -> Option<String> {
    match e {
        KeyringError::MissingVersions { versions, .. } => Some(format!(
            "data keys are wrapped under master key version(s) {versions}, which this \
             gateway's key file lacks; restart it with the current key file"
        )),
        KeyringError::FingerprintMismatch { version, .. } => Some(format!(
            "master key version {version} in this gateway's key file is not the one the \
             database recorded; restart it with the database's key file"
        )),
        _ => None,
    }
}

/// When the probe last re-checked the key file, and against what.
#[derive(Debug, Default)]
struct KeyWatch {
    epoch: Option<i64>,
    misses: u64,
    at: Option<Instant>,
}

impl KeyWatch {
    /// A re-check is due when the key epoch moved since the last one, or when a read met a key
    /// under a missing version since then (at most every [`KEY_RECHECK_AFTER_MISS`], and not
    /// while the gateway is already out of service for it).
    fn due(&self, epoch: i64, misses: u64, problem: Option<Arc<String>>) -> bool {
        if self.epoch != Some(epoch) {
            return true;
        }
        misses != self.misses
            && problem.is_none()
            && self
                .at
                .is_none_or(|t| t.elapsed() >= KEY_RECHECK_AFTER_MISS)
    }

    fn checked(&mut self, epoch: i64, misses: u64) {
        self.epoch = Some(epoch);
        self.misses = misses;
        self.at = Some(Instant::now());
    }
}

async fn read_epochs(store: &Store) -> Result<epochs::Epochs, crate::store::StoreError> {
    let mut pooled = store.acquire().await?;
    epochs::get(&mut pooled.conn()).await
}

/// Answers 200 when the last probe reached the database, the key file covers the database's
/// data keys and every CRL is within its grace period, 503 otherwise (code
/// `service_unavailable`, `key_version_missing` or `crl_expired`). The `mou` member warns of
/// MOUs expiring within `policy.expiry_warning_days` days or expired. The `crl` member reports
/// the revocation lists: `ok`, `stale` (past nextUpdate, still used) or `expired` (past the
/// grace period: the issuer's certificates are refused). The status comes from
/// [`Readiness::verdict`], as does the `gateway_ready` metric.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    operation_id = "healthz",
    summary = "Readiness (a partner certificate, no token)",
    responses(
        (status = 200, description = "`{status, policy_set, crl, mou}`: `mou` warns of MOUs expiring within `policy.expiry_warning_days` days or expired (a warning, never a 503)", body = Object),
        (status = 503, description = "`service_unavailable` (database unreachable), `key_version_missing` (the key file lacks a master-key version the database uses) or `crl_expired`", body = crate::error::ErrorBody),
    ),
    security(("mutual_tls" = [])),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn healthz(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::auth::certified_partner(&state, &req)?;
    let crl = state.verifier.crl_health(Utc::now().timestamp());
    let policy = state.services.policy.load();
    let policy_set = policy.hash.clone();
    let mou = mou_health(
        &policy,
        state.services.now(),
        state.settings.policy.expiry_warning_days,
    );
    match state.readiness.verdict(&crl) {
        Ok(()) => Ok(HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({
                "status": "ok",
                "policy_set": policy_set,
                "crl": crl,
                "mou": mou,
            }))),
        Err(NotReady::Database) => Err(ApiError::Unavailable(anyhow::anyhow!(
            "readiness probe: the database does not answer"
        ))),
        Err(NotReady::KeyVersionMissing(problem)) => Ok(HttpResponse::ServiceUnavailable()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({
                "status": "unavailable",
                "code": Code::KeyVersionMissing,
                "message": format!("this gateway cannot open every stored record: {problem}"),
                "policy_set": policy_set,
                "mou": mou,
                "crl": crl,
            }))),
        Err(NotReady::CrlExpired) => Ok(HttpResponse::ServiceUnavailable()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({
                "status": "unavailable",
                "code": Code::CrlExpired,
                "message": crl.message,
                "policy_set": policy_set,
                "crl": crl,
                "mou": mou,
            }))),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn crl(status: &'static str) -> CrlHealth {
        CrlHealth {
            status,
            next_update: None,
            grace_ends: None,
            message: None,
            lists: Vec::new(),
        }
    }

    #[test]
    fn the_verdict_names_the_first_reason_in_the_order_healthz_reports_them() {
        let r = Readiness {
            ok: Arc::new(AtomicBool::new(true)),
            checked_at_us: Arc::new(AtomicI64::new(0)),
            key_problem: Arc::new(ArcSwapOption::empty()),
        };
        assert!(r.verdict(&crl("ok")).is_ok());
        assert!(
            r.verdict(&crl("stale")).is_ok(),
            "a stale CRL is still used"
        );
        assert!(matches!(
            r.verdict(&crl("expired")),
            Err(NotReady::CrlExpired)
        ));
        r.key_problem.store(Some(Arc::new("missing".to_owned())));
        assert!(matches!(
            r.verdict(&crl("expired")),
            Err(NotReady::KeyVersionMissing(p)) if p.as_str() == "missing"
        ));
        r.ok.store(false, Ordering::Relaxed);
        assert!(matches!(
            r.verdict(&crl("expired")),
            Err(NotReady::Database)
        ));
    }

    #[test]
    fn the_key_check_is_due_when_the_epoch_moves_or_a_read_met_a_missing_version() {
        let mut w = KeyWatch::default();
        assert!(w.due(5, 0, None), "the first probe checks");
        w.checked(5, 0);
        assert!(!w.due(5, 0, None), "nothing changed");
        assert!(w.due(6, 0, None), "the key epoch moved");
        // A failed read prompts a check, but not more often than every couple of seconds.
        assert!(!w.due(5, 1, None), "just checked");
        w.at = Instant::now().checked_sub(KEY_RECHECK_AFTER_MISS);
        assert!(w.due(5, 1, None));
        // Already out of service for it: only a moved epoch prompts another check.
        let problem = Some(Arc::new("missing".to_owned()));
        assert!(!w.due(5, 1, problem.clone()));
        assert!(w.due(7, 1, problem));
    }
}
