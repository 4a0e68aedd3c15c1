//! The FHIR R4 API over real TLS with real tokens: consents in, out and in again (a LEAP
//! example adapted to the demo partners), the 42 CFR 2.31 elements named in FHIR terms,
//! revocation by PUT, referrals posted as ServiceRequest and read as Task with the police
//! status view, `/v1` reads answered as labelled Bundles, errors as OperationOutcome, bad input
//! that changes nothing, the CapabilityStatement against the routes, and every resource the
//! gateway emits validated by an independent FHIR implementation (Python `fhir.resources`).

use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;
use chrono::{Duration, SecondsFormat, Utc};
use coresponse_gateway::audit::{EntryKind, Outcome, query};
use coresponse_gateway::fhir::codes;
use serde_json::{Value, json};

use crate::consent_live::part2_policies;
use crate::records_api::{
    Who, clinician, incident_body, officer, post, put, safety_plan_body, who,
};
use crate::support::{Db, TestApp, client, scalar, spawn_app, spawn_with};

const BOTH: [Db; 2] = [Db::Sqlite, Db::Postgres];
const MRN: &str = "MRN-88";
const PATIENT: &str = "Jordan Example";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

async fn fhir_post(app: &TestApp, w: &Who, path: &str, body: &Value) -> Answer {
    send(
        client(Some(&w.0))
            .post(app.url(path))
            .bearer_auth(&w.1)
            .header("Content-Type", "application/fhir+json")
            .body(body.to_string()),
    )
    .await
}

async fn fhir_put(app: &TestApp, w: &Who, path: &str, body: &Value) -> Answer {
    send(
        client(Some(&w.0))
            .put(app.url(path))
            .bearer_auth(&w.1)
            .header("Content-Type", "application/fhir+json")
            .body(body.to_string()),
    )
    .await
}

async fn fhir_get(app: &TestApp, w: &Who, path: &str, purpose: Option<&str>) -> Answer {
    let mut req = client(Some(&w.0)).get(app.url(path)).bearer_auth(&w.1);
    if let Some(p) = purpose {
        req = req.header("Purpose-Of-Use", p);
    }
    send(req).await
}

fn time(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn partner(id: &str) -> Value {
    json!({"identifier": {"system": codes::partner_system(), "value": id}})
}

/// A LEAP opt-in consent (sdhealthconnect/leap-cds `consent-boris-optin`), adapted to the demo
/// partners and made a complete 42 CFR Part 2 consent: county-mh may disclose to metro-pd, for
/// crisis response, the crisis-plan extract and the substance-use information of the safety
/// plan.
fn leap_consent() -> Value {
    let now = Utc::now();
    json!({
        "resourceType": "Consent",
        "identifier": [{"system": "http://sdhealthconnect.github.io/leap/samples/ids",
                        "value": "consent-jordan-optin"}],
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy", "display": "Privacy Consent"}]},
        "category": [
            {"coding": [{"system": "http://loinc.org", "code": "59284-0"}]},
            {"coding": [{"system": ACT_CODE, "code": "42CFRPart2CD"}]}
        ],
        "patient": {"identifier": {"system": codes::subject_system("county-mh"), "value": MRN},
                    "display": PATIENT},
        "dateTime": (now - Duration::days(1)).date_naive().to_string(),
        "organization": [partner("county-mh")],
        "sourceReference": {"display": "DMS-2026-7731 (signed consent form)"},
        "policyRule": {"coding": [{"system": ACT_CODE, "code": "OPTIN"}]},
        "extension": [{
            "url": codes::revocation_statement_ext(),
            "valueString": "You may revoke this consent at any time by writing to County \
                Behavioral Health Services, except where it has already been acted on."
        }],
        "provision": {
            "type": "permit",
            "period": {"start": time(now - Duration::days(1)),
                       "end": time(now + Duration::days(365))},
            "actor": [{
                "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                     "code": "IRCP"}]},
                "reference": partner("metro-pd")
            }],
            "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction",
                                    "code": "access"}]}],
            "securityLabel": [{"system": ACT_CODE, "code": "ETH"}],
            "purpose": [{"system": codes::purpose_system(), "code": "crisis-response"}],
            "class": [{"system": codes::kind_system(), "code": "safety-plan"}],
            "code": [
                {"coding": [{"system": codes::field_system(), "code": "safety-plan.deescalation_preferences"}]},
                {"coding": [{"system": codes::field_system(), "code": "safety-plan.crisis_contacts"}]}
            ]
        }
    })
}

/// A consent (not Part 2) letting county-mh tell metro-pd the referral's status.
fn referral_consent() -> Value {
    let now = Utc::now();
    json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "64292-6"}]}],
        "patient": {"identifier": {"system": codes::subject_system("metro-pd"), "value": "P-2231"}},
        "organization": [partner("county-mh")],
        "policyRule": {"coding": [{"system": ACT_CODE, "code": "OPTIN"}]},
        "provision": {
            "type": "permit",
            "period": {"start": time(now - Duration::minutes(5)),
                       "end": time(now + Duration::days(30))},
            "actor": [{
                "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                     "code": "IRCP"}]},
                "reference": partner("metro-pd")
            }],
            "purpose": [{"system": codes::purpose_system(), "code": "referral-followup"}],
            "class": [{"system": codes::kind_system(), "code": "referral"}]
        }
    })
}

fn service_request() -> Value {
    json!({
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "priority": "urgent",
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "3457005",
                                  "display": "Patient referral"}]}],
        "contained": [{
            "resourceType": "Patient", "id": "p",
            "identifier": [{"system": codes::subject_system("metro-pd"), "value": "P-2231"}],
            "name": [{"given": ["Jordan"], "family": "Example"}],
            "telecom": [{"system": "phone", "value": "+1 555 010 4477"}]
        }],
        "subject": {"reference": "#p"},
        "supportingInfo": [{"identifier": {"system": codes::record_system("crisis-incident"),
                                           "value": "INC-1"}}],
        "performer": [partner("county-mh")],
        "reasonCode": [{"text": "Welfare check; the person agreed to a follow-up call"}]
    })
}

