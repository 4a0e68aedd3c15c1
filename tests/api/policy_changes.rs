//! Policy changes on both backends: every load (start-up, reload) is a durable
//! `policy_reloaded` entry with the old and new hashes and what changed; the full diff is kept
//! and readable by compliance officers, and checked against its entry; a restart on an edited
//! set is compared with the set the database ran before; `/healthz` warns of MOU expiry.

use coresponse_gateway::audit::{EntryKind, query};
use coresponse_gateway::domain::ManualClock;
use coresponse_gateway::startup::Application;
use serde_json::Value;

use crate::records_api::{Who, officer, read, who, who_at};
use crate::support::{self, Db, TestApp, exec, spawn_with, spawn_with_clock};

const BOTH: [Db; 2] = [Db::Sqlite, Db::Postgres];

fn compliance() -> Who {
    who("oversight", "aud-1", &["compliance"])
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of the shipped policies in a temporary directory.
fn policies_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&support::repo_root().join("policies"), dir.path());
    dir
}

/// Widens the crisis-plan extract: the police now also get the diagnoses (with consent).
fn widen(dir: &std::path::Path) {
    let mou = dir.join("mous/metro-county-coresponse.toml");
    let text = std::fs::read_to_string(&mou).unwrap();
    let widened = text.replacen(
        "deescalation_preferences = \"reveal\"\ncrisis_contacts = \"reveal\"\n",
        "deescalation_preferences = \"reveal\"\ncrisis_contacts = \"reveal\"\ndiagnoses = \"reveal\"\n",
        1,
    );
    assert_ne!(widened, text, "the fixture edit must apply");
    std::fs::write(&mou, widened).unwrap();
}

/// Compliance officers may no longer run the engagement report.
fn narrow_engagement_report(dir: &std::path::Path) {
    let file = dir.join("reports/engagement.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let narrowed = text.replacen(
        "[[runner]]\npartner_kind = \"compliance\"\nroles = [\"compliance\"]\n",
        "",
        1,
    );
    assert_ne!(narrowed, text, "the fixture edit must apply");
    std::fs::write(&file, narrowed).unwrap();
}

async fn reloads(app: &TestApp) -> Vec<coresponse_gateway::audit::Entry> {
    app.log_entries(&query::Filter {
        kinds: vec![EntryKind::PolicyReloaded],
        limit: 50,
        ..query::Filter::default()
    })
    .await
}

#[tokio::test]
async fn every_load_is_recorded_and_a_compliance_officer_reads_the_diff() {
    for db in BOTH {
        let dir = policies_copy();
        let path = dir.path().to_owned();
        let app = spawn_with(db, |s| s.policy.dir = path).await;
        let first_hash = app.services().policy.load().hash.clone();

        // Start-up recorded the set (the first in this database).
        let start = reloads(&app).await;
        assert_eq!(start.len(), 1);
        let detail = start[0].data.detail.clone().unwrap();
        assert!(
            detail.starts_with("start-up: policy set none -> "),
            "{detail}"
        );
        assert_eq!(
            start[0].data.policy_hash.as_deref(),
            Some(first_hash.as_str())
        );

        // A reload of an edited set records the old and new hashes and the counts, and names
        // the report definition that changed.
        widen(dir.path());
        narrow_engagement_report(dir.path());
        app.state.reload().await.expect("the widened set loads");
        let new_hash = app.services().policy.load().hash.clone();
        assert_ne!(new_hash, first_hash);
        let all = reloads(&app).await;
        assert_eq!(all.len(), 2);
        let entry = &all[0];
        let detail = entry.data.detail.clone().unwrap();
        assert!(
            detail.starts_with(&format!("reload: policy set {first_hash} -> {new_hash}")),
            "{detail}"
        );
        assert!(
            detail.contains("newly revealed") && detail.contains("full diff sha256"),
            "{detail}"
        );
        assert!(
            detail.contains("; report definitions: engagement changed (runners); full diff"),
            "{detail}"
        );

        // The list and the full diff, for compliance officers only.
        let (s, _, list) = read(&app, &compliance(), "/v1/policy/changes", None, &[]).await;
        assert_eq!(s, 200, "{list}");
        let changes = list["changes"].as_array().unwrap();
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0]["seq"], entry.seq);
        assert_eq!(changes[0]["trigger"], "reload");
        assert_eq!(changes[0]["previous_hash"], first_hash.as_str());
        assert!(changes[0]["summary"]["newly_revealed"].as_u64().unwrap() > 0);
        assert!(changes[0].get("diff").is_none());
        assert_eq!(
            changes[0]["summary"]["reports"],
            serde_json::json!([{
                "report": "engagement",
                "change": "changed",
                "widens": false,
                "aspects": ["runners"]
            }])
        );
        assert!(changes[1]["summary"].get("reports").is_none());
        assert_eq!(changes[1]["trigger"], "start-up");

        let one = format!("/v1/policy/changes/{}", entry.seq);
        let (s, _, change) = read(&app, &compliance(), &one, None, &[]).await;
        assert_eq!(s, 200, "{change}");
        let groups = change["diff"]["groups"].as_array().unwrap();
        let police: &Value = groups
            .iter()
            .find(|g| g["recipient"] == "metro-pd" && g["kind"] == "safety-plan")
            .unwrap();
        assert!(
            police["changes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["field"] == "diagnoses" && c["change"] == "newly_revealed"),
            "{police}"
        );
        // The same diff as computed again from the stored sets.
        let again = app
            .services()
            .recompute_policy_diff(entry.seq)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            change["diff"]["summary"],
            serde_json::to_value(again.summary).unwrap()
        );

        let (s, _, b) = read(&app, &officer(), &one, None, &[]).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (403, Some("compliance_role_required"))
        );
        let (s, _, b) = read(&app, &compliance(), "/v1/policy/changes/999999", None, &[]).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (404, Some("policy_change_not_found"))
        );
        let (s, _, b) = read(&app, &compliance(), "/v1/policy/changes/x", None, &[]).await;
        assert_eq!((s, b["code"].as_str()), (400, Some("invalid_path")));
        let (s, _, b) = read(&app, &compliance(), "/v1/policy/changes?limit=0", None, &[]).await;
        assert_eq!((s, b["code"].as_str()), (400, Some("invalid_parameter")));

        // A diff edited in the database no longer matches its hash-chained entry: refused.
        exec(
            app.store(),
            "UPDATE policy_changes SET diff = replace(diff, 'diagnoses', 'diagnosez')",
        )
        .await;
        let (s, _, _) = read(&app, &compliance(), &one, None, &[]).await;
        assert_eq!(s, 500);

        // The widened flow is in force.
        app.assert_log_verifies().await;
        app.stop().await;
    }
}

