//! Master-key rotation across gateway replicas on one database, each replica with its own copy
//! of the master key file (as on separate machines).
//!
//! The documented order (README, "Rotating the master key"): add the new version to every
//! replica's key file and restart each, then `keys rewrap`, then `keys retire`. A replica whose
//! key file lacks a version that data keys are wrapped under never opens that data: its reads
//! fail closed with 503 `key_unavailable` (never a 500, never a value), its `/healthz` answers
//! 503 `key_version_missing` so a load balancer stops sending it requests, and it refuses to
//! start on that database.

use std::path::PathBuf;

use coresponse_gateway::config::Settings;
use coresponse_gateway::crypto::MasterVersion;
use coresponse_gateway::service::keys;
use coresponse_gateway::startup::Application;
use serde_json::Value;

use crate::records_api::{Who, clinician, incident_body, put, read};
use crate::support::replicas::{PLAN_SUBJECT, grant_plan_consent};
use crate::support::{self, Db, TestApp, pki};

const BOTH: [Db; 2] = [Db::Sqlite, Db::Postgres];

/// One database (and its directory, which outlives every replica) and a key file per replica.
struct Site {
    dir: tempfile::TempDir,
    base: Settings,
}

impl Site {
    async fn new(db: Db) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base = support::settings(db, dir.path()).await;
        let site = Self { dir, base };
        // Both replicas start from the agency's one key file.
        for name in ["a", "b"] {
            std::fs::copy(&site.base.crypto.master_key_file, site.key_file(name)).unwrap();
        }
        site
    }

    fn key_file(&self, replica: &str) -> PathBuf {
        self.dir.path().join(format!("master-{replica}.key"))
    }

    fn settings(&self, replica: &str) -> Settings {
        let mut s = self.base.clone();
        s.crypto.master_key_file = self.key_file(replica);
        s.metrics.enabled = true;
        s.metrics.listen = "127.0.0.1:0".parse().unwrap();
        s
    }

    /// Starts (or restarts) replica `name` with its key file as it now is.
    async fn start(&self, name: &str) -> TestApp {
        start(self.settings(name)).await
    }

    /// Installs replica `from`'s key file on replica `to` (what the operator copies).
    fn copy_key_file(&self, from: &str, to: &str) {
        std::fs::copy(self.key_file(from), self.key_file(to)).unwrap();
    }
}

async fn start(settings: Settings) -> TestApp {
    let app = Application::build(settings).await.expect("build replica");
    let addr = app.addr();
    let state = app.state();
    let handle = app.handle();
    let metrics_addr = app.metrics_addr();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        addr,
        state,
        handle,
        metrics_addr,
        workdir: tempfile::tempdir().unwrap(),
    }
}

fn officer() -> Who {
    crate::records_api::officer()
}

async fn write_incident(app: &TestApp, id: &str) {
    let (s, body) = put(
        app,
        &officer(),
        &format!("/v1/records/crisis-incident/{id}"),
        &incident_body("P-2231"),
    )
    .await;
    assert_eq!(s, 201, "{body}");
}

/// A clinician's read of incident `id`: status and body.
async fn clinician_reads(app: &TestApp, id: &str) -> (u16, Value) {
    let (s, _, body) = read(
        app,
        &clinician(),
        &format!("/v1/records/crisis-incident/{id}"),
        Some("treatment"),
        &[],
    )
    .await;
    (s, body)
}

/// A read that must fail closed: 503 `key_unavailable`, and nothing of the record.
async fn assert_fails_closed(app: &TestApp, id: &str) {
    let (s, body) = clinician_reads(app, id).await;
    assert_eq!(s, 503, "{body}");
    assert_eq!(body["code"], "key_unavailable", "{body}");
    let text = body.to_string();
    assert!(
        !text.contains("NARRATIVE-MARKER") && !text.contains("master-"),
        "a refused read names no value and no file: {text}"
    );
}