/// Asserts an OperationOutcome with `status`, the JSON API's `code` and, if given, an issue
/// with `problem` (at `expression`).
fn assert_outcome(a: &Answer, status: u16, code: &str, problem: Option<(&str, &str)>) {
    assert_eq!(a.status, status, "{}", a.body);
    assert_eq!(
        a.header("content-type").as_deref(),
        Some("application/fhir+json"),
        "{}",
        a.body
    );
    assert_eq!(a.body["resourceType"], "OperationOutcome", "{}", a.body);
    let issues = a.body["issue"].as_array().unwrap();
    assert!(!issues.is_empty());
    for i in issues {
        assert_eq!(i["details"]["coding"][0]["system"], codes::error_system());
        assert_eq!(i["details"]["coding"][0]["code"], code, "{}", a.body);
        assert!(i["details"]["text"].as_str().is_some_and(|t| !t.is_empty()));
    }
    if let Some((problem, expression)) = problem {
        assert!(
            issues
                .iter()
                .any(|i| i["details"]["coding"][1]["code"] == problem
                    && i["expression"][0]
                        .as_str()
                        .is_some_and(|e| e.starts_with(expression))),
            "no issue {problem} at {expression}: {}",
            a.body
        );
    }
}

/// The methods of an answer's `Allow` header, sorted.
fn allowed(a: &Answer) -> Vec<String> {
    let mut m: Vec<String> = a
        .header("allow")
        .unwrap_or_default()
        .split(',')
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
        .collect();
    m.sort();
    m
}

async fn consents_stored(app: &TestApp) -> i64 {
    scalar(app.store(), "SELECT COUNT(*) FROM consents").await
}

async fn entries(app: &TestApp, kind: EntryKind) -> Vec<coresponse_gateway::audit::Entry> {
    app.log_entries(&query::Filter {
        kinds: vec![kind],
        limit: 500,
        ..Default::default()
    })
    .await
}

/// The directive of a consent as the JSON API shows it.
async fn directive(app: &TestApp, id: &str) -> Value {
    let a = fhir_get(app, &clinician(), &format!("/v1/consents/{id}"), None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let keys = [
        "subjects",
        "patient_name",
        "disclosers",
        "recipients",
        "purposes",
        "scope",
        "valid_from",
        "expires",
        "expiry_event",
        "signature_reference",
        "signed_on",
        "revocation_statement",
    ];
    Value::Object(
        keys.iter()
            .map(|k| ((*k).to_owned(), a.body[*k].clone()))
            .collect(),
    )
}

/// A resource read back, stripped of what the server assigns, to be sent again.
fn resend(resource: &Value) -> Value {
    let mut v = resource.clone();
    let o = v.as_object_mut().unwrap();
    o.remove("id");
    o.remove("meta");
    v
}

#[tokio::test]
async fn a_fhir_consent_goes_in_out_and_in_again_as_the_same_directive() {
    for db in BOTH {
        let app = spawn_app(db).await;
        let created = fhir_post(&app, &clinician(), "/fhir/r4/Consent", &leap_consent()).await;
        assert_eq!(created.status, 201, "{db:?}: {}", created.body);
        assert_eq!(
            created.header("content-type").as_deref(),
            Some("application/fhir+json")
        );
        let id = created.body["id"].as_str().unwrap().to_owned();
        assert_eq!(
            created.header("location").unwrap(),
            format!("/fhir/r4/Consent/{id}")
        );
        let c = &created.body;
        assert_eq!(c["status"], "active");
        let security: Vec<&str> = c["meta"]["security"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["code"].as_str().unwrap())
            .collect();
        assert_eq!(security, ["R", "ETH", "42CFRPart2"], "{c}");
        assert!(
            c["category"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["coding"][0]["code"] == "42CFRPart2CD"),
            "a Part 2 consent says so: {c}"
        );
        // The directive is the one POST /v1/consents would have recorded.
        let d = directive(&app, &id).await;
        assert_eq!(
            d["subjects"],
            json!([{"system": "county-mh", "value": MRN}])
        );
        assert_eq!(d["patient_name"], PATIENT);
        assert_eq!(d["disclosers"], json!(["county-mh"]));
        assert_eq!(d["recipients"], json!(["metro-pd"]));
        assert_eq!(d["purposes"], json!(["crisis-response"]));
        assert_eq!(
            d["scope"],
            json!({"kinds": ["safety-plan"], "categories": ["sud"],
                   "fields": ["safety-plan.crisis_contacts", "safety-plan.deescalation_preferences"]})
        );
        assert_eq!(
            d["signature_reference"],
            "DMS-2026-7731 (signed consent form)"
        );

        // Out: read back as FHIR; in again: the same directive.
        let read = fhir_get(&app, &clinician(), &format!("/fhir/r4/Consent/{id}"), None).await;
        assert_eq!(read.status, 200, "{}", read.body);
        assert_eq!(read.body, created.body, "a read shows what was recorded");
        let again = fhir_post(&app, &clinician(), "/fhir/r4/Consent", &resend(&read.body)).await;
        assert_eq!(again.status, 201, "{}", again.body);
        let id2 = again.body["id"].as_str().unwrap().to_owned();
        assert_ne!(id, id2);
        assert_eq!(directive(&app, &id2).await, d, "{db:?}");
        // And out again: the same FHIR, but for the id.
        let mut first = read.body.clone();
        let mut second = again.body.clone();
        for v in [&mut first, &mut second] {
            let o = v.as_object_mut().unwrap();
            o.remove("id");
            o.remove("meta");
            o.remove("identifier");
        }
        assert_eq!(first, second);

        // Several identifiers travel as a contained Patient, and come back the same.
        let mut two = leap_consent();
        two["contained"] = json!([{
            "resourceType": "Patient", "id": "pat",
            "identifier": [{"system": codes::subject_system("county-mh"), "value": MRN},
                           {"system": codes::subject_system("metro-pd"), "value": "P-2231"}],
            "name": [{"text": PATIENT}]
        }]);
        two["patient"] = json!({"reference": "#pat"});
        let a = fhir_post(&app, &clinician(), "/fhir/r4/Consent", &two).await;
        assert_eq!(a.status, 201, "{}", a.body);
        let id3 = a.body["id"].as_str().unwrap().to_owned();
        assert_eq!(
            a.body["contained"][0]["identifier"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let b = fhir_post(&app, &clinician(), "/fhir/r4/Consent", &resend(&a.body)).await;
        assert_eq!(b.status, 201, "{}", b.body);
        let id4 = b.body["id"].as_str().unwrap().to_owned();
        assert_eq!(directive(&app, &id3).await, directive(&app, &id4).await);

        // Search by the patient's identifier: the disclosers see them, a police partner none;
        // every read is a consent_read entry.
        let reads = entries(&app, EntryKind::ConsentRead).await.len();
        let path = format!(
            "/fhir/r4/Consent?patient:identifier={}|{MRN}",
            codes::subject_system("county-mh")
        );
        let found = fhir_get(&app, &clinician(), &path, None).await;
        assert_eq!(found.status, 200, "{}", found.body);
        assert_eq!(found.body["type"], "searchset");
        assert_eq!(found.body["total"], 4, "{}", found.body);
        let none = fhir_get(&app, &officer(), &path, None).await;
        assert_eq!(none.body["total"], 0, "{}", none.body);
        assert_eq!(
            fhir_get(&app, &officer(), &format!("/fhir/r4/Consent/{id}"), None)
                .await
                .status,
            404
        );
        assert_eq!(entries(&app, EntryKind::ConsentRead).await.len(), reads + 2);
        app.assert_log_verifies().await;
        app.stop().await;
    }
}

/// An IHE PCF Basic Consent (profile `IHE.PCF.consentBasic`: `policy.uri` required,
/// `performer` the patient, `sourceReference` the signed document, a permit provision with
/// actors and purposes, no `policyRule`, `action` or `securityLabel`), adapted to the demo
/// partners: the patient by identifier, the organizations as partners, the provision's class
/// a record kind.
fn pcf_basic_consent() -> Value {
    let now = Utc::now();
    json!({
        "resourceType": "Consent",
        "meta": {"profile": ["https://profiles.ihe.net/ITI/PCF/StructureDefinition/IHE.PCF.consentBasic"]},
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0",
                                  "display": "Patient Consent"}]}],
        "patient": {"identifier": {"system": codes::subject_system("metro-pd"), "value": "P-2231"}},
        "dateTime": time(now - Duration::hours(2)),
        "performer": [{"identifier": {"system": codes::subject_system("metro-pd"), "value": "P-2231"}}],
        "organization": [partner("county-mh")],
        "sourceReference": {"reference": "DocumentReference/signed-consent-2231"},
        "policy": [{"uri": "https://county-mh.example/policies/privacy-2026.pdf"}],
        "provision": {
            "type": "permit",
            "period": {"start": time(now - Duration::hours(1)), "end": "2027-12-31"},
            "actor": [{
                "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                     "code": "IRCP"}]},
                "reference": partner("metro-pd")
            }],
            "purpose": [{"system": codes::purpose_system(), "code": "referral-followup"},
                        {"system": ACT_REASON, "code": "COC"}],
            "class": [{"system": codes::kind_system(), "code": "referral"}]
        }
    })
}

