//! The compliance console's server side: its static files and their headers, the OpenAPI
//! document, the overview aggregate, per-field reasons in log entries, and one emergency
//! review with its window's disclosures. Every console read is a `log_read` entry.

use coresponse_gateway::audit::{EntryKind, Outcome, query};
use coresponse_gateway::devinit::seed;
use serde_json::Value;

use crate::records_api::{post, read, who};
use crate::support::{Db, TestApp, client, pki, spawn_app};

const EMERGENCY: [(&str, &str); 3] = [
    ("Emergency-Basis", "credible-representation"),
    (
        "Emergency-Source",
        "dispatch: caller is the person's sister",
    ),
    ("Emergency-Description", "person on a bridge with a knife"),
];

fn auditor() -> crate::records_api::Who {
    who("oversight", "aud-1", &["compliance"])
}

/// The README journeys on the demo data: a clinician's treatment read, police status reads,
/// the crisis-plan extract, a refused investigation read, and an emergency read.
async fn journeys(app: &TestApp) {
    let report = seed::seed(app.services()).await.unwrap();
    // The journeys' 7 records and the demo year (counted exactly in `demo.rs`).
    assert!(report.records > 7, "{}", report.records);
    let clin = who("county-mh", "clin-7", &["clinician"]);
    let officer = who("metro-pd", "officer-17", &["officer"]);
    let (s, _, b) = read(
        app,
        &clin,
        "/v1/records/crisis-incident/INC-2026-0042",
        Some("treatment"),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, _, b) = read(
        app,
        &officer,
        "/v1/referrals/REF-DEMO-1",
        Some("referral-followup"),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, _, _) = read(
        app,
        &officer,
        "/v1/records/safety-plan/SP-1001",
        Some("investigation"),
        &[],
    )
    .await;
    assert_eq!(s, 403);
    let (s, _, b) = read(
        app,
        &officer,
        "/v1/records/safety-plan/SP-1001",
        Some("emergency"),
        &EMERGENCY,
    )
    .await;
    assert_eq!(s, 200, "{b}");
}

async fn log_reads(app: &TestApp) -> Vec<String> {
    app.log_entries(&query::Filter {
        kinds: vec![EntryKind::LogRead],
        limit: 500,
        ..Default::default()
    })
    .await
    .into_iter()
    .map(|e| {
        format!(
            "{} {}",
            e.data.outcome.as_str(),
            e.data.detail.unwrap_or_default()
        )
    })
    .collect()
}

#[tokio::test]
async fn the_overview_counts_without_naming_anyone_and_is_logged() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = spawn_app(db).await;
        journeys(&app).await;
        let aud = auditor();
        let (s, _, v) = read(&app, &aud, "/v1/audit/verify", None, &[]).await;
        assert_eq!((s, &v["ok"]), (200, &Value::Bool(true)), "{v}");

        let (s, _, o) = read(&app, &aud, "/v1/audit/overview", None, &[]).await;
        assert_eq!(s, 200, "{db:?}: {o}");
        let t = &o["totals"];
        assert!(t["disclosures"].as_u64().unwrap() >= 3, "{o}");
        assert!(t["denials"].as_u64().unwrap() >= 1, "{o}");
        assert_eq!(t["emergency_accesses"], 1, "{o}");
        assert_eq!(o["reviews"]["open"], 1, "{o}");
        let days = o["days"].as_array().unwrap();
        assert!(
            days.iter().any(|d| d["recipient"] == "county-mh"
                && d["purpose"] == "treatment"
                && d["outcome"] == "permit"
                && d["basis"] == "mou"),
            "{o}"
        );
        assert!(
            days.iter()
                .any(|d| d["purpose"] == "investigation" && d["outcome"] == "deny"),
            "{o}"
        );
        assert_eq!(o["last_verification"]["ok"], true, "{o}");
        // The log extent is the log's: first 1, last the head.
        let head = app
            .log_entries(&query::Filter {
                limit: 1,
                ..Default::default()
            })
            .await[0]
            .seq;
        assert_eq!(o["log"]["first_seq"], 1);
        assert!(o["log"]["last_seq"].as_u64().unwrap() <= head);
        // Counts, agencies and purposes only: no subject, user, record or value.
        let text = o.to_string();
        for secret in [
            "P-2231",
            "MRN-1001",
            "Jordan",
            "clin-7",
            "officer-17",
            "INC-2026-0042",
            "SP-1001",
            "bridge",
        ] {
            assert!(!text.contains(secret), "{db:?}: `{secret}` in {text}");
        }
        assert!(
            log_reads(&app)
                .await
                .iter()
                .any(|d| d.starts_with("permit overview of the disclosure log")),
            "{db:?}"
        );

        // A clinician is refused, and the refusal is logged.
        let clin = who("county-mh", "clin-7", &["clinician"]);
        let (s, _, b) = read(&app, &clin, "/v1/audit/overview", None, &[]).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (403, Some("compliance_role_required"))
        );
        assert!(
            log_reads(&app)
                .await
                .iter()
                .any(|d| d == "deny refused: overview")
        );
        // Bad periods are named.
        for (q, param) in [
            (
                "?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
                "until",
            ),
            (
                "?since=2020-01-01T00:00:00Z&until=2026-01-01T00:00:00Z",
                "since",
            ),
            ("?since=yesterday", "since"),
            ("?days=3", "days"),
        ] {
            let (s, _, b) = read(&app, &aud, &format!("/v1/audit/overview{q}"), None, &[]).await;
            assert_eq!(
                (s, b["code"].as_str(), b["details"]["parameter"].as_str()),
                (400, Some("invalid_parameter"), Some(param)),
                "{q}: {b}"
            );
        }
        app.assert_log_verifies().await;
        app.stop().await;
    }
}

