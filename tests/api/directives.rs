//! The 2024 Part 2 rule on both backends, over real TLS with real tokens: court orders (42 CFR
//! 2.64, 2.65), agreed restrictions (HIPAA 164.522(a), 42 CFR 2.26), medical emergencies (42
//! CFR 2.51) and the list of Part 2 disclosures (42 CFR 2.24), with their log entries, sealing
//! at rest, replica coherence and the offline commands.

use std::process::Command;

use chrono::{DateTime, Duration, Utc};
use coresponse_gateway::audit::{EntryKind, LegalBasis, Outcome, query};
use coresponse_gateway::domain::{Clock as _, ManualClock};
use serde_json::{Value, json};

use crate::records_api::{Who, clinician, officer, post, put, read, safety_plan_body, who, who_at};
use crate::support::{self, Db, TestApp, exec, pki, spawn_app, spawn_replica, spawn_with_clock};

const BOTH: [Db; 2] = [Db::Sqlite, Db::Postgres];
const PLAN: &str = "/v1/records/safety-plan/SP-1";
const SUD: &str = "SUD-MARKER in treatment";
const DOCKET: &str = "CR-2026-DOCKET-5521";
const COURT: &str = "Superior Court of Quillfeather County";

fn compliance() -> Who {
    who("oversight", "aud-1", &["compliance"])
}

fn compliance_at(t: DateTime<Utc>) -> Who {
    who_at("oversight", "aud-1", &["compliance"], t)
}

fn physician() -> Who {
    who("metro-general", "dr-rivera", &["ed-physician"])
}

async fn seed(app: &TestApp, w: &Who) {
    let (s, b) = put(app, w, PLAN, &safety_plan_body("P-2231")).await;
    assert_eq!(s, 201, "{b}");
}

fn order(now: DateTime<Utc>, section: &str, purposes: &[&str], fields: &[&str]) -> Value {
    json!({
        "subjects": [{"system": "county-mh", "value": "MRN-88"}],
        "court": COURT,
        "docket": DOCKET,
        "order_date": (now - Duration::days(2)).date_naive().to_string(),
        "section": section,
        "disclosers": ["county-mh"],
        "recipient": "metro-pd",
        "purposes": purposes,
        "fields": fields,
        "valid_from": (now - Duration::days(1)).to_rfc3339(),
        "until": (now + Duration::days(30)).to_rfc3339(),
    })
}

