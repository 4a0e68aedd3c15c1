//! The disclosure log holds no clear-text personal data (DESIGN guarantee 7): free text that
//! reaches an entry (an emergency's threat and source, a 42 CFR 2.51 medical emergency's
//! personnel and nature, suspension statements, review notes, details) is sealed, opens only for compliance officers, and entries written in clear before
//! sealing existed still verify.

use std::path::PathBuf;

use chrono::{Duration, Utc};
use coresponse_gateway::audit::{
    self, ChainHash, EntryKind, LegalBasis, NewEntry, Outcome, query::Filter,
};
use coresponse_gateway::store::Backend;
use serde_json::{Value, json};

use crate::records_api::{clinician, officer, post, put, read, who};
use crate::support::{self, Db, TestApp, exec, fetch_all, spawn_app, spawn_with};

const SOURCE: &str = "Sgt. Dana Whitfield of the state patrol";
const THREAT: &str = "Quinn Harlowe said he would stab his neighbour Avery Lund tonight";
const STATEMENT: &str = "Written statement of Lt. Imogen Castellanos: active investigation";
const REVIEW_NOTE: &str = "Dispatcher Rafael Okonkwo confirmed the call";
const PERSONNEL: &str = "Dr. Ottoline Brackenbury";
const NATURE: &str = "Corwin Ashgrove unresponsive after a suspected overdose";
const COURT: &str = "Superior Court of Thistlewood County";
const DOCKET: &str = "CR-2026-SCAN-7731";
const RESTRICTION_REF: &str = "DMS-RESTRICT-SCAN-4410";
const RESTRICTION_END: &str = "Patient Corwin Ashgrove withdrew the restriction by phone";

const MEDICAL: [(&str, &str); 3] = [
    ("Emergency-Basis", "medical-emergency"),
    ("Emergency-Personnel", PERSONNEL),
    ("Emergency-Description", NATURE),
];

const EMERGENCY: [(&str, &str); 3] = [
    ("Emergency-Basis", "credible-representation"),
    ("Emergency-Source", SOURCE),
    ("Emergency-Description", THREAT),
];

fn auditor() -> crate::records_api::Who {
    who("oversight", "aud-1", &["compliance"])
}

fn plan(subject: &str, mrn: &str) -> Value {
    let mut b = crate::records_api::safety_plan_body(subject);
    b["subjects"][1]["value"] = json!(mrn);
    b
}