#[tokio::test]
async fn an_ihe_pcf_basic_consent_goes_in_out_and_in_again_as_the_same_directive() {
    for db in BOTH {
        let app = spawn_app(db).await;
        let created = fhir_post(&app, &clinician(), "/fhir/r4/Consent", &pcf_basic_consent()).await;
        assert_eq!(created.status, 201, "{db:?}: {}", created.body);
        let id = created.body["id"].as_str().unwrap().to_owned();
        let d = directive(&app, &id).await;
        assert_eq!(
            d["subjects"],
            json!([{"system": "metro-pd", "value": "P-2231"}])
        );
        assert_eq!(d["disclosers"], json!(["county-mh"]));
        assert_eq!(d["recipients"], json!(["metro-pd"]));
        assert_eq!(
            d["purposes"],
            json!(["care-coordination", "referral-followup"])
        );
        assert_eq!(d["scope"]["kinds"], json!(["referral"]));
        assert_eq!(
            d["signature_reference"],
            "DocumentReference/signed-consent-2231"
        );
        assert_eq!(
            d["expires"]
                .as_str()
                .map(|e| e.starts_with("2027-12-31") || e.starts_with("2028-01-01")),
            Some(true),
            "the end date runs through that day: {d}"
        );
        let read = fhir_get(&app, &clinician(), &format!("/fhir/r4/Consent/{id}"), None).await;
        assert_eq!(read.status, 200, "{}", read.body);
        assert_eq!(read.body["status"], "active");
        let again = fhir_post(&app, &clinician(), "/fhir/r4/Consent", &resend(&read.body)).await;
        assert_eq!(again.status, 201, "{}", again.body);
        let id2 = again.body["id"].as_str().unwrap().to_owned();
        assert_eq!(directive(&app, &id2).await, d, "{db:?}");
        app.stop().await;
    }
}

/// A missing element's code, its FHIR element, and how to remove it from a consent.
type Case = (&'static str, &'static str, fn(&mut Value));

#[tokio::test]
async fn a_part2_consent_missing_an_element_is_refused_naming_it_in_fhir_terms() {
    for db in BOTH {
        let app = spawn_app(db).await;
        let cases: [Case; 4] = [
            ("revocation_statement", "Consent.extension", |c| {
                c.as_object_mut().unwrap().remove("extension");
            }),
            ("signed_on", "Consent.dateTime", |c| {
                c.as_object_mut().unwrap().remove("dateTime");
            }),
            ("signature_reference", "Consent.source[x]", |c| {
                c.as_object_mut().unwrap().remove("sourceReference");
            }),
            ("patient_name", "Consent.patient.display", |c| {
                c["patient"].as_object_mut().unwrap().remove("display");
            }),
        ];
        for (element, path, strip) in cases {
            let mut c = leap_consent();
            strip(&mut c);
            let a = fhir_post(&app, &clinician(), "/fhir/r4/Consent", &c).await;
            assert_outcome(&a, 400, "consent_incomplete", Some((element, path)));
            assert_eq!(a.body["issue"].as_array().unwrap().len(), 1, "{}", a.body);
            let text = a.body["issue"][0]["details"]["text"].as_str().unwrap();
            assert!(text.contains("2.31(a)("), "{text}");
            assert_eq!(a.body["issue"][0]["code"], "required");
        }
        // Two missing elements: two issues.
        let mut c = leap_consent();
        c.as_object_mut().unwrap().remove("extension");
        c.as_object_mut().unwrap().remove("dateTime");
        let a = fhir_post(&app, &clinician(), "/fhir/r4/Consent", &c).await;
        assert_outcome(
            &a,
            400,
            "consent_incomplete",
            Some(("signed_on", "Consent.dateTime")),
        );
        assert_eq!(a.body["issue"].as_array().unwrap().len(), 2, "{}", a.body);
        // A purpose Part 2 forbids is named where it was given.
        let mut c = leap_consent();
        c["provision"]["purpose"] =
            json!([{"system": codes::purpose_system(), "code": "investigation"}]);
        let a = fhir_post(&app, &clinician(), "/fhir/r4/Consent", &c).await;
        assert_outcome(
            &a,
            400,
            "invalid_consent",
            Some(("part2_law_enforcement_purpose", "Consent.provision.purpose")),
        );
        assert_eq!(consents_stored(&app).await, 0, "nothing was recorded");
        app.stop().await;
    }
}

