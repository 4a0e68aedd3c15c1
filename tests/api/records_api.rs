//! Records and referrals over real TLS with real tokens: owners write against the schema,
//! every read is decided, logged before it leaves and redacted; denials reveal nothing about
//! existence; the referral life cycle; the police status view; fail-closed reads.

use coresponse_gateway::audit::{self, EntryKind, LegalBasis, Outcome, query};
use serde_json::{Value, json};

pub use crate::support::calls::{
    Who, clinician, incident_body, officer, post, put, read, safety_plan_body, who, who_at,
};
use crate::support::{self, Db, TestApp, client, spawn_app};

async fn entry(app: &TestApp, seq: &str) -> audit::Entry {
    app.log_entry(seq.parse().unwrap())
        .await
        .expect("the log entry named by Disclosure-Id")
}

async fn seed(app: &TestApp) {
    let (s, b) = put(
        app,
        &officer(),
        "/v1/records/crisis-incident/INC-1",
        &incident_body("P-2231"),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = put(
        app,
        &clinician(),
        "/v1/records/safety-plan/SP-1",
        &safety_plan_body("P-2231"),
    )
    .await;
    assert_eq!(s, 201, "{b}");
}

#[tokio::test]
async fn owners_write_and_partners_read_only_what_the_mou_allows() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = spawn_app(db).await;
        seed(&app).await;

        // Writing the same content again adds no version; a non-owner kind is refused.
        let (s, b) = put(
            &app,
            &officer(),
            "/v1/records/crisis-incident/INC-1",
            &incident_body("P-2231"),
        )
        .await;
        assert_eq!(
            (s, b["created"].clone(), b["version"].clone()),
            (200, json!(false), json!(1)),
            "{b}"
        );
        let (s, b) = put(
            &app,
            &clinician(),
            "/v1/records/crisis-incident/INC-9",
            &incident_body("P-1"),
        )
        .await;
        assert_eq!(
            (s, b["code"].as_str()),
            (403, Some("not_owner_kind")),
            "{db:?}"
        );

        // The clinician reads the incident: minimum necessary, transformed, logged.
        let (s, id, b) = read(
            &app,
            &clinician(),
            "/v1/records/crisis-incident/INC-1",
            Some("treatment"),
            &[],
        )
        .await;
        assert_eq!(s, 200, "{b}");
        let f = &b["fields"];
        assert_eq!(f["location"], json!({"city": "Metro City", "state": "ST"}));
        assert_eq!(f["callback_number"], "***********4477");
        assert_eq!(f["safety_weapon"], true);
        assert!(
            f.get("criminal_history_summary").is_none(),
            "CJI never to MH: {b}"
        );
        assert!(f.get("officer_ids").is_none(), "not in the profile: {b}");
        let id = id.expect("Disclosure-Id");
        assert_eq!(b["disclosure_id"].to_string(), id);
        let e = entry(&app, &id).await;
        assert_eq!(e.data.kind, EntryKind::Disclosure);
        assert_eq!(e.data.outcome, Outcome::Permit);
        assert_eq!(e.data.recipient_partner.as_deref(), Some("county-mh"));
        assert_eq!(e.data.recipient_role.as_deref(), Some("clinician"));
        assert_eq!(e.data.purpose.as_deref(), Some("treatment"));
        assert!(
            matches!(&e.data.basis, Some(LegalBasis::Mou { rule, .. }) if rule == "5.1-incident-for-care")
        );
        let logged: Vec<&str> = e
            .data
            .fields_disclosed
            .iter()
            .map(|f| f.field.as_str())
            .collect();
        let sent: Vec<&str> = f.as_object().unwrap().keys().map(String::as_str).collect();
        let (mut logged, mut sent) = (logged, sent);
        logged.sort();
        sent.sort();
        assert_eq!(logged, sent, "the log names exactly the fields sent");
        assert_eq!(e.data.fields_withheld, 2);
        assert!(e.data.subject.is_some());

        // Police read the safety plan without consent: denied, logged, and a plan that does
        // not exist is answered exactly the same way.
        let (s, id, b) = read(
            &app,
            &officer(),
            "/v1/records/safety-plan/SP-1",
            Some("crisis-response"),
            &[],
        )
        .await;
        assert_eq!(
            (s, b["code"].as_str()),
            (403, Some("disclosure_denied")),
            "{b}"
        );
        let e = entry(&app, id.as_deref().unwrap()).await;
        assert!(
            matches!(&e.data.outcome, Outcome::Deny { reason } if reason.contains("consent-missing")),
            "{e:?}"
        );
        let (s2, id2, b2) = read(
            &app,
            &officer(),
            "/v1/records/safety-plan/SP-404",
            Some("crisis-response"),
            &[],
        )
        .await;
        assert_eq!(s2, 403);
        assert_eq!(
            b2["details"]["reasons"], b["details"]["reasons"],
            "no existence oracle"
        );
        assert_eq!(b2["message"], b["message"]);
        assert!(id2.is_some());
        let text = b.to_string();
        assert!(
            !text.contains("deescalation") && !text.contains("substance"),
            "{text}"
        );

        // An entitled reader learns that a record does not exist.
        let (s, _, b) = read(
            &app,
            &clinician(),
            "/v1/records/crisis-incident/INC-404",
            Some("treatment"),
            &[],
        )
        .await;
        assert_eq!((s, b["code"].as_str()), (404, Some("record_not_found")));

        // Investigation purpose on the safety plan is refused by the MOU's deny rule.
        let (s, _, b) = read(
            &app,
            &officer(),
            "/v1/records/safety-plan/SP-1",
            Some("investigation"),
            &[],
        )
        .await;
        assert_eq!(s, 403, "{b}");
        assert!(
            b["details"]["reasons"].to_string().contains("deny-rule"),
            "{b}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn purpose_and_emergency_headers_are_checked() {
    let app = spawn_app(Db::Sqlite).await;
    seed(&app).await;
    let path = "/v1/records/safety-plan/SP-1";
    let (s, _, b) = read(&app, &officer(), path, None, &[]).await;
    assert_eq!(
        (s, b["code"].as_str(), b["details"]["header"].as_str()),
        (400, Some("header_missing"), Some("Purpose-Of-Use"))
    );
    let (s, _, b) = read(&app, &officer(), path, Some("curiosity"), &[]).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("unknown_purpose")));
    let (s, _, b) = read(
        &app,
        &officer(),
        path,
        Some("emergency"),
        &[("Emergency-Description", "armed")],
    )
    .await;
    assert_eq!(
        (s, b["details"]["header"].as_str()),
        (400, Some("Emergency-Basis"))
    );
    let (s, _, b) = read(
        &app,
        &officer(),
        path,
        Some("emergency"),
        &[
            ("Emergency-Basis", "credible-representation"),
            ("Emergency-Description", "armed"),
        ],
    )
    .await;
    assert_eq!(
        (s, b["details"]["header"].as_str()),
        (400, Some("Emergency-Source"))
    );
    let (s, _, b) = read(
        &app,
        &officer(),
        path,
        Some("emergency"),
        &[("Emergency-Basis", "actual-knowledge")],
    )
    .await;
    assert_eq!(
        (s, b["details"]["header"].as_str()),
        (400, Some("Emergency-Description"))
    );
    // None of these refused requests reached the log.
    let n = app
        .log_entries(&query::Filter {
            kinds: vec![EntryKind::Disclosure],
            limit: 50,
            ..Default::default()
        })
        .await
        .len();
    assert_eq!(n, 0);

    // With a complete basis, officers get the emergency profile and never Part 2 fields.
    let (s, id, b) = read(
        &app,
        &officer(),
        path,
        Some("emergency"),
        &[
            ("Emergency-Basis", "actual-knowledge"),
            ("Emergency-Description", "person on a bridge, armed"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["emergency"]["review_opened"], true);
    let f = b["fields"].as_object().unwrap();
    let mut names: Vec<&str> = f.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "crisis_contacts",
            "deescalation_preferences",
            "means_safety"
        ]
    );
    let text = b.to_string();
    assert!(
        !text.contains("SUD-MARKER") && !text.contains("PSYNOTES") && !text.contains("DIAGNOSIS"),
        "{text}"
    );
    let e = entry(&app, id.as_deref().unwrap()).await;
    assert!(
        matches!(&e.data.basis, Some(LegalBasis::Emergency { stated_basis }) if stated_basis == "actual-knowledge")
    );
    assert_eq!(
        e.data.justification.as_deref(),
        Some("person on a bridge, armed")
    );
    app.stop().await;
}