fn reasons(b: &Value) -> Vec<String> {
    b["details"]["reasons"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

async fn entry_of(app: &TestApp, id: &Option<String>) -> coresponse_gateway::audit::Entry {
    app.log_entry(id.as_deref().unwrap().parse().unwrap())
        .await
        .unwrap()
}

async fn entries(app: &TestApp, kind: EntryKind) -> Vec<coresponse_gateway::audit::Entry> {
    app.log_entries(&query::Filter {
        kinds: vec![kind],
        limit: 500,
        ..query::Filter::default()
    })
    .await
}

#[tokio::test]
async fn a_court_order_releases_the_part2_fields_it_names_while_in_force() {
    for db in BOTH {
        let clock = ManualClock::new(Utc::now());
        let app = spawn_with_clock(db, &clock, |_| {}).await;
        let now = clock.now();
        seed(&app, &who_at("county-mh", "clin-3", &["clinician"], now)).await;
        let cop = who_at("metro-pd", "officer-17", &["officer"], now);

        // Without an order the hard limit holds (42 CFR 2.12).
        let (s, _, b) = read(&app, &cop, PLAN, Some("investigation"), &[]).await;
        assert_eq!(s, 403, "{b}");
        assert!(reasons(&b).contains(&"hard-limit-part2-law-enforcement".to_owned()));

        // Only compliance officers record orders; the refusal is logged.
        let (s, b) = post(
            &app,
            &cop,
            "/v1/court-orders",
            &order(
                now,
                "2.65",
                &["investigation"],
                &["safety-plan.substance_use_history"],
            ),
        )
        .await;
        assert_eq!(
            (s, b["code"].as_str()),
            (403, Some("compliance_role_required")),
            "{b}"
        );
        let refused = entries(&app, EntryKind::CourtOrderChanged).await;
        assert_eq!(refused.len(), 1);
        assert_eq!(
            refused[0].data.outcome,
            Outcome::deny("compliance_role_required")
        );

        // Bad orders are refused with every problem named, and nothing is stored.
        let auditor = compliance_at(now);
        let bad = order(
            now,
            "2.64",
            &["investigation"],
            &["safety-plan.diagnoses", "safety-plan.nope"],
        );
        let (s, b) = post(&app, &auditor, "/v1/court-orders", &bad).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (400, Some("invalid_court_order")),
            "{b}"
        );
        let codes: Vec<&str> = b["details"]["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["code"].as_str().unwrap())
            .collect();
        for code in ["needs_2_65", "not_part2", "unknown_field"] {
            assert!(codes.contains(&code), "{code}: {b}");
        }
        let (s, _, b) = read(&app, &auditor, "/v1/court-orders?all=true", None, &[]).await;
        assert_eq!(
            (s, b["court_orders"].as_array().unwrap().len()),
            (200, 0),
            "{b}"
        );

        // A 2.65 order for investigation of the substance-use history.
        let (s, created) = post(
            &app,
            &auditor,
            "/v1/court-orders",
            &order(
                now,
                "2.65",
                &["investigation"],
                &["safety-plan.substance_use_history"],
            ),
        )
        .await;
        assert_eq!(s, 201, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        assert_eq!(created["status"], "active");
        assert_eq!(created["docket"], DOCKET);

        let (s, disclosure, b) = read(&app, &cop, PLAN, Some("investigation"), &[]).await;
        assert_eq!(s, 200, "{b}");
        let fields = b["fields"].as_object().unwrap();
        assert_eq!(fields.len(), 1, "only the field the order names: {b}");
        assert_eq!(fields["substance_use_history"], SUD);
        assert!(
            b["notices"][0].as_str().unwrap().contains("42 CFR part 2"),
            "the 2.32 notice travels with it: {b}"
        );
        let e = entry_of(&app, &disclosure).await;
        assert_eq!(
            e.data.basis,
            Some(LegalBasis::CourtOrder {
                order_id: id.clone()
            })
        );
        assert_eq!(e.data.fields_disclosed.len(), 1);
        assert_eq!(e.data.fields_disclosed[0].field, "substance_use_history");

        // Only the purpose the order names.
        let (s, _, _) = read(&app, &cop, PLAN, Some("prosecution"), &[]).await;
        assert_eq!(s, 403);

        // The log holds no court, docket or identifier; the store holds them sealed.
        let logged = entries(&app, EntryKind::CourtOrderChanged).await;
        let recorded = logged
            .iter()
            .find(|e| e.data.outcome == Outcome::Permit)
            .unwrap();
        let detail = recorded.data.detail.clone().unwrap();
        assert!(
            detail.contains(&id) && detail.contains("42 CFR 2.65"),
            "{detail}"
        );
        for secret in [DOCKET, COURT, "MRN-88"] {
            assert!(
                !format!("{logged:?}").contains(secret),
                "{secret} in the log"
            );
        }
        if db == Db::Sqlite {
            let raw = std::fs::read(app.workdir.path().join("gateway.db")).unwrap();
            let wal = std::fs::read(app.workdir.path().join("gateway.db-wal")).unwrap_or_default();
            for secret in [DOCKET, COURT] {
                let needle = secret.as_bytes();
                for bytes in [&raw, &wal] {
                    assert!(
                        !bytes.windows(needle.len()).any(|w| w == needle),
                        "{secret} stored in clear"
                    );
                }
            }
        }

        // Past its end the hard limit holds again.
        clock.advance(Duration::days(31));
        let later = clock.now();
        let cop = who_at("metro-pd", "officer-17", &["officer"], later);
        let (s, _, b) = read(&app, &cop, PLAN, Some("investigation"), &[]).await;
        assert_eq!(s, 403, "an expired order authorizes nothing: {b}");
        let auditor = compliance_at(later);
        let (_, _, b) = read(&app, &auditor, &format!("/v1/court-orders/{id}"), None, &[]).await;
        assert_eq!(b["status"], "expired");

        // An order ended early (vacated) stops the very next read.
        let (s, second) = post(
            &app,
            &auditor,
            "/v1/court-orders",
            &order(
                later,
                "2.65",
                &["investigation"],
                &["safety-plan.substance_use_history"],
            ),
        )
        .await;
        assert_eq!(s, 201, "{second}");
        let second = second["id"].as_str().unwrap().to_owned();
        let (s, _, _) = read(&app, &cop, PLAN, Some("investigation"), &[]).await;
        assert_eq!(s, 200);
        let end = format!("/v1/court-orders/{second}/end");
        let (s, b) = post(
            &app,
            &auditor,
            &end,
            &json!({"reason": "vacated on appeal"}),
        )
        .await;
        assert_eq!((s, b["status"].as_str()), (200, Some("ended")), "{b}");
        let (s, _, _) = read(&app, &cop, PLAN, Some("investigation"), &[]).await;
        assert_eq!(s, 403, "an ended order authorizes nothing");
        let (s, b) = post(&app, &auditor, &end, &json!({"reason": "again"})).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (409, Some("court_order_ended")),
            "{b}"
        );
        let (s, b) = post(
            &app,
            &auditor,
            "/v1/court-orders/co-nope/end",
            &json!({"reason": "x"}),
        )
        .await;
        assert_eq!(
            (s, b["code"].as_str()),
            (404, Some("court_order_not_found")),
            "{b}"
        );
        app.assert_log_verifies().await;
        app.stop().await;
    }
}

/// A consent by county-mh letting metro-pd have the crisis-plan extract for crisis response.
fn crisis_plan_consent() -> Value {
    let now = Utc::now();
    json!({
        "subjects": [{"system": "county-mh", "value": "MRN-88"}],
        "patient_name": "Pat Example",
        "disclosers": ["county-mh"],
        "recipients": ["metro-pd"],
        "purposes": ["crisis-response"],
        "scope": {"fields": ["safety-plan.updated_on", "safety-plan.deescalation_preferences", "safety-plan.crisis_contacts"]},
        "valid_from": (now - Duration::days(1)).to_rfc3339(),
        "expires": (now + Duration::days(365)).to_rfc3339(),
        "signature_reference": "DMS-1",
        "signed_on": (now - Duration::days(1)).date_naive().to_string(),
        "revocation_statement": "You may revoke this consent in writing.",
    })
}

fn restriction() -> Value {
    json!({
        "subjects": [{"system": "county-mh", "value": "MRN-88"}],
        "recipients": ["metro-pd"],
        "scope": {"fields": ["safety-plan.crisis_contacts"]},
        "agreed_on": Utc::now().date_naive().to_string(),
        "reference": "DMS-RESTRICT-1",
    })
}

/// Only the directive's own key is a conflict: a recording whose id is taken first (as a
/// concurrent recording would) answers 409 `directive_conflict`; a violation of another table's
/// key on the same statement (its data key inserted once more) answers 503. Neither stores or
/// logs anything, and the recording succeeds once the database is well.
#[tokio::test]
async fn only_the_directives_own_key_is_a_directive_conflict() {
    for db in BOTH {
        let app = spawn_app(db).await;
        let store = app.store();
        seed(&app, &clinician()).await;
        let stored = "SELECT COUNT(*) FROM subject_directives";
        let own = "INSERT INTO subject_directives (id, directive, recorded_by, recorded_by_user, \
                   recorded_at_us, data_key_id, valid_from_us, ends_at_us, ended_at_us, \
                   ended_by_partner, ended_by_user, body, end_sealed) VALUES (NEW.id, \
                   NEW.directive, NEW.recorded_by, NEW.recorded_by_user, NEW.recorded_at_us, \
                   NEW.data_key_id, NEW.valid_from_us, NEW.ends_at_us, NEW.ended_at_us, \
                   NEW.ended_by_partner, NEW.ended_by_user, NEW.body, NEW.end_sealed)";
        let other = "INSERT INTO data_keys SELECT * FROM data_keys WHERE id = NEW.data_key_id";
        let logged = entries(&app, EntryKind::RestrictionChanged).await.len();
        for (body, status, code) in [
            (own, 409, "directive_conflict"),
            (other, 503, "service_unavailable"),
        ] {
            // One trigger name per case: SQLite checks a new trigger's name against the schema
            // its pooled connection last read, which may still hold the one just dropped.
            let name = format!("inject_directive_{status}");
            support::before_insert(store, &name, "subject_directives", "TRUE", body).await;
            let (s, b) = post(&app, &clinician(), "/v1/restrictions", &restriction()).await;
            assert_eq!((s, b["code"].as_str()), (status, Some(code)), "{db:?}: {b}");
            support::drop_before_insert(store, &name, "subject_directives").await;
            assert_eq!(support::scalar(store, stored).await, 0, "{db:?} {code}");
            assert_eq!(
                entries(&app, EntryKind::RestrictionChanged).await.len(),
                logged,
                "{db:?} {code}"
            );
        }
        let (s, b) = post(&app, &clinician(), "/v1/restrictions", &restriction()).await;
        assert_eq!(s, 201, "{db:?}: {b}");
        assert_eq!(support::scalar(store, stored).await, 1, "{db:?}");
        app.assert_log_verifies().await;
        app.stop().await;
    }
}

const EMERGENCY: [(&str, &str); 3] = [
    ("Emergency-Basis", "actual-knowledge"),
    ("Emergency-Source", "dispatcher"),
    ("Emergency-Description", "person on a bridge"),
];

#[tokio::test]
async fn a_restriction_withholds_what_consent_and_the_mou_would_release() {
    for db in BOTH {
        let app = spawn_app(db).await;
        seed(&app, &clinician()).await;
        let (s, b) = post(&app, &clinician(), "/v1/consents", &crisis_plan_consent()).await;
        assert_eq!(s, 201, "{b}");
        let (s, _, b) = read(&app, &officer(), PLAN, Some("crisis-response"), &[]).await;
        assert_eq!(s, 200, "{b}");
        assert!(b["fields"]["crisis_contacts"].is_string());

        // A partner holding no records cannot record one; bad input names every problem.
        let (s, b) = post(&app, &compliance(), "/v1/restrictions", &restriction()).await;
        assert_eq!((s, b["code"].as_str()), (403, Some("not_a_holder")), "{b}");
        let mut bad = restriction();
        bad["scope"] = json!({"fields": ["safety-plan.nope"], "categories": ["cji"], "kinds": ["safety-plan"]});
        bad["agreed_on"] = json!("yesterday");
        let (s, b) = post(&app, &clinician(), "/v1/restrictions", &bad).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (400, Some("invalid_restriction")),
            "{b}"
        );
        assert_eq!(b["details"]["problems"].as_array().unwrap().len(), 3, "{b}");

        let (s, created) = post(&app, &clinician(), "/v1/restrictions", &restriction()).await;
        assert_eq!(s, 201, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        assert_eq!(created["discloser"], "county-mh");

        // The very next read withholds the field, and its log entry says which restriction.
        let (s, disclosure, b) = read(&app, &officer(), PLAN, Some("crisis-response"), &[]).await;
        assert_eq!(s, 200, "{b}");
        assert!(b["fields"].get("crisis_contacts").is_none(), "{b}");
        assert!(b["fields"]["deescalation_preferences"].is_string());
        let e = entry_of(&app, &disclosure).await;
        let detail = e.data.detail.unwrap();
        assert!(
            detail.contains(&id) && detail.contains("crisis_contacts"),
            "{detail}"
        );

        // A 164.512(j) emergency is beyond a restriction's reach (164.522(a)(1)(v)).
        let (s, _, b) = read(&app, &officer(), PLAN, Some("emergency"), &EMERGENCY).await;
        assert_eq!(s, 200, "{b}");
        assert!(b["fields"]["crisis_contacts"].is_string(), "{b}");

        // The coverage answer names it.
        let path = "/v1/subjects/county-mh/MRN-88/coverage?recipient=metro-pd&purpose=crisis-response&role=officer";
        let (s, _, cov) = read(&app, &clinician(), path, None, &[]).await;
        assert_eq!(s, 200, "{cov}");
        assert_eq!(cov["restrictions"], json!([id]));
        let contacts = cov["flows"][0]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["field"] == "crisis_contacts")
            .unwrap()
            .clone();
        assert_eq!(contacts["flows"], false);
        assert!(
            contacts["reasons"][0]
                .as_str()
                .unwrap()
                .starts_with(&format!("restriction:{id}")),
            "{contacts}"
        );

        // Only its discloser and compliance officers see it; only its discloser ends it.
        let one = format!("/v1/restrictions/{id}");
        let (s, _, b) = read(&app, &officer(), &one, None, &[]).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (404, Some("restriction_not_found"))
        );
        let (s, _, b) = read(&app, &compliance(), &one, None, &[]).await;
        assert_eq!((s, b["status"].as_str()), (200, Some("active")), "{b}");
        let (s, _, b) = read(
            &app,
            &clinician(),
            "/v1/subjects/county-mh/MRN-88/restrictions",
            None,
            &[],
        )
        .await;
        assert_eq!(
            (s, b["restrictions"].as_array().unwrap().len()),
            (200, 1),
            "{b}"
        );
        let (s, _, b) = read(
            &app,
            &officer(),
            "/v1/subjects/county-mh/MRN-88/restrictions",
            None,
            &[],
        )
        .await;
        assert_eq!(
            (s, b["restrictions"].as_array().unwrap().len()),
            (200, 0),
            "{b}"
        );
        let stop = format!("/v1/restrictions/{id}/terminate");
        let (s, b) = post(&app, &officer(), &stop, &json!({"reason": "x"})).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (404, Some("restriction_not_found")),
            "{b}"
        );
        let (s, b) = post(&app, &clinician(), &stop, &json!({"reason": "\u{7}"})).await;
        assert_eq!((s, b["code"].as_str()), (400, Some("invalid_end")), "{b}");
        let (s, b) = post(
            &app,
            &clinician(),
            &stop,
            &json!({"reason": "the person asked in writing"}),
        )
        .await;
        assert_eq!((s, b["status"].as_str()), (200, Some("ended")), "{b}");
        let (s, _, b) = read(&app, &officer(), PLAN, Some("crisis-response"), &[]).await;
        assert_eq!(s, 200);
        assert!(
            b["fields"]["crisis_contacts"].is_string(),
            "terminated: {b}"
        );
        let (s, b) = post(&app, &clinician(), &stop, &json!({"reason": "again"})).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (409, Some("restriction_ended")),
            "{b}"
        );

        let changes = entries(&app, EntryKind::RestrictionChanged).await;
        let outcomes: Vec<String> = changes
            .iter()
            .map(|e| e.data.outcome.as_str().to_owned())
            .collect();
        assert_eq!(changes.len(), 6, "{outcomes:?}");
        assert!(!format!("{changes:?}").contains("MRN-88"));
        app.assert_log_verifies().await;
        app.stop().await;
    }
}

