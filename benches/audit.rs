//! Disclosure-log benchmarks (`cargo bench --bench audit`):
//!
//! 1. durable append throughput through the group-commit path, on a SQLite file (WAL,
//!    `synchronous = FULL`) with many concurrent appenders;
//! 2. verification of that stored log (streamed from the database), once the WAL the burst
//!    left is folded back into the database file;
//! 3. verification speed over a large chain held in memory;
//! 4. serving inclusion and consistency proofs from a stored tree of 1,000,000 leaves
//!    (`AUDIT_BENCH_TREE`), in CPU time per proof.
//!
//! Sizes can be set with `AUDIT_BENCH_APPENDS`, `AUDIT_BENCH_APPENDERS`,
//! `AUDIT_BENCH_MAX_BATCH` (the writer's `max_batch`) and `AUDIT_BENCH_VERIFY`;
//! `AUDIT_BENCH_DROP_INDEXES=1` drops the log's secondary indexes first, or only those named
//! (comma-separated), to measure their cost.
//!
//! To work on verification alone, `AUDIT_BENCH_DB=FILE` keeps the SQLite file: a run that finds
//! it already there skips the appends and verifies the log it holds, and
//! `AUDIT_BENCH_VERIFY_ROUNDS=N` verifies it `N` times (for a profiler).
//!
//! `AUDIT_BENCH_PG=1` runs the first two on a throwaway PostgreSQL cluster instead (fsync on;
//! `PG_BIN` names the server binaries, as for `cargo bench --bench head_lock`). The server runs
//! on the same machine, and its CPU time is not in the figure per entry.

// Test and benchmark code may unwrap, expect, panic and index: a failure here is a failed
// test, not an outage (library code denies all four, see Cargo.toml).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use std::time::Instant;

use sha2::Digest as _;

use coresponse_gateway::audit::{
    self, Anchor, ChainHash, CheckpointSigner, DisclosureLog, Entry, LogTextKey, SubjectKey,
};
use coresponse_gateway::config::{AuditSettings, StorageSettings};
use coresponse_gateway::store::{Store, on_conn};

#[path = "support/mod.rs"]
mod support;
use support::{entry, env};
#[path = "support/pg.rs"]
mod pg;

fn main() {
    let appends = env("AUDIT_BENCH_APPENDS", 100_000);
    let appenders = env("AUDIT_BENCH_APPENDERS", 512);
    let verify_n = env("AUDIT_BENCH_VERIFY", 1_000_000);
    let key = SubjectKey::derive(&[7; 32]);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // `AUDIT_BENCH_PG=1`: the log on a throwaway PostgreSQL cluster instead of a SQLite file.
    let cluster = (env("AUDIT_BENCH_PG", 0) == 1).then(pg::Cluster::start);
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = std::env::var_os("AUDIT_BENCH_DB")
            .map_or_else(|| dir.path().join("bench.db"), std::path::PathBuf::from);
        let (url, reuse, backend) = match &cluster {
            Some(c) => (c.fresh_database("audit_bench").await, false, "PostgreSQL"),
            None => (
                format!("sqlite://{}", file.display()),
                file.exists(),
                "SQLite",
            ),
        };
        let store = Store::open(&StorageSettings {
            max_connections: 4,
            ..StorageSettings::new(url)
        })
        .await
        .expect("store");
        if let Ok(which) = std::env::var("AUDIT_BENCH_DROP_INDEXES")
            && cluster.is_none()
        {
            // Diagnosis only: how much of the append cost is secondary-index maintenance.
            let mut pooled = store.acquire().await.expect("connection");
            let names: Vec<(String,)> = on_conn!(&mut pooled.conn(), |c| {
                sqlx::query_as(
                    "SELECT name FROM sqlite_master WHERE type = 'index' \
                     AND tbl_name = 'audit_log' AND sql IS NOT NULL",
                )
                .fetch_all(c)
                .await
            })
            .expect("indexes");
            let names: Vec<String> = names
                .into_iter()
                .map(|r| r.0)
                .filter(|n| which == "1" || which.split(',').any(|w| w == n))
                .collect();
            for name in names {
                println!("dropping index {name}");
                on_conn!(&mut pooled.conn(), |c| {
                    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP INDEX {name}")))
                        .execute(c)
                        .await
                        .map(|_| ())
                })
                .expect("drop index");
            }
        }
        let log = DisclosureLog::start(
            store.clone(),
            key.clone(),
            LogTextKey::new(&[8; 32]),
            Some(CheckpointSigner::from_seed(&[9; 32])),
            AuditSettings {
                max_batch: env("AUDIT_BENCH_MAX_BATCH", 512) as usize,
                ..AuditSettings::default()
            },
        );
        if reuse {
            println!("verifying the log already in {}", file.display());
        } else {
            append_bench(&log, &key, (appends, appenders), backend).await;
            // The log is verified at rest, as a log of past years is read. On SQLite the
            // background checkpoints cannot catch up under the burst, so most pages are still
            // in the WAL: they are folded back. On PostgreSQL the tables are vacuumed (as
            // autovacuum would), so that the first scan does not set every row's hint bits.
            let started = Instant::now();
            let mut pooled = store.acquire().await.expect("connection");
            let sql = match cluster {
                Some(_) => "VACUUM (ANALYZE) audit_log, audit_tree",
                None => "PRAGMA wal_checkpoint(TRUNCATE)",
            };
            on_conn!(&mut pooled.conn(), |c| {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(c)
                    .await
                    .map(|_| ())
            })
            .expect("at rest");
            println!(
                "`{sql}` after the burst took {:.2} s",
                started.elapsed().as_secs_f64()
            );
        }

        // Let the log's writer settle (its checkpoint timer) so the CPU time is verification's.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        for _ in 0..env("AUDIT_BENCH_VERIFY_ROUNDS", 1) {
            let (started, cpu) = (Instant::now(), cpu_secs());
            let report = audit::verify_store(&store, log.checkpoint_key().as_ref(), None)
                .await
                .expect("verify");
            let (secs, cpu) = (started.elapsed().as_secs_f64(), cpu_secs() - cpu);
            assert!(report.ok(), "{report:?}");
            let n = report.summary.entries_checked as f64;
            println!(
                "verify stored log ({backend}, chain and tree): {} entries in {secs:.2} s = {:.0} \
                 entries/s; {:.2} µs CPU per entry (this process's threads)",
                report.summary.entries_checked,
                n / secs,
                cpu * 1e6 / n
            );
        }
    });
    drop(cluster);
    verify_in_memory(&key, verify_n);
    proofs_bench();
}

