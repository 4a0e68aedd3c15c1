//! The command line against a freshly generated dev directory (`init`), on both backends:
//! `keys rotate`, `rewrap` and `retire` each record a `key_rotated` entry before reporting
//! success and keep every record readable; `keys status` changes nothing; output into a
//! closed pipe ends a command quietly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use chrono::Utc;
use coresponse_gateway::audit::{self, EntryKind, Outcome, query};
use coresponse_gateway::config::Settings;
use coresponse_gateway::domain::{Author, SubjectIdentifier};
use coresponse_gateway::service::keys;
use coresponse_gateway::store::{Store, on_conn};
use coresponse_gateway::vault::{self, NewRecord};
use serde_json::{Value, json};

use crate::support::pg::PgCluster;
use crate::support::{Db, repo_root};

const BIN: &str = env!("CARGO_BIN_EXE_coresponse-gateway");

/// A dev directory written by `init`, with its own database.
struct Dev {
    dir: tempfile::TempDir,
    url: String,
}

impl Dev {
    async fn new(db: Db) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let policies = repo_root().join("policies");
        let out = Command::new(BIN)
            .args(["init", "--listen", "127.0.0.1:0", "--dir"])
            .arg(dir.path())
            .arg("--policies")
            .arg(&policies)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let url = match db {
            Db::Sqlite => format!("sqlite://{}", dir.path().join("gateway.db").display()),
            Db::Postgres => PgCluster::get().fresh_database().await,
        };
        Self { dir, url }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("gateway.toml")
    }

    fn settings(&self) -> Settings {
        let mut s = Settings::load(&self.config()).unwrap();
        s.storage.url = self.url.clone();
        s
    }

    /// Runs the gateway binary with `args` and this directory's config and database.
    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(self.config())
            .env("GATEWAY__STORAGE__URL", &self.url)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    async fn store(&self) -> Store {
        Store::open(&self.settings().storage).await.unwrap()
    }

    fn key_file(&self) -> PathBuf {
        self.settings().crypto.master_key_file
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn incident(id: &str, narrative: &str) -> NewRecord {
    let fields: BTreeMap<String, Value> =
        serde_json::from_value(json!({ "narrative": narrative })).unwrap();
    NewRecord {
        kind: "crisis-incident".parse().unwrap(),
        id: id.parse().unwrap(),
        owner: "metro-pd".parse().unwrap(),
        subjects: vec![SubjectIdentifier::new("metro-pd", "P-4410").unwrap()],
        fields,
    }
}

/// Every record readable with the key file as it now is.
async fn assert_readable(dev: &Dev, records: &[NewRecord]) {
    let store = dev.store().await;
    let keyring = keys::open(&dev.key_file(), &store).await.unwrap();
    for rec in records {
        let mut pooled = store.acquire().await.unwrap();
        let got = vault::get_record(&mut pooled.conn(), &keyring, &rec.kind, &rec.id, None)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{} is gone", rec.id.as_str()));
        assert_eq!(got.into_fields_unaudited(), rec.fields);
    }
    store.close().await;
}

/// The `key_rotated` entries, oldest first.
async fn key_entries(dev: &Dev) -> Vec<audit::Entry> {
    let store = dev.store().await;
    let mut pooled = store.acquire().await.unwrap();
    let mut entries = query::list(
        &mut pooled.conn(),
        &query::Filter {
            kinds: vec![EntryKind::KeyRotated],
            limit: 100,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    drop(pooled);
    // Their details are sealed: opened with the log's free-text key, as compliance reads them.
    let keyring = keys::open_read_only(&dev.key_file(), &store).await.unwrap();
    let text = audit::LogTextKey::new(&keyring.log_text_key().unwrap());
    for e in &mut entries {
        text.open(e).unwrap();
    }
    store.close().await;
    entries.reverse();
    entries
}

fn detail(e: &audit::Entry) -> &str {
    e.data.detail.as_deref().unwrap_or_default()
}

async fn data_keys_per_version(dev: &Dev) -> Vec<(i64, i64)> {
    let store = dev.store().await;
    let v = keys::data_key_versions(&store).await.unwrap();
    store.close().await;
    v
}

#[tokio::test]
async fn key_commands_record_their_entries_and_keep_records_readable() {
    for db in [Db::Sqlite, Db::Postgres] {
        let dev = Dev::new(db).await;
        let records: Vec<NewRecord> = (0..3)
            .map(|n| incident(&format!("INC-K{n}"), &format!("narrative {n}")))
            .collect();
        {
            let store = dev.store().await;
            let keyring = keys::open(&dev.key_file(), &store).await.unwrap();
            let author = Author {
                partner: "metro-pd".parse().unwrap(),
                user: "off-17".parse().unwrap(),
            };
            for rec in &records {
                let mut tx = store.begin().await.unwrap();
                vault::put_record(&mut tx.conn(), &keyring, rec, &author, Utc::now())
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
            store.close().await;
        }
        // Three records' data keys, the blind-index key, the subject-pseudonym key and the
        // disclosure log's free-text key.
        assert_eq!(data_keys_per_version(&dev).await, vec![(1, 6)], "{db:?}");
        let key_file_before = std::fs::read_to_string(dev.key_file()).unwrap();

        let out = ok(&dev.run(&["keys", "rotate"]));
        assert!(out.contains("added master key version 2"), "{out}");
        let entries = key_entries(&dev).await;
        assert_eq!(entries.len(), 1, "{db:?}");
        let rotated = &entries[0];
        assert_eq!(rotated.data.outcome, Outcome::Permit);
        assert_eq!(
            detail(rotated),
            "keys rotate: master key version 2 added to the key file and made current \
             (previous current version 1); data keys per master-key version: v1: 6"
        );
        assert_readable(&dev, &records).await;

        // Version 1 still wraps data keys: retiring it is refused and records nothing.
        let refused = dev.run(&["keys", "retire", "1"]);
        assert!(!refused.status.success());
        assert!(text(&refused.stderr).contains("still wrapped"));
        assert_eq!(key_entries(&dev).await.len(), 1, "{db:?}");

        let out = ok(&dev.run(&["keys", "rewrap"]));
        assert!(
            out.contains("re-wrapped 6 data key(s) under version 2"),
            "{out}"
        );
        let entries = key_entries(&dev).await;
        assert_eq!(entries.len(), 2, "{db:?}");
        assert_eq!(
            detail(&entries[1]),
            "keys rewrap: 6 data key(s) re-wrapped under master key version 2; data keys per \
             master-key version now: v2: 6"
        );
        assert_eq!(data_keys_per_version(&dev).await, vec![(2, 6)]);
        assert_readable(&dev, &records).await;

        let out = ok(&dev.run(&["keys", "retire", "1"]));
        assert!(out.contains("retired master key version 1"), "{out}");
        let entries = key_entries(&dev).await;
        assert_eq!(entries.len(), 3, "{db:?}");
        assert_eq!(
            detail(&entries[2]),
            "keys retire: master key version 1 removed from the key file (no data key was \
             wrapped under it); versions left: 2 (current 2)"
        );
        assert_readable(&dev, &records).await;

        // Rotation with an immediate rewrap records both steps, in order.
        let out = ok(&dev.run(&["keys", "rotate", "--rewrap"]));
        assert!(
            out.contains("re-wrapped 6 data key(s) under version 3"),
            "{out}"
        );
        let entries = key_entries(&dev).await;
        assert_eq!(entries.len(), 5, "{db:?}");
        assert!(detail(&entries[3]).starts_with("keys rotate: master key version 3 added"));
        assert!(detail(&entries[4]).starts_with("keys rewrap: 6 data key(s)"));
        assert!(entries.windows(2).all(|w| w[0].seq < w[1].seq));
        assert_readable(&dev, &records).await;

        // No entry carries key material: neither key file's contents appear anywhere.
        let key_file_after = std::fs::read_to_string(dev.key_file()).unwrap();
        let secrets: Vec<String> = key_file_before
            .lines()
            .chain(key_file_after.lines())
            .filter_map(|l| l.rsplit(':').next())
            .map(|h| h.trim().to_owned())
            .filter(|h| h.len() >= 32)
            .collect();
        assert!(!secrets.is_empty());
        for e in &entries {
            for s in &secrets {
                assert!(!detail(e).contains(s.as_str()));
            }
        }

        // `keys status` reads only; the chain verifies.
        let out = ok(&dev.run(&["keys", "status"]));
        assert!(out.contains("master key v3 (current)"), "{out}");
        assert!(out.contains("wraps 6 data key(s)"), "{out}");
        let store = dev.store().await;
        let v = audit::verify_store(&store, None, None).await.unwrap();
        assert!(v.ok(), "{db:?}: {v:?}");
        store.close().await;
    }
}

/// The dev directory's SQLite database file and its schema.
async fn sqlite_schema(path: &Path) -> Vec<(String, String)> {
    let store = Store::open_read_only(&coresponse_gateway::config::StorageSettings {
        max_connections: 2,
        ..coresponse_gateway::config::StorageSettings::new(format!("sqlite://{}", path.display()))
    })
    .await
    .unwrap();
    let mut pooled = store.acquire().await.unwrap();
    let rows: Vec<(String, String)> = on_conn!(&mut pooled.conn(), |c| {
        sqlx::query_as("SELECT name, COALESCE(sql, '') FROM sqlite_master ORDER BY type, name")
            .fetch_all(c)
            .await
    })
    .unwrap();
    drop(pooled);
    store.close().await;
    rows
}

#[tokio::test]
async fn read_only_commands_leave_the_database_as_it_was() {
    let dev = Dev::new(Db::Sqlite).await;
    let db_file = dev.dir.path().join("gateway.db");

    // Nothing there yet: verification refuses rather than creating a database.
    let out = dev.run(&["audit", "verify"]);
    assert!(!out.status.success());
    assert!(!db_file.exists(), "audit verify created the database");

    {
        let s = dev.settings();
        let store = Store::open(&s.storage).await.unwrap();
        let keyring = keys::open(&s.crypto.master_key_file, &store).await.unwrap();
        let log = coresponse_gateway::startup::open_log(&s, store.clone(), &keyring).unwrap();
        for i in 0..5 {
            let mut e = audit::NewEntry::new(EntryKind::LogRead, Utc::now(), Outcome::Permit);
            e.detail = Some(format!("read {i}"));
            log.append(e).await.unwrap();
        }
        log.checkpoint_now().await.unwrap();
        // Fold the write-ahead log into the database file, so that its bytes are final.
        let mut pooled = store.acquire().await.unwrap();
        on_conn!(&mut pooled.conn(), |c| {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(c)
                .await
                .map(|_| ())
        })
        .unwrap();
        drop(pooled);
        store.close().await;
    }
    let bytes_before = std::fs::read(&db_file).unwrap();
    let schema_before = sqlite_schema(&db_file).await;
    assert_eq!(std::fs::read(&db_file).unwrap(), bytes_before);

    let out = ok(&dev.run(&["audit", "verify"]));
    assert!(out.starts_with("ok: 5 entries verified"), "{out}");
    ok(&dev.run(&["audit", "checkpoints"]));
    let status = ok(&dev.run(&["keys", "status"]));
    assert!(status.contains("master key v1 (current)"), "{status}");

    assert_eq!(sqlite_schema(&db_file).await, schema_before);
    assert!(
        std::fs::read(&db_file).unwrap() == bytes_before,
        "a read-only command changed the database file"
    );
    let wal = db_file.with_extension("db-wal");
    assert!(
        std::fs::metadata(&wal).map_or(0, |m| m.len()) == 0,
        "a read-only command wrote to the write-ahead log"
    );
}

#[tokio::test]
async fn audit_vkey_prints_the_logs_verifier_key_and_nothing_secret() {
    let dev = Dev::new(Db::Sqlite).await;
    let out = ok(&dev.run(&["audit", "vkey"]));
    // The key `init` wrote for partners to pin, computed here from the configured key file.
    let pinned = std::fs::read_to_string(dev.dir.path().join("audit-log.vkey")).unwrap();
    assert_eq!(out, pinned);
    assert_eq!(out.lines().count(), 1, "{out}");
    let vkey = coresponse_gateway::crypto::note::VerifierKey::parse(&out).unwrap();
    let s = dev.settings();
    assert_eq!(vkey.name, coresponse_gateway::startup::log_origin(&s));
    assert_eq!(vkey.kind, 0x01, "a note signature key");
    let seed = std::fs::read_to_string(s.audit.checkpoint_key_file.as_ref().unwrap()).unwrap();
    assert!(!out.contains(seed.trim()), "the signing key never leaves");
    // No database is opened (none exists yet).
    assert!(!dev.dir.path().join("gateway.db").exists());

    // The key name is the log's origin.
    let out = Command::new(BIN)
        .args(["audit", "vkey", "--config"])
        .arg(dev.config())
        .env("GATEWAY__AUDIT__ORIGIN", "gateway.example/log")
        .output()
        .unwrap();
    let other = ok(&out);
    assert!(other.starts_with("gateway.example/log+"), "{other}");
    assert_ne!(other, pinned);

    // Without a checkpoint key: a clear error, exit 1, nothing on standard output.
    let config = std::fs::read_to_string(dev.config()).unwrap();
    let without: String = config
        .lines()
        .filter(|l| !l.starts_with("checkpoint_key_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without, config, "the fixture edit must apply");
    let bare = dev.dir.path().join("no-checkpoints.toml");
    std::fs::write(&bare, without).unwrap();
    let out = Command::new(BIN)
        .args(["audit", "vkey", "--config"])
        .arg(&bare)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("no `audit.checkpoint_key_file` is configured"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn read_only_verification_refuses_an_older_schema_and_changes_nothing() {
    for db in [Db::Sqlite, Db::Postgres] {
        let dev = Dev::new(db).await;
        let store = dev.store().await;
        // As if the database predated the newest migration.
        let mut pooled = store.acquire().await.unwrap();
        let newest: (i64,) = on_conn!(&mut pooled.conn(), |c| {
            sqlx::query_as("SELECT MAX(version) FROM _sqlx_migrations")
                .fetch_one(c)
                .await
        })
        .unwrap();
        on_conn!(&mut pooled.conn(), |c| {
            sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
                .bind(newest.0)
                .execute(c)
                .await
                .map(|_| ())
        })
        .unwrap();
        drop(pooled);
        let count = || async {
            let mut pooled = store.acquire().await.unwrap();
            let n: (i64,) = on_conn!(&mut pooled.conn(), |c| {
                sqlx::query_as("SELECT COUNT(*) FROM _sqlx_migrations")
                    .fetch_one(c)
                    .await
            })
            .unwrap();
            n.0
        };
        let before = count().await;
        let out = dev.run(&["audit", "verify"]);
        assert!(!out.status.success(), "{db:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("lacks migration {}", newest.0)),
            "{err}"
        );
        assert_eq!(count().await, before, "{db:?}: audit verify migrated");
        store.close().await;
    }
}

#[tokio::test]
async fn read_only_store_refuses_writes_on_both_backends() {
    for db in [Db::Sqlite, Db::Postgres] {
        let dev = Dev::new(db).await;
        dev.store().await.close().await;
        let ro = Store::open_read_only(&dev.settings().storage)
            .await
            .unwrap();
        assert!(ro.is_read_only());
        let mut pooled = ro.acquire().await.unwrap();
        let res = on_conn!(&mut pooled.conn(), |c| {
            sqlx::query("INSERT INTO gateway_meta (key, value) VALUES ('x', 'y')")
                .execute(c)
                .await
                .map(|_| ())
        });
        assert!(res.is_err(), "{db:?}: a read-only store wrote");
        drop(pooled);
        ro.close().await;
    }
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let policies = repo_root().join("policies");
    for json in [false, true] {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "policy",
            "explain",
            "--partner",
            "county-mh",
            "--role",
            "clinician",
            "--purpose",
            "treatment",
            "--kind",
            "crisis-incident",
        ])
        .arg("--dir")
        .arg(&policies);
        if json {
            cmd.arg("--json");
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close the reading end before the command writes anything (as `| head -0` would).
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = text(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        assert!(out.status.success(), "{:?}: {err}", out.status);
    }
}

#[test]
fn policy_explain_names_an_unregistered_partner_and_a_broken_policy_set() {
    let explain = |dir: &Path, partner: &str| {
        Command::new(BIN)
            .args([
                "policy",
                "explain",
                "--partner",
                partner,
                "--role",
                "clinician",
            ])
            .args([
                "--purpose",
                "treatment",
                "--kind",
                "crisis-incident",
                "--dir",
            ])
            .arg(dir)
            .output()
            .unwrap()
    };
    let out = explain(&repo_root().join("policies"), "nobody-pd");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("error: partner `nobody-pd` is not registered"),
        "{}",
        text(&out.stderr)
    );
    let broken = repo_root().join("tests/fixtures/broken");
    let out = explain(&broken, "county-mh");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("error: the policy set has errors; run `policy check` for details"),
        "{err}"
    );
    // The problems are printed too, each with its file and position.
    let report = coresponse_gateway::policy::PolicySet::check(&broken, Utc::now());
    for d in &report.diagnostics {
        let at = format!("{}:{}:{}: ", d.file, d.line, d.column);
        assert!(err.contains(&at), "{at}\n{err}");
    }
}

#[test]
fn policy_check_reports_each_problem_once_and_ends_its_lines() {
    let out = Command::new(BIN)
        .args(["policy", "check"])
        .arg(repo_root().join("policies"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.ends_with("no problems found\n"), "{stdout:?}");

    let broken = repo_root().join("tests/fixtures/broken");
    let out = Command::new(BIN)
        .args(["policy", "check"])
        .arg(&broken)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let report = coresponse_gateway::policy::PolicySet::check(&broken, Utc::now());
    assert!(!report.diagnostics.is_empty());
    let headline = |d: &coresponse_gateway::policy::Diagnostic| {
        // Long messages are wrapped; the location starts each headline.
        format!("{}:{}:{}: ", d.file, d.line, d.column)
    };
    // Each headline as often as the report has it (once, unless two problems share it), not
    // twice.
    for d in &report.diagnostics {
        let h = headline(d);
        let want = report
            .diagnostics
            .iter()
            .filter(|o| headline(o) == h)
            .count();
        assert_eq!(stderr.matches(&h).count(), want, "{h}\n{stderr}");
    }
    // Each hint once, as the report's `help:` (the plain copy's `hint:` lines are gone).
    let hints = report
        .diagnostics
        .iter()
        .filter(|d| d.hint.is_some())
        .count();
    assert_eq!(stderr.matches("help:").count(), hints, "{stderr}");
    assert!(!stderr.contains("hint:"), "{stderr}");
    assert!(
        stderr.ends_with(&format!("{}\n", report.summary())),
        "{stderr:?}"
    );
}

/// `report run --out DIR` writes the report's JSON, its long CSV and, per table, a CSV and an
/// SVG chart, with no count from 1 to 10 in any of them; the run is a `report_generated` entry
/// from the command line, and a caller the definition does not list is refused and logged.
#[tokio::test]
async fn report_run_writes_csv_and_svg_files_fit_to_publish() {
    for db in [Db::Sqlite, Db::Postgres] {
        let dev = Dev::new(db).await;
        {
            let store = dev.store().await;
            let keyring = keys::open(&dev.key_file(), &store).await.unwrap();
            let author = Author {
                partner: "metro-pd".parse().unwrap(),
                user: "off-17".parse().unwrap(),
            };
            // March: 25 arrests and 4 resolved on scene (a small cell); April: 30 referred.
            let mut n = 0;
            for (month, disposition, count) in [
                ("2026-03", "ARREST", 25),
                ("2026-03", "RESOLVED_ON_SCENE", 4),
                ("2026-04", "REFERRED", 30),
            ] {
                for i in 0..count {
                    n += 1;
                    let fields: BTreeMap<String, Value> = serde_json::from_value(json!({
                        "incident_id": format!("INC-R{n}"),
                        "occurred_at": format!("{month}-{:02}T10:00:00Z", 1 + i % 28),
                        "call_type": "WELFARE_CHECK",
                        "disposition": disposition,
                    }))
                    .unwrap();
                    let rec = NewRecord {
                        kind: "crisis-incident".parse().unwrap(),
                        id: format!("INC-R{n}").parse().unwrap(),
                        owner: "metro-pd".parse().unwrap(),
                        subjects: vec![
                            SubjectIdentifier::new("metro-pd", format!("P-R{n}")).unwrap(),
                        ],
                        fields,
                    };
                    let mut tx = store.begin().await.unwrap();
                    vault::put_record(&mut tx.conn(), &keyring, &rec, &author, Utc::now())
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                }
            }
            store.close().await;
        }
        let out_dir = dev.dir.path().join("annual");
        let out_arg = out_dir.to_str().unwrap();
        let out = ok(&dev.run(&[
            "report",
            "run",
            "incident-outcomes",
            "--from",
            "2026-01-01",
            "--to",
            "2026-07-01",
            "--partner",
            "metro-pd",
            "--user",
            "pm-1",
            "--role",
            "program-manager",
            "--out",
            out_arg,
        ]));
        assert!(out.contains("disclosure-log entry"), "{out}");
        let read = |name: &str| std::fs::read_to_string(out_dir.join(name)).unwrap();
        let json: Value = serde_json::from_str(&read("incident-outcomes.json")).unwrap();
        assert_eq!(json["report"], "incident-outcomes");
        let long = read("incident-outcomes.csv");
        assert!(
            long.starts_with("report,period_from,period_to,table"),
            "{long}"
        );
        let table = read("incident-outcomes-by-month.csv");
        let svg = read("incident-outcomes-by-month.svg");
        assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"), "{svg}");
        // The 4 is withheld, and so is what would give it away; 25 and 30 may show.
        assert!(table.contains('*'), "{table}");
        for text in [&long, &table] {
            for cell in text.split([',', '\n']) {
                if let Ok(v) = cell.trim().parse::<i64>() {
                    assert!(!(1..=10).contains(&v), "a count of {v} in:\n{text}");
                }
            }
        }
        assert!(table.contains("30"), "{table}");

        // An officer is no runner: refused, nothing written, and logged.
        let refused = dev.run(&[
            "report",
            "run",
            "incident-outcomes",
            "--from",
            "2026-01-01",
            "--to",
            "2026-07-01",
            "--partner",
            "metro-pd",
            "--user",
            "officer-17",
            "--role",
            "officer",
        ]);
        assert!(!refused.status.success());
        assert!(
            text(&refused.stderr).contains("report_not_permitted"),
            "{}",
            text(&refused.stderr)
        );
        let store = dev.store().await;
        let mut pooled = store.acquire().await.unwrap();
        let entries = query::list_all_ascending(
            &mut pooled.conn(),
            &query::Filter {
                kinds: vec![EntryKind::ReportGenerated],
                ..query::Filter::default()
            },
        )
        .await
        .unwrap();
        drop(pooled);
        store.close().await;
        let outcomes: Vec<(Outcome, Option<String>, Option<String>)> = entries
            .iter()
            .map(|e| {
                (
                    e.data.outcome.clone(),
                    e.data.recipient_user.clone(),
                    e.data.source_addr.clone(),
                )
            })
            .collect();
        assert_eq!(outcomes.len(), 2, "{db:?}: {outcomes:?}");
        assert_eq!(outcomes[0].0, Outcome::Permit);
        assert_ne!(outcomes[1].0, Outcome::Permit);
        assert_eq!(outcomes[0].2.as_deref(), Some("command-line"));
    }
}
