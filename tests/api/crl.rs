//! Certificate revocation lists: a CRL that is forged, from another CA or older than the one in
//! force is refused at start-up and on reload (the running set stays in force).

use coresponse_gateway::config::Settings;
use coresponse_gateway::devinit::pki::DevCa;
use coresponse_gateway::startup::Application;
use time::{Duration, OffsetDateTime};

use crate::support::{Db, TestApp, crl_pem, pki, settings, spawn_with};

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// A CRL of the dev CA, properly signed, revoking the test PKI's revoked certificate.
fn dev_crl(number: u64, next_update: OffsetDateTime) -> String {
    let pki = pki();
    crl_pem(
        &pki.ca.cert_pem,
        &pki.ca.key_pem,
        std::slice::from_ref(&pki.revoked_serial),
        number,
        next_update - Duration::days(30),
        next_update,
    )
}

/// A CRL naming the dev CA as issuer but signed by another key. It revokes the valid metro-pd
/// certificate and leaves out the revoked one, so accepting it would both lock a partner out
/// and let a revoked certificate in.
fn forged_crl() -> String {
    let pki = pki();
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let metro = pki.partner_cert("metro-pd");
    let serial = x509_serial(&metro.0);
    crl_pem(
        &pki.ca.cert_pem,
        &other.serialize_pem(),
        &[serial],
        u64::MAX,
        now() - Duration::minutes(5),
        now() + Duration::days(30),
    )
}

fn x509_serial(cert_pem: &str) -> Vec<u8> {
    use x509_parser::prelude::FromDer;
    let der = crate::support::der_of(cert_pem);
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).unwrap();
    cert.raw_serial().to_vec()
}

fn crl_path(app: &TestApp) -> std::path::PathBuf {
    app.workdir.path().join("crl.pem")
}

/// Builds a gateway with `settings` and returns the start-up error.
async fn start_up_error(settings: Settings) -> String {
    match Application::build(settings).await {
        Ok(app) => {
            let handle = app.handle();
            tokio::spawn(app.run_until_stopped());
            handle.stop(false).await;
            panic!("the gateway started");
        }
        Err(e) => format!("{e:#}"),
    }
}

/// The running set still works: a valid partner gets `whoami`, a revoked one is refused in the
/// handshake.
async fn running_set_still_in_force(app: &TestApp) {
    let pki = pki();
    let metro = pki.partner_cert("metro-pd");
    let token = pki.token("metro-pd", "officer-17", &["officer"], &metro.0);
    let res = app
        .get(Some(&metro), "/v1/whoami", Some(&token))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        app.get(Some(&pki.revoked), "/healthz", None).await.is_err(),
        "the revoked certificate must still be refused"
    );
    app.security_event("certificate_revoked").await;
}

async fn reload_refused(app: &TestApp, reason: &str) {
    let err = app.state.reload().expect_err("the reload must be refused");
    let err = format!("{err:#}");
    assert!(err.contains(reason), "{err}");
    assert!(err.contains("crl.pem"), "the file is named: {err}");
    let event = app.security_event("policy_reload_failed").await;
    assert!(event.detail.contains("running set kept"), "{event:?}");
    assert!(event.detail.contains(reason), "{event:?}");
}

#[tokio::test]
async fn a_crl_with_a_forged_signature_is_refused_at_start_up() {
    let workdir = tempfile::tempdir().unwrap();
    let s = settings(Db::Sqlite, workdir.path()).await;
    let path = s.tls.crls[0].clone();
    std::fs::write(&path, forged_crl()).unwrap();
    let err = start_up_error(s).await;
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("signature does not verify"), "{err}");
}

#[tokio::test]
async fn a_crl_with_a_forged_signature_on_reload_is_refused_and_the_running_set_kept() {
    let app = spawn_with(Db::Sqlite, |_| {}).await;
    std::fs::write(crl_path(&app), forged_crl()).unwrap();
    reload_refused(&app, "signature does not verify").await;
    running_set_still_in_force(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn a_crl_from_another_ca_is_refused_at_start_up_and_on_reload() {
    let other = DevCa::generate("Another Agency CA").unwrap();
    let foreign = crl_pem(
        &other.cert_pem,
        &other.key_pem,
        &[],
        u64::MAX,
        now() - Duration::minutes(5),
        now() + Duration::days(30),
    );

    let workdir = tempfile::tempdir().unwrap();
    let s = settings(Db::Sqlite, workdir.path()).await;
    std::fs::write(&s.tls.crls[0], &foreign).unwrap();
    let err = start_up_error(s).await;
    assert!(err.contains("Another Agency CA"), "{err}");
    assert!(err.contains("not a CA of the client CA bundle"), "{err}");

    let app = spawn_with(Db::Sqlite, |_| {}).await;
    std::fs::write(crl_path(&app), &foreign).unwrap();
    reload_refused(&app, "not a CA of the client CA bundle").await;
    running_set_still_in_force(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn a_crl_with_a_lower_number_than_the_one_in_force_is_refused() {
    let app = spawn_with(Db::Sqlite, |_| {}).await;
    let next = now() + Duration::days(30);
    std::fs::write(crl_path(&app), dev_crl(5, next)).unwrap();
    app.state.reload().expect("a newer CRL loads");
    // The same CRL read again is fine.
    app.state.reload().expect("the same CRL reloads");

    // Number 4, properly signed, and un-revoking the revoked certificate.
    let pki = pki();
    let older = crl_pem(
        &pki.ca.cert_pem,
        &pki.ca.key_pem,
        &[],
        4,
        now() - Duration::days(1),
        next,
    );
    std::fs::write(crl_path(&app), older).unwrap();
    reload_refused(&app, "CRL number 4 is lower than number 5").await;
    running_set_still_in_force(&app).await;
    app.stop().await;
}