/// Durable appends from `appenders` concurrent tasks (after a warm-up of 1,000).
async fn append_bench(
    log: &DisclosureLog,
    key: &SubjectKey,
    (appends, appenders): (u64, u64),
    backend: &str,
) {
    // Warm up (creates pages, prepares statements).
    for i in 0..1000 {
        log.append(entry(key, i)).await.expect("append");
    }
    let per_task = appends / appenders;
    let before = log.stats();
    let started = Instant::now();
    let tasks: Vec<_> = (0..appenders)
        .map(|t| {
            let log = log.clone();
            let key = key.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    log.append(entry(&key, t * per_task + i))
                        .await
                        .expect("append");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let secs = started.elapsed().as_secs_f64();
    let n = per_task * appenders;
    let after = log.stats();
    let commits = after.commits - before.commits;
    println!(
        "durable append ({backend}, group commit, {appenders} concurrent appenders): {n} \
         entries in {secs:.2} s = {:.0} entries/s ({commits} commits, {:.0} entries per commit)",
        n as f64 / secs,
        n as f64 / commits.max(1) as f64
    );
}

/// Verification of an in-memory chain of `verify_n` realistic entries, on one thread and on
/// every core.
fn verify_in_memory(key: &SubjectKey, verify_n: u64) {
    let mut chain: Vec<Entry> = Vec::with_capacity(verify_n as usize);
    let mut prev = ChainHash::GENESIS;
    for seq in 1..=verify_n {
        let data = entry(key, seq);
        let hash = audit::entry_hash(seq, &prev, &data);
        chain.push(Entry {
            seq,
            format: audit::EntryFormat::V1,
            data,
            sealed: None,
            prev_hash: prev,
            hash,
        });
        prev = hash;
    }
    let mut buf = Vec::new();
    let last = chain.last().map(|e| e.seq).unwrap_or(0);
    audit::encode_into(&mut buf, last, &prev, &chain[chain.len() - 1].data);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for t in [1, threads] {
        let started = Instant::now();
        let summary =
            audit::verify_entries_parallel(Anchor::GENESIS, &chain, Some((last, prev)), t);
        let secs = started.elapsed().as_secs_f64();
        assert!(summary.failure.is_none());
        println!(
            "verify in memory ({t} threads): {} entries ({} bytes encoded each) in {secs:.3} s \
             = {:.0} entries/s",
            summary.entries_checked,
            buf.len(),
            summary.entries_checked as f64 / secs
        );
    }
}

/// CPU time of this process so far (user + system), from `/proc/self/stat`.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the line (utime, stime) are the 12th and 13th after the `)`.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Builds the stored tree of `AUDIT_BENCH_TREE` leaves directly (the nodes an append path
/// would have written), then serves inclusion and consistency proofs from it.
fn proofs_bench() {
    use coresponse_gateway::audit::transparency;
    use coresponse_gateway::audit::tree::Frontier;
    let n = env("AUDIT_BENCH_TREE", 1_000_000);
    let proofs = env("AUDIT_BENCH_PROOFS", 2_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&StorageSettings::new(format!(
            "sqlite://{}",
            dir.path().join("tree.db").display()
        )))
        .await
        .expect("store");
        let mut f = Frontier::default();
        let mut nodes: Vec<(u64, [u8; 32])> = Vec::new();
        let started = Instant::now();
        let mut pooled = store.acquire().await.expect("connection");
        on_conn!(&mut pooled.conn(), |c| {
            sqlx::query("BEGIN").execute(&mut *c).await.map(|_| ())
        })
        .expect("begin");
        for i in 0..n {
            let leaf: [u8; 32] = sha2::Sha256::digest(i.to_be_bytes()).into();
            f.push(leaf, |k, h| nodes.push((k, h)));
            if nodes.len() >= 4096 || i + 1 == n {
                for chunk in nodes.chunks(256) {
                    let mut sql = String::from("INSERT INTO audit_tree (idx, hash) VALUES ");
                    sql.push_str(&vec!["(?, ?)"; chunk.len()].join(", "));
                    on_conn!(&mut pooled.conn(), |c| {
                        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
                        for (k, h) in chunk {
                            q = q.bind(*k as i64).bind(h.to_vec());
                        }
                        q.execute(&mut *c).await.map(|_| ())
                    })
                    .expect("insert nodes");
                }
                nodes.clear();
            }
        }
        let peaks = f.to_bytes();
        on_conn!(&mut pooled.conn(), |c| {
            sqlx::query("UPDATE audit_head SET seq = ?, tree_size = ?, tree_peaks = ? WHERE id = 1")
                .bind(n as i64)
                .bind(n as i64)
                .bind(peaks.clone())
                .execute(&mut *c)
                .await
                .map(|_| ())
        })
        .expect("head");
        on_conn!(&mut pooled.conn(), |c| {
            sqlx::query("COMMIT").execute(&mut *c).await.map(|_| ())
        })
        .expect("commit");
        drop(pooled);
        println!(
            "stored tree of {n} leaves built in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let root = transparency::root_at(&store, n).await.expect("root");
        assert_eq!(root, f.root());
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // Warm up (page cache, prepared statements).
        for _ in 0..100 {
            transparency::inclusion_proof(&store, next() % n, n)
                .await
                .expect("proof");
        }
        let (wall, cpu) = (Instant::now(), cpu_secs());
        for _ in 0..proofs {
            let p = transparency::inclusion_proof(&store, next() % n, n)
                .await
                .expect("proof");
            // A path is at most ceil(log2 n) hashes (20 for a million leaves) and shorter for
            // leaves in the tree's smaller right-hand subtrees.
            assert!(
                !p.hashes.is_empty() && p.hashes.len() <= 64 - (n - 1).leading_zeros() as usize
            );
        }
        let (w, c) = (wall.elapsed().as_secs_f64(), cpu_secs() - cpu);
        println!(
            "inclusion proof in a tree of {n} leaves: {:.1} µs wall, {:.1} µs CPU per proof \
             ({proofs} proofs)",
            w * 1e6 / proofs as f64,
            c * 1e6 / proofs as f64
        );
        let (wall, cpu) = (Instant::now(), cpu_secs());
        for _ in 0..proofs {
            let from = 1 + next() % (n - 1);
            transparency::consistency_proof(&store, from, n)
                .await
                .expect("proof");
        }
        let (w, c) = (wall.elapsed().as_secs_f64(), cpu_secs() - cpu);
        println!(
            "consistency proof to a tree of {n} leaves: {:.1} µs wall, {:.1} µs CPU per proof \
             ({proofs} proofs)",
            w * 1e6 / proofs as f64,
            c * 1e6 / proofs as f64
        );
    });
}