#[tokio::test]
async fn a_stored_restriction_that_was_tampered_with_fails_the_read_closed() {
    for db in BOTH {
        let app = spawn_app(db).await;
        seed(&app, &clinician()).await;
        let (s, b) = post(&app, &clinician(), "/v1/restrictions", &restriction()).await;
        assert_eq!(s, 201, "{b}");
        // Someone with database access tries to move its end date into the past.
        exec(app.store(), "UPDATE subject_directives SET ends_at_us = 1").await;
        exec(
            app.store(),
            "UPDATE cache_epochs SET consents = consents + 1 WHERE id = 1",
        )
        .await;
        let (s, _, b) = read(&app, &officer(), PLAN, Some("crisis-response"), &[]).await;
        assert_eq!(
            s, 500,
            "a directive that does not authenticate is never skipped: {b}"
        );
        app.stop().await;
    }
}

const MEDICAL: [(&str, &str); 3] = [
    ("Emergency-Basis", "medical-emergency"),
    ("Emergency-Personnel", "Dr. A. Rivera"),
    (
        "Emergency-Description",
        "unresponsive after a suspected overdose",
    ),
];

#[tokio::test]
async fn a_medical_emergency_reaches_medical_personnel_only_and_is_documented() {
    for db in BOTH {
        let app = spawn_app(db).await;
        seed(&app, &clinician()).await;

        let (s, disclosure, b) = read(&app, &physician(), PLAN, Some("emergency"), &MEDICAL).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["fields"]["substance_use_history"], SUD);
        assert!(b["fields"].get("psychotherapy_notes").is_none());
        assert!(b["notices"][0].as_str().unwrap().contains("42 CFR part 2"));
        assert_eq!(b["emergency"]["review_opened"], true, "{b}");
        // 42 CFR 2.51(c): the medical personnel and their affiliation, the discloser, the date
        // and time, the nature of the emergency.
        let e = entry_of(&app, &disclosure).await;
        let Some(LegalBasis::MedicalEmergency { documentation }) = &e.data.basis else {
            panic!("{:?}", e.data.basis);
        };
        assert!(documentation.contains("Dr. A. Rivera"), "{documentation}");
        let detail = e.data.detail.clone().unwrap();
        for part in [
            "42 CFR 2.51(c)",
            "Dr. A. Rivera",
            "Metro General Hospital",
            "County Behavioral Health Services",
        ] {
            assert!(detail.contains(part), "{part}: {detail}");
        }
        assert_eq!(
            e.data.justification.as_deref(),
            Some("unresponsive after a suspected overdose")
        );
        // The review it opened shows compliance officers the 2.51(c) documentation and the
        // nature of the emergency.
        let (s, _, list) = read(&app, &compliance(), "/v1/reviews?state=open", None, &[]).await;
        assert_eq!(s, 200, "{list}");
        let review = &list["reviews"][0];
        let doc = review["medical_emergency"].as_str().unwrap_or_default();
        for part in [
            "42 CFR 2.51(c)",
            "Dr. A. Rivera",
            "Metro General Hospital",
            "nature of the emergency",
        ] {
            assert!(doc.contains(part), "{part}: {review}");
        }
        assert_eq!(review["threat"], "unresponsive after a suspected overdose");
        assert!(review["stated_basis"].is_null(), "{review}");

        // Not to a role that is not medical personnel, not on a 164.512(j) assertion, never to
        // police.
        let registrar = who("metro-general", "reg-1", &["registrar"]);
        let (s, _, _) = read(&app, &registrar, PLAN, Some("emergency"), &MEDICAL).await;
        assert_eq!(s, 403);
        let (s, _, b) = read(&app, &physician(), PLAN, Some("emergency"), &EMERGENCY).await;
        assert_eq!(s, 403, "{b}");
        assert!(
            reasons(&b)
                .iter()
                .any(|r| r.starts_with("medical-emergency-missing:")),
            "{b}"
        );
        let (s, _, b) = read(&app, &officer(), PLAN, Some("emergency"), &MEDICAL).await;
        assert_eq!(s, 403, "{b}");
        assert!(
            reasons(&b).contains(&"hard-limit-part2-emergency-police".to_owned()),
            "{b}"
        );
        // The headers are checked: a medical emergency names its personnel.
        let (s, _, b) = read(&app, &physician(), PLAN, Some("emergency"), &MEDICAL[..1]).await;
        assert_eq!(
            (s, b["details"]["header"].as_str()),
            (400, Some("Emergency-Personnel")),
            "{b}"
        );
        app.assert_log_verifies().await;
        app.stop().await;
    }
}

