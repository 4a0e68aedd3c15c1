//! Two gateway replicas on one database, each with caches of its own, and a safety plan whose
//! disclosure to the police a consent decides: the set-up of the tests that change what the
//! database holds under one replica and check what the other decides next.

use serde_json::Value;

use super::calls::{clinician, incident_body, officer, post, put, read, safety_plan_body};
use super::{Db, TestApp, spawn_app, spawn_replica};

use super::bodies;

/// The safety plan, whose `deescalation_preferences` the police read only with a consent.
pub const PLAN: &str = "/v1/records/safety-plan/SP-1";

/// The person the plan is about, as the mental-health agency knows them.
pub const PLAN_SUBJECT: &str = "MRN-88";

/// Two gateways on one `db` database: `a`, and `b`, a replica of it. A crisis incident and the
/// safety plan [`PLAN`] (about `P-2231`, the police's identifier, and [`PLAN_SUBJECT`]) are
/// written through `a`; then an officer's read through `b` is refused for want of a consent,
/// so `b`'s consent cache holds that answer.
pub async fn two_gateways_with_a_plan(db: Db) -> (TestApp, TestApp) {
    let a = spawn_app(db).await;
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
    assert_eq!(officer_reads_plan(&b).await, 403, "no consent yet ({db:?})");
    (a, b)
}

/// A consent of `subject` (a `county-mh` identifier) to `metro-pd` reading the plan's
/// de-escalation preferences for crisis response (see `tests/common/bodies.rs`).
pub fn plan_consent(subject: &str) -> Value {
    bodies::plan_consent(subject)
}

/// Records [`plan_consent`] of `subject` through `app`, as the clinician; returns the recorded
/// consent.
pub async fn grant_plan_consent(app: &TestApp, subject: &str) -> Value {
    let (s, created) = post(app, &clinician(), "/v1/consents", &plan_consent(subject)).await;
    assert_eq!(s, 201, "{created}");
    created
}

/// The status of an officer's read of the plan for crisis response through `app`.
pub async fn officer_reads_plan(app: &TestApp) -> u16 {
    read(app, &officer(), PLAN, Some("crisis-response"), &[])
        .await
        .0
}