#[tokio::test]
async fn writes_are_checked_against_the_schema_naming_every_field() {
    let app = spawn_app(Db::Sqlite).await;
    let body = json!({
        "subjects": [{"system": "metro-pd", "value": "P-1"}],
        "fields": {"incident_id": "INC-2", "occurred_at": "yesterday", "colour": "red", "safety_weapon": "yes"}
    });
    let (s, b) = put(&app, &officer(), "/v1/records/crisis-incident/INC-2", &body).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (400, Some("invalid_fields")),
        "{b}"
    );
    let mut named: Vec<(String, String)> = b["details"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["field"].as_str().unwrap().to_owned(),
                p["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    named.sort();
    assert_eq!(
        named,
        [
            ("call_type".to_owned(), "missing_required".to_owned()),
            ("colour".into(), "unknown_field".into()),
            ("occurred_at".into(), "wrong_type".into()),
            ("safety_weapon".into(), "wrong_type".into()),
        ]
    );
    // Nothing was stored.
    let (s, _, _) = read(
        &app,
        &clinician(),
        "/v1/records/crisis-incident/INC-2",
        Some("treatment"),
        &[],
    )
    .await;
    assert_eq!(s, 404);

    // Bad subjects, bad path, unknown kind, unknown JSON keys.
    let no_subject = json!({"subjects": [], "fields": {}});
    let (s, b) = put(
        &app,
        &officer(),
        "/v1/records/crisis-incident/INC-3",
        &no_subject,
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (400, Some("invalid_subjects")));
    let (s, b) = put(
        &app,
        &officer(),
        "/v1/records/crisis-incident/bad%20id",
        &incident_body("P-1"),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (400, Some("invalid_path")));
    let (s, b) = put(
        &app,
        &officer(),
        "/v1/records/parking-ticket/X-1",
        &incident_body("P-1"),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (404, Some("unknown_kind")));
    let mut extra = incident_body("P-1");
    extra["owner"] = json!("county-mh");
    let (s, b) = put(
        &app,
        &officer(),
        "/v1/records/crisis-incident/INC-3",
        &extra,
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (400, Some("invalid_json")), "{b}");
    // Referrals are created through their own API.
    let (s, b) = put(
        &app,
        &officer(),
        "/v1/records/referral/REF-1",
        &incident_body("P-1"),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (400, Some("use_referral_api")));

    // Body limits at the HTTP level.
    let huge = json!({"subjects": [{"system": "metro-pd", "value": "P-1"}], "fields": {"narrative": "x".repeat(2_000_000)}});
    let (s, b) = put(&app, &officer(), "/v1/records/crisis-incident/INC-4", &huge).await;
    assert_eq!((s, b["code"].as_str()), (413, Some("payload_too_large")));
    let w = officer();
    let res = client(Some(&w.0))
        .put(app.url("/v1/records/crisis-incident/INC-4"))
        .bearer_auth(&w.1)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    app.stop().await;
}

#[tokio::test]
async fn versions_record_who_changed_what_for_the_owner_only() {
    let app = spawn_app(Db::Sqlite).await;
    seed(&app).await;
    let mut v2 = incident_body("P-2231");
    v2["fields"]["disposition"] = json!("TRANSPORTED_VOLUNTARY");
    let other = who("metro-pd", "sgt-4", &["officer"]);
    let (s, b) = put(&app, &other, "/v1/records/crisis-incident/INC-1", &v2).await;
    assert_eq!(
        (s, b["version"].clone(), b["changed_fields"].clone()),
        (200, json!(2), json!(["disposition"]))
    );
    let (s, _, b) = read(
        &app,
        &officer(),
        "/v1/records/crisis-incident/INC-1/versions",
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let v = b["versions"].as_array().unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[1]["author_user"], "sgt-4");
    assert_eq!(v[1]["changed_fields"], json!(["disposition"]));
    assert!(
        !b.to_string().contains("TRANSPORTED"),
        "history holds no values"
    );
    let (s, _, _) = read(
        &app,
        &clinician(),
        "/v1/records/crisis-incident/INC-1/versions",
        None,
        &[],
    )
    .await;
    assert_eq!(s, 404);
    app.stop().await;
}

#[tokio::test]
async fn subject_lookup_returns_only_what_the_caller_may_see() {
    let app = spawn_app(Db::Sqlite).await;
    seed(&app).await;
    // The clinician finds the incident (and the agency's own safety plan is not shared back
    // to it through an MOU rule, so it is not listed).
    let (s, ids, b) = read(
        &app,
        &clinician(),
        "/v1/subjects/metro-pd/P-2231/records",
        Some("treatment"),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let kinds: Vec<&str> = b["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["crisis-incident"]);
    assert_eq!(
        ids.unwrap().split(',').count(),
        1,
        "the entry of the record disclosed, not of the one denied"
    );
    // White space in the identifier is canonical.
    let (s, _, b2) = read(
        &app,
        &clinician(),
        "/v1/subjects/metro-pd/%20P-2231%20/records?kind=crisis-incident",
        Some("treatment"),
        &[],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(b2["records"].as_array().unwrap().len(), 1);
    // The police see nothing of the safety plan for crisis response without consent, and the
    // answer does not say that it exists.
    let (s, ids_denied, b) = read(
        &app,
        &officer(),
        "/v1/subjects/county-mh/MRN-88/records",
        Some("crisis-response"),
        &[],
    )
    .await;
    assert_eq!((s, b["records"].as_array().unwrap().len()), (200, 0), "{b}");
    let (s, ids_none, b_none) = read(
        &app,
        &officer(),
        "/v1/subjects/county-mh/MRN-00/records",
        Some("crisis-response"),
        &[],
    )
    .await;
    assert_eq!((s, &b_none), (200, &b));
    assert_eq!(
        (
            ids_denied.unwrap().split(',').count(),
            ids_none.unwrap().split(',').count()
        ),
        (1, 1),
        "the header does not count the records withheld"
    );
    let (s, _, b) = read(
        &app,
        &officer(),
        "/v1/subjects/county-mh/MRN-88/records?kind=Bad",
        Some("crisis-response"),
        &[],
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (400, Some("invalid_query")));
    app.stop().await;
}

#[tokio::test]
async fn stored_values_are_not_in_the_database_file() {
    let app = spawn_app(Db::Sqlite).await;
    seed(&app).await;
    app.store().close().await;
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(app.workdir.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.to_string_lossy().contains("gateway.db") {
            bytes.extend(std::fs::read(p).unwrap());
        }
    }
    assert!(!bytes.is_empty());
    for needle in [
        "NARRATIVE-MARKER",
        "CJI-MARKER",
        "SUD-MARKER",
        "PSYNOTES-MARKER",
        "P-2231",
        "MRN-88",
        "Jordan Example",
    ] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "`{needle}` found in clear text in the database files"
        );
    }
}

#[tokio::test]
async fn a_read_whose_log_entry_cannot_be_written_gives_503_and_nothing() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = spawn_app(db).await;
        seed(&app).await;
        let sql = match db {
            Db::Sqlite => {
                "CREATE TRIGGER fail_log BEFORE INSERT ON audit_log \
                           BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
            }
            Db::Postgres => {
                "CREATE FUNCTION fail_log() RETURNS trigger LANGUAGE plpgsql AS \
                             $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$; \
                             CREATE TRIGGER fail_log BEFORE INSERT ON audit_log \
                             FOR EACH ROW EXECUTE FUNCTION fail_log();"
            }
        };
        support::exec(app.store(), sql).await;
        for (w, path, purpose) in [
            (
                clinician(),
                "/v1/records/crisis-incident/INC-1",
                "treatment",
            ),
            (
                clinician(),
                "/v1/subjects/metro-pd/P-2231/records",
                "treatment",
            ),
            (officer(), "/v1/records/safety-plan/SP-1", "crisis-response"),
        ] {
            let (s, id, b) = read(&app, &w, path, Some(purpose), &[]).await;
            assert_eq!(
                (s, b["code"].as_str()),
                (503, Some("service_unavailable")),
                "{db:?} {path}"
            );
            assert!(id.is_none());
            let text = b.to_string();
            assert!(
                !text.contains("Metro City") && !text.contains("NARRATIVE"),
                "{text}"
            );
        }
        app.stop().await;
    }
}

