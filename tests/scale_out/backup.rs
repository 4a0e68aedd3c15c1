//! Backups that stay verifiable (README, "Backups"): a `pg_dump` taken while the gateway
//! serves restores into a fresh cluster, verifies against a partner's saved checkpoints and
//! serves again; a restore of an older dump, which lacks the newest entries, is caught as a
//! rollback by the same saved checkpoints (and only by them: on its own it is a consistent,
//! shorter log).
//!
//! A partner keeps two forms of copy, and both are checked: the output of `audit checkpoints`
//! (the JSON of `GET /v1/audit/checkpoints`, the hash chain's checkpoints) and the state file
//! its witness keeps (`audit witness`: the newest C2SP signed tree head it cosigned).
//! `save_checkpoints`, `witness` and `verify_against` are the only places that know them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::{self, Dev, Gateway, Outcome, PgCluster, base, count, serial, text};

/// Checkpoints are signed every this many entries in this test.
const EVERY: u64 = 20;

/// What a partner keeps: the signed checkpoints as the gateway exports them. Returns their
/// sequence numbers.
fn save_checkpoints(dev: &Dev, url: &str, to: &Path) -> Vec<u64> {
    let out = dev.run(&["audit", "checkpoints"], url);
    assert!(
        out.status.success(),
        "audit checkpoints: {}",
        text(&out.stderr)
    );
    std::fs::write(to, &out.stdout).unwrap();
    let export: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    export["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["seq"].as_u64().unwrap())
        .collect()
}

/// A run of `partner`'s witness against the gateway at `base_url` (what its cron job runs): it
/// checks the served checkpoint against its state file and, when consistent, keeps it there
/// (a C2SP signed tree head) and cosigns it. Returns the exit status and the output.
fn witness(dev: &Dev, partner: &str, base_url: &str, state: &Path) -> (i32, String) {
    let out = std::process::Command::new(support::BIN)
        .args(["audit", "witness", "--url", base_url, "--log-key"])
        .arg(dev.file("audit-log.vkey"))
        .arg("--witness-key")
        .arg(dev.file(&format!("{partner}-witness.key")))
        .arg("--state")
        .arg(state)
        .arg("--cert")
        .arg(dev.file(&format!("{partner}.pem")))
        .arg("--key")
        .arg(dev.file(&format!("{partner}-key.pem")))
        .arg("--ca")
        .arg(dev.file("ca.pem"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

/// The tree size a C2SP checkpoint (the witness's state file) names: its second line.
fn tree_size_of(note: &Path) -> u64 {
    let text = std::fs::read_to_string(note).unwrap();
    text.lines().nth(1).unwrap().parse().unwrap()
}

/// `audit verify` of the database at `url` against the partner's saved checkpoints.
fn verify_against(dev: &Dev, url: &str, saved: &Path) -> (i32, String, String) {
    support::audit_verify(dev, url, Some(saved))
}

fn dump(pg: &PgCluster, db: &str, to: &Path) {
    let out = pg.client("pg_dump", &["-Fc", "-d", db, "-f", &to.to_string_lossy()]);
    assert!(out.status.success(), "pg_dump: {}", text(&out.stderr));
}

fn restore(pg: &PgCluster, db: &str, from: &Path) -> String {
    let url = pg.create_db(db);
    let out = pg.client(
        "pg_restore",
        &[
            "--exit-on-error",
            "--single-transaction",
            "--no-owner",
            "-d",
            db,
            &from.to_string_lossy(),
        ],
    );
    assert!(out.status.success(), "pg_restore: {}", text(&out.stderr));
    url
}

async fn traffic(gw: &Gateway, dev: &Dev, n: usize, tag: &str) {
    let officer = dev.who("metro-pd", "officer-17", &["officer"]);
    let clinician = dev.who("county-mh", "clin-7", &["clinician"]);
    for i in 0..n {
        let url = gw.url(&format!("/v1/records/crisis-incident/INC-{tag}-{}", i % 4));
        let a = officer
            .put(
                &url,
                &support::incident(&format!("P-{tag}"), &format!("{tag} {i}")),
            )
            .await
            .unwrap();
        assert!(a.status == 200 || a.status == 201, "{:?}", a.body);
        let a = clinician.get(&url, Some("treatment")).await.unwrap();
        assert_eq!(a.status, 200, "{:?}", a.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_dump_verifies_and_a_rolled_back_restore_is_caught() {
    let _serial = serial().await;
    let pg = PgCluster::start(&[]);
    let url = pg.create_db("gateway");
    let dev = Dev::new();
    let prober = dev.who("oversight", "aud-1", &["compliance"]);
    let every = EVERY.to_string();
    let env = [("GATEWAY__AUDIT__CHECKPOINT_EVERY_ENTRIES", every.as_str())];
    let mut gw = Gateway::spawn(&dev, "gw", &url, &env);
    gw.wait_ready(&prober).await;
    let work = tempfile::tempdir().unwrap();
    let file = |name: &str| -> PathBuf { work.path().join(name) };

    // Last night's backup.
    traffic(&gw, &dev, 15, "A").await;
    dump(&pg, "gateway", &file("older.dump"));

    // The log grows past further checkpoints; a partner saves them, and its witness, run
    // before and after, keeps the newest signed tree head it cosigned.
    let (code, out) = witness(&dev, "metro-pd", &base(gw.port), &file("witness.state"));
    assert_eq!(code, 0, "the witness's first run: {out}");
    traffic(&gw, &dev, 30, "B").await;
    let saved = save_checkpoints(&dev, &url, &file("partner-checkpoints.json"));
    let mut witnessed = tree_size_of(&file("witness.state"));
    for _ in 0..100 {
        let (code, out) = witness(&dev, "metro-pd", &base(gw.port), &file("witness.state"));
        assert_eq!(code, 0, "the witness's run after the traffic: {out}");
        if tree_size_of(&file("witness.state")) > witnessed {
            break;
        }
        // Tree heads are signed every EVERY entries: bounded polling until the next one is.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        tree_size_of(&file("witness.state")) > witnessed,
        "the witness saw the log grow"
    );
    witnessed = tree_size_of(&file("witness.state"));

    // Tonight's backup, taken while the gateway serves (pg_dump reads one snapshot, so the
    // log's entries and its head agree in the dump).
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(support::run_load(
        base(gw.port),
        dev.who("metro-pd", "officer-17", &["officer"]),
        dev.who("county-mh", "clin-7", &["clinician"]),
        vec!["INC-A-0".into(), "INC-B-1".into()],
        1,
        2,
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    dump(&pg, "gateway", &file("tonight.dump"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let outcomes = load.await.unwrap();
    assert_eq!(
        count(&outcomes, |o| matches!(
            o,
            Outcome::Failed { .. } | Outcome::Refused { .. }
        )),
        0
    );

    // A fresh cluster: the restored dump verifies against the partner's checkpoints ...
    let fresh = PgCluster::start(&[]);
    let restored = restore(&fresh, "restored", &file("tonight.dump"));
    let (code, out, err) = verify_against(&dev, &restored, &file("partner-checkpoints.json"));
    assert_eq!(code, 0, "the restored log must verify: {out}{err}");
    assert!(out.starts_with("ok: "), "{out}");
    let (code, out, err) = verify_against(&dev, &restored, &file("witness.state"));
    assert_eq!(
        code, 0,
        "the restored log must verify against the witness's tree head: {out}{err}"
    );
    assert!(out.contains("and 1 saved by a partner"), "{out}");

    // ... and serves: the records open with the agency's master key file.
    gw.kill();
    let mut on_restored = Gateway::spawn(&dev, "restored", &restored, &env);
    on_restored.wait_ready(&prober).await;
    let a = dev
        .who("county-mh", "clin-7", &["clinician"])
        .get(
            &on_restored.url("/v1/records/crisis-incident/INC-B-1"),
            Some("treatment"),
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    on_restored.kill();

    // The older dump holds a consistent, shorter log: it verifies on its own ...
    let rolled_back = restore(&fresh, "rolled_back", &file("older.dump"));
    let (code, out, err) = support::audit_verify(&dev, &rolled_back, None);
    assert_eq!(
        code, 0,
        "on its own the older log is consistent: {out}{err}"
    );
    // ... but the partner's checkpoints name entries it lacks: a rollback.
    let (_, _, _, _, head) = support::log_shape(&mut support::connect(&rolled_back).await).await;
    let head = u64::try_from(head).unwrap();
    let beyond = saved
        .iter()
        .copied()
        .filter(|s| *s > head)
        .min()
        .expect("the partner saved a checkpoint past the older dump");
    let (code, out, err) = verify_against(&dev, &rolled_back, &file("partner-checkpoints.json"));
    assert_eq!(
        code, 2,
        "a rolled-back restore must fail verification: {out}{err}"
    );
    assert!(
        err.contains(&format!("FAILED at entry {}: deleted", head + 1))
            && err.contains(&format!(
                "covers entry {beyond} but the log ends at entry {head}"
            )),
        "the failure names the saved checkpoint the log lacks: {err}"
    );
    // The witness's signed tree head catches it as well: the restored tree is smaller.
    let (code, out, err) = verify_against(&dev, &rolled_back, &file("witness.state"));
    assert_eq!(
        code, 2,
        "a rolled-back restore must fail verification against the witness's tree head: {out}{err}"
    );
    assert!(
        err.contains("FAILED: the Merkle tree: rolled back")
            && err.contains(&format!("covers {witnessed} leaves")),
        "the failure names the tree head the restore lacks: {err}"
    );
    // A tree head that is not the log's (its signature broken) is refused, not trusted.
    let forged = std::fs::read_to_string(file("witness.state"))
        .unwrap()
        .replacen(
            &format!("\n{witnessed}\n"),
            &format!("\n{}\n", witnessed + 1),
            1,
        );
    std::fs::write(file("forged.state"), forged).unwrap();
    let (code, out, err) = verify_against(&dev, &restored, &file("forged.state"));
    assert_ne!(code, 0, "a forged tree head must be refused: {out}{err}");
    assert!(err.contains("not signed by the log key"), "{err}");
}
