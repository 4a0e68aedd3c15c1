//! Emergency access (HIPAA 164.512(j)): every emergency disclosure lands in exactly one review,
//! one stated basis lasts one time box, and compliance officers close reviews (logged).

use chrono::{Duration, Utc};
use coresponse_gateway::audit::{EntryKind, query};
use coresponse_gateway::domain::{Clock as _, ManualClock};
use serde_json::{Value, json};

use crate::records_api::{clinician, officer, post, put, read, safety_plan_body, who, who_at};
use crate::support::{Db, TestApp, spawn_app, spawn_with_clock};

const EMERGENCY: [(&str, &str); 3] = [
    ("Emergency-Basis", "credible-representation"),
    (
        "Emergency-Source",
        "dispatch: caller is the person's sister",
    ),
    ("Emergency-Description", "person on a bridge with a knife"),
];

async fn seed(app: &TestApp) {
    let (s, b) = put(
        app,
        &clinician(),
        "/v1/records/safety-plan/SP-1",
        &safety_plan_body("P-2231"),
    )
    .await;
    assert_eq!(s, 201, "{b}");
}

async fn emergency_read(app: &TestApp) -> Value {
    emergency_read_as(app, &officer()).await
}

async fn emergency_read_as(app: &TestApp, w: &crate::records_api::Who) -> Value {
    let (s, _, b) = read(
        app,
        w,
        "/v1/records/safety-plan/SP-1",
        Some("emergency"),
        &EMERGENCY,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    b
}

fn auditor() -> crate::records_api::Who {
    who("oversight", "aud-1", &["compliance"])
}

async fn reviews(app: &TestApp, state: &str) -> Vec<Value> {
    reviews_as(app, &auditor(), state).await
}

async fn reviews_as(app: &TestApp, w: &crate::records_api::Who, state: &str) -> Vec<Value> {
    let (s, _, b) = read(app, w, &format!("/v1/reviews?state={state}"), None, &[]).await;
    assert_eq!(s, 200, "{b}");
    b["reviews"].as_array().unwrap().clone()
}

#[tokio::test]
async fn emergency_access_opens_one_review_that_compliance_closes() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = spawn_app(db).await;
        seed(&app).await;
        let first = emergency_read(&app).await;
        let second = emergency_read(&app).await;
        assert_eq!(first["emergency"]["review_opened"], true);
        assert_eq!(second["emergency"]["review_opened"], false);
        assert_eq!(
            first["emergency"]["review_id"],
            second["emergency"]["review_id"]
        );
        // A normal read opens nothing.
        let (s, _, _) = read(
            &app,
            &clinician(),
            "/v1/records/safety-plan/SP-1",
            Some("treatment"),
            &[],
        )
        .await;
        assert_eq!(s, 403, "no MOU rule shares the plan back to its own agency");

        let open = reviews(&app, "open").await;
        assert_eq!(open.len(), 1, "{open:?}");
        let r = &open[0];
        assert_eq!(r["id"], first["emergency"]["review_id"]);
        assert_eq!(
            (r["partner"].as_str(), r["user"].as_str()),
            (Some("metro-pd"), Some("officer-17"))
        );
        assert_eq!(r["accesses"], 2);
        assert_eq!(r["threat"], "person on a bridge with a knife");
        assert!(
            r["stated_basis"]
                .as_str()
                .unwrap()
                .contains("caller is the person's sister")
        );
        assert_eq!(r["first_disclosure"], first["disclosure_id"]);

        // Only compliance officers see or close reviews; bad input changes nothing.
        let id = r["id"].as_str().unwrap().to_owned();
        let path = format!("/v1/reviews/{id}");
        let (s, _, _) = read(&app, &officer(), "/v1/reviews", None, &[]).await;
        assert_eq!(s, 403);
        let (s, b) = post(
            &app,
            &officer(),
            &path,
            &json!({"outcome": "justified", "note": "x"}),
        )
        .await;
        assert_eq!(
            (s, b["code"].as_str()),
            (403, Some("compliance_role_required"))
        );
        let (s, b) = post(
            &app,
            &auditor(),
            &path,
            &json!({"outcome": "fine", "note": "x"}),
        )
        .await;
        assert_eq!((s, b["code"].as_str()), (400, Some("invalid_outcome")));
        let (s, b) = post(
            &app,
            &auditor(),
            &path,
            &json!({"outcome": "justified", "note": " "}),
        )
        .await;
        assert_eq!((s, b["code"].as_str()), (400, Some("invalid_note")));
        let (s, _) = post(
            &app,
            &auditor(),
            "/v1/reviews/nope",
            &json!({"outcome": "justified", "note": "x"}),
        )
        .await;
        assert_eq!(s, 404);
        assert_eq!(reviews(&app, "open").await.len(), 1);

        let (s, b) = post(
            &app,
            &auditor(),
            &path,
            &json!({"outcome": "not-justified", "note": "no threat on the call record"}),
        )
        .await;
        assert_eq!(
            (s, b["state"].as_str(), b["outcome"].as_str()),
            (200, Some("closed"), Some("not-justified")),
            "{b}"
        );
        let (s, b) = post(
            &app,
            &auditor(),
            &path,
            &json!({"outcome": "justified", "note": "again"}),
        )
        .await;
        assert_eq!((s, b["code"].as_str()), (409, Some("review_closed")));
        assert!(reviews(&app, "open").await.is_empty());
        assert_eq!(reviews(&app, "closed").await.len(), 1);
        let logged = app
            .log_entries(&query::Filter {
                kinds: vec![EntryKind::EmergencyReviewed],
                limit: 10,
                ..Default::default()
            })
            .await;
        assert_eq!(logged.len(), 1);
        assert_eq!(
            logged[0].data.justification.as_deref(),
            Some("no threat on the call record")
        );
        assert_eq!(logged[0].data.recipient_user.as_deref(), Some("aud-1"));
        app.stop().await;
    }
}

