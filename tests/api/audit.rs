//! The disclosure log on both backends: group-commit appends under concurrency (also from two
//! gateways on one database), tampering detected and named, fail-closed on a broken log, the
//! compliance API (authorization, filters, pagination, accounting, verification,
//! checkpoints), every read of the log logged, retention, and the offline CLI.

use std::process::Command;

use chrono::{Duration, Utc};
use coresponse_gateway::audit::{
    self, CheckpointExport, DisclosureLog, EntryKind, FailureKind, FieldDisclosure, LegalBasis,
    NewEntry, Outcome, RecordRef, query, retention,
};
use coresponse_gateway::domain::SubjectIdentifier;
use coresponse_gateway::service::keys;
use coresponse_gateway::startup::open_log;
use coresponse_gateway::store::{Conn, Store, on_conn};
use serde_json::Value;
use sqlx::Connection as _;

use crate::support::{self, Db, TestApp, pki, spawn_app};

const BOTH: [Db; 2] = [Db::Sqlite, Db::Postgres];

/// A standalone log on a fresh database (no server).
struct Fresh {
    log: DisclosureLog,
    store: Store,
    url: String,
    _dir: tempfile::TempDir,
}

async fn fresh(db: Db) -> Fresh {
    let dir = tempfile::tempdir().unwrap();
    let s = support::settings(db, dir.path()).await;
    let store = Store::open(&s.storage).await.unwrap();
    let keyring = keys::open(&s.crypto.master_key_file, &store).await.unwrap();
    let log = open_log(&s, store.clone(), &keyring).unwrap();
    Fresh {
        log,
        store,
        url: s.storage.url.clone(),
        _dir: dir,
    }
}

fn disclosure(
    log: &DisclosureLog,
    subject: &str,
    to: &str,
    purpose: &str,
    permit: bool,
) -> NewEntry {
    let outcome = if permit {
        Outcome::Permit
    } else {
        Outcome::deny("no_matching_rule")
    };
    let mut e = NewEntry::new(EntryKind::Disclosure, Utc::now(), outcome);
    e.request_id = Some(uuid::Uuid::now_v7().to_string());
    e.decision_id = Some("dec-1".into());
    e.policy_hash = Some("ab".repeat(32));
    e.recipient_partner = Some(to.into());
    e.recipient_user = Some("officer-17".into());
    e.recipient_role = Some("officer".into());
    e.purpose = Some(purpose.into());
    e.subject = Some(log.pseudonym(&SubjectIdentifier::new("mrn", subject).unwrap()));
    e.record = Some(RecordRef {
        kind: "safety-plan".into(),
        id: "sp-1".into(),
    });
    if permit {
        e.basis = Some(LegalBasis::Mou {
            mou_id: "mou-metro-county".into(),
            rule: "crisis-extract".into(),
        });
        e.fields_disclosed = vec![
            FieldDisclosure::new("de_escalation", "reveal"),
            FieldDisclosure::new("crisis_contacts", "mask"),
        ];
        e.fields_withheld = 7;
    }
    e.source_addr = Some("127.0.0.1:5555".into());
    e.cert_sha256 = Some("cd".repeat(32));
    e
}

async fn count(store: &Store) -> i64 {
    support::scalar(store, "SELECT COUNT(*) FROM audit_log").await
}

/// One entry by sequence number, read on a pooled connection.
async fn get_entry(store: &Store, seq: u64) -> Result<Option<audit::Entry>, audit::LogError> {
    let mut pooled = store.acquire().await.unwrap();
    query::get(&mut pooled.conn(), seq).await
}

/// The entries a filter selects, newest first.
async fn list(store: &Store, filter: &query::Filter) -> Vec<audit::Entry> {
    let mut pooled = store.acquire().await.unwrap();
    query::list(&mut pooled.conn(), filter).await.unwrap()
}

async fn verify(store: &Store, log: &DisclosureLog) -> audit::StoreVerification {
    audit::verify_store(store, log.checkpoint_key().as_ref(), None)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_thousand_concurrent_appends_give_a_thousand_entries_and_a_verifying_chain() {
    for db in BOTH {
        let f = fresh(db).await;
        let tasks: Vec<_> = (0..1000)
            .map(|i| {
                let log = f.log.clone();
                tokio::spawn(async move {
                    let e =
                        disclosure(&log, &format!("S-{i}"), "metro-pd", "crisis-response", true);
                    log.append(e).await.unwrap()
                })
            })
            .collect();
        let mut seqs: Vec<u64> = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap().seq());
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=1000).collect::<Vec<_>>(), "{db:?}");
        assert_eq!(count(&f.store).await, 1000, "{db:?}");
        let v = verify(&f.store, &f.log).await;
        assert!(v.ok(), "{db:?}: {v:?}");
        assert_eq!(v.summary.entries_checked, 1000);
        // Checkpoints every 1000 entries by default: one at 1000 (group commit may overshoot
        // only if a batch crossed the boundary).
        let cps = audit::stored_checkpoints(&f.store).await.unwrap();
        assert!(!cps.is_empty(), "{db:?}");
    }
}

