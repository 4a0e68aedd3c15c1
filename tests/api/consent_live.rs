//! Consent is live: a new, expired or revoked consent changes the very next answer; the police
//! referral-status view follows consent; a Part 2 disclosure under consent carries the 42 CFR
//! 2.32 notice and the no-redisclosure refrain, and emergency access never releases Part 2
//! fields to police.

use chrono::{Duration, Utc};
use coresponse_gateway::audit::{LegalBasis, query};
use coresponse_gateway::domain::{Clock as _, ManualClock};
use serde_json::{Value, json};

use crate::records_api::{
    clinician, incident_body, officer, post, put, read, safety_plan_body, who, who_at,
};
use crate::support::{self, Db, TestApp, spawn_app, spawn_with, spawn_with_clock};

const PLAN: &str = "/v1/records/safety-plan/SP-1";

fn consent(scope: Value, purposes: &[&str], expires_in: Duration) -> Value {
    let now = Utc::now();
    json!({
        "subjects": [{"system": "county-mh", "value": "MRN-88"}],
        "patient_name": "Jordan Example",
        "disclosers": ["county-mh"],
        "recipients": ["metro-pd"],
        "purposes": purposes,
        "scope": scope,
        "valid_from": (now - Duration::minutes(5)).to_rfc3339(),
        "expires": (now + expires_in).to_rfc3339(),
        "signature_reference": "DMS-2026-0001",
        "signed_on": now.date_naive().to_string(),
        "revocation_statement": "You may revoke this consent at any time, in writing, at County \
            Behavioral Health Services; it does not undo disclosures already made.",
    })
}

fn crisis_extract() -> Value {
    json!({"fields": ["safety-plan.deescalation_preferences", "safety-plan.crisis_contacts"]})
}

