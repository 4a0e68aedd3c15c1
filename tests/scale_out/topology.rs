//! Three gateway replicas (the real binary, one configuration) on one PostgreSQL cluster with
//! fsync on, behind HAProxy in `mode tcp`:
//!
//! 1. concurrent record writes and disclosure reads through HAProxy, one replica killed with
//!    SIGKILL in the middle: HAProxy's health checks take it out, clients see at most the
//!    requests in flight on it fail, every acknowledged answer is in the log, no sequence
//!    number repeats, `audit verify` passes;
//! 2. the killed replica restarts and HAProxy takes it back;
//! 3. a consent revoked through replica A governs the very next read through replica B;
//! 4. after a policy change and SIGHUP to every replica, they agree on the policy-set hash,
//!    in `/healthz` and in their log entries.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::{
    self, Dev, Gateway, HaProxy, Outcome, PgCluster, Timed, Who, base, count, serial,
};

/// How long the load runs, and when in it a replica is killed.
const LOAD: Duration = Duration::from_secs(10);
const KILL_AFTER: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_behind_haproxy_survive_a_kill_and_stay_coherent() {
    let _serial = serial().await;
    let test_started = Instant::now();
    support::haproxy_bin(); // fail loudly before starting anything
    let pg = PgCluster::start(&["max_connections=100"]);
    let url = pg.create_db("gateway");
    let dev = Dev::new();
    let officer = dev.who("metro-pd", "officer-17", &["officer"]);
    let clinician = dev.who("county-mh", "clin-7", &["clinician"]);
    let prober = dev.who("oversight", "aud-1", &["compliance"]);

    // Three replicas on one configuration and one database. The first migrates it; the
    // others start once it is ready.
    let env = [("GATEWAY__AUDIT__CHECKPOINT_EVERY_ENTRIES", "100")];
    let mut replicas = vec![Gateway::spawn(&dev, "r1", &url, &env)];
    replicas[0].wait_ready(&prober).await;
    for name in ["r2", "r3"] {
        replicas.push(Gateway::spawn(&dev, name, &url, &env));
    }
    for r in &mut replicas {
        r.wait_ready(&prober).await;
    }
    let lb = HaProxy::start(
        &dev,
        &[
            ("r1", replicas[0].port),
            ("r2", replicas[1].port),
            ("r3", replicas[2].port),
        ],
    );
    for name in ["r1", "r2", "r3"] {
        lb.wait_status(name, "UP", Duration::from_secs(20)).await;
    }
    let front = base(lb.port);

    // Records to read, written through the load balancer.
    let mut seeded = Vec::new();
    for i in 0..6 {
        let id = format!("INC-S{i}");
        let a = officer
            .put(
                &format!("{front}/v1/records/crisis-incident/{id}"),
                &support::incident(&format!("P-S{i}"), "NARRATIVE-MARKER"),
            )
            .await
            .unwrap();
        assert_eq!(a.status, 201, "{:?}", a.body);
        seeded.push(id);
    }

    // 1. Load through HAProxy; r2 is killed in the middle of it.
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(support::run_load(
        front.clone(),
        officer.clone(),
        clinician.clone(),
        seeded.clone(),
        3,
        5,
        stop.clone(),
    ));
    tokio::time::sleep(KILL_AFTER).await;
    // The kernel goes on completing TCP handshakes on r2's listening socket until the dying
    // process's descriptors are closed; HAProxy forwards to such a connection and it is reset.
    // So r2 is dead when it has been reaped, not when the signal is sent.
    let killed_at = Instant::now();
    replicas[1].kill();
    let dead_at = Instant::now();
    let down = lb.wait_status("r2", "DOWN", Duration::from_secs(10)).await;
    let down_after = down.before - killed_at;
    tokio::time::sleep(LOAD.saturating_sub(KILL_AFTER)).await;
    stop.store(true, Ordering::Relaxed);
    let outcomes = load.await.unwrap();

    let refused: Vec<&Timed> = outcomes
        .iter()
        .filter(|t| matches!(t.outcome, Outcome::Refused { .. }))
        .collect();
    assert!(refused.is_empty(), "answers other than 2xx: {refused:#?}");
    let failed: Vec<&Timed> = outcomes
        .iter()
        .filter(|t| matches!(t.outcome, Outcome::Failed { .. }))
        .collect();
    // Only requests in flight on r2 may fail, which is two kinds (README, "Running in
    // production"): those that started before it was reaped (the dying process's port still
    // completed handshakes), and those on their way to it when HAProxy marked it down
    // (`on-marked-down shutdown-sessions` cuts the sessions assigned to it, even one that has
    // not connected yet). Any other request that met the dead port was retried on another
    // replica, and every request has its own connection.
    for f in &failed {
        let on_the_dying_process = f.started < dead_at;
        let cut_at_mark_down = f.started <= down.before && f.ended >= down.after;
        assert!(
            on_the_dying_process || cut_at_mark_down,
            "a request started {:?} after r2 was reaped ({:?} after the signal), at {} UTC, \
             failed, and it was not in flight when HAProxy marked r2 down (between {} and {} \
             UTC): {f:?}\nr2 was killed at {} UTC. HAProxy's log but for connections that \
             ended normally on the first attempt:\n{}",
            f.started - dead_at,
            dead_at - killed_at,
            support::wall(f.started),
            support::wall(down.after),
            support::wall(down.before),
            support::wall(killed_at),
            lb.unusual_log()
        );
    }
    // Each of the 8 client tasks has one request in flight at a time: at most one of its
    // requests meets the dying process, and at most one is cut at the mark-down.
    let on_the_dying_process = failed.iter().filter(|f| f.started < dead_at).count();
    assert!(
        on_the_dying_process <= 8 && failed.len() - on_the_dying_process <= 8,
        "more failures than requests in flight: {failed:#?}"
    );
    let after_kill = outcomes
        .iter()
        .filter(|t| t.started > dead_at && !matches!(t.outcome, Outcome::Failed { .. }))
        .count();
    assert!(after_kill > 0, "no request was served after the kill");
    let reads = count(&outcomes, |o| matches!(o, Outcome::Read { .. }));
    let writes = count(&outcomes, |o| matches!(o, Outcome::Write { .. }));
    assert!(reads > 0 && writes > 0, "reads {reads}, writes {writes}");
    eprintln!(
        "load: {reads} reads and {writes} writes acknowledged, {} failed in flight ({} of them \
         started after r2 was reaped); r2 reaped {:?} and marked down {down_after:?} after the \
         kill",
        failed.len(),
        failed.iter().filter(|f| f.started >= dead_at).count(),
        dead_at - killed_at
    );

    // Nothing acknowledged is lost; one chain, no repeated sequence number; it verifies.
    let checked = support::assert_acknowledged_in_log(&url, &outcomes).await;
    assert_eq!(checked, reads + writes);
    for (record, version) in support::acknowledged_versions(&outcomes) {
        let a = clinician
            .get(
                &format!("{front}/v1/records/crisis-incident/{record}"),
                Some("treatment"),
            )
            .await
            .unwrap();
        assert_eq!(a.status, 200, "{record}: {:?}", a.body);
        assert!(
            a.body["version"].as_u64().unwrap() >= version,
            "{record}: acknowledged version {version} lost: {:?}",
            a.body
        );
    }
    let (code, out, err) = support::audit_verify(&dev, &url, None);
    assert_eq!(code, 0, "audit verify failed: {out}{err}");
    assert!(out.starts_with("ok: "), "{out}");
    assert!(
        out.contains("\nok: Merkle tree of "),
        "the three replicas built one tree, rebuilt and checked: {out}"
    );

    // 2. r2 comes back on its port; HAProxy takes it back into service.
    let port = replicas[1].port;
    replicas[1] = Gateway::spawn_on(&dev, "r2", port, &url, &env);
    replicas[1].wait_ready(&prober).await;
    lb.wait_status("r2", "UP", Duration::from_secs(20)).await;

    // 3. Consents: granted and revoked through r1 (A), read through r3 (B) at once.
    consent_coherence(&replicas[0], &replicas[2], &dev).await;

    // 4. A policy change, SIGHUP to every replica: they agree on the new policy-set hash.
    policy_reload(&replicas, &dev, &url, &clinician, &prober).await;

    let (code, out, err) = support::audit_verify(&dev, &url, None);
    assert_eq!(code, 0, "audit verify failed at the end: {out}{err}");
    assert!(out.contains("\nok: Merkle tree of "), "{out}");
    eprintln!("topology test took {:?}", test_started.elapsed());
}