/// An emergency read of SP-1 by the officer; returns the log entry's sequence number.
async fn emergency_read(app: &TestApp) -> u64 {
    let (s, id, b) = read(
        app,
        &officer(),
        "/v1/records/safety-plan/SP-1",
        Some("emergency"),
        &EMERGENCY,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    id.unwrap().parse().unwrap()
}

fn physician() -> crate::records_api::Who {
    who("metro-general", "dr-rivera", &["ed-physician"])
}

/// A 42 CFR 2.51 medical-emergency read of SP-1 by the ED physician; returns the entry's
/// sequence number.
async fn medical_read(app: &TestApp) -> u64 {
    let (s, id, b) = read(
        app,
        &physician(),
        "/v1/records/safety-plan/SP-1",
        Some("emergency"),
        &MEDICAL,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    id.unwrap().parse().unwrap()
}

/// Records a 42 CFR 2.65 court order for the substance-use history of `mrn`, to metro-pd for
/// investigation; returns its id.
async fn court_order(app: &TestApp, mrn: &str) -> String {
    let now = Utc::now();
    let (s, b) = post(
        app,
        &auditor(),
        "/v1/court-orders",
        &json!({
            "subjects": [{"system": "county-mh", "value": mrn}],
            "court": COURT,
            "docket": DOCKET,
            "order_date": (now - Duration::days(2)).date_naive().to_string(),
            "section": "2.65",
            "disclosers": ["county-mh"],
            "recipient": "metro-pd",
            "purposes": ["investigation"],
            "fields": ["safety-plan.substance_use_history"],
            "valid_from": (now - Duration::days(1)).to_rfc3339(),
            "until": (now + Duration::days(30)).to_rfc3339(),
        }),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

/// Records a restriction of `mrn`'s crisis contacts to metro-pd and terminates it.
async fn restriction_round(app: &TestApp, mrn: &str) {
    let (s, b) = post(
        app,
        &clinician(),
        "/v1/restrictions",
        &json!({
            "subjects": [{"system": "county-mh", "value": mrn}],
            "recipients": ["metro-pd"],
            "scope": {"fields": ["safety-plan.crisis_contacts"]},
            "agreed_on": Utc::now().date_naive().to_string(),
            "reference": RESTRICTION_REF,
        }),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    let (s, b) = post(
        app,
        &clinician(),
        &format!("/v1/restrictions/{id}/terminate"),
        &json!({"reason": RESTRICTION_END}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
}

/// Every text and blob of every row of the log, as bytes.
async fn log_bytes(app: &TestApp) -> Vec<u8> {
    type Row = (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<Vec<u8>>,
    );
    let rows: Vec<Row> = fetch_all(
        app.store(),
        "SELECT justification, detail, basis_ref, reason, fields_disclosed, sealed FROM audit_log",
    )
    .await;
    let mut out = Vec::new();
    for r in rows {
        for t in [r.0, r.1, r.2, r.3, r.4].into_iter().flatten() {
            out.extend_from_slice(t.as_bytes());
        }
        out.extend(r.5.unwrap_or_default());
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn free_text_is_sealed_in_the_log_and_opens_only_for_compliance() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = spawn_app(db).await;
        let (s, b) = put(
            &app,
            &clinician(),
            "/v1/records/safety-plan/SP-1",
            &plan("P-2231", "MRN-88"),
        )
        .await;
        assert_eq!(s, 201, "{b}");
        let seq = emergency_read(&app).await;

        // In the database: no clear column, a sealed value, format 2.
        type Row = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<Vec<u8>>,
            i32,
        );
        let rows: Vec<Row> = fetch_all(
            app.store(),
            "SELECT justification, detail, basis_ref, sealed, format FROM audit_log \
                 WHERE basis_kind = 'emergency'",
        )
        .await;
        assert_eq!(rows.len(), 1);
        let (j, d, r, sealed, format) = rows.into_iter().next().unwrap();
        assert_eq!((j, d, r, format), (None, None, None, 2));
        assert!(sealed.is_some_and(|s| s.len() > 28));
        let raw = log_bytes(&app).await;
        for text in [SOURCE, THREAT, "Whitfield", "Harlowe", "stab"] {
            assert!(!contains(&raw, text), "`{text}` is in the log in clear");
        }

        // A compliance officer reads the entry and the review with the text opened.
        let (s, _, e) = read(
            &app,
            &auditor(),
            &format!("/v1/disclosures/{seq}"),
            None,
            &[],
        )
        .await;
        assert_eq!(s, 200, "{e}");
        assert_eq!(e["justification"], THREAT);
        assert_eq!(
            e["basis"]["stated_basis"],
            format!("credible-representation; source: {SOURCE}")
        );
        let (s, _, list) = read(&app, &auditor(), "/v1/reviews?state=open", None, &[]).await;
        assert_eq!(s, 200, "{list}");
        let review = &list["reviews"][0];
        assert_eq!(review["threat"], THREAT);
        let review_id = review["id"].as_str().unwrap().to_owned();

        // Closing the review and recording a suspension: their texts are sealed too, in the
        // log and in their own tables, and read back in clear by compliance.
        let (s, b) = post(
            &app,
            &auditor(),
            &format!("/v1/reviews/{review_id}"),
            &json!({"outcome": "justified", "note": REVIEW_NOTE}),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        let (s, b) = post(
            &app,
            &auditor(),
            "/v1/accounting-suspensions",
            &json!({"recipient": "metro-pd", "subject_system": "metro-pd",
                    "subject_value": "P-2231", "statement": STATEMENT,
                    "until": (Utc::now() + Duration::days(30)).to_rfc3339()}),
        )
        .await;
        assert_eq!(s, 201, "{b}");
        let (s, _, list) = read(&app, &auditor(), "/v1/accounting-suspensions", None, &[]).await;
        assert_eq!(s, 200);
        assert_eq!(list["suspensions"][0]["statement"], STATEMENT, "{list}");
        let (s, _, closed) = read(&app, &auditor(), "/v1/reviews?state=closed", None, &[]).await;
        assert_eq!(s, 200);
        assert!(closed.to_string().contains(REVIEW_NOTE), "{closed}");
        let raw = log_bytes(&app).await;
        for text in [STATEMENT, REVIEW_NOTE, "Castellanos", "Okonkwo"] {
            assert!(!contains(&raw, text), "`{text}` is in the log in clear");
        }
        let side: Vec<(String,)> =
            fetch_all(app.store(), "SELECT statement FROM accounting_suspensions").await;
        assert!(
            side.iter().all(|r| !r.0.contains("Castellanos")),
            "{side:?}"
        );
        let notes: Vec<(Option<String>,)> =
            fetch_all(app.store(), "SELECT note FROM emergency_reviews").await;
        assert!(
            notes
                .iter()
                .flat_map(|r| r.0.iter())
                .all(|n| !n.contains("Okonkwo")),
            "{notes:?}"
        );

        // Nobody else reads the log; the chain and the tree verify over the ciphertext.
        let (s, _, _) = read(
            &app,
            &officer(),
            &format!("/v1/disclosures/{seq}"),
            None,
            &[],
        )
        .await;
        assert_eq!(s, 403);
        app.assert_log_verifies().await;
    }
}

#[tokio::test]
async fn medical_emergency_documentation_is_sealed_and_a_court_order_id_stays_in_clear() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = spawn_app(db).await;
        let (s, b) = put(
            &app,
            &clinician(),
            "/v1/records/safety-plan/SP-1",
            &plan("P-2231", "MRN-88"),
        )
        .await;
        assert_eq!(s, 201, "{b}");
        let seq = medical_read(&app).await;
        let order_id = court_order(&app, "MRN-88").await;
        let (s, order_seq, b) = read(
            &app,
            &officer(),
            "/v1/records/safety-plan/SP-1",
            Some("investigation"),
            &[],
        )
        .await;
        assert_eq!(s, 200, "{b}");
        let order_seq: u64 = order_seq.unwrap().parse().unwrap();

        // The 2.51 entry keeps only its basis code in clear; the personnel's name and the
        // nature of the emergency are in its sealed text.
        type Row = (i64, Option<String>, Option<String>, Option<Vec<u8>>, i32);
        let rows: Vec<Row> = fetch_all(
            app.store(),
            "SELECT seq, basis_kind, basis_ref, sealed, format FROM audit_log",
        )
        .await;
        let row = |n: u64| {
            rows.iter()
                .find(|r| r.0 == i64::try_from(n).unwrap())
                .cloned()
                .unwrap()
        };
        let (_, kind, basis_ref, sealed, format) = row(seq);
        assert_eq!(
            (kind.as_deref(), basis_ref, format),
            (Some("medical_emergency"), None, 2)
        );
        assert!(sealed.is_some());
        // The court order's random id is the one basis reference kept in clear.
        let (_, kind, basis_ref, _, _) = row(order_seq);
        assert_eq!(
            (kind.as_deref(), basis_ref.as_deref()),
            (Some("court_order"), Some(order_id.as_str()))
        );
        let raw = log_bytes(&app).await;
        for text in [
            PERSONNEL,
            "Brackenbury",
            NATURE,
            "Ashgrove",
            "overdose",
            COURT,
            DOCKET,
        ] {
            assert!(!contains(&raw, text), "`{text}` is in the log in clear");
        }

        // A compliance officer reads the 2.51(c) documentation, in the entry and in the 2.24
        // list; nobody else reads the entry.
        let (s, _, e) = read(
            &app,
            &auditor(),
            &format!("/v1/disclosures/{seq}"),
            None,
            &[],
        )
        .await;
        assert_eq!(s, 200, "{e}");
        assert_eq!(e["basis"]["type"], "medical_emergency", "{e}");
        assert!(
            e["basis"]["documentation"]
                .as_str()
                .unwrap()
                .contains(PERSONNEL),
            "{e}"
        );
        assert_eq!(e["justification"], NATURE);
        assert!(e["detail"].as_str().unwrap().contains("42 CFR 2.51(c)"));
        let (s, _, list) = read(
            &app,
            &auditor(),
            "/v1/subjects/county-mh/MRN-88/part2-disclosures",
            None,
            &[],
        )
        .await;
        assert_eq!(s, 200, "{list}");
        let lines = list["disclosures"].as_array().unwrap();
        assert_eq!(lines.len(), 2, "{list}");
        assert!(
            lines[0]["purpose"].as_str().unwrap().contains(PERSONNEL),
            "{list}"
        );
        assert!(
            lines[1]["purpose"].as_str().unwrap().contains(&order_id),
            "{list}"
        );
        let (s, _, _) = read(
            &app,
            &physician(),
            &format!("/v1/disclosures/{seq}"),
            None,
            &[],
        )
        .await;
        assert_eq!(s, 403);

        // Altered documentation is caught: the sealed text no longer opens, and the chain
        // no longer verifies.
        app.assert_log_verifies().await;
        exec(
            app.store(),
            &format!("UPDATE audit_log SET basis_kind = 'emergency' WHERE seq = {seq}"),
        )
        .await;
        let log = &app.services().log;
        let v = audit::verify_store(app.store(), log.checkpoint_key().as_ref(), None)
            .await
            .unwrap();
        assert_eq!(
            v.summary.failure.expect("the altered entry is found").seq,
            seq
        );
    }
}

#[tokio::test]
async fn a_sealed_text_moved_or_altered_fails_the_read_and_the_verification() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = spawn_app(db).await;
        let (s, _) = put(
            &app,
            &clinician(),
            "/v1/records/safety-plan/SP-1",
            &plan("P-2231", "MRN-88"),
        )
        .await;
        assert_eq!(s, 201);
        let seq = emergency_read(&app).await;
        // Flip one byte of the ciphertext.
        let rows: Vec<(i64, Vec<u8>)> = fetch_all(
            app.store(),
            "SELECT seq, sealed FROM audit_log WHERE basis_kind = 'emergency'",
        )
        .await;
        let (_, mut sealed) = rows.into_iter().next().unwrap();
        sealed[20] ^= 1;
        exec(
            app.store(),
            &format!(
                "UPDATE audit_log SET sealed = {} WHERE seq = {seq}",
                blob(&app, &sealed)
            ),
        )
        .await;
        let (s, _, _) = read(
            &app,
            &auditor(),
            &format!("/v1/disclosures/{seq}"),
            None,
            &[],
        )
        .await;
        assert_eq!(
            s, 503,
            "a sealed text that does not open is never shown as missing"
        );
        let log = &app.services().log;
        let v = audit::verify_store(app.store(), log.checkpoint_key().as_ref(), None)
            .await
            .unwrap();
        let f = v.summary.failure.expect("the altered entry is found");
        assert_eq!(f.seq, seq);
    }
}

/// Writes `n` entries in format 1 (clear text, chain only) as a log written before the
/// migration has them, and moves the head and the tree's base past them.
async fn legacy_log(app: &TestApp, n: u64) -> Vec<audit::Entry> {
    // What the start-up wrote (the `policy_reloaded` entry of the set it loaded, its leaf and
    // the change it records) goes: this log was written before either existed.
    for sql in [
        "DELETE FROM policy_changes",
        "DELETE FROM audit_tree_checkpoints",
        "DELETE FROM audit_checkpoints",
        "DELETE FROM audit_tree",
        "DELETE FROM audit_log",
    ] {
        exec(app.store(), sql).await;
    }
    let mut prev = ChainHash::GENESIS;
    let mut out = Vec::new();
    for seq in 1..=n {
        let mut data = NewEntry::new(
            EntryKind::Disclosure,
            Utc::now() - Duration::days(400),
            Outcome::Permit,
        );
        data.recipient_partner = Some("metro-pd".into());
        data.purpose = Some("emergency".into());
        data.basis = Some(LegalBasis::Emergency {
            stated_basis: "actual-knowledge".into(),
        });
        data.justification = Some(format!("legacy threat {seq}"));
        let hash = audit::entry_hash(seq, &prev, &data);
        exec(
            app.store(),
            &format!(
                "INSERT INTO audit_log (seq, at_us, kind, recipient_partner, purpose, \
                 basis_kind, basis_ref, justification, fields_disclosed, fields_withheld, \
                 outcome, prev_hash, entry_hash, format) VALUES ({seq}, {}, 'disclosure', \
                 'metro-pd', 'emergency', 'emergency', 'actual-knowledge', 'legacy threat \
                 {seq}', '[]', 0, 'permit', {}, {}, 1)",
                data.at_us(),
                blob(app, &prev.0),
                blob(app, &hash.0)
            ),
        )
        .await;
        out.push(audit::Entry {
            seq,
            format: audit::EntryFormat::V1,
            data,
            sealed: None,
            prev_hash: prev,
            hash,
        });
        prev = hash;
    }
    exec(
        app.store(),
        &format!(
            "UPDATE audit_head SET seq = {n}, head_hash = {}, tree_base = {n}, tree_size = 0, \
             tree_peaks = {} WHERE id = 1",
            blob(app, &prev.0),
            blob(app, &[])
        ),
    )
    .await;
    out
}

fn blob(app: &TestApp, bytes: &[u8]) -> String {
    match app.store().backend() {
        Backend::Postgres => format!("'\\x{}'::bytea", hex::encode(bytes)),
        Backend::Sqlite => format!("x'{}'", hex::encode(bytes)),
    }
}

#[tokio::test]
async fn entries_written_in_clear_before_the_change_keep_verifying() {
    for db in [Db::Sqlite, Db::Postgres] {
        // No writes before the legacy rows go in: a gateway without background traffic.
        let app = spawn_with(db, |s| s.audit.checkpoint_every_secs = 3600).await;
        let legacy = legacy_log(&app, 5).await;
        // New entries chain onto the legacy ones and start the tree.
        let (s, _) = put(
            &app,
            &clinician(),
            "/v1/records/safety-plan/SP-1",
            &plan("P-2231", "MRN-88"),
        )
        .await;
        assert_eq!(s, 201);
        emergency_read(&app).await;
        app.services().log.checkpoint_now().await.unwrap();
        let log = &app.services().log;
        let v = audit::verify_store(app.store(), log.checkpoint_key().as_ref(), None)
            .await
            .unwrap();
        assert!(v.ok(), "{v:?}");
        let tree = v.tree.unwrap();
        assert_eq!(tree.tree_base, 5);
        assert!(tree.leaves >= 2);
        // The legacy entries read back in clear, as written, and the first new entry links to
        // the last of them.
        let e1 = app.log_entry(1).await.unwrap();
        assert_eq!(e1.format, audit::EntryFormat::V1);
        assert_eq!(e1.data.justification.as_deref(), Some("legacy threat 1"));
        assert_eq!(app.log_entry(6).await.unwrap().prev_hash, legacy[4].hash);
        // A legacy entry altered is still caught by the chain.
        exec(
            app.store(),
            "UPDATE audit_log SET justification = 'legacy threat X' WHERE seq = 3",
        )
        .await;
        let v = audit::verify_store(app.store(), log.checkpoint_key().as_ref(), None)
            .await
            .unwrap();
        let f = v.summary.failure.unwrap();
        assert_eq!((f.seq, f.kind), (3, audit::FailureKind::Altered));
    }
}

/// Everything a full round of the gateway writes, searched byte by byte in the SQLite file and
/// its WAL: no identifier, name or free-text value used may be there in clear.
#[tokio::test]
async fn the_database_file_holds_no_personal_text_after_a_full_round() {
    let app = spawn_app(Db::Sqlite).await;
    let person = "P-4417";
    let mrn = "MRN-90210";
    let name = "Marisol Quintero-Vance";
    let phone = "+1 555 019 8841";
    let narrative = "Marisol was found on the Seventh Street overpass";
    let revocation_note = "Patient phoned Nurse Bartholomew Ng to revoke";
    // Records, with names, identifiers and free text.
    let mut incident = crate::records_api::incident_body(person);
    incident["fields"]["subject_name"] = json!(name);
    incident["fields"]["narrative"] = json!(narrative);
    incident["fields"]["callback_number"] = json!(phone);
    incident["fields"]["incident_id"] = json!("INC-SCAN-1");
    let (s, b) = put(
        &app,
        &officer(),
        "/v1/records/crisis-incident/INC-SCAN-1",
        &incident,
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = put(
        &app,
        &clinician(),
        "/v1/records/safety-plan/SP-1",
        &plan(person, mrn),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    // Reads: normal, by subject, an emergency one.
    let (s, _, b) = read(
        &app,
        &clinician(),
        "/v1/records/crisis-incident/INC-SCAN-1",
        Some("treatment"),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, _, _) = read(
        &app,
        &officer(),
        &format!("/v1/subjects/metro-pd/{person}/records"),
        Some("crisis-response"),
        &[],
    )
    .await;
    assert_eq!(s, 200);
    emergency_read(&app).await;
    // The 2024 Part 2 rule: a medical emergency with the personnel named, a court order and a
    // read under it, a restriction agreed and terminated.
    medical_read(&app).await;
    let order_id = court_order(&app, mrn).await;
    let (s, _, b) = read(
        &app,
        &officer(),
        "/v1/records/safety-plan/SP-1",
        Some("investigation"),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    restriction_round(&app, mrn).await;
    // A consent and its revocation.
    let now = Utc::now();
    let consent = json!({
        "subjects": [{"system": "county-mh", "value": mrn}, {"system": "metro-pd", "value": person}],
        "patient_name": name,
        "disclosers": ["county-mh"],
        "recipients": ["metro-pd"],
        "purposes": ["crisis-response"],
        "scope": {"kinds": ["safety-plan"],
                  "fields": ["safety-plan.deescalation_preferences"]},
        "valid_from": (now - Duration::days(1)).to_rfc3339(),
        "expires": (now + Duration::days(365)).to_rfc3339(),
        "signature_reference": "DMS-SCAN-1",
        "signed_on": (now - Duration::days(1)).date_naive().to_string(),
        "revocation_statement": "Revoke by writing to the clinic.",
    });
    let (s, b) = post(&app, &clinician(), "/v1/consents", &consent).await;
    assert_eq!(s, 201, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    let (s, b) = post(
        &app,
        &clinician(),
        &format!("/v1/consents/{id}/revoke"),
        &json!({"received_at": now.to_rfc3339(), "received_how": "oral",
                "note": revocation_note}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    // Compliance: a suspension, the review closed, the log read.
    let (s, b) = post(
        &app,
        &auditor(),
        "/v1/accounting-suspensions",
        &json!({"recipient": "metro-pd", "subject_system": "metro-pd", "subject_value": person,
                "statement": STATEMENT, "until": (now + Duration::days(30)).to_rfc3339()}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (_, _, list) = read(&app, &auditor(), "/v1/reviews?state=open", None, &[]).await;
    let review = &list["reviews"][0];
    let review_id = review["id"].as_str().unwrap().to_owned();
    let (s, b) = post(
        &app,
        &auditor(),
        &format!("/v1/reviews/{review_id}"),
        &json!({"outcome": "justified", "note": REVIEW_NOTE}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, _, _) = read(
        &app,
        &auditor(),
        &format!("/v1/subjects/metro-pd/{person}/accounting"),
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200);
    app.services().log.checkpoint_now().await.unwrap();
    assert!(
        !app.log_entries(&Filter {
            limit: 500,
            ..Filter::default()
        })
        .await
        .is_empty()
    );

    let db_file = app.workdir.path().join("gateway.db");
    let mut bytes = std::fs::read(&db_file).unwrap();
    let wal = PathBuf::from(format!("{}-wal", db_file.display()));
    bytes.extend(std::fs::read(&wal).unwrap_or_default());
    // Control: what is meant to be in clear is found, so the search works.
    assert!(contains(&bytes, "INC-SCAN-1"));
    // A court order's id is a random id, kept in clear as the legal basis.
    assert!(contains(&bytes, &order_id));
    for text in [
        person,
        mrn,
        name,
        "Quintero",
        phone,
        narrative,
        "Seventh Street",
        SOURCE,
        "Whitfield",
        THREAT,
        "Harlowe",
        STATEMENT,
        "Castellanos",
        REVIEW_NOTE,
        "Okonkwo",
        revocation_note,
        "Bartholomew",
        "speak slowly, no sirens",
        PERSONNEL,
        "Brackenbury",
        NATURE,
        "Ashgrove",
        COURT,
        "Thistlewood",
        DOCKET,
        RESTRICTION_REF,
        RESTRICTION_END,
        "SUD-MARKER",
    ] {
        assert!(
            !contains(&bytes, text),
            "`{text}` is in the database files in clear"
        );
    }
    let _ = support::pki();
}
