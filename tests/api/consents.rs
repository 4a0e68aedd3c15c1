//! The consent registry on both backends, over real TLS with real tokens: recording, the
//! 42 CFR 2.31 element checks, who may record, read and revoke, revocation and its history,
//! the decision inputs for a subject, coverage, the disclosure-log entries (committed with the
//! change, or no change), sealing at rest, tampering, and the offline CLI.

use std::process::Command;

use chrono::{Duration, Utc};
use coresponse_gateway::audit::{self, EntryKind, LegalBasis, Outcome, query};
use coresponse_gateway::consent::SubjectRef;
use coresponse_gateway::consent::registry::{self, ConsentStoreError};
use coresponse_gateway::domain::SubjectIdentifier;
use serde_json::{Value, json};

use crate::support::{self, Db, TestApp, fetch_all, pki, scalar, spawn_app};

const BOTH: [Db; 2] = [Db::Sqlite, Db::Postgres];
const PATIENT: &str = "Jordan Quillfeather-Testperson";
const MRN: &str = "MRN-CONSENT-4471";
const RULE: &str = "metro-county-coresponse-2026/4.3-crisis-plan-extract";

type Who = ((String, String), String);

fn user(partner: &str, user: &str, roles: &[&str]) -> Who {
    let id = pki().partner_cert(partner);
    let token = pki().token(partner, user, roles, &id.0);
    (id, token)
}

fn clinician() -> Who {
    user("county-mh", "clin-7", &["clinician"])
}

fn officer() -> Who {
    user("metro-pd", "officer-17", &["officer"])
}

fn compliance() -> Who {
    user("oversight", "auditor-2", &["compliance"])
}

/// A complete Part 2 consent: county-mh may tell metro-pd, for crisis response, the crisis-plan
/// extract and the substance-use information of the safety plan.
fn part2_consent() -> Value {
    let now = Utc::now();
    json!({
        "subjects": [{"system": "county-mh", "value": MRN}, {"system": "metro-pd", "value": "P-88123"}],
        "patient_name": PATIENT,
        "disclosers": ["county-mh"],
        "recipients": ["metro-pd"],
        "purposes": ["crisis-response"],
        "scope": {
            "kinds": ["safety-plan"],
            "categories": ["sud"],
            "fields": ["safety-plan.updated_on", "safety-plan.deescalation_preferences",
                       "safety-plan.crisis_contacts"],
        },
        "valid_from": (now - Duration::days(1)).to_rfc3339(),
        "expires": (now + Duration::days(365)).to_rfc3339(),
        "signature_reference": "DMS-2026-7731 (signed consent form)",
        "signed_on": (now - Duration::days(1)).date_naive().to_string(),
        "revocation_statement": "You may revoke this consent at any time by telling County \
            Behavioral Health Services in writing, except where it has already been acted on.",
    })
}

