//! The same storage code on SQLite and PostgreSQL.

use coresponse_gateway::config::StorageSettings;
use coresponse_gateway::security::SecurityEventKind;
use coresponse_gateway::store::{
    Backend, Store, StoredSecurityEvent, meta, on_conn, security_events,
};

use crate::support::pg::PgCluster;

async fn stores() -> Vec<(Store, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = StorageSettings {
        max_connections: 4,
        ..StorageSettings::new(format!(
            "sqlite://{}",
            dir.path().join("nested/dir/gateway.db").display()
        ))
    };
    let pg = StorageSettings {
        max_connections: 4,
        ..StorageSettings::new(PgCluster::get().fresh_database().await)
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
        max_connections: 2,
        ..StorageSettings::new(url)
    };
    let first = Store::open(&settings).await.unwrap();
    meta::init(&mut first.acquire().await.unwrap().conn(), "k", "v")
        .await
        .unwrap();
    let second = Store::open(&settings).await.unwrap();
    let mut pooled = second.acquire().await.unwrap();
    assert_eq!(
        meta::get(&mut pooled.conn(), "k").await.unwrap().as_deref(),
        Some("v")
    );
    for (store, _dir) in stores().await {
        store.ping().await.unwrap();
    }
}

#[tokio::test]
async fn metadata_is_written_once() {
    for (store, _dir) in stores().await {
        let mut pooled = store.acquire().await.unwrap();
        let mut c = pooled.conn();
        assert_eq!(meta::init(&mut c, "k", "first").await.unwrap(), "first");
        assert_eq!(meta::init(&mut c, "k", "second").await.unwrap(), "first");
        assert_eq!(
            meta::get(&mut c, "k").await.unwrap().as_deref(),
            Some("first")
        );
    }
}

#[tokio::test]
async fn security_events_round_trip() {
    for (store, _dir) in stores().await {
        let at = chrono::Utc::now();
        let event = StoredSecurityEvent {
            id: 0,
            occurred_at_us: at.timestamp_micros(),
            kind: SecurityEventKind::AuthenticationFailed.as_str().to_owned(),
            code: "token_expired".into(),
            peer: Some("127.0.0.1:4000".into()),
            partner: Some("metro-pd".into()),
            cert_sha256: Some(coresponse_gateway::domain::CertFingerprint::of_der(b"x").to_hex()),
            detail: "the token has expired".into(),
        };
        let mut pooled = store.acquire().await.unwrap();
        let mut c = pooled.conn();
        security_events::insert(&mut c, &event).await.unwrap();
        security_events::insert(&mut c, &event).await.unwrap();
        let got = security_events::recent(&mut c, 10).await.unwrap();
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
        max_connections: 2,
        ..StorageSettings::new(format!("sqlite://{}", dir.path().join("g.db").display()))
    };
    let s = Store::open(&settings).await.unwrap();
    meta::init(&mut s.acquire().await.unwrap().conn(), "kept", "yes")
        .await
        .unwrap();
    s.close().await;
    let s = Store::open(&settings).await.unwrap();
    let mut pooled = s.acquire().await.unwrap();
    assert_eq!(
        meta::get(&mut pooled.conn(), "kept")
            .await
            .unwrap()
            .as_deref(),
        Some("yes")
    );
    let mode: (String,) = on_conn!(&mut pooled.conn(), |c| {
        sqlx::query_as("PRAGMA journal_mode").fetch_one(c).await
    })
    .unwrap();
    assert_eq!(mode.0, "wal");
}

#[tokio::test]
async fn an_unsupported_url_is_a_clear_error() {
    let err = Store::open(&StorageSettings {
        max_connections: 1,
        ..StorageSettings::new("mysql://u:secret@h/d")
    })
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("sqlite://"), "{msg}");
    assert!(!msg.contains("secret"), "{msg}");
}