#[tokio::test]
async fn bad_fhir_input_gets_an_operation_outcome_and_changes_nothing() {
    for db in BOTH {
        let app = spawn_app(db).await;
        let put_incident = put(
            &app,
            &officer(),
            "/v1/records/crisis-incident/INC-1",
            &incident_body("P-2231"),
        )
        .await;
        assert_eq!(put_incident.0, 201);
        let changes = entries(&app, EntryKind::ConsentChanged).await.len();
        let writes = entries(&app, EntryKind::RecordChanged).await.len();

        let mut cases: Vec<(&str, Value, &str, &str)> = Vec::new();
        cases.push((
            "/fhir/r4/Consent",
            json!({"resourceType": "Patient", "id": "p"}),
            "wrong_resource_type",
            "resourceType",
        ));
        cases.push((
            "/fhir/r4/ServiceRequest",
            leap_consent(),
            "wrong_resource_type",
            "resourceType",
        ));
        let mut c = leap_consent();
        c["provision"]["purpose"] =
            json!([{"system": "http://example.org/purposes", "code": "crisis-response"}]);
        cases.push((
            "/fhir/r4/Consent",
            c,
            "unknown_code_system",
            "Consent.provision.purpose[0]",
        ));
        let mut c = leap_consent();
        c["provision"]["purpose"] = json!([{"system": ACT_REASON, "code": "HPAYMT"}]);
        cases.push((
            "/fhir/r4/Consent",
            c,
            "unknown_purpose",
            "Consent.provision.purpose[0]",
        ));
        let mut c = leap_consent();
        c["organization"] = json!([{"reference": "Organization/53"}]);
        cases.push((
            "/fhir/r4/Consent",
            c,
            "invalid_reference",
            "Consent.organization[0]",
        ));
        let mut c = leap_consent();
        c["patient"] = json!({"reference": "#nobody"});
        cases.push((
            "/fhir/r4/Consent",
            c,
            "invalid_reference",
            "Consent.patient.reference",
        ));
        let mut c = leap_consent();
        c["provision"]["provision"] = json!([{"type": "deny"}]);
        cases.push((
            "/fhir/r4/Consent",
            c,
            "unsupported_element",
            "Consent.provision",
        ));
        let mut c = leap_consent();
        c["modifierExtension"] = json!([{"url": "http://example.org/x", "valueBoolean": true}]);
        cases.push(("/fhir/r4/Consent", c, "unsupported_element", "Consent"));
        let mut c = leap_consent();
        c["provision"]["type"] = json!("deny");
        cases.push((
            "/fhir/r4/Consent",
            c,
            "unsupported_value",
            "Consent.provision.type",
        ));
        let mut sr = service_request();
        sr["performer"] = json!([{"reference": "Organization/county-mh"}]);
        cases.push((
            "/fhir/r4/ServiceRequest",
            sr,
            "invalid_reference",
            "ServiceRequest.performer[0]",
        ));
        let mut sr = service_request();
        sr["supportingInfo"] = json!([{"reference": "Encounter/"}]);
        cases.push((
            "/fhir/r4/ServiceRequest",
            sr,
            "invalid_reference",
            "ServiceRequest.supportingInfo[0]",
        ));

        // A refused consent request is logged as on /v1 (a consent_changed denial naming the
        // code and the element, never a value); a refused ServiceRequest writes nothing.
        let mut refused_consents = Vec::new();
        for (path, body, problem, at) in cases {
            let who = if path.ends_with("Consent") {
                clinician()
            } else {
                officer()
            };
            let a = fhir_post(&app, &who, path, &body).await;
            assert_outcome(&a, 400, "invalid_resource", Some((problem, at)));
            if path.ends_with("Consent") {
                refused_consents.push(at);
            }
        }
        // Every problem at once, one issue each.
        let mut c = leap_consent();
        c["provision"]["purpose"] = json!([
            {"system": "http://example.org/purposes", "code": "x"},
            {"system": ACT_REASON, "code": "HPAYMT"}
        ]);
        c["organization"] = json!([{"reference": "Organization/53"}]);
        let a = fhir_post(&app, &clinician(), "/fhir/r4/Consent", &c).await;
        assert_outcome(
            &a,
            400,
            "invalid_resource",
            Some(("unknown_purpose", "Consent.provision.purpose[1]")),
        );
        assert_eq!(a.body["issue"].as_array().unwrap().len(), 3, "{}", a.body);
        refused_consents.push("Consent.");
        // Not JSON, not FHIR's media type: also OperationOutcomes.
        let a = send(
            client(Some(&clinician().0))
                .post(app.url("/fhir/r4/Consent"))
                .bearer_auth(clinician().1)
                .header("Content-Type", "application/fhir+json")
                .body("{\"resourceType\": "),
        )
        .await;
        assert_outcome(&a, 400, "invalid_json", None);
        let a = send(
            client(Some(&clinician().0))
                .post(app.url("/fhir/r4/Consent"))
                .bearer_auth(clinician().1)
                .header("Content-Type", "application/xml")
                .body("<Consent/>"),
        )
        .await;
        assert_outcome(&a, 415, "unsupported_media_type", None);

        assert_eq!(consents_stored(&app).await, 0, "{db:?}");
        let mut logged = entries(&app, EntryKind::ConsentChanged).await;
        logged.reverse(); // oldest first
        let logged = &logged[changes..];
        assert_eq!(
            logged.len(),
            refused_consents.len() + 2,
            "{db:?}: one entry per refusal"
        );
        for (e, at) in logged.iter().zip(&refused_consents) {
            assert_eq!(e.data.outcome, Outcome::deny("invalid_resource"));
            assert_eq!(e.data.basis, None, "nothing was recorded");
            let detail = e.data.detail.clone().unwrap_or_default();
            assert!(
                detail.contains("record a consent: invalid_resource at "),
                "{detail}"
            );
            assert!(detail.contains(at), "{detail} names {at}");
            for value in ["P-2231", "MRN-1001", "Jordan"] {
                assert!(!detail.contains(value), "{detail}");
            }
        }
        assert_eq!(
            logged[logged.len() - 2].data.outcome,
            Outcome::deny("invalid_json")
        );
        assert_eq!(
            logged[logged.len() - 1].data.outcome,
            Outcome::deny("unsupported_media_type")
        );
        assert_eq!(entries(&app, EntryKind::RecordChanged).await.len(), writes);
        app.stop().await;
    }
}