async fn post(app: &TestApp, who: &Who, path: &str, body: &Value) -> reqwest::Response {
    support::client(Some(&who.0))
        .post(app.url(path))
        .bearer_auth(&who.1)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn get(app: &TestApp, who: &Who, path: &str) -> reqwest::Response {
    app.get(Some(&who.0), path, Some(&who.1)).await.unwrap()
}

/// Records the consent as the clinician and returns its id.
async fn record(app: &TestApp, body: &Value) -> String {
    let res = post(app, &clinician(), "/v1/consents", body).await;
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    v["id"].as_str().unwrap().to_owned()
}

fn revocation() -> Value {
    json!({
        "received_at": (Utc::now() - Duration::hours(2)).to_rfc3339(),
        "received_how": "written",
        "note": "Letter handed in at the front desk",
    })
}

async fn consent_entries(app: &TestApp) -> Vec<audit::Entry> {
    let mut v = app
        .log_entries(&query::Filter {
            kinds: vec![EntryKind::ConsentChanged],
            limit: 500,
            ..Default::default()
        })
        .await;
    v.reverse();
    v
}

/// Asserts that exactly one more `consent_changed` entry was logged since `logged` entries,
/// a refusal with reason `code` whose detail names the code and no value of the directive;
/// returns its detail.
async fn one_more_refusal(app: &TestApp, logged: &mut usize, code: &str) -> String {
    let entries = consent_entries(app).await;
    assert_eq!(entries.len(), *logged + 1, "one entry per refused creation");
    *logged = entries.len();
    let e = entries.last().unwrap();
    assert_eq!(e.data.outcome, Outcome::deny(code));
    assert_eq!(e.data.recipient_partner.as_deref(), Some("county-mh"));
    assert_eq!(e.data.basis, None, "nothing was recorded");
    let detail = e.data.detail.clone().unwrap_or_default();
    assert!(detail.contains(code), "{detail}");
    for secret in [PATIENT, MRN, "P-88123", "DMS-2026-7731", "County"] {
        assert!(!detail.contains(secret), "{detail}");
    }
    detail
}

async fn verify(app: &TestApp) {
    app.assert_log_verifies().await;
}

async fn count_consents(app: &TestApp) -> i64 {
    scalar(app.store(), "SELECT COUNT(*) FROM consents").await
}

fn mrn() -> SubjectIdentifier {
    SubjectIdentifier::new("county-mh", MRN).unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_consent_is_recorded_shown_to_its_disclosers_and_sealed_at_rest() {
    for db in BOTH {
        let app = spawn_app(db).await;
        let res = post(&app, &clinician(), "/v1/consents", &part2_consent()).await;
        assert_eq!(res.status(), 201, "{db:?}");
        let location = res.headers()["location"].to_str().unwrap().to_owned();
        let created: Value = res.json().await.unwrap();
        let id = created["id"].as_str().unwrap();
        assert_eq!(location, format!("/v1/consents/{id}"));
        assert_eq!(created["status"], "active");
        assert_eq!(created["part2"], true);
        assert_eq!(created["collected_by"], "county-mh");
        assert_eq!(created["history"][0]["event"], "created");
        assert_eq!(created["history"][0]["user"], "clin-7");
        assert!(created["revoked_at"].is_null());
        // A kind-wide scope that leaves psychotherapy notes out says so.
        assert!(
            created["notes"][0]
                .as_str()
                .unwrap()
                .contains("psychotherapy")
        );

        let res = get(&app, &clinician(), &location).await;
        assert_eq!(res.status(), 200);
        let one: Value = res.json().await.unwrap();
        assert_eq!(one["patient_name"], PATIENT);

        let list_path = format!("/v1/subjects/county-mh/{MRN}/consents");
        let res = get(&app, &clinician(), &list_path).await;
        assert_eq!(res.status(), 200);
        let list: Value = res.json().await.unwrap();
        let consents = list["consents"].as_array().unwrap();
        assert_eq!(consents.len(), 1, "{list}");
        assert_eq!(consents[0]["id"], id);
        assert_eq!(consents[0]["status"], "active");
        assert_eq!(consents[0]["subjects"][0]["value"], MRN);
        assert_eq!(
            list["subject"],
            app.services().log.pseudonym(&mrn()).to_hex(),
            "the answer names the subject by pseudonym"
        );
        // Found by its other identifier too.
        let res = get(&app, &clinician(), "/v1/subjects/metro-pd/P-88123/consents").await;
        let other: Value = res.json().await.unwrap();
        assert_eq!(other["consents"][0]["id"], id);
        // The compliance office sees it; a partner that is no discloser sees nothing, and is
        // not told that it exists.
        let res = get(&app, &compliance(), &list_path).await;
        let seen: Value = res.json().await.unwrap();
        assert_eq!(seen["consents"].as_array().unwrap().len(), 1);
        let res = get(&app, &officer(), &list_path).await;
        assert_eq!(res.status(), 200);
        let seen: Value = res.json().await.unwrap();
        assert!(seen["consents"].as_array().unwrap().is_empty());
        assert_eq!(get(&app, &officer(), &location).await.status(), 404);
        assert_eq!(
            get(&app, &clinician(), "/v1/consents/consent-none")
                .await
                .status(),
            404
        );
        let bad = get(&app, &clinician(), "/v1/subjects/County/x/consents").await;
        assert_eq!(bad.status(), 400);

        // Nothing personal in clear in the consent tables or the log.
        let secrets: [&[u8]; 4] = [
            PATIENT.as_bytes(),
            MRN.as_bytes(),
            b"P-88123",
            b"DMS-2026-7731",
        ];
        let mut stored: Vec<Vec<u8>> = Vec::new();
        let store = app.store();
        let rows: Vec<(String, String, String, Vec<u8>)> =
            fetch_all(store, "SELECT id, collected_by, status, body FROM consents").await;
        for (a, b, c, d) in rows {
            stored.extend([a.into_bytes(), b.into_bytes(), c.into_bytes(), d]);
        }
        let rows: Vec<(String, String, String, Vec<u8>)> = fetch_all(
            store,
            "SELECT event, actor_partner, actor_user, sealed FROM consent_events",
        )
        .await;
        for (a, b, c, d) in rows {
            stored.extend([a.into_bytes(), b.into_bytes(), c.into_bytes(), d]);
        }
        let rows: Vec<(Vec<u8>, Vec<u8>)> = fetch_all(
            store,
            "SELECT blind_index, ciphertext FROM consent_subjects",
        )
        .await;
        assert_eq!(rows.len(), 2);
        for (a, b) in rows {
            stored.extend([a, b]);
        }
        let rows: Vec<(Option<String>, Option<Vec<u8>>)> =
            fetch_all(store, "SELECT detail, subject FROM audit_log").await;
        for (detail, subject) in rows {
            stored.extend([
                detail.unwrap_or_default().into_bytes(),
                subject.unwrap_or_default(),
            ]);
        }
        for s in &stored {
            for secret in secrets {
                assert!(!contains(s, secret), "{db:?}: clear text stored");
            }
        }
        if db == Db::Sqlite {
            let file = app.workdir.path().join("gateway.db");
            let mut bytes = std::fs::read(&file).unwrap();
            if let Ok(wal) = std::fs::read(format!("{}-wal", file.display())) {
                bytes.extend(wal);
            }
            assert!(bytes.len() > 4096);
            for secret in secrets {
                assert!(!contains(&bytes, secret), "clear text in the SQLite files");
            }
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn each_missing_part2_element_and_each_bad_input_is_refused_by_name() {
    for db in BOTH {
        let app = spawn_app(db).await;
        let mut logged = consent_entries(&app).await.len();
        let elements = [
            ("patient_name", "2.31(a)(1)"),
            ("disclosers", "2.31(a)(2)"),
            ("scope", "2.31(a)(3)"),
            ("recipients", "2.31(a)(4)"),
            ("purposes", "2.31(a)(5)"),
            ("revocation_statement", "2.31(a)(6)"),
            ("expiration", "2.31(a)(7)"),
            ("signature_reference", "2.31(a)(8)"),
            ("signed_on", "2.31(a)(9)"),
        ];
        for (element, paragraph) in elements {
            let mut body = part2_consent();
            let o = body.as_object_mut().unwrap();
            match element {
                "expiration" => {
                    o.remove("expires");
                }
                // Part 2 information "anywhere" is not described specifically.
                "scope" => {
                    o.insert("scope".into(), json!({"categories": ["sud"]}));
                }
                other => {
                    o.remove(other);
                }
            }
            let res = post(&app, &clinician(), "/v1/consents", &body).await;
            assert_eq!(res.status(), 400, "{db:?} {element}");
            let v: Value = res.json().await.unwrap();
            assert_eq!(v["code"], "consent_incomplete", "{v}");
            assert_eq!(v["details"]["missing"], json!([element]), "{v}");
            assert_eq!(v["details"]["part2"], true);
            let message = v["message"].as_str().unwrap();
            assert!(message.contains(paragraph), "{message}");
            assert!(message.contains(element), "{message}");
            // The refusal is logged: the code and the missing element, no value of the body.
            let refusal = one_more_refusal(&app, &mut logged, "consent_incomplete").await;
            assert!(refusal.contains(element), "{refusal}");
        }
        // An expiration event instead of a date is enough.
        let mut body = part2_consent();
        body.as_object_mut().unwrap().remove("expires");
        body["expiry_event"] = json!("end of the current treatment episode");
        let res = post(&app, &clinician(), "/v1/consents", &body).await;
        assert_eq!(res.status(), 201);
        let v: Value = res.json().await.unwrap();
        assert!(v["expires"].is_null());
        assert_eq!(v["status"], "active");
        logged = consent_entries(&app).await.len();

        // Psychotherapy notes by category.
        let mut body = part2_consent();
        body["scope"]["categories"] = json!(["sud", "psychotherapy-notes"]);
        let res = post(&app, &clinician(), "/v1/consents", &body).await;
        assert_eq!(res.status(), 400);
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["code"], "invalid_consent");
        assert_eq!(
            v["details"]["problems"][0]["code"],
            "psychotherapy_notes_by_category"
        );
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("safety-plan.psychotherapy_notes")
        );
        let refusal = one_more_refusal(&app, &mut logged, "invalid_consent").await;
        assert!(
            refusal.contains("psychotherapy_notes_by_category at scope.categories"),
            "{refusal}"
        );

        // Content checked against the policy set; unknown fields and bad JSON refused.
        let cases: Vec<(Value, &str, &str)> = vec![
            (
                json!({"recipients": ["fire-dept"]}),
                "invalid_consent",
                "fire-dept",
            ),
            (
                json!({"purposes": ["marketing"]}),
                "invalid_consent",
                "marketing",
            ),
            (
                json!({"scope": {"fields": ["safety-plan.shoe_size"]}}),
                "invalid_consent",
                "shoe_size",
            ),
            (
                json!({"scope": {"kinds": ["tax-return"]}}),
                "invalid_consent",
                "tax-return",
            ),
            (
                json!({"expires": "2000-01-01T00:00:00Z"}),
                "invalid_consent",
                "expires",
            ),
            (
                json!({"purposes": ["crisis-response", "investigation"]}),
                "invalid_consent",
                "2.12",
            ),
            (json!({"colour": "red"}), "invalid_json", "colour"),
            (
                json!({"scope": {"categories": ["gossip"]}}),
                "invalid_json",
                "gossip",
            ),
            (
                json!({"signed_on": "yesterday"}),
                "invalid_json",
                "signed_on",
            ),
            (
                json!({"subjects": [{"system": "County MH", "value": "x"}]}),
                "invalid_json",
                "system",
            ),
        ];
        for (patch, code, mentions) in cases {
            let mut body = part2_consent();
            for (k, v) in patch.as_object().unwrap() {
                body[k] = v.clone();
            }
            let res = post(&app, &clinician(), "/v1/consents", &body).await;
            assert_eq!(res.status(), 400, "{patch}");
            let v: Value = res.json().await.unwrap();
            assert_eq!(v["code"], code, "{v}");
            assert!(v["message"].as_str().unwrap().contains(mentions), "{v}");
            if code == "invalid_consent" {
                let refusal = one_more_refusal(&app, &mut logged, code).await;
                for problem in v["details"]["problems"].as_array().unwrap() {
                    let listed = format!(
                        "{} at {}",
                        problem["code"].as_str().unwrap(),
                        problem["field"].as_str().unwrap()
                    );
                    assert!(refusal.contains(&listed), "{refusal} lacks {listed}");
                }
                // The offending values themselves are not in the log.
                for value in [
                    "fire-dept",
                    "marketing",
                    "shoe_size",
                    "tax-return",
                    "2000-01-01",
                ] {
                    assert!(!refusal.contains(value), "{refusal}");
                }
            } else {
                logged = consent_entries(&app).await.len();
            }
        }
        assert_eq!(count_consents(&app).await, 1, "only the complete one");
        verify(&app).await;
        app.stop().await;
    }
}

#[tokio::test]
async fn only_a_discloser_records_or_revokes_and_refusals_are_logged() {
    for db in BOTH {
        let app = spawn_app(db).await;
        let res = post(&app, &officer(), "/v1/consents", &part2_consent()).await;
        assert_eq!(res.status(), 403, "{db:?}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["code"], "not_a_discloser");
        assert_eq!(count_consents(&app).await, 0);

        let id = record(&app, &part2_consent()).await;
        // A partner that is not among the disclosers gets exactly the answer an unknown id
        // gets: the 404 tells it nothing about whether the consent exists.
        let res = post(
            &app,
            &officer(),
            "/v1/consents/consent-unknown/revoke",
            &revocation(),
        )
        .await;
        assert_eq!(res.status(), 404);
        let unknown: Value = res.json().await.unwrap();
        assert_eq!(unknown["code"], "consent_not_found", "{unknown}");
        for who in [officer(), compliance()] {
            let res = post(
                &app,
                &who,
                &format!("/v1/consents/{id}/revoke"),
                &revocation(),
            )
            .await;
            assert_eq!(res.status(), 404, "{db:?}");
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["code"], unknown["code"], "{body}");
            assert_eq!(
                body.to_string().replace(&id, "consent-unknown"),
                unknown.to_string(),
                "the same answer as for an unknown id"
            );
        }
        let res = get(&app, &clinician(), &format!("/v1/consents/{id}")).await;
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["status"], "active");

        let entries = consent_entries(&app).await;
        let outcomes: Vec<(Option<&str>, Outcome)> = entries
            .iter()
            .map(|e| (e.data.recipient_partner.as_deref(), e.data.outcome.clone()))
            .collect();
        assert_eq!(
            outcomes,
            vec![
                (Some("metro-pd"), Outcome::deny("not_a_discloser")),
                (Some("county-mh"), Outcome::Permit),
                (Some("metro-pd"), Outcome::deny("consent_not_found")),
                (Some("metro-pd"), Outcome::deny("consent_not_found")),
                (Some("oversight"), Outcome::deny("consent_not_found")),
            ]
        );
        let pseudonym = app.services().log.pseudonym(&mrn());
        assert!(
            entries[..2]
                .iter()
                .all(|e| e.data.subject == Some(pseudonym))
        );
        // The refused revocations name no consent and no subject: the entry for the existing
        // consent is the entry for the unknown id.
        for e in &entries[2..] {
            assert_eq!(e.data.basis, None, "{e:?}");
            assert_eq!(e.data.subject, None, "{e:?}");
            let detail = e.data.detail.as_deref().unwrap_or_default();
            assert!(!detail.contains(&id), "{detail}");
            assert!(!detail.contains("consent-unknown"), "{detail}");
        }
        assert_eq!(entries[2].data.detail, entries[3].data.detail);
        verify(&app).await;
        app.stop().await;
    }
}

#[tokio::test]
async fn revocation_takes_effect_at_once_is_kept_in_history_and_is_not_repeated() {
    for db in BOTH {
        let app = spawn_app(db).await;
        let id = record(&app, &part2_consent()).await;
        let coverage = format!(
            "/v1/subjects/county-mh/{MRN}/coverage?recipient=metro-pd&purpose=crisis-response&role=officer"
        );
        let flows = |v: &Value| -> Vec<String> {
            v["flows"][0]["fields"]
                .as_array()
                .map(|fields| {
                    fields
                        .iter()
                        .filter(|f| f["flows"] == true)
                        .map(|f| f["field"].as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        let before: Value = get(&app, &clinician(), &coverage)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(flows(&before).len(), 3, "{before}");

        let path = format!("/v1/consents/{id}/revoke");
        for (body, code, mentions) in [
            (
                json!({"received_at": Utc::now().to_rfc3339(), "received_how": "telepathy"}),
                "invalid_json",
                "telepathy",
            ),
            (
                json!({"received_how": "oral"}),
                "invalid_json",
                "received_at",
            ),
            (
                json!({"received_at": "noon", "received_how": "oral"}),
                "invalid_json",
                "received_at",
            ),
            (
                json!({"received_at": Utc::now().to_rfc3339(), "received_how": "oral",
                       "by": "phone"}),
                "invalid_json",
                "by",
            ),
            (
                json!({"received_at": (Utc::now() + Duration::days(2)).to_rfc3339(),
                       "received_how": "oral"}),
                "invalid_revocation",
                "received_at",
            ),
        ] {
            let res = post(&app, &clinician(), &path, &body).await;
            assert_eq!(res.status(), 400, "{body}");
            let v: Value = res.json().await.unwrap();
            assert_eq!(v["code"], code, "{v}");
            assert!(v["message"].as_str().unwrap().contains(mentions), "{v}");
        }

        let res = post(&app, &clinician(), &path, &revocation()).await;
        assert_eq!(res.status(), 200, "{db:?}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["status"], "revoked");
        assert!(v["revoked_at"].is_string());
        let history = v["history"].as_array().unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[0]["event"], "created");
        assert_eq!(history[1]["event"], "revoked");
        assert_eq!(history[1]["partner"], "county-mh");
        assert_eq!(history[1]["revocation"]["received_how"], "written");
        assert_eq!(
            history[1]["revocation"]["note"],
            "Letter handed in at the front desk"
        );

        // The list shows it revoked, with both events.
        let list: Value = get(
            &app,
            &compliance(),
            &format!("/v1/subjects/county-mh/{MRN}/consents"),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(list["consents"][0]["status"], "revoked");
        assert_eq!(list["consents"][0]["history"].as_array().unwrap().len(), 2);

        // Twice is a conflict; an unknown id is not found.
        let res = post(&app, &clinician(), &path, &revocation()).await;
        assert_eq!(res.status(), 409);
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["code"], "consent_already_revoked");
        let res = post(
            &app,
            &clinician(),
            "/v1/consents/consent-unknown/revoke",
            &revocation(),
        )
        .await;
        assert_eq!(res.status(), 404);
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["code"], "consent_not_found");

        // The very next decision sees it revoked.
        let after: Value = get(&app, &clinician(), &coverage)
            .await
            .json()
            .await
            .unwrap();
        assert!(flows(&after).is_empty(), "{after}");
        assert_eq!(after["flows"][0]["decision"], "deny");

        // The decision inputs, as the disclosure path reads them.
        let as_subject: SubjectRef = "subject-under-test".parse().unwrap();
        let mut pooled = app.store().acquire().await.unwrap();
        let inputs = registry::for_subjects(
            &mut pooled.conn(),
            &app.services().keyring,
            &[
                SubjectIdentifier::new("metro-pd", "P-00000").unwrap(),
                mrn(),
                SubjectIdentifier::new("metro-pd", "P-88123").unwrap(),
            ],
            &as_subject,
        )
        .await
        .unwrap();
        drop(pooled);
        assert_eq!(inputs.len(), 1, "one consent, found by two identifiers");
        let c = &inputs[0];
        assert_eq!(c.id, id);
        assert_eq!(c.subject, as_subject);
        assert!(c.revoked_at.is_some());
        assert!(!c.is_active(Utc::now()));
        assert!(c.is_active(c.revoked_at.unwrap() - Duration::seconds(1)));

        // One entry per change, per refused malformed revocation (naming no consent) and for
        // the refused repeat, committed with it; the chain holds.
        let entries = consent_entries(&app).await;
        let summary: Vec<(Outcome, Option<LegalBasis>)> = entries
            .iter()
            .map(|e| (e.data.outcome.clone(), e.data.basis.clone()))
            .collect();
        let basis = Some(LegalBasis::Consent {
            consent_id: id.clone(),
        });
        assert_eq!(
            summary,
            vec![
                (Outcome::Permit, basis.clone()),
                (Outcome::deny("invalid_json"), None),
                (Outcome::deny("invalid_json"), None),
                (Outcome::deny("invalid_json"), None),
                (Outcome::deny("invalid_json"), None),
                (Outcome::deny("invalid_revocation"), None),
                (Outcome::Permit, basis.clone()),
                (Outcome::deny("consent_already_revoked"), basis),
                (Outcome::deny("consent_not_found"), None),
            ]
        );
        assert!(
            entries[6]
                .data
                .detail
                .as_deref()
                .unwrap()
                .contains("revoked")
        );
        assert!(entries.iter().all(|e| e.data.request_id.is_some()));
        verify(&app).await;
        app.stop().await;
    }
}

#[tokio::test]
async fn coverage_answers_which_fields_flow_with_and_without_the_consent() {
    for db in BOTH {
        let app = spawn_app(db).await;
        let path = format!(
            "/v1/subjects/county-mh/{MRN}/coverage?recipient=metro-pd&purpose=crisis-response"
        );
        let without: Value = get(&app, &clinician(), &path).await.json().await.unwrap();
        assert!(without["consents"].as_array().unwrap().is_empty());
        let flows = without["flows"].as_array().unwrap();
        // One entry per role of metro-pd, for the kinds county-mh holds.
        assert_eq!(flows.len(), 5, "{without}");
        assert!(flows.iter().all(|f| f["kind"] == "safety-plan"));
        let officer_flow = flows.iter().find(|f| f["role"] == "officer").unwrap();
        assert_eq!(officer_flow["decision"], "deny");
        assert!(
            officer_flow["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r == &json!(format!("consent-missing:{RULE}"))),
            "{officer_flow}"
        );

        let id = record(&app, &part2_consent()).await;
        let with: Value = get(&app, &clinician(), &path).await.json().await.unwrap();
        assert_eq!(with["consents"][0]["id"], id.as_str());
        assert_eq!(with["consents"][0]["names_recipient_and_purpose"], true);
        let flows = with["flows"].as_array().unwrap();
        let officer_flow = flows.iter().find(|f| f["role"] == "officer").unwrap();
        assert_eq!(officer_flow["decision"], "permit");
        let field = |name: &str| {
            officer_flow["fields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["field"] == name)
                .unwrap()
                .clone()
        };
        let d = field("deescalation_preferences");
        assert_eq!(d["flows"], true);
        assert_eq!(d["transform"], "reveal");
        assert_eq!(d["consents"], json!([id]));
        assert_eq!(d["mou_rules"], json!([RULE]));
        for (name, why) in [
            ("diagnoses", "not-in-profile"),
            ("substance_use_history", "not-in-profile"),
            ("psychotherapy_notes", "hard-limit-psychotherapy-notes"),
        ] {
            let f = field(name);
            assert_eq!(f["flows"], false, "{name}");
            assert!(f["reasons"][0].as_str().unwrap().starts_with(why), "{f}");
        }
        // The records clerk is in no rule: nothing flows, consent or not.
        let clerk = flows.iter().find(|f| f["role"] == "records-clerk").unwrap();
        assert_eq!(clerk["decision"], "deny");

        // A compliance officer sees every holder: also what metro-pd would get of its own
        // kinds (nothing: no rule sends them back to their owner).
        let all: Value = get(&app, &compliance(), &path).await.json().await.unwrap();
        assert!(
            all["flows"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["holder"] == "metro-pd")
        );
        // A partner that is no discloser sees its own holdings only, and no consent.
        let police: Value = get(&app, &officer(), &path).await.json().await.unwrap();
        assert!(police["consents"].as_array().unwrap().is_empty());
        assert!(
            police["flows"]
                .as_array()
                .unwrap()
                .iter()
                .all(|f| f["holder"] == "metro-pd")
        );

        for (query, param) in [
            ("purpose=crisis-response", "recipient"),
            ("recipient=metro-pd", "purpose"),
            ("recipient=fire-dept&purpose=treatment", "recipient"),
            ("recipient=metro-pd&purpose=gossip", "purpose"),
            (
                "recipient=metro-pd&purpose=treatment&role=clinician",
                "role",
            ),
            ("recipient=metro-pd&purpose=treatment&colour=red", "colour"),
            (
                "recipient=metro-pd&recipient=county-mh&purpose=treatment",
                "recipient",
            ),
        ] {
            let res = get(
                &app,
                &clinician(),
                &format!("/v1/subjects/county-mh/{MRN}/coverage?{query}"),
            )
            .await;
            assert_eq!(res.status(), 400, "{query}");
            let v: Value = res.json().await.unwrap();
            assert_eq!(v["code"], "invalid_parameter", "{v}");
            assert_eq!(v["details"]["parameter"], param, "{v}");
        }
        app.stop().await;
    }
}

async fn exec(app: &TestApp, sql: &str) {
    support::exec(app.store(), sql).await;
}

#[tokio::test]
async fn nothing_changes_when_the_log_cannot_be_written() {
    for db in BOTH {
        let app = spawn_app(db).await;
        let id = record(&app, &part2_consent()).await;
        let entries = consent_entries(&app).await.len();
        match db {
            Db::Sqlite => {
                exec(
                    &app,
                    "CREATE TRIGGER fail_log BEFORE INSERT ON audit_log \
                     BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
                )
                .await
            }
            Db::Postgres => {
                exec(
                    &app,
                    "CREATE FUNCTION fail_log() RETURNS trigger LANGUAGE plpgsql AS \
                     $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$; \
                     CREATE TRIGGER fail_log BEFORE INSERT ON audit_log \
                     FOR EACH ROW EXECUTE FUNCTION fail_log();",
                )
                .await
            }
        }
        let res = post(&app, &clinician(), "/v1/consents", &part2_consent()).await;
        assert_eq!(res.status(), 503, "{db:?}");
        let body = res.text().await.unwrap();
        assert!(!body.contains("injected"), "opaque: {body}");
        assert_eq!(
            count_consents(&app).await,
            1,
            "no consent without its entry"
        );
        let keys = scalar(
            app.store(),
            "SELECT COUNT(*) FROM data_keys WHERE purpose = 'consent'",
        )
        .await;
        assert_eq!(keys, 1, "the new data key was rolled back too");

        let res = post(
            &app,
            &clinician(),
            &format!("/v1/consents/{id}/revoke"),
            &revocation(),
        )
        .await;
        assert_eq!(res.status(), 503);
        // A refusal that cannot be logged is not answered either.
        let res = post(&app, &officer(), "/v1/consents", &part2_consent()).await;
        assert_eq!(res.status(), 503);
        drop_trigger(&app, db).await;
        let res = get(&app, &clinician(), &format!("/v1/consents/{id}")).await;
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["status"], "active", "the revocation did not happen");
        assert_eq!(v["history"].as_array().unwrap().len(), 1);
        assert_eq!(consent_entries(&app).await.len(), entries);
        app.stop().await;
    }
}

/// How many consent data keys are stored.
async fn consent_keys(app: &TestApp) -> i64 {
    scalar(
        app.store(),
        "SELECT COUNT(*) FROM data_keys WHERE purpose = 'consent'",
    )
    .await
}

/// Only the consent's own key is a conflict. A creation whose id is taken first (as a
/// concurrent creation would) and a revocation whose event number is taken first (as a
/// concurrent revocation would) answer 409 `consent_conflict`; a violation of another table's
/// key on the same statements answers 503 and is no conflict. Each changes nothing, logs
/// nothing and succeeds once the database is well.
#[tokio::test]
async fn only_the_consents_own_key_is_a_consent_conflict() {
    for db in BOTH {
        let app = spawn_app(db).await;
        let store = app.store();
        let id = record(&app, &part2_consent()).await;
        let entries = consent_entries(&app).await.len();

        // Creation: the consent's own key, then a data key's (the consent's data key inserted
        // once more: a real violation of a key that is not the consent's own).
        let own = "INSERT INTO consents (id, collected_by, data_key_id, status, valid_from_us, \
                   expires_us, created_at_us, revoked_at_us, event_count, body) VALUES (NEW.id, \
                   NEW.collected_by, NEW.data_key_id, NEW.status, NEW.valid_from_us, \
                   NEW.expires_us, NEW.created_at_us, NEW.revoked_at_us, NEW.event_count, \
                   NEW.body)";
        let other = "INSERT INTO data_keys SELECT * FROM data_keys WHERE id = NEW.data_key_id";
        for (body, status, code) in [
            (own, 409, "consent_conflict"),
            (other, 503, "service_unavailable"),
        ] {
            let name = format!("inject_consent_{status}");
            support::before_insert(store, &name, "consents", "TRUE", body).await;
            let res = post(&app, &clinician(), "/v1/consents", &part2_consent()).await;
            assert_eq!(res.status(), status, "{db:?} {code}");
            let b: Value = res.json().await.unwrap();
            assert_eq!(b["code"], code, "{db:?}: {b}");
            support::drop_before_insert(store, &name, "consents").await;
            assert_eq!(
                count_consents(&app).await,
                1,
                "{db:?} {code}: nothing stored"
            );
            assert_eq!(
                consent_keys(&app).await,
                1,
                "{db:?} {code}: no data key kept"
            );
            assert_eq!(consent_entries(&app).await.len(), entries, "{db:?} {code}");
        }

        // Revocation: the event's own key, then a data key's.
        let own = "INSERT INTO consent_events (consent_id, seq, event, actor_partner, \
                   actor_user, at_us, sealed) VALUES (NEW.consent_id, NEW.seq, NEW.event, \
                   NEW.actor_partner, NEW.actor_user, NEW.at_us, NEW.sealed)";
        let other = "INSERT INTO data_keys SELECT * FROM data_keys \
                     WHERE id = (SELECT data_key_id FROM consents WHERE id = NEW.consent_id)";
        let path = format!("/v1/consents/{id}/revoke");
        for (body, status, code) in [
            (own, 409, "consent_conflict"),
            (other, 503, "service_unavailable"),
        ] {
            let name = format!("inject_event_{status}");
            support::before_insert(store, &name, "consent_events", "NEW.seq = 2", body).await;
            let res = post(&app, &clinician(), &path, &revocation()).await;
            assert_eq!(res.status(), status, "{db:?} {code}");
            let b: Value = res.json().await.unwrap();
            assert_eq!(b["code"], code, "{db:?}: {b}");
            support::drop_before_insert(store, &name, "consent_events").await;
            let v: Value = get(&app, &clinician(), &format!("/v1/consents/{id}"))
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(v["status"], "active", "{db:?} {code}: not revoked");
            assert_eq!(v["history"].as_array().unwrap().len(), 1, "{db:?} {code}");
            assert_eq!(consent_entries(&app).await.len(), entries, "{db:?} {code}");
        }

        // Once the database is well, both succeed.
        let res = post(&app, &clinician(), "/v1/consents", &part2_consent()).await;
        assert_eq!(res.status(), 201, "{db:?}");
        let res = post(&app, &clinician(), &path, &revocation()).await;
        assert_eq!(res.status(), 200, "{db:?}");
        assert_eq!(count_consents(&app).await, 2, "{db:?}");
        assert_eq!(consent_entries(&app).await.len(), entries + 2, "{db:?}");
        verify(&app).await;
        app.stop().await;
    }
}

async fn drop_trigger(app: &TestApp, db: Db) {
    match db {
        Db::Sqlite => exec(app, "DROP TRIGGER fail_log").await,
        Db::Postgres => exec(app, "DROP TRIGGER fail_log ON audit_log").await,
    }
}

#[tokio::test]
async fn a_tampered_consent_fails_the_lookup_and_is_never_skipped() {
    for db in BOTH {
        let app = spawn_app(db).await;
        let id = record(&app, &part2_consent()).await;
        let res = post(
            &app,
            &clinician(),
            &format!("/v1/consents/{id}/revoke"),
            &revocation(),
        )
        .await;
        assert_eq!(res.status(), 200);
        // Someone with database access "un-revokes" it by editing the clear columns.
        exec(
            &app,
            "UPDATE consents SET status = 'active', revoked_at_us = NULL",
        )
        .await;
        let as_subject: SubjectRef = "s-1".parse().unwrap();
        let mut pooled = app.store().acquire().await.unwrap();
        let err = registry::for_subjects(
            &mut pooled.conn(),
            &app.services().keyring,
            &[mrn()],
            &as_subject,
        )
        .await
        .unwrap_err();
        drop(pooled);
        assert!(
            matches!(&err, ConsentStoreError::Integrity { id: i, .. } if *i == id),
            "{err:?}"
        );
        let res = get(
            &app,
            &clinician(),
            &format!("/v1/subjects/county-mh/{MRN}/consents"),
        )
        .await;
        assert_eq!(res.status(), 500);
        let body = res.text().await.unwrap();
        assert!(!body.contains(PATIENT) && !body.contains(&id), "{body}");

        // A body moved from another consent does not open either.
        let app2 = spawn_app(db).await;
        let a = record(&app2, &part2_consent()).await;
        let mut other = part2_consent();
        other["subjects"] = json!([{"system": "county-mh", "value": "MRN-OTHER"}]);
        let b = record(&app2, &other).await;
        exec(
            &app2,
            &format!(
                "UPDATE consents SET body = (SELECT body FROM consents WHERE id = '{b}') \
                 WHERE id = '{a}'"
            ),
        )
        .await;
        let mut pooled = app2.store().acquire().await.unwrap();
        let err = registry::for_subjects(
            &mut pooled.conn(),
            &app2.services().keyring,
            &[mrn()],
            &as_subject,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, ConsentStoreError::Integrity { part, .. } if part == "body"),
            "{err:?}"
        );
        drop(pooled);
        app2.stop().await;
        app.stop().await;
    }
}

#[tokio::test]
async fn the_cli_prints_coverage_offline() {
    let app = spawn_app(Db::Sqlite).await;
    let id = record(&app, &part2_consent()).await;
    let config = pki().dir.join("gateway.toml");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "consent",
            "coverage",
            "--config",
            config.to_str().unwrap(),
            "--subject-system",
            "county-mh",
            "--subject-value",
            MRN,
            "--recipient",
            "metro-pd",
            "--purpose",
            "crisis-response",
        ];
        args.extend_from_slice(extra);
        Command::new(env!("CARGO_BIN_EXE_coresponse-gateway"))
            .args(&args)
            .env("GATEWAY__STORAGE__URL", &app.state.settings.storage.url)
            .output()
            .unwrap()
    };
    let out = run(&["--role", "officer"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&id), "{stdout}");
    assert!(
        stdout.contains("safety-plan held by county-mh, as role officer: PERMIT"),
        "{stdout}"
    );
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("deescalation_preferences"))
        .unwrap();
    assert!(
        line.contains("yes") && line.contains(&format!("consent:{id}")),
        "{line}"
    );
    assert!(
        !stdout.contains(MRN),
        "the subject is shown by pseudonym only"
    );

    let out = run(&["--json"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["recipient"], "metro-pd");
    assert_eq!(v["consents"][0]["id"], id.as_str());
    assert!(
        v["flows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["role"] == "dispatcher" && f["decision"] == "permit")
    );

    let bad = run(&["--role", "clinician"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a role of partner"));
    app.stop().await;
}

#[tokio::test]
async fn consents_stay_readable_across_master_key_rotation_rewrap_and_retirement() {
    use coresponse_gateway::consent::directive::{self, ConsentDirective};
    use coresponse_gateway::crypto::MasterVersion;
    use coresponse_gateway::domain::Author;
    use coresponse_gateway::policy::PolicySet;
    use coresponse_gateway::service::keys;
    use coresponse_gateway::store::Store;

    for db in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("master.key");
        std::fs::write(&key_file, hex::encode(rand::random::<[u8; 32]>())).unwrap();
        let settings = support::settings(db, dir.path()).await;
        let store = Store::open(&settings.storage).await.unwrap();
        let keyring = keys::open(&key_file, &store).await.unwrap();
        let (policy, _) =
            PolicySet::load_unkeyed(&support::repo_root().join("policies"), Utc::now()).unwrap();
        let submitted: ConsentDirective = serde_json::from_value(part2_consent()).unwrap();
        let valid = directive::validate(&submitted, &policy, Utc::now()).unwrap();
        let author = Author {
            partner: "county-mh".parse().unwrap(),
            user: "clin-7".parse().unwrap(),
        };
        let mut tx = store.begin().await.unwrap();
        registry::create(
            &mut tx.conn(),
            &keyring,
            "consent-rotation-1",
            &valid,
            &author,
            Utc::now(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();

        keys::rotate(&key_file, &store).await.unwrap();
        let keyring = keys::open(&key_file, &store).await.unwrap();
        assert!(keys::rewrap(&keyring, &store).await.unwrap().rewrapped >= 1);
        keys::retire(&keyring, &store, MasterVersion::new(1).unwrap())
            .await
            .unwrap();
        let keyring = keys::open(&key_file, &store).await.unwrap();
        let as_subject: SubjectRef = "s-1".parse().unwrap();
        let mut pooled = store.acquire().await.unwrap();
        let found = registry::for_subjects(&mut pooled.conn(), &keyring, &[mrn()], &as_subject)
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "{db:?}");
        assert_eq!(found[0].id, "consent-rotation-1");
        drop(pooled);
        store.close().await;
    }
}

#[tokio::test]
async fn refused_consent_requests_that_never_reach_the_registry_are_logged() {
    for db in BOTH {
        let app = spawn_app(db).await;
        let id = record(&app, &part2_consent()).await;
        let mut logged = consent_entries(&app).await.len();
        let clin = clinician();
        let raw = |path: &str, content_type: &str, body: &str| {
            support::client(Some(&clin.0))
                .post(app.url(path))
                .bearer_auth(&clin.1)
                .header("content-type", content_type)
                .body(body.to_owned())
                .send()
        };

        // Bodies that do not parse: one entry each, naming the code, never the body.
        let res = raw("/v1/consents", "application/json", "{not json")
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{db:?}");
        let detail = one_more_refusal(&app, &mut logged, "invalid_json").await;
        assert!(detail.contains("record"), "{detail}");
        let mut body = part2_consent();
        body["nickname"] = json!(PATIENT);
        let res = post(&app, &clin, "/v1/consents", &body).await;
        assert_eq!(res.status(), 400);
        one_more_refusal(&app, &mut logged, "invalid_json").await;
        let res = raw("/v1/consents", "text/plain", &part2_consent().to_string())
            .await
            .unwrap();
        assert_eq!(res.status(), 415);
        one_more_refusal(&app, &mut logged, "unsupported_media_type").await;

        // Revocations refused before the consent is looked up: the same answer whether it
        // exists or not, and logged without naming it.
        let path = format!("/v1/consents/{id}/revoke");
        let res = raw(&path, "application/json", "[]").await.unwrap();
        assert_eq!(res.status(), 400);
        let detail = one_more_refusal(&app, &mut logged, "invalid_json").await;
        assert!(detail.contains("revoke"), "{detail}");
        assert!(!detail.contains(&id), "{detail}");
        let mut future = revocation();
        future["received_at"] = json!((Utc::now() + Duration::days(2)).to_rfc3339());
        for target in [id.as_str(), "consent-unknown"] {
            let res = post(
                &app,
                &clin,
                &format!("/v1/consents/{target}/revoke"),
                &future,
            )
            .await;
            assert_eq!(res.status(), 400);
            let v: Value = res.json().await.unwrap();
            assert_eq!(v["code"], "invalid_revocation");
            let detail = one_more_refusal(&app, &mut logged, "invalid_revocation").await;
            assert!(detail.contains("received_at"), "{detail}");
            assert!(!detail.contains(target), "{detail}");
        }
        let res = post(&app, &clin, "/v1/consents/a%20b/revoke", &revocation()).await;
        assert_eq!(res.status(), 400);
        one_more_refusal(&app, &mut logged, "invalid_path").await;

        // None of it changed the consent.
        let v: Value = get(&app, &clin, &format!("/v1/consents/{id}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["status"], "active");
        verify(&app).await;
        app.stop().await;
    }
}
