//! The disclosure log's head lock on PostgreSQL (`cargo bench --bench head_lock`): how many
//! durable appends per second one database takes when N gateway replicas append at once.
//!
//! Every append locks the `audit_head` row inside the transaction that inserts the entries and
//! holds it until the commit is durable, so appends from all replicas are serialized by the
//! database: this rate, not the number of replicas, bounds the disclosures per second of a
//! scaled-out deployment. Each replica's log writer batches the entries waiting for it into
//! one commit (group commit), so the rate depends on how many appenders wait at once.
//!
//! The benchmark starts its own PostgreSQL cluster (fsync on, `synchronous_commit = on`, the
//! server's defaults otherwise), then for 1, 2, 4 and 8 writers (each a `DisclosureLog` with
//! its own connection, as each replica has) runs two loads for `HEAD_BENCH_SECS` (default 10)
//! on a fresh database:
//!
//! - one appender per writer: every commit holds one entry, so commits per second is the head
//!   lock's serialization rate;
//! - `HEAD_BENCH_APPENDERS` (default 64) appenders per writer: the group commit at work.
//!
//! `HEAD_BENCH_WRITERS=1,2,4,8` picks the writer counts; `PG_BIN` the PostgreSQL binaries.

// Benchmark code may unwrap, expect, panic and index: a failure here is a failed run, not an
// outage (library code denies all four, see Cargo.toml).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coresponse_gateway::audit::{CheckpointSigner, DisclosureLog, LogTextKey, SubjectKey};
use coresponse_gateway::config::{AuditSettings, StorageSettings};
use coresponse_gateway::store::Store;

#[path = "support/mod.rs"]
mod support;
use support::{entry, env};
#[path = "support/pg.rs"]
mod pg;
use pg::Cluster;

struct Run {
    appends: u64,
    commits: u64,
    secs: f64,
}

/// `writers` logs on one database, `per_writer` appenders each, for `secs`.
async fn run(url: &str, writers: u64, per_writer: u64, secs: u64) -> Run {
    let key = SubjectKey::derive(&[7; 32]);
    let mut logs = Vec::new();
    for _ in 0..writers {
        let store = Store::open(&StorageSettings {
            max_connections: 2,
            ..StorageSettings::new(url)
        })
        .await
        .expect("store");
        // As every replica: the one log's text key and checkpoint key.
        logs.push(DisclosureLog::start(
            store,
            key.clone(),
            LogTextKey::new(&[8; 32]),
            Some(CheckpointSigner::from_seed(&[9; 32])),
            AuditSettings::default(),
        ));
    }
    // Warm up every writer (connections, prepared statements).
    for log in &logs {
        for i in 0..50 {
            log.append(entry(&key, i)).await.expect("append");
        }
    }
    let before: u64 = logs.iter().map(|l| l.stats().commits).sum();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (w, log) in logs.iter().enumerate() {
        for a in 0..per_writer {
            let (log, key, stop, done) = (log.clone(), key.clone(), stop.clone(), done.clone());
            let base = ((w as u64) << 40) | (a << 20);
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    log.append(entry(&key, base + i)).await.expect("append");
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            }));
        }
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let appends_at_stop = done.load(Ordering::Relaxed);
    let commits_at_stop: u64 = logs.iter().map(|l| l.stats().commits).sum();
    let elapsed = started.elapsed().as_secs_f64();
    for t in tasks {
        t.await.expect("task");
    }
    Run {
        appends: appends_at_stop,
        commits: commits_at_stop - before,
        secs: elapsed,
    }
}

fn main() {
    let secs = env("HEAD_BENCH_SECS", 10);
    let appenders = env("HEAD_BENCH_APPENDERS", 64);
    let writers: Vec<u64> = std::env::var("HEAD_BENCH_WRITERS")
        .unwrap_or_else(|_| "1,2,4,8".into())
        .split(',')
        .filter_map(|w| w.trim().parse().ok())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cluster = Cluster::start();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "head lock on PostgreSQL (fsync on, synchronous_commit on), {secs} s per run, \
         {} cores, load average {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!();
    println!("| writers | appenders per writer | appends/s | commits/s | entries per commit |");
    println!("|---:|---:|---:|---:|---:|");
    let mut n = 0;
    for &w in &writers {
        for per in [1, appenders] {
            n += 1;
            let r = rt.block_on(async {
                let url = cluster.fresh_database(&format!("headlock_{n}")).await;
                run(&url, w, per, secs).await
            });
            println!(
                "| {w} | {per} | {:.0} | {:.0} | {:.1} |",
                r.appends as f64 / r.secs,
                r.commits as f64 / r.secs,
                r.appends as f64 / r.commits.max(1) as f64
            );
        }
    }
    drop(cluster);
}