#[tokio::test]
async fn an_entry_names_each_fields_reasons_and_a_review_lists_its_window() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = spawn_app(db).await;
        seed::seed(app.services()).await.unwrap();
        let clin = who("county-mh", "clin-7", &["clinician"]);
        let (s, id, b) = read(
            &app,
            &clin,
            "/v1/records/crisis-incident/INC-2026-0042",
            Some("treatment"),
            &[],
        )
        .await;
        assert_eq!(s, 200, "{b}");
        let aud = auditor();
        let (s, _, e) = read(
            &app,
            &aud,
            &format!("/v1/disclosures/{}", id.unwrap()),
            None,
            &[],
        )
        .await;
        assert_eq!(s, 200, "{e}");
        let groups = e["field_reasons"].as_array().expect("field reasons");
        let disclosed: Vec<&str> = e["fields_disclosed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert!(!disclosed.is_empty());
        for f in &disclosed {
            let g = groups
                .iter()
                .find(|g| g["fields"].as_array().unwrap().iter().any(|x| x == f))
                .unwrap_or_else(|| panic!("no reasons for `{f}`: {e}"));
            let reasons = g["reasons"].to_string();
            assert!(reasons.contains("mou-rule:"), "{f}: {reasons}");
            // The legal basis of the rule is stated with it.
            assert!(reasons.contains('('), "{f}: {reasons}");
        }

        // Two emergency reads by one officer: one review, both disclosures in its window.
        let officer = who("metro-pd", "officer-17", &["officer"]);
        for _ in 0..2 {
            let (s, _, b) = read(
                &app,
                &officer,
                "/v1/records/safety-plan/SP-1001",
                Some("emergency"),
                &EMERGENCY,
            )
            .await;
            assert_eq!(s, 200, "{b}");
        }
        let (_, _, list) = read(&app, &aud, "/v1/reviews?state=open", None, &[]).await;
        let rid = list["reviews"][0]["id"].as_str().unwrap().to_owned();
        let (s, _, r) = read(&app, &aud, &format!("/v1/reviews/{rid}"), None, &[]).await;
        assert_eq!(s, 200, "{r}");
        assert_eq!(r["review"]["id"], rid.as_str());
        assert_eq!(r["review"]["threat"], "person on a bridge with a knife");
        let ds = r["disclosures"].as_array().unwrap();
        assert_eq!(ds.len(), 2, "{r}");
        assert!(
            ds.iter()
                .all(|d| d["basis"]["type"] == "emergency" && d["recipient_user"] == "officer-17")
        );
        assert!(
            ds[0]["seq"].as_u64() < ds[1]["seq"].as_u64(),
            "oldest first"
        );
        // The window's entries carry their sealed text opened: the threat and stated basis.
        assert!(
            ds.iter()
                .all(|d| d["justification"] == "person on a bridge with a knife"
                    && d["basis"]["stated_basis"]
                        .as_str()
                        .is_some_and(|b| !b.is_empty())),
            "{r}"
        );
        // Closing it through the API, then it shows closed.
        let (s, b) = post(
            &app,
            &aud,
            &format!("/v1/reviews/{rid}"),
            &serde_json::json!({"outcome": "justified", "note": "dispatch confirms"}),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        let (_, _, r) = read(&app, &aud, &format!("/v1/reviews/{rid}"), None, &[]).await;
        assert_eq!(r["review"]["state"], "closed");
        assert_eq!(r["review"]["note"], "dispatch confirms", "{r}");
        // Unknown reviews are 404; clinicians are refused; each read is logged.
        let (s, _, b) = read(&app, &aud, "/v1/reviews/no-such-review", None, &[]).await;
        assert_eq!((s, b["code"].as_str()), (404, Some("review_not_found")));
        let (s, _, _) = read(&app, &clin, &format!("/v1/reviews/{rid}"), None, &[]).await;
        assert_eq!(s, 403);
        let reads = log_reads(&app).await;
        assert!(
            reads
                .iter()
                .any(|d| d.starts_with(&format!("permit read emergency review {rid} with 2"))),
            "{reads:?}"
        );
        assert!(
            reads
                .iter()
                .any(|d| d == "permit read an emergency review (not found)")
        );
        assert!(
            reads
                .iter()
                .any(|d| d == "deny refused: read an emergency review")
        );
        let refused = app
            .log_entries(&query::Filter {
                kinds: vec![EntryKind::LogRead],
                outcome: Some("deny".into()),
                limit: 10,
                ..Default::default()
            })
            .await;
        assert!(
            refused
                .iter()
                .all(|e| e.data.outcome == Outcome::deny("compliance_role_required"))
        );
        app.assert_log_verifies().await;
        app.stop().await;
    }
}

