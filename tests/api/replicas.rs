//! Two gateway replicas on one PostgreSQL database: a consent change made through one replica
//! governs the very next decision of the other, although each keeps its own consent cache.

use chrono::Utc;
use serde_json::{Value, json};

use crate::records_api::{clinician, incident_body, officer, post, put, read, safety_plan_body};
use crate::support::{Db, TestApp, spawn_app, spawn_replica};

const PLAN: &str = "/v1/records/safety-plan/SP-1";

fn consent() -> Value {
    let now = Utc::now();
    json!({
        "subjects": [{"system": "county-mh", "value": "MRN-88"}],
        "patient_name": "Jordan Example",
        "disclosers": ["county-mh"],
        "recipients": ["metro-pd"],
        "purposes": ["crisis-response"],
        "scope": {"fields": ["safety-plan.deescalation_preferences"]},
        "valid_from": (now - chrono::Duration::minutes(5)).to_rfc3339(),
        "expires": (now + chrono::Duration::days(30)).to_rfc3339(),
        "signature_reference": "DMS-2026-0001",
        "signed_on": now.date_naive().to_string(),
        "revocation_statement": "You may revoke this consent at any time, in writing.",
    })
}

async fn officer_reads(app: &TestApp) -> u16 {
    read(app, &officer(), PLAN, Some("crisis-response"), &[])
        .await
        .0
}

#[tokio::test]
async fn a_consent_change_on_one_replica_governs_the_next_read_on_the_other() {
    let a = spawn_app(Db::Postgres).await;
    let b = spawn_replica(&a).await;
    let (s, body) = put(
        &a,
        &officer(),
        "/v1/records/crisis-incident/INC-1",
        &incident_body("P-2231"),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    let (s, body) = put(&a, &clinician(), PLAN, &safety_plan_body("P-2231")).await;
    assert_eq!(s, 201, "{body}");

    // B decides (and caches) "no consent"; a grant through A is seen by B's very next read.
    assert_eq!(officer_reads(&b).await, 403);
    let (s, created) = post(&a, &clinician(), "/v1/consents", &consent()).await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(
        officer_reads(&b).await,
        200,
        "B saw the grant made through A"
    );
    assert_eq!(officer_reads(&b).await, 200, "and keeps answering from it");

    // A revocation through A stops B's very next read, with no wait in between.
    let id = created["id"].as_str().unwrap();
    let (s, body) = post(
        &a,
        &clinician(),
        &format!("/v1/consents/{id}/revoke"),
        &json!({"received_at": Utc::now().to_rfc3339(), "received_how": "written"}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        officer_reads(&b).await,
        403,
        "B saw the revocation made through A"
    );
    assert_eq!(officer_reads(&a).await, 403);
    b.stop().await;
    a.stop().await;
}