#[tokio::test]
async fn a_restart_on_an_edited_set_is_compared_with_the_set_the_database_ran() {
    for db in BOTH {
        let dir = policies_copy();
        let path = dir.path().to_owned();
        let app = spawn_with(db, |s| s.policy.dir = path).await;
        let before = app.services().policy.load().hash.clone();
        // The same set again (a replica, or a restart): recorded as unchanged.
        let mut settings = app.state.settings.clone();
        settings.server.listen = "127.0.0.1:0".parse().unwrap();
        let same = Application::build(settings.clone()).await.unwrap();
        let detail = reloads(&app).await[0].data.detail.clone().unwrap();
        assert!(detail.contains("the same policy set as before"), "{detail}");
        drop(same);

        // Edited while stopped: the next start compares it with the recorded set.
        widen(dir.path());
        let edited = Application::build(settings).await.unwrap();
        let detail = reloads(&app).await[0].data.detail.clone().unwrap();
        assert!(
            detail.starts_with(&format!("start-up: policy set {before} -> ")),
            "{detail}"
        );
        assert!(!detail.contains(" 0 newly revealed"), "{detail}");
        drop(edited);
        app.stop().await;
    }
}

#[tokio::test]
async fn healthz_warns_before_an_mou_expires_and_after() {
    for db in BOTH {
        // The hospital agreement ends on 2027-12-31, the co-response MOU on 2028-12-31.
        let clock = ManualClock::new("2027-12-20T12:00:00Z".parse().unwrap());
        let app = spawn_with_clock(db, &clock, |s| s.policy.expiry_warning_days = 30).await;
        let me = who_at(
            "metro-pd",
            "officer-17",
            &["officer"],
            "2027-12-20T12:00:00Z".parse().unwrap(),
        );
        let health = |app: &TestApp| {
            let id = me.0.clone();
            let url = app.url("/healthz");
            async move {
                let res = support::client(Some(&id)).get(url).send().await.unwrap();
                assert_eq!(res.status(), 200);
                res.json::<Value>().await.unwrap()
            }
        };
        let h = health(&app).await;
        assert_eq!(h["mou"]["status"], "expiring", "{h}");
        let term = h["mou"]["terms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == "county-metro-general-2026")
            .unwrap()
            .clone();
        assert_eq!(term["days_left"], 11);
        assert_eq!(term["status"], "expiring");
        clock.set("2028-01-02T00:00:00Z".parse().unwrap());
        let h = health(&app).await;
        assert_eq!(h["mou"]["status"], "expired", "{h}");
        // After expiry its rule no longer applies.
        let doc = who_at(
            "metro-general",
            "dr-rivera",
            &["ed-physician"],
            "2028-01-02T00:00:00Z".parse().unwrap(),
        );
        let (s, _, _) = read(
            &app,
            &doc,
            "/v1/records/safety-plan/SP-NONE",
            Some("emergency"),
            &[
                ("Emergency-Basis", "medical-emergency"),
                ("Emergency-Personnel", "Dr. A. Rivera"),
                ("Emergency-Description", "overdose"),
            ],
        )
        .await;
        assert_eq!(s, 403);
        app.stop().await;
    }
}