#[tokio::test]
async fn authentication_and_routing_failures_are_operation_outcomes_too() {
    let app = spawn_app(Db::Sqlite).await;
    let cert = officer().0;
    let a = send(client(Some(&cert)).get(app.url("/fhir/r4/Consent/x"))).await;
    assert_outcome(&a, 401, "token_missing", None);
    assert_eq!(a.body["issue"][0]["code"], "login");
    assert!(a.header("www-authenticate").is_some());
    let a = fhir_get(&app, &officer(), "/fhir/r4/Patient/1", None).await;
    assert_outcome(&a, 404, "route_not_found", None);
    // A served path asked with a method it does not take: 405 naming the methods it takes.
    let w = officer();
    let a = send(
        client(Some(&w.0))
            .delete(app.url("/fhir/r4/Consent/x1"))
            .bearer_auth(&w.1),
    )
    .await;
    assert_outcome(&a, 405, "method_not_allowed", None);
    assert_eq!(allowed(&a), ["GET", "PUT"], "{}", a.body);
    let text = a.body["issue"][0]["details"]["text"].as_str().unwrap();
    assert!(
        text.contains("DELETE") && text.contains("/fhir/r4/Consent/x1"),
        "{text}"
    );
    assert_eq!(
        a.body["issue"][0]["details"]["coding"][0]["code"],
        "method_not_allowed"
    );
    let a = fhir_post(&app, &w, "/fhir/r4/metadata", &json!({})).await;
    assert_outcome(&a, 405, "method_not_allowed", None);
    assert_eq!(allowed(&a), ["GET"], "{}", a.body);
    let a = fhir_put(&app, &w, "/fhir/r4/Task", &json!({})).await;
    assert_outcome(&a, 405, "method_not_allowed", None);
    assert_eq!(allowed(&a), ["GET"], "{}", a.body);
    let a = fhir_get(&app, &officer(), "/fhir/r4/Task/REF-1", None).await;
    assert_outcome(&a, 400, "header_missing", None);
    let a = fhir_get(&app, &clinician(), "/fhir/r4/Consent?status=active", None).await;
    assert_outcome(&a, 400, "invalid_parameter", None);
    app.stop().await;
}

#[tokio::test]
async fn a_consent_is_revoked_by_put_and_never_edited() {
    for db in BOTH {
        let app = spawn_app(db).await;
        let created = fhir_post(&app, &clinician(), "/fhir/r4/Consent", &leap_consent()).await;
        assert_eq!(created.status, 201, "{}", created.body);
        let id = created.body["id"].as_str().unwrap().to_owned();
        let path = format!("/fhir/r4/Consent/{id}");
        let revocation = json!({
            "url": codes::revocation_ext(),
            "extension": [
                {"url": "receivedAt", "valueDateTime": time(Utc::now() - Duration::hours(1))},
                {"url": "receivedHow", "valueCode": "written"},
                {"url": "note", "valueString": "Letter handed in at the front desk"}
            ]
        });
        // Changing the content is refused, and logged; nothing changes.
        let mut edited = created.body.clone();
        edited["status"] = json!("rejected");
        edited["extension"]
            .as_array_mut()
            .unwrap()
            .push(revocation.clone());
        edited["provision"]["purpose"] = json!([{"system": ACT_REASON, "code": "TREAT"}]);
        let a = fhir_put(&app, &clinician(), &path, &edited).await;
        assert_outcome(&a, 400, "consent_not_editable", None);
        let last = entries(&app, EntryKind::ConsentChanged).await;
        assert_eq!(last[0].data.outcome, Outcome::deny("consent_not_editable"));
        // Without the revocation's details: named.
        let mut bare = created.body.clone();
        bare["status"] = json!("rejected");
        let a = fhir_put(&app, &clinician(), &path, &bare).await;
        assert_outcome(&a, 400, "invalid_revocation", None);
        // Status active is not a change the gateway makes.
        let a = fhir_put(&app, &clinician(), &path, &created.body).await;
        assert_outcome(&a, 400, "consent_not_editable", None);
        assert_eq!(
            directive(&app, &id).await["purposes"],
            json!(["crisis-response"])
        );

        // As recorded, with status rejected and the revocation: revoked.
        let mut revoke = created.body.clone();
        revoke["status"] = json!("rejected");
        revoke["extension"].as_array_mut().unwrap().push(revocation);
        let a = fhir_put(&app, &clinician(), &path, &revoke).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.body["status"], "rejected");
        let v = fhir_get(&app, &clinician(), &format!("/v1/consents/{id}"), None).await;
        assert_eq!(v.body["status"], "revoked");
        assert_eq!(
            v.body["history"][1]["revocation"]["received_how"],
            "written"
        );
        // Only a discloser may revoke; again is a conflict, as on /v1.
        let a = fhir_put(&app, &officer(), &path, &revoke).await;
        assert_outcome(&a, 404, "consent_not_found", None);
        let a = fhir_put(&app, &clinician(), &path, &a_read(&app, &path).await).await;
        assert_outcome(&a, 409, "consent_already_revoked", None);
        app.assert_log_verifies().await;
        app.stop().await;
    }
}