async fn healthz(app: &TestApp) -> (u16, Value) {
    let res = app
        .get(Some(&pki().partner_cert("oversight")), "/healthz", None)
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

/// Waits (bounded) until `/healthz` answers 503 `key_version_missing`; returns the body.
async fn wait_unready_for_keys(app: &TestApp) -> Value {
    for _ in 0..200 {
        let (s, body) = healthz(app).await;
        if s == 503 {
            assert_eq!(body["code"], "key_version_missing", "{body}");
            return body;
        }
        assert_eq!(s, 200, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("/healthz never reported the missing master key version");
}

/// What `keys rotate` does on the machine where it runs: a new version in that key file, made
/// current, its check value recorded when the file is next opened.
async fn rotate(site: &Site, replica: &str, app: &TestApp) -> MasterVersion {
    let v = keys::rotate(&site.key_file(replica), app.store())
        .await
        .unwrap();
    keys::open(&site.key_file(replica), app.store())
        .await
        .unwrap();
    v
}

#[tokio::test]
async fn a_key_rotation_rolls_out_across_replicas_in_the_documented_order() {
    for db in BOTH {
        let site = Site::new(db).await;
        let a = site.start("a").await;
        let b = site.start("b").await;
        write_incident(&a, "INC-OLD").await;
        assert_eq!(clinician_reads(&b, "INC-OLD").await.0, 200);

        // 1. The new version goes into A's key file; A restarts with it and writes under it.
        let v2 = rotate(&site, "a", &a).await;
        assert_eq!(v2.to_db(), 2);
        a.stop().await;
        let a = site.start("a").await;
        write_incident(&a, "INC-NEW").await;
        assert_eq!(clinician_reads(&a, "INC-NEW").await.0, 200);

        // B has not been restarted yet: it cannot open the new record and says so, without a
        // 500 and without a value; then it takes itself out of service. Old records still open.
        assert_fails_closed(&b, "INC-NEW").await;
        let body = wait_unready_for_keys(&b).await;
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("version(s) 2"), "{message}");
        assert!(
            !message.contains("master-b.key"),
            "no file names: {message}"
        );
        assert_eq!(clinician_reads(&b, "INC-OLD").await.0, 200);
        assert_eq!(healthz(&a).await.0, 200, "A holds every version");
        // The metric says what /healthz says: B is out of service, A is not.
        assert_eq!(
            crate::metrics::ready(&b).await,
            0.0,
            "B's key file lacks a version"
        );
        assert_eq!(crate::metrics::ready(&a).await, 1.0);

        // 2. B gets the new key file and restarts: ready, and it opens both records.
        site.copy_key_file("a", "b");
        b.stop().await;
        let b = site.start("b").await;
        assert_eq!(healthz(&b).await.0, 200);
        assert_eq!(crate::metrics::ready(&b).await, 1.0);
        assert_eq!(clinician_reads(&b, "INC-NEW").await.0, 200);
        assert_eq!(clinician_reads(&b, "INC-OLD").await.0, 200);

        // 3. Rewrap once every replica holds the new version: both keep answering.
        let report = keys::rewrap(&a.services().keyring, a.store())
            .await
            .unwrap();
        assert_eq!(report.current, v2);
        assert!(report.rewrapped >= 1, "{report:?}");
        for app in [&a, &b] {
            for id in ["INC-OLD", "INC-NEW"] {
                assert_eq!(clinician_reads(app, id).await.0, 200, "{id}");
            }
        }

        // 4. Retire version 1, install the file everywhere; a restarted replica needs only v2.
        keys::retire(
            &a.services().keyring,
            a.store(),
            MasterVersion::new(1).unwrap(),
        )
        .await
        .unwrap();
        site.copy_key_file("a", "b");
        b.stop().await;
        let b = site.start("b").await;
        for app in [&a, &b] {
            assert_eq!(healthz(app).await.0, 200);
            for id in ["INC-OLD", "INC-NEW"] {
                assert_eq!(clinician_reads(app, id).await.0, 200, "{id}");
            }
        }
        a.stop().await;
        b.stop().await;
    }
}

#[tokio::test]
async fn a_replica_left_behind_while_another_rotates_and_rewraps_fails_closed() {
    for db in BOTH {
        let site = Site::new(db).await;
        let a = site.start("a").await;
        let b = site.start("b").await;
        write_incident(&a, "INC-1").await;
        let consent = grant_plan_consent(&a, PLAN_SUBJECT).await;
        let consent_path = format!("/v1/consents/{}", consent["id"].as_str().unwrap());
        // B has the record's data key in its cache.
        assert_eq!(clinician_reads(&b, "INC-1").await.0, 200);
        assert_eq!(get_status(&b, &consent_path).await.0, 200);

        // The operator skips the restart: rotate and rewrap at once (`keys rotate --rewrap`)
        // while B still runs with version 1 only.
        rotate(&site, "a", &a).await;
        let keyring = keys::open(&site.key_file("a"), a.store()).await.unwrap();
        keys::rewrap(&keyring, a.store()).await.unwrap();

        // B's next reads fail closed (its cached key is dropped when the key epoch moves), for
        // records and consents alike; its /healthz takes it out of service.
        assert_fails_closed(&b, "INC-1").await;
        let (s, body) = get_status(&b, &consent_path).await;
        assert_eq!(
            (s, body["code"].as_str()),
            (503, Some("key_unavailable")),
            "{body}"
        );
        wait_unready_for_keys(&b).await;

        // A replica started with B's key file refuses to join the database.
        let err = Application::build(site.settings("b"))
            .await
            .err()
            .expect("a replica without version 2 must not start");
        let err = format!("{err:#}");
        assert!(err.contains("master key version(s) 2"), "{err}");

        // A's process, too, still holds version 1 only: it fails closed like B until it is
        // restarted; restarted with the new file, it serves everything.
        assert_fails_closed(&a, "INC-1").await;
        a.stop().await;
        let a = site.start("a").await;
        assert_eq!(clinician_reads(&a, "INC-1").await.0, 200);
        assert_eq!(get_status(&a, &consent_path).await.0, 200);
        a.stop().await;
        b.stop().await;
    }
}

async fn get_status(app: &TestApp, path: &str) -> (u16, Value) {
    let who = clinician();
    let res = support::client(Some(&who.0))
        .get(app.url(path))
        .bearer_auth(&who.1)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}
