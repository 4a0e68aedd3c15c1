//! A database that goes back to an earlier state under running gateways: a failover to a
//! standby that lacks the primary's last commits, or a restore from a backup. A consent granted
//! in the lost commits must not live on in a gateway's consent cache: the very next read is
//! decided on what the database holds, and so is every read after the next consent change
//! (whose epoch, were epochs counters, would be the lost one's again).

use chrono::Utc;
use serde_json::{Value, json};

use crate::records_api::{clinician, incident_body, officer, post, put, read, safety_plan_body};
use crate::support::{Db, TestApp, exec, scalar, spawn_app, spawn_replica};

const PLAN: &str = "/v1/records/safety-plan/SP-1";
const BOTH: [Db; 2] = [Db::Sqlite, Db::Postgres];

fn consent(subject: &str) -> Value {
    let now = Utc::now();
    json!({
        "subjects": [{"system": "county-mh", "value": subject}],
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
async fn a_consent_lost_by_a_rollback_is_never_used_from_a_replica_cache() {
    for db in BOTH {
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
        assert_eq!(officer_reads(&b).await, 403);

        // The state a standby (or last night's backup) holds.
        let before = scalar(a.store(), "SELECT consents FROM cache_epochs").await;

        // A consent is granted; B decides on it and caches it.
        let (s, created) = post(&a, &clinician(), "/v1/consents", &consent("MRN-88")).await;
        assert_eq!(s, 201, "{created}");
        assert_eq!(officer_reads(&b).await, 200);

        // The database goes back to the earlier state: the grant is lost.
        exec(
            a.store(),
            &format!(
                "DELETE FROM consent_events; DELETE FROM consent_subjects; DELETE FROM consents; \
                 UPDATE cache_epochs SET consents = {before} WHERE id = 1"
            ),
        )
        .await;
        assert_eq!(
            officer_reads(&b).await,
            403,
            "B must not decide on a consent the database no longer holds ({db:?})"
        );

        // The next consent change (another person's) moves the epoch again: B still decides
        // on what the database holds for this person.
        let (s, other) = post(&a, &clinician(), "/v1/consents", &consent("MRN-99")).await;
        assert_eq!(s, 201, "{other}");
        assert_eq!(
            officer_reads(&b).await,
            403,
            "a later epoch must never be the lost one's ({db:?})"
        );
        assert_eq!(officer_reads(&a).await, 403);
        b.stop().await;
        a.stop().await;
    }
}
