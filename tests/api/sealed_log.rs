//! The disclosure log holds no clear-text personal data (DESIGN guarantee 7): free text that
//! reaches an entry (an emergency's threat and source, suspension statements, review notes,
//! details) is sealed, opens only for compliance officers, and entries written in clear before
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
            "UPDATE audit_head SET seq = {n}, head_hash = {}, tree_base = {n}, tree_size = 0 \
             WHERE id = 1",
            blob(app, &prev.0)
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
    ] {
        assert!(
            !contains(&bytes, text),
            "`{text}` is in the database files in clear"
        );
    }
    let _ = support::pki();
}