#[tokio::test]
async fn concurrent_emergency_reads_share_exactly_one_review() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = spawn_app(db).await;
        seed(&app).await;
        let reads: Vec<_> = (0..12).map(|_| emergency_read(&app)).collect();
        let bodies = futures_util::future::join_all(reads).await;
        let opened = bodies
            .iter()
            .filter(|b| b["emergency"]["review_opened"] == true)
            .count();
        assert_eq!(opened, 1, "{db:?}");
        let open = reviews(&app, "open").await;
        assert_eq!(
            (open.len(), open[0]["accesses"].as_u64()),
            (1, Some(12)),
            "{db:?}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_stated_basis_lasts_one_time_box() {
    for db in [Db::Sqlite, Db::Postgres] {
        let clock = ManualClock::new(Utc::now());
        let app = spawn_with_clock(db, &clock, |s| s.emergency.window_secs = 600).await;
        seed(&app).await;
        let a = emergency_read(&app).await;
        assert_eq!(a["emergency"]["review_opened"], true);
        // Tokens are checked against the gateway's clock: each read gets one issued then.
        let officer_now = || who_at("metro-pd", "officer-17", &["officer"], clock.now());
        clock.advance(Duration::seconds(599));
        let inside = emergency_read_as(&app, &officer_now()).await;
        assert_eq!(
            inside["emergency"]["review_opened"], false,
            "{db:?}: still inside the window"
        );
        assert_eq!(
            inside["emergency"]["review_id"],
            a["emergency"]["review_id"]
        );
        clock.advance(Duration::seconds(2));
        let b = emergency_read_as(&app, &officer_now()).await;
        assert_eq!(
            b["emergency"]["review_opened"], true,
            "{db:?}: the window closed; a new one opened"
        );
        assert_ne!(a["emergency"]["review_id"], b["emergency"]["review_id"]);
        let auditor_now = who_at("oversight", "aud-1", &["compliance"], clock.now());
        assert_eq!(reviews_as(&app, &auditor_now, "open").await.len(), 2);
        app.stop().await;
    }
}
