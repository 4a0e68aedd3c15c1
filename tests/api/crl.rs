//! Certificate revocation lists: a CRL that is forged, from another CA or older than the one in
//! force is refused at start-up and on reload (the running set stays in force); a CRL past its
//! nextUpdate is still used and reported by `/healthz`; past the grace period its issuer's
//! certificates are refused, in the handshake and on open connections, and the gateway reports
//! itself not ready (`/healthz` 503, `gateway_ready` 0).

use coresponse_gateway::config::Settings;
use coresponse_gateway::devinit::{DEV_TRUST_DOMAIN, pki::DevCa};
use coresponse_gateway::startup::Application;
use serde_json::Value;
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
    let err = app
        .state
        .reload()
        .await
        .expect_err("the reload must be refused");
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
    app.state.reload().await.expect("a newer CRL loads");
    // The same CRL read again is fine.
    app.state.reload().await.expect("the same CRL reloads");

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

#[tokio::test]
async fn a_stale_crl_is_still_used_and_reported_by_healthz() {
    let app = spawn_with(Db::Sqlite, |s| {
        s.metrics.enabled = true;
        s.metrics.listen = "127.0.0.1:0".parse().unwrap();
    })
    .await;
    let next_update = now() - Duration::hours(1);
    std::fs::write(crl_path(&app), dev_crl(2, next_update)).unwrap();
    app.state.reload().await.expect("a stale CRL loads");

    let metro = pki().partner_cert("metro-pd");
    let res = app.get(Some(&metro), "/healthz", None).await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok", "{body}");
    let crl = &body["crl"];
    assert_eq!(crl["status"], "stale", "{body}");
    let next: OffsetDateTime = crl["next_update"]
        .as_str()
        .and_then(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        .expect("next_update is RFC 3339");
    assert_eq!(next.unix_timestamp(), next_update.unix_timestamp());
    let grace: OffsetDateTime = crl["grace_ends"]
        .as_str()
        .and_then(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        .expect("grace_ends is RFC 3339");
    assert_eq!(
        grace.unix_timestamp() - next.unix_timestamp(),
        7 * 24 * 3600,
        "default grace"
    );
    assert!(
        crl["message"]
            .as_str()
            .unwrap()
            .contains("past its nextUpdate")
    );
    assert_eq!(crl["lists"][0]["crl_number"], "2");
    assert_eq!(
        crate::metrics::ready(&app).await,
        1.0,
        "a stale CRL leaves the gateway ready"
    );

    // Still in use: revocations hold and valid partners work.
    running_set_still_in_force(&app).await;
    app.stop().await;
}

/// A second CA in the client bundle, with a partner certificate it issued.
struct SecondCa {
    ca: DevCa,
    partner: (String, String),
    bundle: std::path::PathBuf,
    crl: std::path::PathBuf,
}

fn second_ca(dir: &std::path::Path) -> SecondCa {
    let ca = DevCa::generate("Second Partner CA").unwrap();
    let issued = ca.issue_partner(DEV_TRUST_DOMAIN, "county-mh").unwrap();
    let bundle = dir.join("client-ca-bundle.pem");
    std::fs::write(&bundle, format!("{}{}", pki().ca.cert_pem, ca.cert_pem)).unwrap();
    SecondCa {
        partner: (issued.cert_pem, issued.key_pem),
        bundle,
        crl: dir.join("second-crl.pem"),
        ca,
    }
}

impl SecondCa {
    fn write_crl(&self, number: u64, next_update: OffsetDateTime) {
        std::fs::write(
            &self.crl,
            crl_pem(
                &self.ca.cert_pem,
                &self.ca.key_pem,
                &[],
                number,
                next_update - Duration::days(30),
                next_update,
            ),
        )
        .unwrap();
    }
}

#[tokio::test]
async fn a_crl_past_its_grace_period_refuses_its_issuer_and_healthz_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let second = second_ca(dir.path());
    // Eight days past nextUpdate: beyond the default grace of seven.
    second.write_crl(1, now() - Duration::days(8));
    let (bundle, crl) = (second.bundle.clone(), second.crl.clone());
    let app = spawn_with(Db::Sqlite, |s| {
        s.tls.client_ca = bundle;
        s.tls.crls.push(crl);
        s.metrics.enabled = true;
        s.metrics.listen = "127.0.0.1:0".parse().unwrap();
    })
    .await;

    // The second CA's partner is refused in the handshake, and the refusal says why.
    assert!(
        app.get(Some(&second.partner), "/healthz", None)
            .await
            .is_err()
    );
    let event = app.security_event("crl_expired").await;
    assert_eq!(event.kind, "handshake_refused");
    assert!(event.detail.contains("Second Partner CA"), "{event:?}");

    // The dev CA's partners still work, and /healthz answers 503 with the reason.
    let metro = pki().partner_cert("metro-pd");
    let res = app.get(Some(&metro), "/healthz", None).await.unwrap();
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "crl_expired", "{body}");
    assert_eq!(body["crl"]["status"], "expired", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Second Partner CA"),
        "{body}"
    );
    // The metric a monitor alerts on says the same as /healthz.
    assert_eq!(crate::metrics::ready(&app).await, 0.0, "gateway_ready");
    let token = pki().token("metro-pd", "officer-17", &["officer"], &metro.0);
    let res = app
        .get(Some(&metro), "/v1/whoami", Some(&token))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // A current CRL of the second CA, reloaded, lets its partner in again.
    second.write_crl(2, now() + Duration::days(7));
    app.state.reload().await.expect("a current CRL loads");
    let res = app
        .get(Some(&second.partner), "/healthz", None)
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["crl"]["status"], "ok", "{body}");
    assert_eq!(crate::metrics::ready(&app).await, 1.0, "gateway_ready");
    app.stop().await;
}

#[tokio::test]
async fn a_crl_past_a_configured_grace_period_refuses_requests_on_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let second = second_ca(dir.path());
    second.write_crl(1, now() + Duration::days(1));
    let (bundle, crl) = (second.bundle.clone(), second.crl.clone());
    let app = spawn_with(Db::Sqlite, |s| {
        s.tls.client_ca = bundle;
        s.tls.crls.push(crl);
        s.tls.crl_grace_secs = 600;
    })
    .await;

    // A keep-alive connection opened while the CRL is current.
    let keepalive = reqwest::Client::builder()
        .tls_backend_preconfigured(crate::support::client_config(Some(&second.partner)))
        .build()
        .unwrap();
    let token = pki().token("county-mh", "clin-7", &["clinician"], &second.partner.0);
    let res = keepalive
        .get(app.url("/v1/whoami"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // A newer CRL whose nextUpdate passed an hour ago: beyond the 600 s grace.
    second.write_crl(2, now() - Duration::hours(1));
    app.state
        .reload()
        .await
        .expect("an authentic CRL loads even when out of date");

    let res = keepalive
        .get(app.url("/v1/whoami"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "certificate_refused", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("crl_expired"),
        "{body}"
    );
    let event = app.security_event("certificate_refused").await;
    assert!(event.detail.contains("crl_expired"), "{event:?}");

    assert!(
        app.get(Some(&second.partner), "/healthz", None)
            .await
            .is_err()
    );
    app.security_event("crl_expired").await;
    let metro = pki().partner_cert("metro-pd");
    let res = app.get(Some(&metro), "/healthz", None).await.unwrap();
    assert_eq!(res.status(), 503);
    app.stop().await;
}