async fn consent_coherence(a: &Gateway, b: &Gateway, dev: &Dev) {
    let officer = dev.who("metro-pd", "officer-17", &["officer"]);
    let clinician = dev.who("county-mh", "clin-7", &["clinician"]);
    for i in 0..3 {
        let plan = format!("SP-C{i}");
        let mrn = format!("MRN-C{i}");
        let a_plan = a.url(&format!("/v1/records/safety-plan/{plan}"));
        let b_plan = b.url(&format!("/v1/records/safety-plan/{plan}"));
        let put = clinician
            .put(&a_plan, &support::safety_plan(&format!("P-C{i}"), &mrn))
            .await
            .unwrap();
        assert_eq!(put.status, 201, "{:?}", put.body);
        let officer_reads = || async {
            officer
                .get(&b_plan, Some("crisis-response"))
                .await
                .unwrap()
                .status
        };
        assert_eq!(officer_reads().await, 403, "no consent yet");
        let granted = clinician
            .post(&a.url("/v1/consents"), &support::consent(&mrn))
            .await
            .unwrap();
        assert_eq!(granted.status, 201, "{:?}", granted.body);
        assert_eq!(
            officer_reads().await,
            200,
            "B decides on the grant made through A"
        );
        let id = granted.body["id"].as_str().unwrap();
        let revoked = clinician
            .post(
                &a.url(&format!("/v1/consents/{id}/revoke")),
                &serde_json::json!({
                    "received_at": chrono::Utc::now().to_rfc3339(),
                    "received_how": "written"
                }),
            )
            .await
            .unwrap();
        assert_eq!(revoked.status, 200, "{:?}", revoked.body);
        assert_eq!(
            officer_reads().await,
            403,
            "B's very next read is decided on the revocation made through A"
        );
    }
}

