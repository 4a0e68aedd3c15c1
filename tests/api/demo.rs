//! The demo data supports each user's journey in the README: a clinician reads the incident
//! behind a referral; an officer checks referral status and, where consent exists, the
//! crisis-plan extract; a compliance officer reads the log.

use coresponse_gateway::devinit::seed;
use serde_json::Value;

use crate::records_api::{read, who};
use crate::support::{Db, spawn_app};

#[tokio::test]
async fn the_readme_journeys_work_on_the_demo_data() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = spawn_app(db).await;
        let report = seed::seed(&app.state).await.unwrap();
        assert_eq!((report.records, report.consents), (7, 1));
        let again = seed::seed(&app.state).await.unwrap();
        assert_eq!((again.records, again.consents), (0, 0), "seeding runs once");

        // The clinician opens the referral, then the incident behind it.
        let clin = who("county-mh", "clin-7", &["clinician"]);
        let (s, _, r) = read(
            &app,
            &clin,
            "/v1/referrals/REF-DEMO-1",
            Some("referral-followup"),
            &[],
        )
        .await;
        assert_eq!(s, 200, "{r}");
        let incident = r["fields"]["incident_id"].as_str().unwrap().to_owned();
        let (s, _, i) = read(
            &app,
            &clin,
            &format!("/v1/records/crisis-incident/{incident}"),
            Some("treatment"),
            &[],
        )
        .await;
        assert_eq!(s, 200, "{i}");
        assert_eq!(i["fields"]["safety_weapon"], true);
        assert!(i["fields"].get("criminal_history_summary").is_none());

        // The officer checks the referrals: with Jordan's consent the real state, without
        // (Riley) only that it is in progress.
        let officer = who("metro-pd", "officer-17", &["officer"]);
        let (s, _, r1) = read(
            &app,
            &officer,
            "/v1/referrals/REF-DEMO-1",
            Some("referral-followup"),
            &[],
        )
        .await;
        assert_eq!(
            (s, r1["fields"]["status"].as_str()),
            (200, Some("ASSIGNED")),
            "{r1}"
        );
        let (_, _, r2) = read(
            &app,
            &officer,
            "/v1/referrals/REF-DEMO-2",
            Some("referral-followup"),
            &[],
        )
        .await;
        assert_eq!(r2["fields"]["status"], "IN_PROGRESS", "{r2}");

        // The crisis-plan extract: Jordan consented, Riley did not.
        let (s, _, p) = read(
            &app,
            &officer,
            "/v1/subjects/metro-pd/P-2231/records?kind=safety-plan",
            Some("crisis-response"),
            &[],
        )
        .await;
        assert_eq!(s, 200);
        let plans = p["records"].as_array().unwrap();
        assert_eq!(plans.len(), 1, "{p}");
        let fields = plans[0]["fields"].as_object().unwrap();
        assert!(
            fields.contains_key("deescalation_preferences")
                && fields.contains_key("crisis_contacts")
        );
        assert!(!fields.contains_key("diagnoses") && !fields.contains_key("substance_use_history"));
        let (_, _, none) = read(
            &app,
            &officer,
            "/v1/subjects/metro-pd/P-3307/records?kind=safety-plan",
            Some("crisis-response"),
            &[],
        )
        .await;
        assert_eq!(none["records"], Value::Array(vec![]));

        // The compliance officer reads the log: every one of those reads is there.
        let auditor = who("oversight", "aud-1", &["compliance"]);
        let (s, _, log) = read(&app, &auditor, "/v1/disclosures?limit=50", None, &[]).await;
        assert_eq!(s, 200, "{log}");
        let entries = log["entries"].as_array().unwrap();
        assert!(entries.len() >= 6, "{log}");
        let (s, _, acct) = read(
            &app,
            &auditor,
            "/v1/subjects/metro-pd/P-2231/accounting",
            None,
            &[],
        )
        .await;
        assert_eq!(s, 200, "{acct}");
        let lines = acct["disclosures"].as_array().unwrap();
        assert!(
            lines.len() >= 3,
            "the referral, incident and plan reads: {acct}"
        );
        // The same person by the mental-health record number: the accounting is complete
        // although the referral and the incident are logged under the police identifier.
        let (s, _, by_mrn) = read(
            &app,
            &auditor,
            "/v1/subjects/county-mh/MRN-1001/accounting",
            None,
            &[],
        )
        .await;
        assert_eq!(s, 200, "{by_mrn}");
        assert_eq!(by_mrn["disclosures"], acct["disclosures"]);
        let (s, _, listed) = read(
            &app,
            &auditor,
            "/v1/disclosures?subject_system=county-mh&subject_value=MRN-1001&outcome=permit",
            None,
            &[],
        )
        .await;
        assert_eq!(s, 200, "{listed}");
        let kinds: Vec<&str> = listed["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["record"]["kind"].as_str())
            .collect();
        assert!(
            kinds.contains(&"referral") && kinds.contains(&"safety-plan"),
            "{listed}"
        );
        app.stop().await;
    }
}
