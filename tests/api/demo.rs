//! The demo data supports each user's journey in the README: a clinician reads the incident
//! behind a referral; an officer checks referral status and, where consent exists, the
//! crisis-plan extract; a compliance officer reads the log.

use coresponse_gateway::audit::{self, EntryKind, Outcome, query};
use coresponse_gateway::devinit::{demo_year, seed};
use serde_json::Value;

use crate::records_api::{post, read, who};
use crate::support::{Db, TestApp, spawn_app};

/// The entries of one kind, oldest first.
async fn entries(app: &TestApp, kind: EntryKind) -> Vec<audit::Entry> {
    let mut pooled = app.store().acquire().await.unwrap();
    query::list_all_ascending(
        &mut pooled.conn(),
        &query::Filter {
            kinds: vec![kind],
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn the_readme_journeys_work_on_the_demo_data() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = spawn_app(db).await;
        let report = seed::seed(app.services()).await.unwrap();
        // The journeys' 7 records, and the year of fictional incidents and referrals (one
        // version per referral status move).
        let year = demo_year::generate(app.services().now());
        let year_records = year.incidents.len() + year.referrals.len();
        let year_versions =
            year.incidents.len() + year.referrals.iter().map(|r| r.moves.len()).sum::<usize>();
        assert_eq!(
            (report.records, report.versions, report.consents),
            (7 + year_records, 7 + year_versions, 1)
        );
        // Each seeded record version and consent is written with its log entry, like any
        // other write.
        let written = entries(&app, EntryKind::RecordChanged).await;
        assert_eq!(
            written.len(),
            report.versions,
            "{db:?}: one record_changed per version"
        );
        let mut records: Vec<(String, String)> = written
            .iter()
            .map(|e| {
                assert_eq!(e.data.outcome, Outcome::Permit);
                let detail = e.data.detail.as_deref().unwrap_or_default();
                assert!(!detail.contains("Jordan Example"), "{detail}");
                assert!(!detail.contains("Demo Person"), "{detail}");
                let r = e.data.record.as_ref().expect("the entry names its record");
                (r.kind.clone(), r.id.clone())
            })
            .collect();
        records.sort();
        records.dedup();
        assert_eq!(records.len(), report.records);
        assert_eq!(entries(&app, EntryKind::ConsentChanged).await.len(), 1);
        let again = seed::seed(app.services()).await.unwrap();
        assert_eq!((again.records, again.consents), (0, 0), "seeding runs once");
        assert_eq!(
            entries(&app, EntryKind::RecordChanged).await.len(),
            report.versions
        );
        assert_eq!(entries(&app, EntryKind::ConsentChanged).await.len(), 1);
        app.assert_log_verifies().await;

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
        // Jordan's consent names the police: the assigned clinician's contact is shown too.
        assert!(
            r1["fields"]["clinician_contact"]
                .as_str()
                .is_some_and(|c| c.contains("Rivera")),
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

#[tokio::test]
async fn an_agency_suspension_hides_its_disclosures_from_the_accounting_until_it_ends() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = spawn_app(db).await;
        seed::seed(app.services()).await.unwrap();
        let officer = who("metro-pd", "officer-17", &["officer"]);
        let clin = who("county-mh", "clin-7", &["clinician"]);
        let (s, _, _) = read(
            &app,
            &officer,
            "/v1/referrals/REF-DEMO-1",
            Some("referral-followup"),
            &[],
        )
        .await;
        assert_eq!(s, 200);
        let (s, _, _) = read(
            &app,
            &clin,
            "/v1/records/crisis-incident/INC-2026-0042",
            Some("treatment"),
            &[],
        )
        .await;
        assert_eq!(s, 200);
        let auditor = who("oversight", "aud-1", &["compliance"]);
        let path = "/v1/subjects/metro-pd/P-2231/accounting";
        let recipients = |v: &Value| -> Vec<String> {
            v["disclosures"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["recipient"]["id"].as_str().unwrap_or_default().to_owned())
                .collect()
        };
        let (_, _, before) = read(&app, &auditor, path, None, &[]).await;
        assert!(
            recipients(&before).contains(&"metro-pd".to_owned()),
            "{before}"
        );

        let until = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        let body = serde_json::json!({
            "recipient": "metro-pd", "subject_system": "metro-pd", "subject_value": "P-2231",
            "statement": "Written statement of Lt. Reyes, Metro PD, 2026-11-20: an accounting would impede an active investigation; 60 days.",
            "until": until,
        });
        let (s, b) = post(&app, &officer, "/v1/accounting-suspensions", &body).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (403, Some("compliance_role_required"))
        );
        let mut bad = body.clone();
        bad["recipient"] = "county-mh".into();
        let (s, b) = post(&app, &auditor, "/v1/accounting-suspensions", &bad).await;
        assert_eq!(
            (s, b["details"]["field"].as_str()),
            (400, Some("recipient")),
            "{b}"
        );
        let mut bad = body.clone();
        bad["until"] = "2020-01-01T00:00:00Z".into();
        let (s, b) = post(&app, &auditor, "/v1/accounting-suspensions", &bad).await;
        assert_eq!(
            (s, b["details"]["field"].as_str()),
            (400, Some("until")),
            "{b}"
        );
        let (s, b) = post(&app, &auditor, "/v1/accounting-suspensions", &body).await;
        assert_eq!(s, 201, "{b}");

        let (_, _, during) = read(&app, &auditor, path, None, &[]).await;
        assert!(
            !recipients(&during).contains(&"metro-pd".to_owned()),
            "{during}"
        );
        assert!(
            recipients(&during).contains(&"county-mh".to_owned()),
            "{during}"
        );
        assert!(during["suspended_disclosures"].as_u64().unwrap() >= 1);
        let (s, _, list) = read(&app, &auditor, "/v1/accounting-suspensions", None, &[]).await;
        assert_eq!((s, list["suspensions"].as_array().unwrap().len()), (200, 1));
        let logged = entries(&app, EntryKind::AccountingSuspended).await;
        assert_eq!(logged.len(), 1);
        app.stop().await;
    }
}
