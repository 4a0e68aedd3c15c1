//! `GET /metrics` in the Prometheus text format, on a listener of its own (`[metrics]`,
//! off by default; plain HTTP on loopback by default when on), so that scrapers never reach
//! the API and the API's mutual TLS needs no exception.
//!
//! What it reports: requests by route pattern, method and status; disclosures and denials by
//! recipient partner and purpose; disclosure-log append latency, entries per group commit and
//! commits; database pool waits; hit and miss counts of the three caches (data keys, tokens,
//! consents; the hit rate is `hits / (hits + misses)`); open connections; seconds left until
//! each CRL's nextUpdate and each MOU's end; readiness; the policy-set hash as a label.
//!
//! Security role: labels are route patterns, methods, statuses, partner ids, purposes,
//! outcomes, cache names, CA names, MOU ids and the policy-set hash. No subject, user, record,
//! field value or path ever appears in a label or a value (route *patterns* are used, and the
//! log's counters map anything not shaped like a partner id or purpose to `other`).

use std::net::{SocketAddr, TcpListener};

use actix_web::{App, HttpResponse, HttpServer, web};
use chrono::{DateTime, NaiveTime, Utc};
use prometheus::{
    Encoder, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::api::AppState;

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Option<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels).ok()?;
    r.register(Box::new(c.clone())).ok()?;
    Some(c)
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Option<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).ok()?;
    r.register(Box::new(g.clone())).ok()?;
    Some(g)
}

fn float_gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Option<GaugeVec> {
    let g = GaugeVec::new(Opts::new(name, help), labels).ok()?;
    r.register(Box::new(g.clone())).ok()?;
    Some(g)
}

fn counter(r: &Registry, name: &str, help: &str, value: u64) {
    if let Ok(c) = IntCounter::new(name, help) {
        c.inc_by(value);
        let _ = r.register(Box::new(c));
    }
}

fn gauge(r: &Registry, name: &str, help: &str, value: i64) {
    if let Ok(g) = IntGauge::new(name, help) {
        g.set(value);
        let _ = r.register(Box::new(g));
    }
}

/// The CA's common name (`CN=...`) if it has one, else the whole name.
fn issuer_label(issuer: &str) -> &str {
    issuer
        .split(',')
        .map(str::trim)
        .find_map(|rdn| rdn.strip_prefix("CN="))
        .unwrap_or(issuer)
}

fn seconds_until(rfc3339: &str, now: DateTime<Utc>) -> Option<f64> {
    let t = DateTime::parse_from_rfc3339(rfc3339).ok()?;
    Some((t.with_timezone(&Utc) - now).num_milliseconds() as f64 / 1000.0)
}

