//! Mutual TLS: which client certificates open a connection, and that every refusal is
//! recorded with who, from where and why.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Db, PARTNERS, TestApp, client_config, pki, spawn_app};

async fn refused(app: &TestApp, identity: Option<&(String, String)>, code: &str) {
    let res = app.get(identity, "/healthz", None).await;
    assert!(res.is_err(), "handshake should be refused, got {res:?}");
    let event = app.security_event(code).await;
    assert_eq!(event.kind, "handshake_refused");
    assert!(
        event
            .peer
            .as_deref()
            .unwrap_or("")
            .starts_with("127.0.0.1:"),
        "{event:?}"
    );
}

#[tokio::test]
async fn a_connection_without_client_certificate_is_refused() {
    let app = spawn_app(Db::Sqlite).await;
    refused(&app, None, "certificate_missing").await;
    app.stop().await;
}

#[tokio::test]
async fn a_certificate_from_a_foreign_ca_is_refused() {
    let app = spawn_app(Db::Sqlite).await;
    refused(&app, Some(&pki().foreign), "certificate_unknown_issuer").await;
    let e = app.security_event("certificate_unknown_issuer").await;
    assert!(
        e.cert_sha256.is_some(),
        "the presented certificate is named: {e:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_expired_or_not_yet_valid_certificate_is_refused() {
    let app = spawn_app(Db::Sqlite).await;
    refused(&app, Some(&pki().expired), "certificate_expired").await;
    refused(
        &app,
        Some(&pki().not_yet_valid),
        "certificate_not_yet_valid",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_revoked_certificate_is_refused() {
    let app = spawn_app(Db::Sqlite).await;
    refused(&app, Some(&pki().revoked), "certificate_revoked").await;
    app.stop().await;
}

#[tokio::test]
async fn a_certificate_without_partner_san_or_naming_an_unregistered_partner_is_refused() {
    let app = spawn_app(Db::Sqlite).await;
    refused(
        &app,
        Some(&pki().no_san),
        "certificate_unregistered_partner",
    )
    .await;
    let e = app.security_event("certificate_unregistered_partner").await;
    assert!(e.detail.contains("no URI SAN"), "{e:?}");

    let app2 = spawn_app(Db::Sqlite).await;
    refused(
        &app2,
        Some(&pki().unregistered),
        "certificate_unregistered_partner",
    )
    .await;
    let e = app2
        .security_event("certificate_unregistered_partner")
        .await;
    assert!(e.detail.contains("`fire-dept`"), "{e:?}");
    app.stop().await;
    app2.stop().await;
}

#[tokio::test]
async fn each_demo_partner_certificate_is_accepted() {
    let app = spawn_app(Db::Sqlite).await;
    for (partner, _, _) in PARTNERS {
        let res = app
            .get(Some(&pki().partner_cert(partner)), "/healthz", None)
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{partner}");
        assert!(res.headers().contains_key("request-id"));
    }
    app.stop().await;
}

/// Revocation after a session was established holds for new (resumption-attempting)
/// connections and for requests on an already-open connection.
#[tokio::test]
async fn revocation_holds_for_resumed_sessions_and_open_connections() {
    let app = spawn_app(Db::Sqlite).await;
    let pki = pki();
    // A fresh certificate, not yet revoked.
    let issued = pki
        .ca
        .issue_partner(coresponse_gateway::devinit::DEV_TRUST_DOMAIN, "metro-pd")
        .unwrap();
    let identity = (issued.cert_pem.clone(), issued.key_pem.clone());
    let token = pki.token("metro-pd", "officer-17", &["officer"], &identity.0);

    // One client: keeps its connection alive and its TLS session cache.
    let config = Arc::new(client_config(Some(&identity)));
    let keepalive = reqwest::Client::builder()
        .tls_backend_preconfigured((*config).clone())
        .build()
        .unwrap();
    let res = keepalive
        .get(app.url("/v1/whoami"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // The same rustls config (same session store) handshakes directly: the gateway never
    // resumes, every handshake is a full one that verifies the certificate.
    let first = raw_handshake(&app, config.clone())
        .await
        .expect("first handshake");
    let second = raw_handshake(&app, config.clone())
        .await
        .expect("second handshake");
    assert_eq!(first, Some(rustls::HandshakeKind::Full));
    assert_eq!(second, Some(rustls::HandshakeKind::Full));

    // Revoke and reload.
    let crl = app.workdir.path().join("crl.pem");
    std::fs::write(
        &crl,
        pki.ca
            .crl(&[pki.revoked_serial.clone(), issued.serial.clone()])
            .unwrap(),
    )
    .unwrap();
    app.state.reload().await.expect("reload");

    // The open connection: refused at request time.
    let res = keepalive
        .get(app.url("/v1/whoami"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "certificate_refused");

    // A new connection offering the old session: refused in the handshake.
    assert!(raw_handshake(&app, config.clone()).await.is_err());
    let res = app.get(Some(&identity), "/healthz", None).await;
    assert!(res.is_err());
    app.security_event("certificate_revoked").await;
    app.stop().await;
}

/// Handshakes and sends one request on a raw rustls connection; returns the handshake kind.
async fn raw_handshake(
    app: &TestApp,
    config: Arc<rustls::ClientConfig>,
) -> Result<Option<rustls::HandshakeKind>, std::io::Error> {
    let mut tls = crate::support::tls_connect(app, config).await?;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut buf = Vec::new();
    tls.read_to_end(&mut buf).await?;
    if !buf.starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&buf).to_string(),
        ));
    }
    Ok(tls.get_ref().1.handshake_kind())
}

#[tokio::test]
async fn a_client_that_never_completes_the_handshake_is_dropped_and_recorded() {
    let app = crate::support::spawn_with(Db::Sqlite, |s| s.server.handshake_timeout_ms = 300).await;
    let mut tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let mut buf = [0u8; 16];
    // The server closes the connection: read returns 0 bytes (or an error).
    let n = tcp.read(&mut buf).await.unwrap_or(0);
    assert_eq!(n, 0);
    app.security_event("handshake_timeout").await;
    app.stop().await;
}

#[tokio::test]
async fn tls12_and_tls13_negotiate_forward_secret_aead_suites_only() {
    let app = spawn_app(Db::Sqlite).await;
    let identity = pki().partner_cert("oversight");
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(base_roots())
        .with_client_auth_cert(
            vec![rustls::pki_types::CertificateDer::from(
                crate::support::der_of(&identity.0),
            )],
            rustls::pki_types::pem::PemObject::from_pem_slice(identity.1.as_bytes()).unwrap(),
        )
        .unwrap();
        let mut tls = crate::support::tls_connect(&app, Arc::new(config))
            .await
            .unwrap();
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await.unwrap();
        assert!(buf.starts_with(b"HTTP/1.1 200"));
        let conn = tls.get_ref().1;
        assert_eq!(conn.protocol_version(), Some(version.version));
        let suite = format!("{:?}", conn.negotiated_cipher_suite().unwrap().suite());
        assert!(
            suite.contains("GCM") || suite.contains("CHACHA20_POLY1305"),
            "{suite}"
        );
        if version.version == rustls::ProtocolVersion::TLSv1_2 {
            assert!(suite.contains("ECDHE"), "{suite}");
        }
    }
    app.stop().await;
}

fn base_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read_to_string(pki().dir.join("ca.pem")).unwrap();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            crate::support::der_of(&ca),
        ))
        .unwrap();
    roots
}