#[tokio::test]
async fn two_gateways_on_one_database_never_fork_the_chain() {
    for db in BOTH {
        let a = fresh(db).await;
        let dir = tempfile::tempdir().unwrap();
        let mut s = support::settings(db, dir.path()).await;
        s.storage.url = a.url.clone();
        let store_b = Store::open(&s.storage).await.unwrap();
        let keyring_b = keys::open(&s.crypto.master_key_file, &store_b)
            .await
            .unwrap();
        let log_b = open_log(&s, store_b.clone(), &keyring_b).unwrap();
        let mut tasks = Vec::new();
        for i in 0..400 {
            let log = if i % 2 == 0 {
                a.log.clone()
            } else {
                log_b.clone()
            };
            tasks.push(tokio::spawn(async move {
                let e = disclosure(&log, "S-1", "county-mh", "treatment", true);
                log.append(e).await.unwrap()
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(count(&a.store).await, 400);
        let v = verify(&a.store, &a.log).await;
        assert!(v.ok(), "{db:?}: {v:?}");
    }
}

async fn ten(db: Db) -> Fresh {
    let f = fresh(db).await;
    for i in 0..10 {
        f.log
            .append(disclosure(
                &f.log,
                &format!("S-{i}"),
                "metro-pd",
                "crisis-response",
                i % 3 != 0,
            ))
            .await
            .unwrap();
    }
    f
}

async fn expect_failure(f: &Fresh, seq: u64, kind: FailureKind) {
    let v = verify(&f.store, &f.log).await;
    let failure = v
        .summary
        .failure
        .unwrap_or_else(|| panic!("not detected: want {seq} {kind:?}"));
    assert_eq!(
        (failure.seq, failure.kind),
        (seq, kind),
        "{}",
        failure.message
    );
}

async fn exec(store: &Store, sql: &str) {
    support::exec(store, sql).await;
}

/// SQLite keeps any value in any column: a tamperer can store text where the log wrote a hash
/// or a number. The verification's scan reads such a row as unreadable and names it, as
/// altered, with the column at fault; it never passes it or stops without an answer.
#[tokio::test]
async fn a_value_of_the_wrong_type_is_named_as_an_altered_entry() {
    for (sql, column) in [
        (
            "UPDATE audit_log SET prev_hash = 'text' WHERE seq = 3",
            "prev_hash",
        ),
        ("UPDATE audit_log SET at_us = 'soon' WHERE seq = 3", "at_us"),
        ("UPDATE audit_log SET kind = x'00ff' WHERE seq = 3", "kind"),
    ] {
        let f = ten(Db::Sqlite).await;
        exec(&f.store, sql).await;
        let v = verify(&f.store, &f.log).await;
        let failure = v
            .summary
            .failure
            .expect("a wrong-typed value was not detected");
        assert_eq!(
            (failure.seq, failure.kind),
            (3, FailureKind::Altered),
            "{sql}"
        );
        assert!(
            failure.message.contains(column),
            "{sql}: the message names the column: {}",
            failure.message
        );
    }
}

#[tokio::test]
async fn each_kind_of_tampering_is_detected_and_named() {
    for db in BOTH {
        let f = ten(db).await;
        assert!(verify(&f.store, &f.log).await.ok());

        let f = ten(db).await;
        exec(
            &f.store,
            "UPDATE audit_log SET purpose = 'treatment' WHERE seq = 5",
        )
        .await;
        expect_failure(&f, 5, FailureKind::Altered).await;

        let f = ten(db).await;
        exec(
            &f.store,
            "UPDATE audit_log SET basis_rule = 'x' WHERE seq = 2",
        )
        .await;
        expect_failure(&f, 2, FailureKind::Altered).await;

        let f = ten(db).await;
        exec(&f.store, "DELETE FROM audit_log WHERE seq = 4").await;
        expect_failure(&f, 4, FailureKind::Deleted).await;

        let f = ten(db).await;
        exec(&f.store, "DELETE FROM audit_log WHERE seq = 10").await;
        expect_failure(&f, 10, FailureKind::Deleted).await;

        let f = ten(db).await;
        exec(
            &f.store,
            "DELETE FROM audit_log WHERE seq = 4; \
             UPDATE audit_log SET seq = seq + 1000 WHERE seq > 4; \
             UPDATE audit_log SET seq = seq - 1001 WHERE seq > 1000;",
        )
        .await;
        expect_failure(&f, 4, FailureKind::Deleted).await;

        let f = ten(db).await;
        exec(
            &f.store,
            "UPDATE audit_log SET seq = -6 WHERE seq = 6; \
             UPDATE audit_log SET seq = 6 WHERE seq = 7; \
             UPDATE audit_log SET seq = 7 WHERE seq = -6;",
        )
        .await;
        expect_failure(&f, 6, FailureKind::Reordered).await;

        // A forged entry squeezed in at 4, the later entries renumbered.
        let f = ten(db).await;
        exec(
            &f.store,
            &format!(
                "UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 4; \
                 UPDATE audit_log SET seq = seq - 999 WHERE seq > 1000; \
                 INSERT INTO audit_log ({cols}) SELECT {forged} FROM audit_log WHERE seq = 3; \
                 UPDATE audit_head SET seq = 11;",
                cols = COLS,
                forged = COLS
                    .replace("seq, ", "4, ")
                    .replace("detail, ", "'forged', ")
            ),
        )
        .await;
        expect_failure(&f, 4, FailureKind::Inserted).await;

        // An exact copy of entry 10 appended behind the log's back.
        let f = ten(db).await;
        exec(
            &f.store,
            &format!(
                "INSERT INTO audit_log ({COLS}) SELECT {} FROM audit_log WHERE seq = 10",
                COLS.replace("seq, ", "11, ")
            ),
        )
        .await;
        expect_failure(&f, 11, FailureKind::Inserted).await;

        if db == Db::Sqlite {
            // SQLite keeps any value in any column: text where a count belongs is an entry no
            // log wrote, reported as altered (not as a database error).
            let f = ten(db).await;
            exec(
                &f.store,
                "UPDATE audit_log SET fields_withheld = 'many' WHERE seq = 7",
            )
            .await;
            expect_failure(&f, 7, FailureKind::Altered).await;
        }
    }
}

#[tokio::test]
async fn a_log_of_several_scan_batches_verifies_and_names_a_change_deep_inside() {
    // The verification reads the log in batches of 2,048 rows, in ranges read at the same time
    // (on SQLite on a machine of two cores or more, entries 1-2500 and 2501-5000; PostgreSQL
    // reads one range): an intact log of
    // several batches verifies whole, a rewrite that breaks the link between the two ranges
    // is named, and so are a change in the third batch and a deletion at a range's start.
    for db in BOTH {
        let f = fresh(db).await;
        let tasks: Vec<_> = (0..50)
            .map(|t| {
                let log = f.log.clone();
                tokio::spawn(async move {
                    for i in 0..100 {
                        let e = disclosure(
                            &log,
                            &format!("S-{t}-{i}"),
                            "metro-pd",
                            "crisis-response",
                            i % 2 == 0,
                        );
                        log.append(e).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let v = verify(&f.store, &f.log).await;
        assert!(v.ok(), "{db:?}: {v:?}");
        assert_eq!(v.summary.entries_checked, 5000, "{db:?}");
        assert_eq!(v.tree.as_ref().map(|t| t.leaves), Some(5000), "{db:?}");

        // Entry 2500 rewritten and re-hashed: intact itself, but entry 2501 no longer links.
        let original = get_entry(&f.store, 2500).await.unwrap().unwrap();
        let mut e = original.clone();
        e.data.purpose = Some("treatment".into());
        let hash = audit::leaf_hash_with(
            &mut Vec::new(),
            2500,
            &e.prev_hash,
            &e.data,
            e.sealed.as_deref(),
        );
        set_purpose_and_hash(&f.store, 2500, "treatment", &hash.0).await;
        expect_failure(&f, 2501, FailureKind::BrokenLink).await;
        let purpose = original.data.purpose.as_deref().unwrap();
        set_purpose_and_hash(&f.store, 2500, purpose, &original.hash.0).await;
        assert!(verify(&f.store, &f.log).await.ok(), "{db:?}: restored");

        exec(
            &f.store,
            "UPDATE audit_log SET purpose = 'treatment' WHERE seq = 4500",
        )
        .await;
        expect_failure(&f, 4500, FailureKind::Altered).await;
        exec(&f.store, "DELETE FROM audit_log WHERE seq = 2501").await;
        expect_failure(&f, 2501, FailureKind::Deleted).await;
    }
}

async fn set_purpose_and_hash(store: &Store, seq: i64, purpose: &str, hash: &[u8]) {
    let mut pooled = store.acquire().await.unwrap();
    on_conn!(&mut pooled.conn(), |c| {
        sqlx::query("UPDATE audit_log SET purpose = $1, entry_hash = $2 WHERE seq = $3")
            .bind(purpose)
            .bind(hash.to_vec())
            .bind(seq)
            .execute(c)
            .await
            .map(|_| ())
    })
    .unwrap();
}

#[tokio::test]
async fn a_log_verifies_while_entries_are_appended() {
    // A compliance officer verifies a live log: entries committed while the chain and the
    // tree are read (at the same time, on other connections) are not a failure.
    for db in BOTH {
        let f = fresh(db).await;
        for i in 0..300 {
            let e = disclosure(
                &f.log,
                &format!("S-{i}"),
                "metro-pd",
                "crisis-response",
                true,
            );
            f.log.append(e).await.unwrap();
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let (log, stop) = (f.log.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let e =
                            disclosure(&log, &format!("L-{t}-{n}"), "county-mh", "treatment", true);
                        log.append(e).await.unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        for round in 0..8 {
            let v = verify(&f.store, &f.log).await;
            assert!(v.ok(), "{db:?} round {round}: {v:?}");
            assert!(v.summary.entries_checked >= 300, "{db:?}");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut appended = 0;
        for w in writers {
            appended += w.await.unwrap();
        }
        assert!(appended > 0, "{db:?}: the writers appended nothing");
        let v = verify(&f.store, &f.log).await;
        assert!(v.ok(), "{db:?}: {v:?}");
        assert_eq!(v.summary.entries_checked, 300 + appended, "{db:?}");
    }
}

const COLS: &str = "seq, at_us, kind, request_id, decision_id, policy_hash, \
     recipient_partner, recipient_user, recipient_role, purpose, basis_kind, basis_ref, \
     basis_rule, justification, subject, record_kind, record_id, fields_disclosed, \
     fields_withheld, outcome, reason, source_addr, cert_sha256, detail, prev_hash, entry_hash";

#[tokio::test]
async fn a_partner_copy_of_the_checkpoints_catches_a_rewrite_with_recomputed_hashes() {
    for db in BOTH {
        let f = ten(db).await;
        f.log.checkpoint_now().await.unwrap();
        let copy = CheckpointExport::new(
            &f.log.checkpoint_key().unwrap(),
            audit::stored_checkpoints(&f.store).await.unwrap(),
        );
        assert_eq!(copy.checkpoints.last().map(|c| c.seq), Some(10));
        // Someone with database access rewrites entries 3..=10, recomputes every hash and the
        // head, and removes the stored checkpoints.
        let mut prev = get_entry(&f.store, 2).await.unwrap().unwrap().hash;
        let mut pooled = f.store.acquire().await.unwrap();
        for seq in 3..=10u64 {
            let mut e = query::get(&mut pooled.conn(), seq).await.unwrap().unwrap();
            e.data.purpose = Some("treatment".into());
            let hash =
                audit::leaf_hash_with(&mut Vec::new(), seq, &prev, &e.data, e.sealed.as_deref());
            on_conn!(&mut pooled.conn(), |c| {
                sqlx::query(
                    "UPDATE audit_log SET purpose = $1, prev_hash = $2, entry_hash = $3 \
                     WHERE seq = $4",
                )
                .bind("treatment")
                .bind(prev.0.to_vec())
                .bind(hash.0.to_vec())
                .bind(seq as i64)
                .execute(c)
                .await
                .map(|_| ())
            })
            .unwrap();
            prev = hash;
        }
        // The head hash is stored as its 32 bytes, like the entry hashes.
        on_conn!(&mut pooled.conn(), |c| {
            sqlx::query("UPDATE audit_head SET head_hash = $1")
                .bind(prev.0.to_vec())
                .execute(c)
                .await
                .map(|_| ())
        })
        .unwrap();
        drop(pooled);
        exec(&f.store, "DELETE FROM audit_checkpoints").await;
        // The chain alone cannot tell without copies; the Merkle tree, whose stored leaves
        // were left alone, does (a rewrite of the tree too is the witnesses' to catch: see
        // tests/api/transparency.rs).
        let v = verify(&f.store, &f.log).await;
        assert!(v.summary.failure.is_none(), "{v:?}");
        assert!(
            v.tree.as_ref().and_then(|t| t.failure.as_ref()).is_some(),
            "the tree catches it: {v:?}"
        );
        let v = audit::verify_store(&f.store, None, Some(&copy))
            .await
            .unwrap();
        let failure = v.summary.failure.expect("the partner's copy catches it");
        assert_eq!(
            (failure.seq, failure.kind),
            (10, FailureKind::CheckpointMismatch)
        );
        // A forged copy (signature broken) is refused.
        let mut forged = copy.clone();
        forged.checkpoints[0].head_hash = audit::ChainHash([1; 32]);
        let v = audit::verify_store(&f.store, None, Some(&forged))
            .await
            .unwrap();
        assert_eq!(
            v.summary.failure.map(|f| f.kind),
            Some(FailureKind::CheckpointSignature)
        );
    }
}

#[tokio::test]
async fn retention_purges_only_entries_covered_by_a_verified_checkpoint() {
    for db in BOTH {
        let f = fresh(db).await;
        let old = Utc::now() - Duration::days(3000);
        for _ in 0..5 {
            let mut e = disclosure(&f.log, "S-1", "metro-pd", "crisis-response", true);
            e.at = old;
            f.log.append(e).await.unwrap();
        }
        assert_eq!(f.log.checkpoint_now().await.unwrap(), Some(5));
        for _ in 0..3 {
            let mut e = disclosure(&f.log, "S-1", "metro-pd", "crisis-response", true);
            e.at = old;
            f.log.append(e).await.unwrap();
        }
        for _ in 0..2 {
            f.log
                .append(disclosure(
                    &f.log,
                    "S-1",
                    "metro-pd",
                    "crisis-response",
                    true,
                ))
                .await
                .unwrap();
        }
        let dry = retention::purge(&f.log, Utc::now(), true).await.unwrap();
        assert_eq!(dry.removed, Some((1, 5)));
        assert_eq!(count(&f.store).await, 10);
        let report = retention::purge(&f.log, Utc::now(), false).await.unwrap();
        assert_eq!(report.removed, Some((1, 5)), "{report:?}");
        assert_eq!(report.anchor_checkpoint, Some(5));
        assert_eq!(report.purge_entry, Some(11));
        // 6..=8 are old but not covered by a checkpoint: kept.
        assert_eq!(count(&f.store).await, 6);
        let v = verify(&f.store, &f.log).await;
        assert!(v.ok(), "{v:?}");
        assert_eq!(v.first_seq, Some(6));
        // Without the checkpoint key the purged start cannot be anchored.
        let v = audit::verify_store(&f.store, None, None).await.unwrap();
        assert_eq!(
            v.summary.failure.map(|f| (f.seq, f.kind)),
            Some((1, FailureKind::Deleted))
        );
        // Nothing more to purge until a new checkpoint covers 6..=8.
        let again = retention::purge(&f.log, Utc::now(), false).await.unwrap();
        assert_eq!(again.removed, None);
    }
}

#[tokio::test]
async fn a_log_stored_as_hex_is_converted_by_the_migration_and_still_verifies() {
    for db in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let s = support::settings(db, dir.path()).await;
        // The schema as it was before hashes and pseudonyms were stored as raw bytes.
        let backend = match db {
            Db::Sqlite => "sqlite",
            Db::Postgres => "postgres",
        };
        let old = dir.path().join("migrations-before-binary");
        std::fs::create_dir(&old).unwrap();
        for f in std::fs::read_dir(support::repo_root().join("migrations").join(backend)).unwrap() {
            let f = f.unwrap();
            if f.file_name().to_string_lossy().as_ref() < "20261123000050" {
                std::fs::copy(f.path(), old.join(f.file_name())).unwrap();
            }
        }
        let mut sqlite: Option<sqlx::SqliteConnection> = None;
        let mut pg: Option<sqlx::PgConnection> = None;
        let mut conn = match db {
            Db::Sqlite => {
                let url = format!("{}?mode=rwc", s.storage.url);
                Conn::Sqlite(sqlite.insert(sqlx::SqliteConnection::connect(&url).await.unwrap()))
            }
            Db::Postgres => Conn::Postgres(
                pg.insert(sqlx::PgConnection::connect(&s.storage.url).await.unwrap()),
            ),
        };
        let migrator = sqlx::migrate::Migrator::new(old.as_path()).await.unwrap();
        on_conn!(&mut conn, |c| migrator.run(c).await).unwrap();

        // Six chained entries written as the old code wrote them; the sixth hash is then
        // given in upper case, which no entry can have.
        let key = audit::SubjectKey::derive(&[3; 32]);
        let mut prev = audit::ChainHash::GENESIS;
        let mut written = Vec::new();
        for seq in 1..=6u64 {
            let at = chrono::DateTime::from_timestamp_micros(1_790_000_000_000_000 + seq as i64)
                .unwrap();
            let mut e = NewEntry::new(EntryKind::LogRead, at, Outcome::Permit);
            e.subject = Some(key.pseudonym("mrn", &format!("S-{seq}")));
            e.detail = Some(format!("read {seq}"));
            let hash = audit::entry_hash(seq, &prev, &e);
            let stored_hash = if seq == 6 {
                hash.to_hex().to_uppercase()
            } else {
                hash.to_hex()
            };
            on_conn!(&mut conn, |c| {
                sqlx::query(
                    "INSERT INTO audit_log (seq, at_us, kind, subject, fields_disclosed, \
                     fields_withheld, outcome, detail, prev_hash, entry_hash) \
                     VALUES ($1, $2, 'log_read', $3, '[]', 0, 'permit', $4, $5, $6)",
                )
                .bind(seq as i64)
                .bind(at.timestamp_micros())
                .bind(e.subject.unwrap().to_hex())
                .bind(e.detail.clone().unwrap())
                .bind(prev.to_hex())
                .bind(stored_hash.clone())
                .execute(c)
                .await
                .map(|_| ())
            })
            .unwrap();
            written.push((e, hash));
            prev = hash;
        }
        // The old schema kept the head hash as hex text too.
        on_conn!(&mut conn, |c| {
            sqlx::query("UPDATE audit_head SET seq = 6, head_hash = $1")
                .bind(prev.to_hex())
                .execute(c)
                .await
                .map(|_| ())
        })
        .unwrap();
        if let Some(c) = sqlite {
            c.close().await.unwrap();
        }
        if let Some(c) = pg {
            c.close().await.unwrap();
        }

        let store = Store::open(&s.storage).await.unwrap();
        for (seq, (e, hash)) in (1..).zip(&written) {
            let got = get_entry(&store, seq).await;
            if seq == 6 {
                assert!(got.is_err(), "{db:?}: the malformed hash was made valid");
                continue;
            }
            let got = got.unwrap().unwrap();
            assert_eq!((&got.data, got.hash), (e, *hash), "{db:?}");
        }
        let v = audit::verify_store(&store, None, None).await.unwrap();
        let failure = v.summary.failure.expect("the malformed entry is reported");
        assert_eq!(
            (failure.seq, failure.kind),
            (6, FailureKind::Altered),
            "{db:?}: {}",
            failure.message
        );
        assert_eq!(v.summary.last_seq, 5);
        // A subject's entries are still found by its pseudonym.
        let found = list(
            &store,
            &query::Filter {
                subject: Some(key.pseudonym("mrn", "S-2")),
                limit: 10,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(found.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2]);
        store.close().await;
    }
}

// --- through HTTP ---------------------------------------------------------------------------

fn officer(partner: &str, user: &str, roles: &[&str]) -> ((String, String), String) {
    let id = pki().partner_cert(partner);
    let token = pki().token(partner, user, roles, &id.0);
    (id, token)
}

fn compliance() -> ((String, String), String) {
    officer("oversight", "auditor-2", &["compliance"])
}

async fn get(app: &TestApp, who: &((String, String), String), path: &str) -> reqwest::Response {
    app.get(Some(&who.0), path, Some(&who.1)).await.unwrap()
}

async fn log_reads(app: &TestApp) -> Vec<audit::Entry> {
    list(
        &app.services().store,
        &query::Filter {
            kinds: vec![EntryKind::LogRead],
            limit: 500,
            ..Default::default()
        },
    )
    .await
}

#[tokio::test]
async fn a_broken_log_gives_503_and_no_data() {
    for db in BOTH {
        let app = spawn_app(db).await;
        let log = &app.services().log;
        log.append(disclosure(log, "S-1", "metro-pd", "crisis-response", true))
            .await
            .unwrap();
        let who = compliance();
        let ok = get(&app, &who, "/v1/disclosures").await;
        assert_eq!(ok.status(), 200);
        let before = count(&app.services().store).await;
        // Inject the failure: every insert into the log now fails inside the database.
        match db {
            Db::Sqlite => {
                exec(
                    &app.services().store,
                    "CREATE TRIGGER fail_log BEFORE INSERT ON audit_log \
                     BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
                )
                .await
            }
            Db::Postgres => {
                exec(
                    &app.services().store,
                    "CREATE FUNCTION fail_log() RETURNS trigger LANGUAGE plpgsql AS \
                     $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$; \
                     CREATE TRIGGER fail_log BEFORE INSERT ON audit_log \
                     FOR EACH ROW EXECUTE FUNCTION fail_log();",
                )
                .await
            }
        }
        for path in [
            "/v1/disclosures?subject_system=mrn&subject_value=S-1",
            "/v1/disclosures/1",
            "/v1/subjects/mrn/S-1/accounting",
            "/v1/audit/verify",
        ] {
            let res = get(&app, &who, path).await;
            assert_eq!(res.status(), 503, "{db:?} {path}");
            assert!(res.headers().contains_key("request-id"));
            let body = res.text().await.unwrap();
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["code"], "service_unavailable");
            assert!(!body.contains("metro-pd"), "no data may leave: {body}");
            assert!(!body.contains("injected"), "opaque: {body}");
        }
        // A refused caller is also answered 503 when its refusal cannot be logged.
        let police = officer("metro-pd", "officer-17", &["officer"]);
        assert_eq!(get(&app, &police, "/v1/disclosures").await.status(), 503);
        assert_eq!(count(&app.services().store).await, before);
        app.stop().await;
    }
}

#[tokio::test]
async fn only_compliance_officers_read_the_log_and_refusals_are_logged() {
    for db in BOTH {
        let app = spawn_app(db).await;
        for (who, why) in [
            (officer("metro-pd", "officer-17", &["officer"]), "police"),
            (
                officer("county-mh", "clin-7", &["compliance"]),
                "compliance role at an MH agency",
            ),
            (
                officer("oversight", "auditor-2", &["viewer"]),
                "no compliance role",
            ),
        ] {
            for path in [
                "/v1/disclosures",
                "/v1/disclosures/1",
                "/v1/subjects/mrn/S-1/accounting",
                "/v1/audit/verify",
            ] {
                let res = get(&app, &who, path).await;
                assert_eq!(res.status(), 403, "{why} {path}");
                let body: Value = res.json().await.unwrap();
                assert_eq!(body["code"], "compliance_role_required", "{body}");
            }
        }
        let reads = log_reads(&app).await;
        assert_eq!(reads.len(), 12);
        assert!(
            reads
                .iter()
                .all(|e| e.data.outcome == Outcome::deny("compliance_role_required"))
        );
        assert!(
            reads
                .iter()
                .any(|e| e.data.recipient_partner.as_deref() == Some("metro-pd"))
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn compliance_queries_filter_paginate_validate_and_are_logged() {
    for db in BOTH {
        let app = spawn_app(db).await;
        let log = &app.services().log;
        // Start-up has already logged the policy set it loaded.
        let base = start_up_entries(&app).await;
        let secret = "SUBJ-XYZ-987";
        for i in 0..5 {
            log.append(disclosure(
                log,
                secret,
                "metro-pd",
                "crisis-response",
                i != 2,
            ))
            .await
            .unwrap();
        }
        log.append(disclosure(log, "OTHER-1", "county-mh", "treatment", true))
            .await
            .unwrap();
        let who = compliance();

        let url = format!("/v1/disclosures?subject_system=mrn&subject_value={secret}&limit=2");
        let res = get(&app, &who, &url).await;
        assert_eq!(res.status(), 200);
        let page: Value = res.json().await.unwrap();
        let entries = page["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["seq"], base + 5, "newest first");
        assert_eq!(entries[0]["fields_disclosed"][1]["transform"], "mask");
        let cursor = page["next_cursor"].as_str().unwrap().to_owned();
        let mut seen: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        let mut cursor = Some(cursor);
        while let Some(c) = cursor {
            let res = get(&app, &who, &format!("{url}&cursor={c}")).await;
            let page: Value = res.json().await.unwrap();
            seen.extend(
                page["entries"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["seq"].as_u64().unwrap()),
            );
            cursor = page["next_cursor"].as_str().map(str::to_owned);
        }
        assert_eq!(seen, [5, 4, 3, 2, 1].map(|n| base + n).to_vec());

        let res = get(
            &app,
            &who,
            "/v1/disclosures?outcome=deny&recipient=metro-pd",
        )
        .await;
        let page: Value = res.json().await.unwrap();
        assert_eq!(page["entries"].as_array().unwrap().len(), 1);
        assert_eq!(page["entries"][0]["reason"], "no_matching_rule");
        let res = get(&app, &who, "/v1/disclosures?purpose=treatment&basis=mou").await;
        let page: Value = res.json().await.unwrap();
        assert_eq!(page["entries"].as_array().unwrap().len(), 1);
        let future = (Utc::now() + Duration::days(1)).to_rfc3339();
        let res = get(
            &app,
            &who,
            &format!("/v1/disclosures?since={}", urlencode(&future)),
        )
        .await;
        let page: Value = res.json().await.unwrap();
        assert!(page["entries"].as_array().unwrap().is_empty());

        for (query, param) in [
            ("since=yesterday", "since"),
            ("limit=0", "limit"),
            ("limit=501", "limit"),
            ("outcome=maybe", "outcome"),
            ("basis=whim", "basis"),
            ("recipient=Metro%20PD", "recipient"),
            ("subject_system=mrn", "subject_value"),
            ("cursor=abc", "cursor"),
            ("kind=nonsense", "kind"),
            ("colour=red", "colour"),
            (
                "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
                "until",
            ),
        ] {
            let res = get(&app, &who, &format!("/v1/disclosures?{query}")).await;
            assert_eq!(res.status(), 400, "{query}");
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["code"], "invalid_parameter", "{body}");
            assert_eq!(body["details"]["parameter"], param, "{body}");
            assert!(body["message"].as_str().unwrap().contains(param));
        }

        let res = get(&app, &who, &format!("/v1/disclosures/{}", base + 3)).await;
        assert_eq!(res.status(), 200);
        let e: Value = res.json().await.unwrap();
        assert_eq!(e["outcome"], "deny");
        assert_eq!(get(&app, &who, "/v1/disclosures/99999").await.status(), 404);
        assert_eq!(get(&app, &who, "/v1/disclosures/x").await.status(), 400);

        let security = get(&app, &who, "/v1/disclosures?kind=log_read&limit=500").await;
        let page: Value = security.json().await.unwrap();
        assert!(!page["entries"].as_array().unwrap().is_empty());

        // Every read was logged, with the subject as a pseudonym only.
        let reads = log_reads(&app).await;
        let pseudonym = log
            .pseudonym(&SubjectIdentifier::new("mrn", secret).unwrap())
            .to_hex();
        assert!(
            reads
                .iter()
                .any(|e| e.data.subject.map(|s| s.to_hex()) == Some(pseudonym.clone()))
        );
        assert!(
            reads
                .iter()
                .all(|e| e.data.recipient_role.as_deref() == Some("compliance"))
        );
        assert!(reads.iter().all(|e| e.data.request_id.is_some()));
        // No clear-text identifier anywhere in the log.
        let mut pooled = app.services().store.acquire().await.unwrap();
        let rows: Vec<(String, Option<Vec<u8>>)> = on_conn!(&mut pooled.conn(), |c| {
            sqlx::query_as(
                "SELECT COALESCE(detail, '') || COALESCE(request_id, ''), subject FROM audit_log",
            )
            .fetch_all(c)
            .await
        })
        .unwrap();
        drop(pooled);
        assert!(rows.iter().all(|r| !r.0.contains(secret)));
        assert!(rows.iter().all(|r| {
            r.1.as_ref().is_none_or(|s| {
                s.len() == 32 && !s.windows(secret.len()).any(|w| w == secret.as_bytes())
            })
        }));
        let v = verify(&app.services().store, log).await;
        assert!(v.ok(), "{v:?}");
        app.stop().await;
    }
}

/// How many entries the log holds before a test appends its own (start-up records the policy
/// set it loaded).
async fn start_up_entries(app: &TestApp) -> u64 {
    let all = app
        .log_entries(&query::Filter {
            limit: 500,
            ..query::Filter::default()
        })
        .await;
    u64::try_from(all.len()).unwrap()
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn a_subjects_accounting_summarises_repeats_and_leaves_out_denials() {
    for db in BOTH {
        let app = spawn_app(db).await;
        let log = &app.services().log;
        let base = start_up_entries(&app).await;
        for permit in [true, true, false, true] {
            log.append(disclosure(
                log,
                "S-9",
                "metro-pd",
                "crisis-response",
                permit,
            ))
            .await
            .unwrap();
        }
        let mut emergency = disclosure(log, "S-9", "metro-pd", "emergency", true);
        emergency.basis = Some(LegalBasis::Emergency {
            stated_basis: "credible representation by the responding officer".into(),
        });
        emergency.justification = Some("threat to \"harm\", others, now".into());
        log.append(emergency).await.unwrap();
        log.append(disclosure(log, "S-10", "metro-pd", "crisis-response", true))
            .await
            .unwrap();
        let mut old = disclosure(log, "S-9", "metro-pd", "crisis-response", true);
        old.at = Utc::now() - Duration::days(6 * 365 + 10);
        log.append(old).await.unwrap();

        let who = compliance();
        let res = get(&app, &who, "/v1/subjects/mrn/S-9/accounting").await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        let lines = body["disclosures"].as_array().unwrap();
        assert_eq!(lines.len(), 2, "{body}");
        let first = &lines[0];
        assert_eq!(first["count"], 3);
        assert_eq!(first["first_seq"], base + 1);
        assert_eq!(first["last_seq"], base + 4);
        assert_eq!(first["recipient"]["name"], "Metro City Police Department");
        assert_eq!(
            first["recipient"]["address"],
            "100 Justice Plaza, Metro City, ST 00001"
        );
        assert_eq!(
            first["description"],
            "safety-plan record: de_escalation, crisis_contacts (mask)"
        );
        assert!(
            first["purpose"]
                .as_str()
                .unwrap()
                .contains("crisis-extract")
        );
        assert_eq!(lines[1]["emergency"], true);
        assert!(lines[1]["purpose"].as_str().unwrap().contains("164.512(j)"));
        assert_eq!(
            body["subject"],
            log.pseudonym(&SubjectIdentifier::new("mrn", "S-9").unwrap())
                .to_hex()
        );

        let res = get(&app, &who, "/v1/subjects/mrn/S-9/accounting?format=csv").await;
        assert_eq!(res.status(), 200);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/csv")
        );
        let csv = res.text().await.unwrap();
        let rows: Vec<&str> = csv.split("\r\n").filter(|r| !r.is_empty()).collect();
        assert_eq!(rows.len(), 3, "{csv}");
        assert!(rows[0].starts_with("date,recipient_id,recipient_name"));
        assert!(rows[1].contains("\"100 Justice Plaza, Metro City, ST 00001\""));
        assert!(
            rows[2].contains("threat to \"\"harm\"\", others, now"),
            "{csv}"
        );
        let bad = get(&app, &who, "/v1/subjects/mrn/S-9/accounting?format=xml").await;
        assert_eq!(bad.status(), 400);
        let bad = get(&app, &who, "/v1/subjects/MRN/S-9/accounting").await;
        assert_eq!(bad.status(), 400);
        app.stop().await;
    }
}

#[tokio::test]
async fn verification_checkpoints_and_security_events_through_the_api() {
    for db in BOTH {
        let app = spawn_app(db).await;
        let log = &app.services().log;
        for _ in 0..3 {
            log.append(disclosure(log, "S-1", "county-mh", "treatment", true))
                .await
                .unwrap();
        }
        // A refused token becomes a chained entry.
        let metro = pki().partner_cert("metro-pd");
        let res = app
            .get(Some(&metro), "/v1/whoami", Some("not.a.token"))
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        app.security_event("token_malformed").await;
        let who = compliance();
        let mut found = false;
        for _ in 0..100 {
            let res = get(&app, &who, "/v1/disclosures?kind=authentication_failed").await;
            let page: Value = res.json().await.unwrap();
            if let Some(e) = page["entries"].as_array().and_then(|a| a.first()) {
                assert_eq!(e["reason"], "token_malformed");
                assert_eq!(e["recipient_partner"], "metro-pd");
                assert!(e["source_addr"].as_str().unwrap().starts_with("127.0.0.1:"));
                found = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(found, "the refused token is in the chain");

        let res = get(&app, &who, "/v1/audit/verify").await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["ok"], true, "{body}");

        log.checkpoint_now().await.unwrap();
        // Any partner may keep copies of the checkpoints.
        let police = officer("metro-pd", "officer-17", &["officer"]);
        let res = get(&app, &police, "/v1/audit/checkpoints").await;
        assert_eq!(res.status(), 200);
        let export: CheckpointExport = res.json().await.unwrap();
        assert_eq!(export.algorithm, "ed25519");
        assert!(!export.checkpoints.is_empty());
        let v = audit::verify_store(&app.services().store, None, Some(&export))
            .await
            .unwrap();
        assert!(v.ok(), "{v:?}");

        exec(
            &app.services().store,
            "UPDATE audit_log SET recipient_user = 'someone' WHERE seq = 2",
        )
        .await;
        let res = get(&app, &who, "/v1/audit/verify").await;
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["ok"], false);
        assert_eq!(body["report"]["failure"]["seq"], 2);
        assert_eq!(body["report"]["failure"]["kind"], "altered");
        app.stop().await;
    }
}

#[tokio::test]
async fn the_cli_verifies_offline_and_names_the_failing_entry() {
    let f = ten(Db::Sqlite).await;
    f.log.checkpoint_now().await.unwrap();
    let config = pki().dir.join("gateway.toml");
    let copy = CheckpointExport::new(
        &f.log.checkpoint_key().unwrap(),
        audit::stored_checkpoints(&f.store).await.unwrap(),
    );
    let copy_file = f._dir.path().join("copy.json");
    std::fs::write(&copy_file, serde_json::to_string(&copy).unwrap()).unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["audit", "verify", "--config", config.to_str().unwrap()];
        args.extend_from_slice(extra);
        Command::new(env!("CARGO_BIN_EXE_coresponse-gateway"))
            .args(&args)
            .env("GATEWAY__STORAGE__URL", &f.url)
            .output()
            .unwrap()
    };
    let ok = run(&["--checkpoints", copy_file.to_str().unwrap()]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("ok: 10 entries verified"));
    exec(
        &f.store,
        "UPDATE audit_log SET fields_withheld = 99 WHERE seq = 7",
    )
    .await;
    let bad = run(&[]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("FAILED at entry 7: altered"), "{err}");
}