/// The metrics text for `state`, as of now.
pub fn render(state: &AppState) -> String {
    let r = Registry::new();
    let now = Utc::now();
    let services = &state.services;

    // Long-lived instruments kept by the layers that measure them.
    let log = services.log.metrics();
    if let Some(h) = &log.append_seconds {
        let _ = r.register(Box::new(h.clone()));
    }
    if let Some(h) = &log.batch_entries {
        let _ = r.register(Box::new(h.clone()));
    }
    if let Some(c) = &log.disclosures {
        let _ = r.register(Box::new(c.clone()));
    }
    if let Some(h) = services.store.pool_wait_histogram() {
        let _ = r.register(Box::new(h.clone()));
    }

    // Snapshots of counters kept as plain numbers.
    if let Some(c) = counter_vec(
        &r,
        "gateway_http_requests_total",
        "HTTP requests answered, by route pattern (`/v1/disclosures/:seq`; `unmatched`: no \
         route), method and status",
        &["route", "method", "status"],
    ) {
        for ((route, method, status), n) in state.http.requests() {
            let status = status.to_string();
            c.with_label_values(&[route.as_str(), method.as_str(), status.as_str()])
                .inc_by(n);
        }
    }
    let stats = services.log.stats();
    counter(
        &r,
        "gateway_log_commits_total",
        "group commits of the disclosure-log writer",
        stats.commits,
    );
    counter(
        &r,
        "gateway_log_entries_total",
        "entries committed by the disclosure-log writer (entries committed with a change, \
         such as an emergency disclosure or a consent, are not included)",
        stats.entries,
    );
    counter(
        &r,
        "gateway_log_failed_commits_total",
        "group commits that failed (their callers got 503 and nothing was disclosed)",
        stats.failed_commits,
    );
    let caches = [
        (
            "data_keys",
            services.keyring.cache_stats(),
            services.keyring.cached_data_keys(),
        ),
        ("tokens", state.tokens.stats(), state.tokens.len()),
        (
            "consents",
            services.consents.stats(),
            services.consents.len(),
        ),
    ];
    if let (Some(hits), Some(misses), Some(entries)) = (
        counter_vec(
            &r,
            "gateway_cache_hits_total",
            "lookups a cache answered",
            &["cache"],
        ),
        counter_vec(
            &r,
            "gateway_cache_misses_total",
            "lookups a cache passed to the source (a miss, or an entry no longer valid)",
            &["cache"],
        ),
        gauge_vec(
            &r,
            "gateway_cache_entries",
            "entries a cache holds",
            &["cache"],
        ),
    ) {
        for (name, (h, m), n) in caches {
            hits.with_label_values(&[name]).inc_by(h);
            misses.with_label_values(&[name]).inc_by(m);
            entries
                .with_label_values(&[name])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
    gauge(
        &r,
        "gateway_open_connections",
        "TLS connections open on the API listener",
        state.http.open_connections(),
    );
    let crl = state.verifier.crl_health(now.timestamp());
    gauge(
        &r,
        "gateway_ready",
        "1 when /healthz would answer 200: the background probe last reached the database, \
         this replica's master key file covers every data key and every CRL is within its \
         grace period (0 while /healthz answers 503 service_unavailable, key_version_missing \
         or crl_expired)",
        i64::from(state.readiness.verdict(&crl).is_ok()),
    );
    if let Some(g) = float_gauge_vec(
        &r,
        "gateway_crl_seconds_to_next_update",
        "seconds until each CRL's nextUpdate, by the issuing CA's common name (negative: \
         stale; its CA's certificates are refused once `tls.crl_grace_secs` more have passed)",
        &["issuer"],
    ) {
        for l in &crl.lists {
            if let Some(s) = seconds_until(&l.next_update, now) {
                g.with_label_values(&[issuer_label(&l.issuer)]).set(s);
            }
        }
    }
    let policy = services.policy();
    if let Some(g) = float_gauge_vec(
        &r,
        "gateway_mou_seconds_to_expiry",
        "seconds until the end of each MOU's term (its last day, 24:00 UTC)",
        &["mou"],
    ) {
        for m in &policy.mous {
            let end = m.expires.and_time(NaiveTime::MIN).and_utc() + chrono::Duration::days(1);
            g.with_label_values(&[m.id.as_str()])
                .set((end - now).num_milliseconds() as f64 / 1000.0);
        }
    }
    if let Some(g) = gauge_vec(
        &r,
        "gateway_policy_set_info",
        "the policy set in force (its content hash), always 1",
        &["hash"],
    ) {
        g.with_label_values(&[policy.hash.as_str()]).set(1);
    }

    let mut out = Vec::new();
    if TextEncoder::new().encode(&r.gather(), &mut out).is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .body(render(&state))
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("text/plain; charset=utf-8")
        .body("this listener serves GET /metrics only\n")
}

/// Binds and starts the metrics listener (one worker). Returns the server (to stop it) and
/// the bound address.
pub fn serve(
    listen: SocketAddr,
    state: web::Data<AppState>,
) -> anyhow::Result<(actix_server::Server, SocketAddr)> {
    if !listen.ip().is_loopback() {
        tracing::warn!(
            addr = %listen,
            "the metrics listener is not on loopback: it is plain HTTP without authentication; \
             restrict who can reach it"
        );
    }
    let listener = TcpListener::bind(listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen} for metrics: {e}"))?;
    let addr = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/metrics", web::get().to(metrics))
            .default_service(web::to(not_found))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok((server, addr))
}
