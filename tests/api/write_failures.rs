//! Record writes that fail inside the database: only a concurrent write of the same record
//! answers 409 `write_conflict`; a lost connection, a failed statement or a unique key other
//! than the record's own answers 503 (nothing changed, retry), and the log still verifies.

use coresponse_gateway::audit::{EntryKind, query};
use coresponse_gateway::crypto::{KEY_PURPOSE_RECORD, WrappedKey};
use coresponse_gateway::store::records::{self as rows, RecordRow, VersionRow};
use coresponse_gateway::store::{Store, StoreError, data_keys, on_conn};
use coresponse_gateway::vault::{self, RecordError};
use serde_json::{Value, json};

use crate::records_api::{officer, put};
use crate::support::{self, Db, TestApp, spawn_app};

fn incident(id: &str) -> Value {
    json!({
        "subjects": [{"system": "metro-pd", "value": "P-7001"}],
        "fields": {
            "incident_id": id,
            "occurred_at": "2026-11-21T08:30:00Z",
            "call_type": "WELFARE_CHECK",
        },
    })
}

/// The `record_changed` entries that name record `id`.
async fn change_entries(app: &TestApp, id: &str) -> usize {
    app.log_entries(&query::Filter {
        kinds: vec![EntryKind::RecordChanged],
        limit: 100,
        ..Default::default()
    })
    .await
    .iter()
    .filter(|e| e.data.record.as_ref().is_some_and(|r| r.id == id))
    .count()
}

/// How many `records` rows have id `id`.
async fn records_named(app: &TestApp, id: &str) -> i64 {
    let mut pooled = app.store().acquire().await.unwrap();
    let (n,): (i64,) = on_conn!(&mut pooled.conn(), |c| {
        sqlx::query_as("SELECT COUNT(*) FROM records WHERE id = $1")
            .bind(id)
            .fetch_one(c)
            .await
    })
    .unwrap();
    n
}

/// The database fails the write at the statement that moves the record's current-version
/// pointer, the last statement of the record change: on PostgreSQL the connection is lost
/// there (the server ends the session, as when it crashes), on SQLite the statement fails. A
/// new record id conflicts with nothing, so the answer is 503, never 409; nothing is stored or
/// logged, and the same write succeeds once the database is well.
#[tokio::test]
async fn a_write_that_loses_its_database_mid_way_answers_503_not_write_conflict() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = spawn_app(db).await;
        let fail = match db {
            Db::Sqlite => {
                "CREATE TRIGGER fail_advance BEFORE UPDATE OF current_version ON records \
                 WHEN OLD.current_version <> NEW.current_version \
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
            }
            Db::Postgres => {
                // The session ends itself; pg_sleep lets it notice at once.
                "CREATE FUNCTION fail_advance() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); \
                 PERFORM pg_sleep(5); RETURN NEW; END $$; \
                 CREATE TRIGGER fail_advance BEFORE UPDATE OF current_version ON records \
                 FOR EACH ROW WHEN (OLD.current_version IS DISTINCT FROM NEW.current_version) \
                 EXECUTE FUNCTION fail_advance();"
            }
        };
        support::exec(app.store(), fail).await;
        let path = "/v1/records/crisis-incident/INC-LOST-1";
        let (s, b) = put(&app, &officer(), path, &incident("INC-LOST-1")).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (503, Some("service_unavailable")),
            "{db:?}: {b}"
        );
        assert_eq!(records_named(&app, "INC-LOST-1").await, 0, "{db:?}");
        assert_eq!(change_entries(&app, "INC-LOST-1").await, 0, "{db:?}");
        app.assert_log_verifies().await;

        let heal = match db {
            Db::Sqlite => "DROP TRIGGER fail_advance",
            Db::Postgres => "DROP TRIGGER fail_advance ON records",
        };
        support::exec(app.store(), heal).await;
        let (s, b) = put(&app, &officer(), path, &incident("INC-LOST-1")).await;
        assert_eq!(s, 201, "{db:?}: {b}");
        assert_eq!(records_named(&app, "INC-LOST-1").await, 1, "{db:?}");
        assert_eq!(change_entries(&app, "INC-LOST-1").await, 1, "{db:?}");
        app.assert_log_verifies().await;
        app.stop().await;
    }
}

/// A unique violation at commit on a disclosure-log table (raised by a deferred constraint
/// trigger, as a deferred key would) is not the record's key: the write answers 503, not 409,
/// and neither the record nor its entry is stored.
#[tokio::test]
async fn a_unique_violation_at_commit_on_a_log_table_answers_503() {
    let app = spawn_app(Db::Postgres).await;
    support::exec(
        app.store(),
        "CREATE FUNCTION dup_log() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'duplicate key value violates unique constraint' \
         USING ERRCODE = 'unique_violation', CONSTRAINT = 'audit_log_pkey', \
         TABLE = 'audit_log'; END $$; \
         CREATE CONSTRAINT TRIGGER dup_log AFTER INSERT ON audit_log \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION dup_log();",
    )
    .await;
    let path = "/v1/records/crisis-incident/INC-DEFER-1";
    let (s, b) = put(&app, &officer(), path, &incident("INC-DEFER-1")).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (503, Some("service_unavailable")),
        "{b}"
    );
    assert_eq!(records_named(&app, "INC-DEFER-1").await, 0);
    support::exec(app.store(), "DROP TRIGGER dup_log ON audit_log").await;
    assert_eq!(change_entries(&app, "INC-DEFER-1").await, 0);
    app.assert_log_verifies().await;
    app.stop().await;
}

