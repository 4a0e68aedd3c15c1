//! HTTP load run (`cargo bench --bench http`): a full gateway on SQLite with the demo data,
//! driven over mutual TLS with keep-alive connections from the same process, as in the
//! baselines of the design notes (client and server share the machine's cores).
//!
//! Two targets:
//!
//! 1. `GET /healthz`: TLS, routing and JSON only (the ceiling for this build);
//! 2. `GET /v1/records/crisis-incident/INC-2026-0042` as a clinician with `Purpose-Of-Use:
//!    treatment`: the whole disclosure path (certificate re-check, token verification,
//!    decryption, decision, durable log append through group commit, redaction).
//!
//! Prints requests per second and the p50/p99 latency of each. `HTTP_BENCH_SECS` (default 10)
//! and `HTTP_BENCH_CONNECTIONS` (default 32) set the run.

// Test and benchmark code may unwrap, expect, panic and index: a failure here is a failed
// test, not an outage (library code denies all four, see Cargo.toml).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#[allow(dead_code, unreachable_pub)]
#[path = "../tests/api/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{Db, client, pki, spawn_app};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Run {
    requests: usize,
    errors: usize,
    secs: f64,
    p50: Duration,
    p99: Duration,
}

async fn load(
    url: String,
    identity: (String, String),
    headers: Vec<(&'static str, String)>,
    connections: usize,
    secs: u64,
) -> Run {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let identity = Arc::new(identity);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let c = client(Some(&identity));
        let url = url.clone();
        let headers = headers.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let mut req = c.get(&url);
                for (k, v) in &headers {
                    req = req.header(*k, v);
                }
                let t = Instant::now();
                match req.send().await {
                    Ok(res) if res.status().is_success() => {
                        let _ = res.bytes().await;
                        lat.push(t.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.expect("load task");
        all.extend(lat);
        errors += e;
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Run {
        requests: all.len(),
        errors,
        secs,
        p50: pct(0.50),
        p99: pct(0.99),
    }
}

fn report(name: &str, r: &Run) {
    println!(
        "{name:<44} {:>9.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   ({} requests, {} errors)",
        r.requests as f64 / r.secs,
        r.p50.as_secs_f64() * 1000.0,
        r.p99.as_secs_f64() * 1000.0,
        r.requests,
        r.errors
    );
}

#[tokio::main]
async fn main() {
    let secs = env("HTTP_BENCH_SECS", 10);
    let connections = usize::try_from(env("HTTP_BENCH_CONNECTIONS", 32)).unwrap_or(32);
    let app = spawn_app(Db::Sqlite).await;
    coresponse_gateway::devinit::seed::seed(&app.state.services)
        .await
        .expect("demo data");
    let clinician = pki().partner_cert("county-mh");
    let token = pki().token("county-mh", "clin-7", &["clinician"], &clinician.0);
    println!("{connections} connections, {secs} s each, HTTP/1.1 keep-alive, mutual TLS");

    let health = load(
        app.url("/healthz"),
        clinician.clone(),
        vec![],
        connections,
        secs,
    )
    .await;
    report("GET /healthz", &health);

    let read = load(
        app.url("/v1/records/crisis-incident/INC-2026-0042"),
        clinician,
        vec![
            ("Authorization", format!("Bearer {token}")),
            ("Purpose-Of-Use", "treatment".into()),
        ],
        connections,
        secs,
    )
    .await;
    report("GET /v1/records/... (decide, log, redact)", &read);
    app.stop().await;
}