async fn new_referral(app: &TestApp) -> String {
    let (s, b) = post(
        app,
        &officer(),
        "/v1/referrals",
        &json!({
            "incident_id": "INC-1",
            "subjects": [{"system": "metro-pd", "value": "P-2231"}],
            "receiving_agency": "county-mh",
            "reason": "repeated welfare checks, agrees to follow-up",
            "urgency": "URGENT",
            "subject_name": "Jordan Example",
            "subject_phone": "+1 555 010 4477"
        }),
    )
    .await;
    assert_eq!((s, b["status"].as_str()), (201, Some("SUBMITTED")), "{b}");
    b["id"].as_str().unwrap().to_owned()
}

async fn transition(app: &TestApp, w: &Who, id: &str, body: Value) -> (u16, Value) {
    post(app, w, &format!("/v1/referrals/{id}/transitions"), &body).await
}

#[tokio::test]
async fn the_referral_life_cycle_and_what_each_side_sees() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = spawn_app(db).await;
        seed(&app).await;
        let id = new_referral(&app).await;
        let path = format!("/v1/referrals/{id}");

        // Only police create referrals, about their own incidents, to a mental-health partner.
        let bad = json!({"incident_id": "INC-404", "subjects": [{"system": "metro-pd", "value": "P-1"}], "receiving_agency": "county-mh", "reason": "r", "urgency": "URGENT"});
        let (s, b) = post(&app, &officer(), "/v1/referrals", &bad).await;
        assert_eq!((s, b["code"].as_str()), (400, Some("unknown_incident")));
        let mut bad2 = bad.clone();
        bad2["incident_id"] = json!("INC-1");
        bad2["receiving_agency"] = json!("oversight");
        let (s, b) = post(&app, &officer(), "/v1/referrals", &bad2).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (400, Some("unknown_receiving_agency"))
        );
        let (s, b) = post(&app, &clinician(), "/v1/referrals", &bad).await;
        assert_eq!((s, b["code"].as_str()), (403, Some("not_owner_kind")));
        bad2["receiving_agency"] = json!("county-mh");
        bad2["urgency"] = json!("WHENEVER");
        let (s, b) = post(&app, &officer(), "/v1/referrals", &bad2).await;
        assert_eq!(
            (s, b["details"]["fields"][0]["field"].as_str()),
            (400, Some("urgency")),
            "{b}"
        );

        let mh = who("county-mh", "intake-1", &["intake-coordinator"]);
        let (s, b) = transition(&app, &mh, &id, json!({"to": "RECEIVED"})).await;
        assert_eq!((s, b["status"].as_str()), (200, Some("RECEIVED")), "{b}");
        let (s, b) = transition(&app, &mh, &id, json!({"to": "ASSIGNED", "note": "clinician on call", "clinician_contact": "Dr. Rivera, desk +1 555 010 9000"})).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["allowed_next"], json!(["CONTACT_ATTEMPTED"]));
        // A skipped step is refused with the allowed next states.
        let (s, b) = transition(&app, &mh, &id, json!({"to": "CLOSED"})).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (409, Some("invalid_transition")),
            "{b}"
        );
        assert_eq!(b["details"]["allowed"], json!(["CONTACT_ATTEMPTED"]));
        // Police may not move it along; oversight cannot tell it exists; junk is a 400.
        let (s, b) = transition(&app, &officer(), &id, json!({"to": "CONTACT_ATTEMPTED"})).await;
        assert_eq!(
            (s, b["details"]["allowed"].clone()),
            (409, json!(["WITHDRAWN"]))
        );
        let auditor = who("oversight", "aud-1", &["compliance"]);
        let (s, b) = transition(&app, &auditor, &id, json!({"to": "RECEIVED"})).await;
        assert_eq!((s, b["code"].as_str()), (404, Some("referral_not_found")));
        let (s, b) = transition(&app, &mh, &id, json!({"to": "SOMEWHERE"})).await;
        assert_eq!((s, b["code"].as_str()), (400, Some("unknown_state")));
        let (s, _) = transition(&app, &mh, "REF-404", json!({"to": "RECEIVED"})).await;
        assert_eq!(s, 404);

        // Police see where it stands, coarsened without consent; the clinician contact, whose
        // presence alone would tell that a clinician was assigned, is withheld with it.
        let (s, id_hdr, b) = read(&app, &officer(), &path, Some("referral-followup"), &[]).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["fields"]["status"], "IN_PROGRESS");
        assert!(b["fields"].get("clinician_contact").is_none(), "{b}");
        assert!(!b.to_string().contains("Rivera"), "{b}");
        assert!(
            b["fields"].get("reason").is_none() && b["fields"].get("status_note").is_none(),
            "{b}"
        );
        assert_eq!(
            b["fields"]["status_updated_at"].as_str().unwrap().len(),
            7,
            "month only"
        );
        // The log entry says exactly what left: the status generalized, the contact withheld
        // (not among the fields disclosed, counted among those withheld).
        let e = entry(&app, id_hdr.as_deref().unwrap()).await;
        assert!(
            e.data
                .fields_disclosed
                .iter()
                .any(|f| f.field == "status" && f.transform == "generalize(referral-status)"),
            "{e:?}"
        );
        let sent: std::collections::BTreeSet<&str> = b["fields"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let logged: std::collections::BTreeSet<&str> = e
            .data
            .fields_disclosed
            .iter()
            .map(|f| f.field.as_str())
            .collect();
        assert_eq!(logged, sent, "{e:?}");
        assert!(!logged.contains(&"clinician_contact"), "{e:?}");

        // With a consent naming the police for referral follow-up, the actual state and the
        // contact are shown, and logged as disclosed.
        let consent = json!({
            "subjects": [{"system": "metro-pd", "value": "P-2231"}],
            "patient_name": "Jordan Example",
            "disclosers": ["county-mh"],
            "recipients": ["metro-pd"],
            "purposes": ["referral-followup"],
            "scope": {"kinds": ["referral"]},
            "expires": (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339(),
            "signature_reference": "DMS-REF-1",
            "signed_on": (chrono::Utc::now() - chrono::Duration::days(1)).date_naive().to_string(),
            "revocation_statement": "You may revoke this consent at any time in writing."
        });
        let (s, c) = post(&app, &mh, "/v1/consents", &consent).await;
        assert_eq!(s, 201, "{c}");
        let (s, id_hdr, b) = read(&app, &officer(), &path, Some("referral-followup"), &[]).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["fields"]["status"], "ASSIGNED");
        assert_eq!(
            b["fields"]["clinician_contact"],
            "Dr. Rivera, desk +1 555 010 9000"
        );
        let e = entry(&app, id_hdr.as_deref().unwrap()).await;
        assert!(
            e.data
                .fields_disclosed
                .iter()
                .any(|f| f.field == "clinician_contact" && f.transform == "reveal"),
            "{e:?}"
        );
        assert!(
            e.data
                .fields_disclosed
                .iter()
                .any(|f| f.field == "status" && f.transform == "reveal"),
            "{e:?}"
        );

        // The receiving agency sees the full intake profile; the phone travels sealed to it.
        let (s, _, b) = read(&app, &mh, &path, Some("referral-followup"), &[]).await;
        assert_eq!(s, 200, "{b}");
        let f = &b["fields"];
        assert_eq!(f["status"], "ASSIGNED");
        assert_eq!(f["status_note"], "clinician on call");
        assert_eq!(f["subject_name"], "Jordan Example");
        assert_eq!(
            f["subject_phone"].as_str().unwrap().split('.').count(),
            5,
            "compact JWE"
        );
        assert_ne!(f["referring_officer"], "officer-17", "pseudonymized");

        // Police withdraw it; WITHDRAWN is always shown to them.
        let (s, _) = transition(
            &app,
            &officer(),
            &id,
            json!({"to": "WITHDRAWN", "note": "moved away"}),
        )
        .await;
        assert_eq!(s, 200);
        let (_, _, b) = read(&app, &officer(), &path, Some("referral-followup"), &[]).await;
        assert_eq!(b["fields"]["status"], "WITHDRAWN");
        let (s, b) = transition(&app, &mh, &id, json!({"to": "CONTACT_ATTEMPTED"})).await;
        assert_eq!((s, b["details"]["allowed"].clone()), (409, json!([])));
        app.stop().await;
    }
}

