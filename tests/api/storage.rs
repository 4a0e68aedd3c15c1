//! The same storage code on SQLite and PostgreSQL.

use coresponse_gateway::config::StorageSettings;
use coresponse_gateway::security::{SecurityEvent, SecurityEventKind};
use coresponse_gateway::store::{Backend, Store};

use crate::support::pg::PgCluster;

async fn stores() -> Vec<(Store, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = StorageSettings {
        url: format!(
            "sqlite://{}",
            dir.path().join("nested/dir/gateway.db").display()
        ),
        password_file: None,
        max_connections: 4,
    };
    let pg = StorageSettings {
        url: PgCluster::get().fresh_database().await,
        password_file: None,
        max_connections: 4,
    };
    let a = Store::open(&sqlite).await.unwrap();
    assert_eq!(a.backend(), Backend::Sqlite);
    let b = Store::open(&pg).await.unwrap();
    assert_eq!(b.backend(), Backend::Postgres);
    vec![(a, dir), (b, tempfile::tempdir().unwrap())]
}

#[tokio::test]
async fn migrations_apply_once_and_a_second_open_finds_them_applied() {
    let url = PgCluster::get().fresh_database().await;
    let settings = StorageSettings {
        url,
        password_file: None,
        max_connections: 2,
    };
    let first = Store::open(&settings).await.unwrap();
    first.meta_init("k", "v").await.unwrap();
    let second = Store::open(&settings).await.unwrap();
    assert_eq!(second.meta_get("k").await.unwrap().as_deref(), Some("v"));
    for (store, _dir) in stores().await {
        store.ping().await.unwrap();
    }
}

#[tokio::test]
async fn metadata_is_written_once() {
    for (store, _dir) in stores().await {
        assert_eq!(store.meta_init("k", "first").await.unwrap(), "first");
        assert_eq!(store.meta_init("k", "second").await.unwrap(), "first");
        assert_eq!(store.meta_get("k").await.unwrap().as_deref(), Some("first"));
    }
}

#[tokio::test]
async fn security_events_round_trip() {
    for (store, _dir) in stores().await {
        let at = chrono::Utc::now();
        let event = SecurityEvent {
            at,
            kind: SecurityEventKind::AuthenticationFailed,
            code: "token_expired".into(),
            peer: Some("127.0.0.1:4000".parse().unwrap()),
            partner: Some("metro-pd".parse().unwrap()),
            cert_fingerprint: Some(coresponse_gateway::domain::CertFingerprint::of_der(b"x")),
            detail: "the token has expired".into(),
        };
        store.insert_security_event(&event).await.unwrap();
        store.insert_security_event(&event).await.unwrap();
        let got = store.recent_security_events(10).await.unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[0].id > got[1].id, "newest first");
        let e = &got[0];
        assert_eq!(e.occurred_at_us, at.timestamp_micros());
        assert_eq!(e.kind, "authentication_failed");
        assert_eq!(e.code, "token_expired");
        assert_eq!(e.peer.as_deref(), Some("127.0.0.1:4000"));
        assert_eq!(e.partner.as_deref(), Some("metro-pd"));
        assert_eq!(e.cert_sha256.as_deref().map(str::len), Some(64));
    }
}

#[tokio::test]
async fn a_sqlite_database_reopens_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let settings = StorageSettings {
        url: format!("sqlite://{}", dir.path().join("g.db").display()),
        password_file: None,
        max_connections: 2,
    };
    let s = Store::open(&settings).await.unwrap();
    s.meta_init("kept", "yes").await.unwrap();
    s.close().await;
    let s = Store::open(&settings).await.unwrap();
    assert_eq!(s.meta_get("kept").await.unwrap().as_deref(), Some("yes"));
    let mode: (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(mode.0, "wal");
}

#[tokio::test]
async fn an_unsupported_url_is_a_clear_error() {
    let err = Store::open(&StorageSettings {
        url: "mysql://u:secret@h/d".into(),
        password_file: None,
        max_connections: 1,
    })
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("sqlite://"), "{msg}");
    assert!(!msg.contains("secret"), "{msg}");
}