/// The consent as read, to PUT back unchanged.
async fn a_read(app: &TestApp, path: &str) -> Value {
    let a = fhir_get(app, &clinician(), path, None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
}

async fn transition(app: &TestApp, id: &str, to: &str) {
    let (s, b) = post(
        app,
        &clinician(),
        &format!("/v1/referrals/{id}/transitions"),
        &json!({"to": to, "clinician_contact": "desk 4, +1 555 010 9000"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test]
async fn a_service_request_makes_a_referral_read_as_a_task_with_the_police_status_view() {
    for db in BOTH {
        let app = spawn_app(db).await;
        let (s, b) = put(
            &app,
            &officer(),
            "/v1/records/crisis-incident/INC-1",
            &incident_body("P-2231"),
        )
        .await;
        assert_eq!(s, 201, "{b}");
        let created = fhir_post(
            &app,
            &officer(),
            "/fhir/r4/ServiceRequest",
            &service_request(),
        )
        .await;
        assert_eq!(created.status, 201, "{db:?}: {}", created.body);
        let t = &created.body;
        assert_eq!(t["resourceType"], "Task");
        assert_eq!(
            (t["status"].as_str(), t["intent"].as_str()),
            (Some("requested"), Some("order"))
        );
        assert_eq!(t["businessStatus"]["coding"][0]["code"], "SUBMITTED");
        assert_eq!(t["owner"]["identifier"]["value"], "county-mh");
        let id = t["id"].as_str().unwrap().to_owned();
        let task = format!("/fhir/r4/Task/{id}");
        assert_eq!(created.header("location").unwrap(), task);
        // The referral is the one /v1 would have made.
        let (_, _, v) = crate::records_api::read(
            &app,
            &clinician(),
            &format!("/v1/referrals/{id}"),
            Some("referral-followup"),
            &[],
        )
        .await;
        assert_eq!(v["fields"]["status"], "SUBMITTED", "{v}");
        assert_eq!(v["fields"]["urgency"], "URGENT");
        assert_eq!(v["fields"]["incident_id"], "INC-1");
        assert_eq!(
            v["fields"]["reason"],
            "Welfare check; the person agreed to a follow-up call"
        );

        transition(&app, &id, "RECEIVED").await;
        transition(&app, &id, "ASSIGNED").await;

        // Police without consent: the generalized status, in the Task status too.
        let a = fhir_get(&app, &officer(), &task, Some("referral-followup")).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.body["status"], "in-progress", "{}", a.body);
        assert_eq!(a.body["businessStatus"]["coding"][0]["code"], "IN_PROGRESS");
        assert!(!a.body.to_string().contains("ASSIGNED"), "{}", a.body);
        assert!(
            !a.body.to_string().contains("desk 4"),
            "no clinician contact without consent"
        );
        let seq: u64 = a.header("disclosure-id").unwrap().parse().unwrap();
        // The receipt headers of a /v1 read: the entry's leaf in the log's Merkle tree.
        let _: u64 = a.header("log-leaf-index").unwrap().parse().unwrap();
        let hash = a.header("log-leaf-hash").unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&hash)
                .unwrap()
                .len(),
            32,
            "{hash}"
        );
        let e = app.log_entry(seq).await.unwrap();
        assert_eq!(e.data.kind, EntryKind::Disclosure);
        assert_eq!(e.data.outcome, Outcome::Permit);
        assert!(
            e.data
                .fields_disclosed
                .iter()
                .any(|f| f.field == "status" && f.transform == "generalize(referral-status)"),
            "{e:?}"
        );
        // The receiving agency sees the fine state.
        let a = fhir_get(&app, &clinician(), &task, Some("referral-followup")).await;
        assert_eq!(
            (a.body["status"].as_str(), a.status),
            (Some("accepted"), 200),
            "{}",
            a.body
        );
        assert_eq!(a.body["businessStatus"]["coding"][0]["code"], "ASSIGNED");

        // A consent naming the police agency, recorded in FHIR: the fine status.
        let c = fhir_post(&app, &clinician(), "/fhir/r4/Consent", &referral_consent()).await;
        assert_eq!(c.status, 201, "{}", c.body);
        let a = fhir_get(&app, &officer(), &task, Some("referral-followup")).await;
        assert_eq!(a.body["status"], "accepted", "{}", a.body);
        assert_eq!(a.body["businessStatus"]["coding"][0]["code"], "ASSIGNED");
        let e = app
            .log_entry(a.header("disclosure-id").unwrap().parse().unwrap())
            .await
            .unwrap();
        assert!(
            e.data
                .fields_disclosed
                .iter()
                .any(|f| f.field == "status" && f.transform == "reveal")
        );

        // The search form carries the Provenance naming the log entry.
        let a = fhir_get(
            &app,
            &officer(),
            &format!("/fhir/r4/Task?_id={id}&_revinclude=Provenance:target"),
            Some("referral-followup"),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
        let seq = a.header("disclosure-id").unwrap();
        assert_eq!(a.body["entry"][0]["search"]["mode"], "match");
        let prov = &a.body["entry"][1]["resource"];
        assert_eq!(prov["resourceType"], "Provenance");
        assert_eq!(
            prov["entity"][0]["what"]["identifier"]["value"],
            seq.as_str()
        );
        // And its leaf in the log's Merkle tree, as the receipt headers give it.
        let leaf = &prov["entity"][0]["extension"][0];
        assert_eq!(leaf["url"], codes::log_leaf_ext());
        assert_eq!(leaf["extension"][0]["url"], "index");
        assert_eq!(
            leaf["extension"][0]["valueString"].as_str(),
            a.header("log-leaf-index").as_deref()
        );
        assert_eq!(leaf["extension"][1]["url"], "hash");
        assert_eq!(
            leaf["extension"][1]["valueString"].as_str(),
            a.header("log-leaf-hash").as_deref()
        );
        assert_eq!(
            prov["target"][0]["reference"],
            a.body["entry"][0]["fullUrl"]
        );
        // Police may not read it for an investigation: a logged denial, as an OperationOutcome.
        let a = fhir_get(&app, &officer(), &task, Some("investigation")).await;
        assert_outcome(&a, 403, "disclosure_denied", None);
        assert!(a.header("disclosure-id").is_some());
        assert!(a.header("log-leaf-index").is_some() && a.header("log-leaf-hash").is_some());
        app.assert_log_verifies().await;
        app.stop().await;
    }
}

#[tokio::test]
async fn v1_reads_answer_a_labelled_bundle_when_asked_for_fhir() {
    let policies = part2_policies();
    let dir = policies.path().to_owned();
    let app = spawn_with(Db::Sqlite, move |s| s.policy.dir = dir).await;
    let (s, b) = put(
        &app,
        &clinician(),
        "/v1/records/safety-plan/SP-1",
        &safety_plan_body("P-2231"),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let c = fhir_post(&app, &clinician(), "/fhir/r4/Consent", &leap_consent()).await;
    assert_eq!(c.status, 201, "{}", c.body);
    let officer = officer();
    let read = |accept: &'static str| {
        let officer = officer.clone();
        let app = &app;
        async move {
            send(
                client(Some(&officer.0))
                    .get(app.url("/v1/records/safety-plan/SP-1"))
                    .bearer_auth(&officer.1)
                    .header("Purpose-Of-Use", "crisis-response")
                    .header("Accept", accept),
            )
            .await
        }
    };
    // Plain JSON stays the default.
    for accept in [
        "*/*",
        "application/json",
        "application/json, application/fhir+json;q=0.5",
    ] {
        let a = read(accept).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(a.body.get("fields").is_some(), "{accept}: {}", a.body);
    }
    let a = read("application/fhir+json").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.header("content-type").as_deref(),
        Some("application/fhir+json")
    );
    let bundle = &a.body;
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "collection");
    // The same receipt headers as the JSON answer.
    for h in ["disclosure-id", "log-leaf-index", "log-leaf-hash"] {
        assert!(a.header(h).is_some_and(|v| !v.is_empty()), "{h}");
    }
    let basic = &bundle["entry"][0]["resource"];
    assert_eq!(basic["resourceType"], "Basic");
    let labels: Vec<&str> = basic["meta"]["security"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        ["R", "PSY", "ETH", "42CFRPart2", "NORDSCLCD"],
        "{basic}"
    );
    assert!(
        basic["text"]["div"]
            .as_str()
            .unwrap()
            .contains("42 CFR part 2")
    );
    assert_eq!(basic["text"]["status"], "additional");
    let text = basic.to_string();
    assert!(text.contains("SUD-MARKER"), "the consented Part 2 field");
    assert!(!text.contains("PSYNOTES-MARKER") && !text.contains("DIAGNOSIS-MARKER"));
    let prov = &bundle["entry"][1]["resource"];
    assert_eq!(prov["resourceType"], "Provenance");
    let seq = a.header("disclosure-id").unwrap();
    assert_eq!(
        prov["entity"][0]["what"]["identifier"]["value"],
        seq.as_str()
    );
    assert_eq!(
        prov["target"][0]["reference"],
        bundle["entry"][0]["fullUrl"]
    );
    assert_eq!(prov["reason"][0]["coding"][0]["code"], "crisis-response");
    let e = app.log_entry(seq.parse().unwrap()).await.unwrap();
    assert_eq!(e.data.kind, EntryKind::Disclosure);
    assert_eq!(
        prov["policy"][0],
        format!("urn:uuid:{}", e.data.decision_id.unwrap())
    );
    app.stop().await;
}