#[tokio::test]
async fn the_2_24_list_names_each_part2_disclosure_of_the_last_three_years() {
    for db in BOTH {
        let clock = ManualClock::new(Utc::now());
        let app = spawn_with_clock(db, &clock, |_| {}).await;
        let now = clock.now();
        seed(&app, &who_at("county-mh", "clin-3", &["clinician"], now)).await;
        let doc = who_at("metro-general", "dr-rivera", &["ed-physician"], now);
        let (s, _, _) = read(&app, &doc, PLAN, Some("emergency"), &MEDICAL).await;
        assert_eq!(s, 200);
        let auditor = compliance_at(now);
        let (s, _) = post(
            &app,
            &auditor,
            "/v1/court-orders",
            &order(
                now,
                "2.65",
                &["investigation"],
                &["safety-plan.substance_use_history"],
            ),
        )
        .await;
        assert_eq!(s, 201);
        let cop = who_at("metro-pd", "officer-17", &["officer"], now);
        let (s, _, _) = read(&app, &cop, PLAN, Some("investigation"), &[]).await;
        assert_eq!(s, 200);
        // A disclosure without Part 2 information is not listed.
        let (s, _, _) = read(&app, &cop, PLAN, Some("emergency"), &EMERGENCY).await;
        assert_eq!(s, 200);

        let path = "/v1/subjects/county-mh/MRN-88/part2-disclosures";
        let (s, _, b) = read(&app, &auditor, path, None, &[]).await;
        assert_eq!(s, 200, "{b}");
        let list = b["disclosures"].as_array().unwrap();
        assert_eq!(list.len(), 2, "{b}");
        assert_eq!(
            list[0]["recipient"]["name"],
            "Metro General Hospital, Psychiatric Emergency Services"
        );
        assert_eq!(list[1]["recipient"]["name"], "Metro City Police Department");
        assert!(
            list[1]["description"]
                .as_str()
                .unwrap()
                .contains("substance_use_history")
        );
        assert!(list[1]["purpose"].as_str().unwrap().contains("court order"));
        // By the person's other identifier: the same list.
        let (_, _, other) = read(
            &app,
            &auditor,
            "/v1/subjects/metro-pd/P-2231/part2-disclosures",
            None,
            &[],
        )
        .await;
        assert_eq!(other["disclosures"], b["disclosures"]);
        // CSV, bad parameters, other callers.
        let res = support::client(Some(&auditor.0))
            .get(app.url(&format!("{path}?format=csv&years=2")))
            .bearer_auth(&auditor.1)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let csv = res.text().await.unwrap();
        assert_eq!(csv.lines().count(), 3, "{csv}");
        let (s, _, bad) = read(&app, &auditor, &format!("{path}?years=4"), None, &[]).await;
        assert_eq!(
            (s, bad["code"].as_str()),
            (400, Some("invalid_parameter")),
            "{bad}"
        );
        // Named like every refused query parameter (it was `details.field` once).
        assert_eq!(
            bad["details"],
            serde_json::json!({ "parameter": "years" }),
            "{bad}"
        );
        assert!(
            bad["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("query parameter `years`: use 1 to 3")),
            "{bad}"
        );
        let (s, _, _) = read(&app, &cop, path, None, &[]).await;
        assert_eq!(s, 403);

        // The offline command gives the same list.
        let out = Command::new(env!("CARGO_BIN_EXE_coresponse-gateway"))
            .args([
                "audit",
                "part2-disclosures",
                "--subject-system",
                "county-mh",
                "--subject-value",
                "MRN-88",
                "--json",
                "--config",
            ])
            .arg(pki().dir.join("gateway.toml"))
            .env("GATEWAY__STORAGE__URL", &app.state.settings.storage.url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let offline: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(offline["disclosures"], b["disclosures"]);
        let out = Command::new(env!("CARGO_BIN_EXE_coresponse-gateway"))
            .args(["court-orders", "list", "--config"])
            .arg(pki().dir.join("gateway.toml"))
            .env("GATEWAY__STORAGE__URL", &app.state.settings.storage.url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(DOCKET));

        // Three years and a day later they are out of the period.
        clock.advance(Duration::days(3 * 365 + 2));
        let auditor = compliance_at(clock.now());
        let (_, _, b) = read(&app, &auditor, path, None, &[]).await;
        assert_eq!(b["disclosures"].as_array().unwrap().len(), 0, "{b}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_restriction_recorded_through_one_replica_governs_the_others_next_read() {
    let app = spawn_app(Db::Postgres).await;
    let replica = spawn_replica(&app).await;
    seed(&app, &clinician()).await;
    let (s, _) = post(&app, &clinician(), "/v1/consents", &crisis_plan_consent()).await;
    assert_eq!(s, 201);
    // Both replicas cache the subject's directives.
    for gw in [&app, &replica] {
        let (s, _, b) = read(gw, &officer(), PLAN, Some("crisis-response"), &[]).await;
        assert_eq!(s, 200);
        assert!(b["fields"]["crisis_contacts"].is_string());
    }
    let (s, b) = post(&replica, &clinician(), "/v1/restrictions", &restriction()).await;
    assert_eq!(s, 201, "{b}");
    let (s, _, b) = read(&app, &officer(), PLAN, Some("crisis-response"), &[]).await;
    assert_eq!(s, 200);
    assert!(
        b["fields"].get("crisis_contacts").is_none(),
        "the other replica's cache: {b}"
    );
    replica.stop().await;
    app.stop().await;
}