#[tokio::test]
async fn concurrent_transitions_of_one_referral_never_both_win() {
    // Both start from SUBMITTED; serialized, the second finds RECEIVED and is refused.
    let app = spawn_app(Db::Sqlite).await;
    seed(&app).await;
    let id = new_referral(&app).await;
    let mh = who("county-mh", "intake-1", &["intake-coordinator"]);
    let (a, b) = tokio::join!(
        transition(&app, &mh, &id, json!({"to": "RECEIVED"})),
        transition(&app, &mh, &id, json!({"to": "RECEIVED"})),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{a:?} {b:?}");
    app.stop().await;
}

#[tokio::test]
async fn the_same_record_read_twice_gives_two_entries_and_a_verifying_chain() {
    let app = spawn_app(Db::Sqlite).await;
    seed(&app).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (s, id, _) = read(
            &app,
            &clinician(),
            "/v1/records/crisis-incident/INC-1",
            Some("treatment"),
            &[],
        )
        .await;
        assert_eq!(s, 200);
        ids.push(id.unwrap());
    }
    assert_ne!(ids[0], ids[1]);
    app.assert_log_verifies().await;
    app.stop().await;
}

#[tokio::test]
async fn writes_and_refused_writes_are_logged_with_the_change() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = spawn_app(db).await;
        seed(&app).await;
        let (s, _) = put(
            &app,
            &clinician(),
            "/v1/records/crisis-incident/INC-9",
            &incident_body("P-1"),
        )
        .await;
        assert_eq!(s, 403);
        let id = new_referral(&app).await;
        let mh = who("county-mh", "intake-1", &["intake-coordinator"]);
        let (s, _) = transition(&app, &mh, &id, json!({"to": "RECEIVED"})).await;
        assert_eq!(s, 200);
        let (s, _) = transition(&app, &mh, &id, json!({"to": "CLOSED"})).await;
        assert_eq!(s, 409);
        let auditor = who("oversight", "aud-1", &["compliance"]);
        let (s, _) = transition(&app, &auditor, &id, json!({"to": "RECEIVED"})).await;
        assert_eq!(s, 404);

        let entries = app
            .log_entries(&query::Filter {
                kinds: vec![EntryKind::RecordChanged],
                limit: 50,
                ..Default::default()
            })
            .await;
        let seen: Vec<(String, String, String)> = entries
            .iter()
            .rev()
            .map(|e| {
                (
                    e.data.recipient_partner.clone().unwrap_or_default(),
                    e.data
                        .record
                        .as_ref()
                        .map(|r| r.kind.clone())
                        .unwrap_or_default(),
                    match &e.data.outcome {
                        Outcome::Permit => "permit".to_owned(),
                        Outcome::Deny { reason } => reason.clone(),
                    },
                )
            })
            .collect();
        let expect = |p: &str, k: &str, o: &str| (p.to_owned(), k.to_owned(), o.to_owned());
        assert_eq!(
            seen,
            [
                expect("metro-pd", "crisis-incident", "permit"),
                expect("county-mh", "safety-plan", "permit"),
                expect("county-mh", "crisis-incident", "not_owner_kind"),
                expect("metro-pd", "referral", "permit"),
                expect("county-mh", "referral", "permit"),
                expect("county-mh", "referral", "invalid_transition"),
                expect("oversight", "referral", "referral_not_found"),
            ],
            "{db:?}"
        );
        let moved = &entries[entries.len() - 5];
        assert!(
            moved
                .data
                .detail
                .as_deref()
                .unwrap()
                .contains("SUBMITTED -> RECEIVED"),
            "{moved:?}"
        );
        assert!(
            !format!("{entries:?}").contains("Jordan"),
            "names never logged"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_thousand_concurrent_reads_give_a_thousand_entries_and_a_verifying_chain() {
    use futures_util::StreamExt as _;
    for db in [Db::Sqlite, Db::Postgres] {
        let app = spawn_app(db).await;
        seed(&app).await;
        let w = clinician();
        let c = client(Some(&w.0));
        let url = app.url("/v1/records/crisis-incident/INC-1");
        let ids: Vec<u64> = futures_util::stream::iter(0..1000)
            .map(|_| {
                let req = c
                    .get(&url)
                    .bearer_auth(&w.1)
                    .header("Purpose-Of-Use", "treatment");
                async move {
                    let res = req.send().await.unwrap();
                    assert_eq!(res.status(), 200);
                    res.headers()["disclosure-id"]
                        .to_str()
                        .unwrap()
                        .parse::<u64>()
                        .unwrap()
                }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        let unique: std::collections::BTreeSet<u64> = ids.iter().copied().collect();
        assert_eq!(unique.len(), 1000, "{db:?}: one entry per answer");
        let mut pooled = app.store().acquire().await.unwrap();
        let entries = query::list_all_ascending(
            &mut pooled.conn(),
            &query::Filter {
                kinds: vec![EntryKind::Disclosure],
                outcome: Some("permit".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        drop(pooled);
        assert_eq!(entries.len(), 1000, "{db:?}");
        let logged: std::collections::BTreeSet<u64> = entries.iter().map(|e| e.seq).collect();
        assert_eq!(logged, unique, "{db:?}: every answer names its own entry");
        app.assert_log_verifies().await;
        app.stop().await;
    }
}