async fn policy_reload(replicas: &[Gateway], dev: &Dev, url: &str, clinician: &Who, prober: &Who) {
    let hash_of = |r: &Gateway| {
        let prober = prober.clone();
        let u = r.url("/healthz");
        async move {
            let a = prober.get(&u, None).await.unwrap();
            assert_eq!(a.status, 200, "{:?}", a.body);
            a.body["policy_set"].as_str().unwrap().to_owned()
        }
    };
    let before = hash_of(&replicas[0]).await;
    for r in replicas {
        assert_eq!(hash_of(r).await, before, "{} runs another set", r.name);
    }

    // A reviewed amendment of the MOU (a comment changes the files, and so the hash).
    let mou = dev.policies.join("mous/metro-county-coresponse.toml");
    let mut text = std::fs::read_to_string(&mou).unwrap();
    text.push_str("\n# Amendment 1 reviewed by both parties.\n");
    std::fs::write(&mou, text).unwrap();
    for r in replicas {
        r.signal("HUP");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut after = Vec::new();
    for r in replicas {
        loop {
            let h = hash_of(r).await;
            if h != before {
                after.push(h);
                break;
            }
            assert!(Instant::now() < deadline, "{} did not reload", r.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let new = after[0].clone();
    assert!(
        after.iter().all(|h| *h == new),
        "replicas disagree: {after:?}"
    );

    // Every replica's decisions now carry the new hash in the log.
    let mut db = support::connect(url).await;
    for r in replicas {
        let a = clinician
            .get(
                &r.url("/v1/records/crisis-incident/INC-S0"),
                Some("treatment"),
            )
            .await
            .unwrap();
        assert_eq!(a.status, 200, "{}: {:?}", r.name, a.body);
        let seq = a.disclosure_id.unwrap();
        let (_, _, _, hash) = support::entry(&mut db, seq).await.unwrap();
        assert_eq!(
            hash.as_deref(),
            Some(new.as_str()),
            "{} logged another hash",
            r.name
        );
    }
    // And each replica logged its reload of that set.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Each reload is recorded as a `policy_reloaded` entry naming the set it put in force.
        let hashes: Vec<(Option<String>,)> = sqlx::query_as(
            "SELECT policy_hash FROM audit_log WHERE kind = 'policy_reloaded' ORDER BY seq",
        )
        .fetch_all(&mut db)
        .await
        .unwrap();
        let with_new = hashes
            .iter()
            .filter(|(h,)| h.as_deref() == Some(new.as_str()))
            .count();
        if with_new == replicas.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expected {} policy_reloaded entries naming {new}: {hashes:?}",
            replicas.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