fn key(id: &str) -> WrappedKey {
    WrappedKey {
        id: id.to_owned(),
        purpose: KEY_PURPOSE_RECORD.to_owned(),
        master_version: 1,
        wrapped: vec![7; 60],
    }
}

fn record_row(id: &str, key_id: &str) -> RecordRow {
    RecordRow {
        kind: "crisis-incident".to_owned(),
        id: id.to_owned(),
        owner: "metro-pd".to_owned(),
        data_key_id: key_id.to_owned(),
        current_version: 0,
        created_at_us: 1,
    }
}

/// Inserts `row` in a transaction of its own, returning the statement's error.
async fn insert_record(store: &Store, row: &RecordRow) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    rows::insert(&mut tx.conn(), row).await?;
    tx.commit().await
}

/// Real unique violations of both backends, told apart: the record's own key (`records`,
/// `record_versions`) is a write conflict; another table's key (here `data_keys`) is a
/// failure of the write.
#[tokio::test]
async fn unique_violations_name_their_key_and_only_the_records_own_is_a_conflict() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = spawn_app(db).await;
        let store = app.store();
        let kind = "crisis-incident".parse().unwrap();
        let id = "INC-KEY-1".parse().unwrap();
        let mut tx = store.begin().await.unwrap();
        data_keys::insert(&mut tx.conn(), &key("k-unique-1"), 1)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        insert_record(store, &record_row("INC-KEY-1", "k-unique-1"))
            .await
            .unwrap();

        // The record's own key: a concurrent creation of the same record.
        let e = insert_record(store, &record_row("INC-KEY-1", "k-unique-1"))
            .await
            .unwrap_err();
        let v = e.unique_violation().expect("a unique violation");
        assert!(v.is_primary_key_of("records"), "{db:?}: {v}");
        assert!(!v.is_primary_key_of("data_keys"), "{db:?}: {v}");
        assert!(
            matches!(
                vault::write_error(e, &kind, &id),
                RecordError::Conflict { .. }
            ),
            "{db:?}"
        );

        // The record's own key: a concurrent write of the same version.
        let version = VersionRow {
            version: 1,
            author_partner: "metro-pd".to_owned(),
            author_user: "officer-17".to_owned(),
            at_us: 1,
            changed_fields: "[]".to_owned(),
            subjects_changed: 0,
            manifest: vec![1; 40],
        };
        let mut tx = store.begin().await.unwrap();
        rows::insert_version(&mut tx.conn(), "crisis-incident", "INC-KEY-1", &version)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let mut tx = store.begin().await.unwrap();
        let e = rows::insert_version(&mut tx.conn(), "crisis-incident", "INC-KEY-1", &version)
            .await
            .unwrap_err();
        drop(tx);
        let v = e.unique_violation().expect("a unique violation");
        assert!(v.is_primary_key_of("record_versions"), "{db:?}: {v}");
        assert!(!v.is_primary_key_of("records"), "{db:?}: {v}");
        assert!(
            matches!(
                vault::write_error(e, &kind, &id),
                RecordError::Conflict { .. }
            ),
            "{db:?}"
        );

        // Another table's key: not a conflict of the record.
        let mut tx = store.begin().await.unwrap();
        let e = data_keys::insert(&mut tx.conn(), &key("k-unique-1"), 2)
            .await
            .unwrap_err();
        drop(tx);
        let v = e.unique_violation().expect("a unique violation");
        assert!(v.is_primary_key_of("data_keys"), "{db:?}: {v}");
        assert_eq!(v.table.as_deref(), Some("data_keys"), "{db:?}: {v}");
        let shown = v.to_string();
        assert!(shown.contains("data_keys"), "{db:?}: {shown}");
        assert!(
            matches!(vault::write_error(e, &kind, &id), RecordError::Store(_)),
            "{db:?}"
        );

        // Not a unique violation at all.
        let mut tx = store.begin().await.unwrap();
        let e = rows::insert(&mut tx.conn(), &record_row("INC-KEY-2", "no-such-key"))
            .await
            .unwrap_err();
        drop(tx);
        assert!(e.unique_violation().is_none(), "{db:?}: {e}");
        assert!(
            matches!(vault::write_error(e, &kind, &id), RecordError::Store(_)),
            "{db:?}"
        );
        app.stop().await;
    }
}