#[tokio::test]
async fn the_console_is_served_with_a_strict_policy_and_nothing_else_is() {
    let app = spawn_app(Db::Sqlite).await;
    let id = pki().partner_cert("oversight");
    let c = reqwest::Client::builder()
        .tls_backend_preconfigured(crate::support::client_config(Some(&id)))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = c.get(app.url("/console")).send().await.unwrap();
    assert_eq!(res.status(), 308);
    assert_eq!(res.headers()["location"], "/console/");

    let res = c.get(app.url("/console/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = h["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["x-frame-options"], "DENY");
    let page = res.text().await.unwrap();
    assert!(page.contains("src=\"app.js\""));

    for (file, ty) in [
        ("app.js", "text/javascript"),
        ("api.js", "text/javascript"),
        ("console.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let res = c
            .get(app.url(&format!("/console/{file}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{file}");
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(ty),
            "{file}"
        );
        assert!(res.headers().contains_key("content-security-policy"));
    }
    // Only the console's own files: no traversal, no other file of the binary or the disk.
    for path in [
        "/console/nope.js",
        "/console/..%2fCargo.toml",
        "/console/%2e%2e/README.md",
        "/console/app.js/x",
    ] {
        let res = c.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
        let b: Value = res.json().await.unwrap();
        assert_eq!(b["code"], "route_not_found", "{path}");
    }
    // A browser without a partner certificate never gets the page: the handshake fails.
    assert!(client(None).get(app.url("/console/")).send().await.is_err());
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_is_served_and_names_the_console_routes() {
    let app = spawn_app(Db::Sqlite).await;
    let res = app
        .get(Some(&pki().partner_cert("metro-pd")), "/openapi.json", None)
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for p in [
        "/v1/audit/overview",
        "/v1/reviews/{id}",
        "/v1/disclosures/{seq}",
        "/v1/records/{kind}/{id}",
        "/console/",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} missing");
    }
    let overview = &doc["paths"]["/v1/audit/overview"]["get"];
    assert!(overview["responses"]["200"].is_object());
    assert!(overview["responses"]["403"].is_object());
    // The error body's code lists every code the gateway answers with.
    let codes: Vec<&str> = doc["components"]["schemas"]["ErrorBody"]["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let all: Vec<&str> = coresponse_gateway::domain::Code::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    assert_eq!(codes, all);
    assert!(codes.contains(&"token_expired") && codes.contains(&"disclosure_denied"));
    app.stop().await;
}
