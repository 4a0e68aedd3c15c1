//! `GET /metrics`: off by default; when on, a separate plain-HTTP listener on loopback whose
//! text a real Prometheus parser reads, with the counters the issue asks for and no subject,
//! user, record or value in any label.

use std::collections::BTreeMap;

use coresponse_gateway::devinit::seed;
use prometheus_parse::{Sample, Scrape, Value as PValue};

use crate::records_api::{read, who};
use crate::support::{Db, TestApp, spawn_app, spawn_with};

pub(crate) async fn scrape(app: &TestApp) -> (String, Scrape) {
    let addr = app.metrics_addr.expect("metrics enabled");
    assert!(addr.ip().is_loopback());
    let res = reqwest::Client::new()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = res.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let parsed = Scrape::parse(lines).expect("the Prometheus text format");
    (text, parsed)
}

pub(crate) fn value(s: &Sample) -> f64 {
    match &s.value {
        PValue::Counter(v) | PValue::Gauge(v) | PValue::Untyped(v) => *v,
        PValue::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
        PValue::Summary(_) => 0.0,
    }
}

pub(crate) fn find<'a>(s: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    s.samples
        .iter()
        .filter(|x| x.metric == metric)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .collect()
}

/// `gateway_ready` as the gateway's metrics listener reports it.
pub(crate) async fn ready(app: &TestApp) -> f64 {
    let (_, scrape) = scrape(app).await;
    let samples = find(&scrape, "gateway_ready", &[]);
    assert_eq!(samples.len(), 1);
    value(samples[0])
}

#[tokio::test]
async fn metrics_are_off_by_default() {
    let app = spawn_app(Db::Sqlite).await;
    assert!(app.metrics_addr.is_none());
    assert!(!app.state.settings.metrics.enabled);
    app.stop().await;
}

#[tokio::test]
async fn metrics_parse_and_never_name_a_person() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = spawn_with(db, |s| {
            s.metrics.enabled = true;
            s.metrics.listen = "127.0.0.1:0".parse().unwrap();
        })
        .await;
        seed::seed(app.services()).await.unwrap();
        let clin = who("county-mh", "clin-7", &["clinician"]);
        for _ in 0..2 {
            let (s, _, b) = read(
                &app,
                &clin,
                "/v1/records/crisis-incident/INC-2026-0042",
                Some("treatment"),
                &[],
            )
            .await;
            assert_eq!(s, 200, "{b}");
        }
        let officer = who("metro-pd", "officer-17", &["officer"]);
        let (s, _, _) = read(
            &app,
            &officer,
            "/v1/records/safety-plan/SP-1001",
            Some("investigation"),
            &[],
        )
        .await;
        assert_eq!(s, 403);
        let (s, _, _) = read(&app, &officer, "/v1/no/such/route/P-2231", None, &[]).await;
        assert_eq!(s, 404);

        let (text, m) = scrape(&app).await;
        // Requests by route pattern and status.
        let ok = find(
            &m,
            "gateway_http_requests_total",
            &[
                ("route", "/v1/records/:kind/:id"),
                ("method", "GET"),
                ("status", "200"),
            ],
        );
        assert_eq!(
            ok.iter().map(|s| value(s)).sum::<f64>(),
            2.0,
            "{db:?}\n{text}"
        );
        assert!(!find(&m, "gateway_http_requests_total", &[("status", "403")]).is_empty());
        assert!(
            !find(
                &m,
                "gateway_http_requests_total",
                &[("route", "unmatched"), ("status", "404")]
            )
            .is_empty()
        );
        // Disclosures and denials by recipient and purpose.
        let permits = find(
            &m,
            "gateway_disclosures_total",
            &[
                ("recipient", "county-mh"),
                ("purpose", "treatment"),
                ("outcome", "permit"),
            ],
        );
        assert_eq!(permits.len(), 1, "{text}");
        assert_eq!(value(permits[0]), 2.0);
        let denials = find(
            &m,
            "gateway_disclosures_total",
            &[
                ("recipient", "metro-pd"),
                ("purpose", "investigation"),
                ("outcome", "deny"),
            ],
        );
        assert_eq!(denials.len(), 1, "{text}");
        // Log append latency and batch size, pool waits (histograms).
        for h in [
            "gateway_log_append_seconds",
            "gateway_log_batch_entries",
            "gateway_db_pool_wait_seconds",
        ] {
            let count = find(&m, &format!("{h}_count"), &[]);
            assert!(
                count.first().is_some_and(|s| value(s) > 0.0),
                "{h} has no observations:\n{text}"
            );
        }
        assert!(
            find(&m, "gateway_log_commits_total", &[])
                .first()
                .is_some_and(|s| value(s) > 0.0)
        );
        // Cache hit and miss counts: the second read hit the token and data-key caches.
        for cache in ["data_keys", "tokens", "consents"] {
            let hits = find(&m, "gateway_cache_hits_total", &[("cache", cache)]);
            let misses = find(&m, "gateway_cache_misses_total", &[("cache", cache)]);
            assert_eq!((hits.len(), misses.len()), (1, 1), "{cache}\n{text}");
            assert!(value(hits[0]) + value(misses[0]) > 0.0, "{cache}");
        }
        assert!(value(find(&m, "gateway_cache_hits_total", &[("cache", "tokens")])[0]) >= 1.0);
        // Connections, readiness, CRL and MOU time left, the policy set.
        assert_eq!(find(&m, "gateway_open_connections", &[]).len(), 1);
        assert_eq!(value(find(&m, "gateway_ready", &[])[0]), 1.0);
        let crl = find(&m, "gateway_crl_seconds_to_next_update", &[]);
        assert!(
            !crl.is_empty() && crl.iter().all(|s| value(s) > 0.0),
            "{text}"
        );
        let mous = find(&m, "gateway_mou_seconds_to_expiry", &[]);
        assert!(!mous.is_empty(), "{text}");
        let hash = app.services().policy().hash.clone();
        let info = find(&m, "gateway_policy_set_info", &[("hash", hash.as_str())]);
        assert_eq!(info.len(), 1, "{text}");

        // No subject, user, record or value anywhere, in a label or otherwise.
        for secret in [
            "P-2231",
            "MRN-1001",
            "Jordan",
            "clin-7",
            "officer-17",
            "INC-2026-0042",
            "SP-1001",
            "/v1/no/such",
        ] {
            assert!(!text.contains(secret), "{db:?}: `{secret}` in the metrics");
        }
        let labels: BTreeMap<&str, usize> = m
            .samples
            .iter()
            .flat_map(|s| s.labels.keys())
            .map(|k| (k.as_str(), 0))
            .collect();
        for k in labels.keys() {
            assert!(
                [
                    "route",
                    "method",
                    "status",
                    "recipient",
                    "purpose",
                    "outcome",
                    "cache",
                    "issuer",
                    "mou",
                    "hash",
                    "le",
                ]
                .contains(k),
                "unexpected label `{k}`"
            );
        }
        // Only /metrics on that listener.
        let addr = app.metrics_addr.unwrap();
        let res = reqwest::get(format!("http://{addr}/v1/whoami"))
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
        app.stop().await;
    }
}