async fn record(app: &TestApp, body: &Value) -> String {
    let (s, b) = post(app, &clinician(), "/v1/consents", body).await;
    assert_eq!(s, 201, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

async fn revoke(app: &TestApp, id: &str) {
    let (s, b) = post(
        app,
        &clinician(),
        &format!("/v1/consents/{id}/revoke"),
        &json!({"received_at": Utc::now().to_rfc3339(), "received_how": "written"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
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
    let (s, b) = put(app, &clinician(), PLAN, &safety_plan_body("P-2231")).await;
    assert_eq!(s, 201, "{b}");
}

async fn officer_reads_plan(app: &TestApp) -> (u16, Option<String>, Value) {
    read(app, &officer(), PLAN, Some("crisis-response"), &[]).await
}

#[tokio::test]
async fn grant_and_revocation_each_change_the_next_answer() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = spawn_app(db).await;
        seed(&app).await;
        let (s, _, b) = officer_reads_plan(&app).await;
        assert_eq!(s, 403, "{b}");

        let id = record(
            &app,
            &consent(crisis_extract(), &["crisis-response"], Duration::days(30)),
        )
        .await;
        let (s, disclosure, b) = officer_reads_plan(&app).await;
        assert_eq!(s, 200, "{db:?}: {b}");
        let mut names: Vec<&str> = b["fields"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["crisis_contacts", "deescalation_preferences"],
            "only what the consent names"
        );
        let e = app
            .log_entry(disclosure.unwrap().parse().unwrap())
            .await
            .unwrap();
        assert!(
            matches!(&e.data.basis, Some(LegalBasis::Consent { consent_id }) if consent_id == &id),
            "{e:?}"
        );
        // The same person found by the other identifier on the record is covered too.
        let (s, _, b) = read(
            &app,
            &officer(),
            "/v1/subjects/metro-pd/P-2231/records?kind=safety-plan",
            Some("crisis-response"),
            &[],
        )
        .await;
        assert_eq!((s, b["records"].as_array().unwrap().len()), (200, 1), "{b}");
        // A consent for another purpose does not stretch to this one.
        let (s, _, _) = read(&app, &officer(), PLAN, Some("referral-followup"), &[]).await;
        assert_eq!(s, 403);

        // Reading consents is itself logged.
        let auditor = who("oversight", "aud-1", &["compliance"]);
        let (s, _, b) = read(
            &app,
            &auditor,
            "/v1/subjects/county-mh/MRN-88/consents",
            None,
            &[],
        )
        .await;
        assert_eq!(
            (s, b["consents"].as_array().unwrap().len()),
            (200, 1),
            "{b}"
        );
        let reads = app
            .log_entries(&query::Filter {
                kinds: vec![coresponse_gateway::audit::EntryKind::ConsentRead],
                limit: 10,
                ..Default::default()
            })
            .await;
        assert_eq!(reads.len(), 1);
        assert_eq!(reads[0].data.recipient_user.as_deref(), Some("aud-1"));

        revoke(&app, &id).await;
        let (s, _, b) = officer_reads_plan(&app).await;
        assert_eq!(s, 403, "revocation stops the very next disclosure: {b}");
        assert!(
            b["details"]["reasons"]
                .to_string()
                .contains("consent-missing"),
            "{b}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn expiry_changes_the_next_answer() {
    for db in [Db::Sqlite, Db::Postgres] {
        let clock = ManualClock::new(Utc::now());
        let app = spawn_with_clock(db, &clock, |_| {}).await;
        seed(&app).await;
        record(
            &app,
            &consent(crisis_extract(), &["crisis-response"], Duration::hours(1)),
        )
        .await;
        let (s, _, b) = officer_reads_plan(&app).await;
        assert_eq!(s, 200, "{db:?}: {b}");
        // The gateway checks tokens against its clock too: each read gets a token issued at
        // the clock's time.
        let officer_now = || who_at("metro-pd", "officer-17", &["officer"], clock.now());
        clock.advance(Duration::minutes(59));
        let (s, _, b) = read(&app, &officer_now(), PLAN, Some("crisis-response"), &[]).await;
        assert_eq!(s, 200, "{db:?}: still in force: {b}");
        clock.advance(Duration::minutes(2));
        let (s, _, b) = read(&app, &officer_now(), PLAN, Some("crisis-response"), &[]).await;
        assert_eq!(s, 403, "{db:?}: an expired consent no longer counts: {b}");
        app.stop().await;
    }
}

#[tokio::test]
async fn police_see_the_fine_referral_states_only_under_consent() {
    let app = spawn_app(Db::Sqlite).await;
    seed(&app).await;
    let (s, b) = post(
        &app,
        &officer(),
        "/v1/referrals",
        &json!({"incident_id": "INC-1", "subjects": [{"system": "metro-pd", "value": "P-2231"},
                {"system": "county-mh", "value": "MRN-88"}],
                "receiving_agency": "county-mh", "reason": "follow-up", "urgency": "ROUTINE"}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    let mh = who("county-mh", "intake-1", &["intake-coordinator"]);
    for to in ["RECEIVED", "ASSIGNED"] {
        let (s, b) = post(
            &app,
            &mh,
            &format!("/v1/referrals/{id}/transitions"),
            &json!({"to": to}),
        )
        .await;
        assert_eq!(s, 200, "{b}");
    }
    let path = format!("/v1/referrals/{id}");
    let (_, _, b) = read(&app, &officer(), &path, Some("referral-followup"), &[]).await;
    assert_eq!(b["fields"]["status"], "IN_PROGRESS");
    let c = record(
        &app,
        &consent(
            json!({"kinds": ["referral"]}),
            &["referral-followup"],
            Duration::days(30),
        ),
    )
    .await;
    let (_, _, b) = read(&app, &officer(), &path, Some("referral-followup"), &[]).await;
    assert_eq!(b["fields"]["status"], "ASSIGNED", "{b}");
    revoke(&app, &c).await;
    let (_, _, b) = read(&app, &officer(), &path, Some("referral-followup"), &[]).await;
    assert_eq!(b["fields"]["status"], "IN_PROGRESS");
    app.stop().await;
}

/// A copy of the policy set whose crisis-plan extract (consent basis) also names the Part 2
/// field, as a program whose patients consent to it might agree.
pub(crate) fn part2_policies() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = crate::support::repo_root().join("policies");
    for sub in ["", "kinds", "mous"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for e in std::fs::read_dir(src.join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                std::fs::copy(&p, dir.path().join(sub).join(p.file_name().unwrap())).unwrap();
            }
        }
    }
    let mou = dir.path().join("mous/metro-county-coresponse.toml");
    let text = std::fs::read_to_string(&mou).unwrap();
    let text = text.replacen(
        "crisis_contacts = \"reveal\"\n",
        "crisis_contacts = \"reveal\"\nsubstance_use_history = \"reveal\"\n",
        1,
    );
    std::fs::write(&mou, text).unwrap();
    dir
}

#[tokio::test]
async fn part2_under_consent_carries_the_notice_and_emergency_never_releases_it_to_police() {
    let policies = part2_policies();
    let dir = policies.path().to_owned();
    let app = spawn_with(Db::Sqlite, move |s| s.policy.dir = dir).await;
    seed(&app).await;
    // A consent that does not name the Part 2 category leaves the field out.
    let plain = record(
        &app,
        &consent(
            json!({"kinds": ["safety-plan"]}),
            &["crisis-response"],
            Duration::days(30),
        ),
    )
    .await;
    let (s, _, b) = officer_reads_plan(&app).await;
    assert_eq!(s, 200, "{b}");
    assert!(b["fields"].get("substance_use_history").is_none(), "{b}");
    assert!(b.get("notices").is_none());
    revoke(&app, &plain).await;

    // A complete 2.31 consent naming the category releases it, with the notice and refrain.
    record(
        &app,
        &consent(
            json!({"kinds": ["safety-plan"], "categories": ["sud"]}),
            &["crisis-response"],
            Duration::days(30),
        ),
    )
    .await;
    let (s, _, b) = officer_reads_plan(&app).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["fields"]["substance_use_history"],
        "SUD-MARKER in treatment"
    );
    assert!(
        b["notices"][0].as_str().unwrap().contains("42 CFR part 2"),
        "{b}"
    );
    assert_eq!(b["refrains"], json!(["NORDSCLCD"]));
    assert!(b["fields"].get("psychotherapy_notes").is_none());

    // Emergency access by police never carries Part 2 fields, consent or not.
    let (s, _, b) = read(
        &app,
        &officer(),
        PLAN,
        Some("emergency"),
        &[
            ("Emergency-Basis", "actual-knowledge"),
            ("Emergency-Description", "armed on a bridge"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert!(b["fields"].get("substance_use_history").is_none(), "{b}");
    assert!(!b.to_string().contains("SUD-MARKER"));
    app.stop().await;
}

#[tokio::test]
async fn a_tampered_consent_fails_the_read_closed() {
    let app = spawn_app(Db::Sqlite).await;
    seed(&app).await;
    let id = record(
        &app,
        &consent(crisis_extract(), &["crisis-response"], Duration::days(30)),
    )
    .await;
    revoke(&app, &id).await;
    let (s, _, _) = officer_reads_plan(&app).await;
    assert_eq!(s, 403);
    // Someone with database access "un-revokes" it by editing the clear columns. The decision
    // inputs cached at the current consent epoch are the authentic ones: still denied.
    support::exec(
        app.store(),
        "UPDATE consents SET status = 'active', revoked_at_us = NULL",
    )
    .await;
    let (s, _, b) = officer_reads_plan(&app).await;
    assert_eq!(s, 403, "decided on the authentic consent: {b}");
    // Once the epoch moves (any consent change, on any replica), the consents are read again:
    // the read is refused (500, nothing disclosed), never decided on the edited consent.
    support::exec(
        app.store(),
        "UPDATE cache_epochs SET consents = consents + 1",
    )
    .await;
    let (s, id_hdr, b) = officer_reads_plan(&app).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (500, Some("internal_error")),
        "{b}"
    );
    assert!(id_hdr.is_none());
    assert!(!b.to_string().contains("sirens"), "{b}");
    app.stop().await;
}
