//! Two gateway replicas on one PostgreSQL database: a consent change made through one replica
//! governs the very next decision of the other, although each keeps its own consent cache.

use chrono::Utc;
use serde_json::json;

use crate::records_api::{clinician, post};
use crate::support::Db;
use crate::support::replicas::{
    PLAN_SUBJECT, grant_plan_consent, officer_reads_plan, two_gateways_with_a_plan,
};

#[tokio::test]
async fn a_consent_change_on_one_replica_governs_the_next_read_on_the_other() {
    // B has decided (and cached) "no consent"; a grant through A is seen by B's very next read.
    let (a, b) = two_gateways_with_a_plan(Db::Postgres).await;
    let created = grant_plan_consent(&a, PLAN_SUBJECT).await;
    assert_eq!(
        officer_reads_plan(&b).await,
        200,
        "B saw the grant made through A"
    );
    assert_eq!(
        officer_reads_plan(&b).await,
        200,
        "and keeps answering from it"
    );

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
        officer_reads_plan(&b).await,
        403,
        "B saw the revocation made through A"
    );
    assert_eq!(officer_reads_plan(&a).await, 403);
    b.stop().await;
    a.stop().await;
}
