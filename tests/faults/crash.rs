//! The crash test (DESIGN guarantee 6: a crash at any instant loses no entry of an answer that
//! was sent). The real gateway binary serves concurrent disclosures, denials and record writes
//! and is killed with SIGKILL at a random instant, then restarted on the same database, again
//! and again (`CRASH_KILLS`, default 10 per backend; `CRASH_SEED` repeats a run). After every
//! kill `audit verify` (read-only) must pass on what is left; at the end, every answer the
//! clients received in full (a 200 disclosure, a 403 denial, a 201 write) must have its entry
//! in the log, with the answer's request id, at the sequence number the answer named.
//!
//! On SQLite (WAL, `synchronous = FULL`) and on PostgreSQL with `fsync = on`. On PostgreSQL
//! every third cycle also crashes the database server under load (`pg_ctl stop -m immediate`)
//! before the gateway is killed, so the server recovers from its WAL before the next start.
//! `fsync` only matters when the machine itself loses power, which a test cannot do; the
//! cluster runs with it on so that the settings are those of production.

use std::time::Duration;

use rand::{Rng as _, SeedableRng as _};

use crate::cluster::Cluster;
use crate::gateway::{Dev, assert_verified};
use crate::load::{self, Load, Op};

fn kills() -> usize {
    std::env::var("CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

fn seed() -> u64 {
    std::env::var("CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random)
}

/// Runs the kill cycles; `crash_db` (PostgreSQL) crashes the database server on some cycles.
async fn kill_cycles(dev: &mut Dev, db: Option<&Cluster>, label: &str) {
    let seed = seed();
    let kills = kills();
    eprintln!("{label}: {kills} kills, CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut samples = Vec::new();
    for cycle in 0..kills {
        let g = dev.start();
        let clinician = dev.user("county-mh", "clin-7", "clinician");
        let officer = dev.user("metro-pd", "officer-17", "officer");
        if cycle == 0 {
            load::seed(&g, &officer).await;
        }
        let load = Load::start(&g, &clinician, &officer, (6, 2, 2));
        // Load is flowing (bounded wait), then the kill comes at a random instant.
        let flowing = load.wait_for_acks(20, Duration::from_secs(30)).await;
        let crash_db = db.filter(|_| cycle % 3 == 2);
        let delay = Duration::from_millis(rng.random_range(0..700));
        tokio::time::sleep(delay).await;
        if let Some(c) = crash_db {
            c.crash();
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..200))).await;
        }
        let errors = g.errors();
        g.kill();
        let cycle_samples = load.finish().await;
        assert!(
            flowing,
            "{label} cycle {cycle}: no load got through before the kill; gateway errors: \
             {errors:#?}"
        );
        let acked = load::acknowledged(&cycle_samples).count();
        if let Some(c) = crash_db {
            c.pg_start();
        }
        // Nothing the clients saw was a server error other than the database being gone.
        for s in &cycle_samples {
            if let Some(status) = s.status {
                let allowed =
                    matches!(status, 200 | 201 | 403) || (crash_db.is_some() && status == 503);
                assert!(
                    allowed,
                    "{label} cycle {cycle}: unexpected {status} for {:?}: {}",
                    s.op, s.body
                );
            }
        }
        let verify = dev.audit_verify();
        assert_verified(&verify, &format!("after kill {} ({label})", cycle + 1));
        eprintln!(
            "{label} cycle {cycle}: killed after {} ms{}, {acked} answers acknowledged",
            delay.as_millis(),
            if crash_db.is_some() {
                " (database crashed first)"
            } else {
                ""
            }
        );
        samples.extend(cycle_samples);
    }
    let checked = load::assert_all_in_log(dev, &samples).await;
    let reads = load::acknowledged(&samples)
        .filter(|s| s.op == Op::Read)
        .count();
    eprintln!("{label}: {checked} acknowledged answers ({reads} disclosures), all in the log");
    assert!(
        reads > 0 && checked > kills * 20,
        "too little load got through"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_entry_on_sqlite() {
    let _one = crate::exclusive().await;
    let mut dev = Dev::init(None);
    kill_cycles(&mut dev, None, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_entry_on_postgres_with_fsync() {
    let _one = crate::exclusive().await;
    let cluster = Cluster::start(true);
    assert_eq!(cluster.show("fsync").await, "on");
    assert_eq!(cluster.show("synchronous_commit").await, "on");
    let url = cluster.create_database("gateway").await;
    let mut dev = Dev::init(Some(url));
    kill_cycles(&mut dev, Some(&cluster), "postgres").await;
}