#[tokio::test]
async fn the_capability_statement_lists_exactly_the_routes() {
    let app = spawn_app(Db::Sqlite).await;
    // A client certificate is enough, as for /healthz.
    let a = send(client(Some(&officer().0)).get(app.url("/fhir/r4/metadata"))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["fhirVersion"], "4.0.1");
    let mut listed = Vec::new();
    for r in a.body["rest"][0]["resource"].as_array().unwrap() {
        for i in r["interaction"].as_array().unwrap() {
            listed.push((
                r["type"].as_str().unwrap().to_owned(),
                i["code"].as_str().unwrap().to_owned(),
            ));
        }
    }
    let mut expected: Vec<(String, String)> = coresponse_gateway::api::fhir::ROUTES
        .iter()
        .map(|r| (r.resource.to_owned(), r.interaction.to_owned()))
        .collect();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);
    // Every interaction of every type: routed exactly when listed.
    let w = who("county-mh", "clin-3", &["clinician"]);
    for ty in [
        "Consent",
        "ServiceRequest",
        "Task",
        "Patient",
        "Provenance",
        "Bundle",
        "Basic",
    ] {
        for (interaction, method, path) in [
            ("read", "GET", format!("/fhir/r4/{ty}/x1")),
            ("search-type", "GET", format!("/fhir/r4/{ty}?_id=x1")),
            ("create", "POST", format!("/fhir/r4/{ty}")),
            ("update", "PUT", format!("/fhir/r4/{ty}/x1")),
            ("delete", "DELETE", format!("/fhir/r4/{ty}/x1")),
        ] {
            let req = client(Some(&w.0))
                .request(method.parse().unwrap(), app.url(&path))
                .bearer_auth(&w.1)
                .header("Purpose-Of-Use", "referral-followup")
                .header("Content-Type", "application/fhir+json")
                .body("{}");
            let ans = send(req).await;
            let code = &ans.body["issue"][0]["details"]["coding"][0]["code"];
            let routed = code != "route_not_found" && code != "method_not_allowed";
            let is_listed = listed.contains(&(ty.to_owned(), interaction.to_owned()));
            assert_eq!(routed, is_listed, "{method} {path}: {}", ans.body);
            if !routed {
                // The methods the path takes: 405 naming them, or 404 if it takes none.
                let bare = path.split('?').next().unwrap();
                let mut takes: Vec<String> = coresponse_gateway::api::fhir::ROUTES
                    .iter()
                    .filter(|r| r.path.replace("{id}", "x1") == bare)
                    .map(|r| r.method.to_owned())
                    .collect();
                takes.sort();
                if takes.is_empty() {
                    assert_outcome(&ans, 404, "route_not_found", None);
                } else {
                    assert_outcome(&ans, 405, "method_not_allowed", None);
                    assert_eq!(allowed(&ans), takes, "{method} {path}");
                }
            }
        }
    }
    app.stop().await;
}

/// Where the independent validator's Python is: `FHIR_VALIDATOR_PYTHON`, else the virtual
/// environment `.ci/run` makes.
fn validator_python() -> PathBuf {
    if let Some(p) = std::env::var_os("FHIR_VALIDATOR_PYTHON") {
        return PathBuf::from(p);
    }
    crate::support::repo_root().join(".fhir-venv/bin/python")
}

#[tokio::test]
async fn every_resource_the_gateway_emits_validates_with_an_independent_fhir_r4_implementation() {
    let python = validator_python();
    let check = Command::new(&python)
        .args([
            "-c",
            "import fhir.resources; assert fhir.resources.__fhir_version__ == '4.0.1'",
        ])
        .output();
    match check {
        Ok(o) if o.status.success() => {}
        other => panic!(
            "the FHIR R4 validator is missing: `{}` cannot import fhir.resources for FHIR 4.0.1 \
             ({other:?}). Run `bash .ci/run`, or `python3 -m venv .fhir-venv && \
             .fhir-venv/bin/pip install -r tests/fhir/requirements.txt`, or point \
             FHIR_VALIDATOR_PYTHON at a Python that has it.",
            python.display()
        ),
    }

    let policies = part2_policies();
    let dir = policies.path().to_owned();
    let app = spawn_with(Db::Sqlite, move |s| s.policy.dir = dir).await;
    let mut out: Vec<(String, Value)> = Vec::new();
    let mut keep = |name: &str, a: &Answer| {
        assert!(a.body.get("resourceType").is_some(), "{name}: {}", a.body);
        out.push((name.to_owned(), a.body.clone()));
    };
    let (s, _) = put(
        &app,
        &officer(),
        "/v1/records/crisis-incident/INC-1",
        &incident_body("P-2231"),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = put(
        &app,
        &clinician(),
        "/v1/records/safety-plan/SP-1",
        &safety_plan_body("P-2231"),
    )
    .await;
    assert_eq!(s, 201);

    keep(
        "capability",
        &send(client(Some(&officer().0)).get(app.url("/fhir/r4/metadata"))).await,
    );
    let c = fhir_post(&app, &clinician(), "/fhir/r4/Consent", &leap_consent()).await;
    assert_eq!(c.status, 201, "{}", c.body);
    keep("consent-created", &c);
    let mut two = leap_consent();
    two["contained"] = json!([{
        "resourceType": "Patient", "id": "pat",
        "identifier": [{"system": codes::subject_system("county-mh"), "value": MRN},
                       {"system": codes::subject_system("metro-pd"), "value": "P-2231"}],
        "name": [{"text": PATIENT}]
    }]);
    two["patient"] = json!({"reference": "#pat"});
    two["provision"]["period"] = json!({"start": time(Utc::now() - Duration::days(1))});
    two["provision"]["extension"] = json!([{"url": codes::expiry_event_ext(),
                                             "valueString": "end of the treatment episode"}]);
    let c2 = fhir_post(&app, &clinician(), "/fhir/r4/Consent", &two).await;
    assert_eq!(c2.status, 201, "{}", c2.body);
    keep("consent-contained-patient", &c2);
    let id = c.body["id"].as_str().unwrap().to_owned();
    let mut revoke = c.body.clone();
    revoke["status"] = json!("rejected");
    revoke["extension"].as_array_mut().unwrap().push(json!({
        "url": codes::revocation_ext(),
        "extension": [{"url": "receivedAt", "valueDateTime": time(Utc::now())},
                      {"url": "receivedHow", "valueCode": "oral"}]
    }));
    let r = fhir_put(
        &app,
        &clinician(),
        &format!("/fhir/r4/Consent/{id}"),
        &revoke,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    keep("consent-revoked", &r);
    keep(
        "consent-search",
        &fhir_get(
            &app,
            &clinician(),
            &format!(
                "/fhir/r4/Consent?patient:identifier={}|{MRN}",
                codes::subject_system("county-mh")
            ),
            None,
        )
        .await,
    );
    // The Part 2 disclosure (the second consent is still active), as a Bundle.
    let officer_ = officer();
    let a = send(
        client(Some(&officer_.0))
            .get(app.url("/v1/subjects/county-mh/MRN-88/records?kind=safety-plan"))
            .bearer_auth(&officer_.1)
            .header("Purpose-Of-Use", "crisis-response")
            .header("Accept", "application/fhir+json"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body["entry"][0]["resource"]["resourceType"], "Basic",
        "{}",
        a.body
    );
    keep("v1-subject-bundle", &a);
    let a = send(
        client(Some(&clinician().0))
            .get(app.url("/v1/records/crisis-incident/INC-1"))
            .bearer_auth(clinician().1)
            .header("Purpose-Of-Use", "treatment")
            .header("Accept", "application/fhir+json"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    keep("v1-incident-bundle", &a);

    let t = fhir_post(
        &app,
        &officer(),
        "/fhir/r4/ServiceRequest",
        &service_request(),
    )
    .await;
    assert_eq!(t.status, 201, "{}", t.body);
    keep("task-created", &t);
    let rid = t.body["id"].as_str().unwrap().to_owned();
    transition(&app, &rid, "RECEIVED").await;
    keep(
        "task-police",
        &fhir_get(
            &app,
            &officer(),
            &format!("/fhir/r4/Task/{rid}"),
            Some("referral-followup"),
        )
        .await,
    );
    keep(
        "task-intake",
        &fhir_get(
            &app,
            &clinician(),
            &format!("/fhir/r4/Task/{rid}"),
            Some("referral-followup"),
        )
        .await,
    );
    keep(
        "task-search",
        &fhir_get(
            &app,
            &officer(),
            &format!("/fhir/r4/Task?_id={rid}&_revinclude=Provenance:target"),
            Some("referral-followup"),
        )
        .await,
    );
    let oversight = who("oversight", "auditor-2", &["compliance"]);
    let a = send(
        client(Some(&oversight.0))
            .get(app.url(&format!("/v1/referrals/{rid}")))
            .bearer_auth(&oversight.1)
            .header("Purpose-Of-Use", "audit")
            .header("Accept", "application/fhir+json"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    keep("v1-referral-bundle-oversight", &a);

    // Errors.
    let mut bad = leap_consent();
    bad["provision"]["purpose"] = json!([{"system": ACT_REASON, "code": "HPAYMT"},
                                         {"system": "http://example.org", "code": "x"}]);
    keep(
        "outcome-invalid",
        &fhir_post(&app, &clinician(), "/fhir/r4/Consent", &bad).await,
    );
    let mut bad = leap_consent();
    bad.as_object_mut().unwrap().remove("extension");
    keep(
        "outcome-incomplete",
        &fhir_post(&app, &clinician(), "/fhir/r4/Consent", &bad).await,
    );
    keep(
        "outcome-denied",
        &fhir_get(
            &app,
            &officer(),
            &format!("/fhir/r4/Task/{rid}"),
            Some("investigation"),
        )
        .await,
    );
    keep(
        "outcome-unauthenticated",
        &send(client(Some(&officer().0)).get(app.url("/fhir/r4/Task/x"))).await,
    );
    keep(
        "outcome-not-found",
        &fhir_get(&app, &officer(), "/fhir/r4/Patient/1", None).await,
    );
    app.stop().await;

    let dir = tempfile::tempdir().unwrap();
    for (name, v) in &out {
        std::fs::write(
            dir.path().join(format!("{name}.json")),
            serde_json::to_vec_pretty(v).unwrap(),
        )
        .unwrap();
    }
    let script = crate::support::repo_root().join("tests/fhir/validate.py");
    let run = Command::new(&python)
        .arg(&script)
        .arg(dir.path())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "fhir.resources refused resources the gateway emits:\n{report}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        report.contains(&format!("{} passed, 0 failed", out.len())),
        "{report}"
    );
}
