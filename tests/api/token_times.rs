//! Token lifetime and header strictness: `iat` in the future, lifetimes beyond
//! `identity.max_token_lifetime_secs`, absurd time values and critical header extensions are
//! refused with precise codes, over real TLS with tokens signed by the partner's key.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::support::{Db, TestApp, pki, spawn_app, spawn_with};

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

fn metro() -> (String, String) {
    pki().partner_cert("metro-pd")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Valid metro-pd claims with `iat` = `nbf` = now and `exp` = now + `lifetime`.
fn claims_living(lifetime: i64) -> Value {
    let mut c = pki().claims("metro-pd", &metro().0);
    let now = now();
    c["iat"] = json!(now);
    c["nbf"] = json!(now);
    c["exp"] = json!(now + lifetime);
    c
}

async fn status_and_body(app: &TestApp, token: &str) -> (u16, Value) {
    let res = app
        .get(Some(&metro()), "/v1/whoami", Some(token))
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

async fn accepted(app: &TestApp, token: &str) {
    let (status, body) = status_and_body(app, token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["partner"], "metro-pd");
}

/// 401 with `code`, recorded as a security event; returns the message.
async fn refused(app: &TestApp, token: &str, code: &str) -> String {
    let (status, body) = status_and_body(app, token).await;
    assert_eq!(status, 401, "expected {code}: {body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        !body.to_string().contains(token),
        "a refusal never echoes the token"
    );
    let event = app.security_event(code).await;
    assert_eq!(event.kind, "authentication_failed");
    assert!(!event.detail.contains(token));
    body["message"].as_str().unwrap().to_owned()
}

/// Signs `claims` under a hand-written protected header with metro-pd's ES256 key.
fn sign_with_header(header_json: &str, claims: &Value) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header_json),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&pki().signing_key("metro-pd")).unwrap();
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::ES256)
            .unwrap();
    format!("{message}.{signature}")
}

#[tokio::test]
async fn a_token_issued_in_the_future_is_refused() {
    let app = spawn_app(Db::Sqlite).await;
    for ahead in [DAY, 3650 * DAY] {
        let mut c = claims_living(300);
        c["iat"] = json!(now() + ahead);
        let t = pki().sign_claims("metro-pd", &c);
        let message = refused(&app, &t, "token_not_yet_valid").await;
        assert!(message.contains("`iat`"), "{message}");
    }
    app.stop().await;
}

#[tokio::test]
async fn an_exp_of_two_to_the_63_and_other_absurd_times_are_refused() {
    let app = spawn_app(Db::Sqlite).await;
    let mut c = claims_living(300);
    c["exp"] = json!(1u64 << 63);
    let t = pki().sign_claims("metro-pd", &c);
    let message = refused(&app, &t, "token_claims_invalid").await;
    assert!(message.contains("`exp`"), "{message}");

    for (claim, value) in [
        ("iat", json!(-1)),
        ("nbf", json!(253_402_300_800_i64)),
        ("iat", json!(now() as f64 + 0.25)),
        ("nbf", json!("yesterday")),
    ] {
        let mut c = claims_living(300);
        c[claim] = value;
        let t = pki().sign_claims("metro-pd", &c);
        let message = refused(&app, &t, "token_claims_invalid").await;
        assert!(message.contains(&format!("`{claim}`")), "{message}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_lifetime_beyond_the_default_limit_is_refused() {
    let app = spawn_app(Db::Sqlite).await;
    let t = pki().sign_claims("metro-pd", &claims_living(2 * HOUR));
    let message = refused(&app, &t, "token_lifetime_too_long").await;
    assert!(message.contains("3600 s"), "{message}");
    assert!(
        message.contains("identity.max_token_lifetime_secs"),
        "{message}"
    );

    // The limit itself is accepted, one second more is not.
    accepted(&app, &pki().sign_claims("metro-pd", &claims_living(HOUR))).await;
    let t = pki().sign_claims("metro-pd", &claims_living(HOUR + 1));
    refused(&app, &t, "token_lifetime_too_long").await;
    // A short-lived token, as identity providers issue them, is accepted.
    accepted(
        &app,
        &pki().token("metro-pd", "officer-17", &["officer"], &metro().0),
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_token_without_iat_whose_exp_is_too_far_ahead_is_refused() {
    let app = spawn_app(Db::Sqlite).await;
    let mut c = claims_living(2 * HOUR);
    c.as_object_mut().unwrap().remove("iat");
    let t = pki().sign_claims("metro-pd", &c);
    let message = refused(&app, &t, "token_lifetime_too_long").await;
    assert!(message.contains("no `iat`"), "{message}");

    let mut c = claims_living(10 * 60);
    c.as_object_mut().unwrap().remove("iat");
    accepted(&app, &pki().sign_claims("metro-pd", &c)).await;
    app.stop().await;
}

#[tokio::test]
async fn the_lifetime_limit_is_configurable() {
    let app = spawn_with(Db::Sqlite, |s| s.identity.max_token_lifetime_secs = 600).await;
    accepted(&app, &pki().sign_claims("metro-pd", &claims_living(600))).await;
    let t = pki().sign_claims("metro-pd", &claims_living(900));
    let message = refused(&app, &t, "token_lifetime_too_long").await;
    assert!(message.contains("600 s"), "{message}");
    app.stop().await;
}

#[tokio::test]
async fn a_critical_header_extension_is_refused() {
    let app = spawn_app(Db::Sqlite).await;
    // Through the library's own header type.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("metro-pd-dev-1".into());
    header.crit = Some(vec!["http://example.invalid/ext".into()]);
    header
        .extras
        .insert("http://example.invalid/ext", json!(true));
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&pki().signing_key("metro-pd")).unwrap();
    let t = jsonwebtoken::encode(&header, &claims_living(300), &key).unwrap();
    let message = refused(&app, &t, "token_crit_unsupported").await;
    assert!(message.contains("crit"), "{message}");

    // RFC 7797 unencoded payloads, declared critical as that RFC requires.
    let t = sign_with_header(
        r#"{"alg":"ES256","kid":"metro-pd-dev-1","b64":false,"crit":["b64"]}"#,
        &claims_living(300),
    );
    refused(&app, &t, "token_crit_unsupported").await;

    // The same header without crit, signed the same way, is accepted: the refusal is the crit.
    let t = sign_with_header(
        r#"{"alg":"ES256","kid":"metro-pd-dev-1","typ":"JWT"}"#,
        &claims_living(300),
    );
    accepted(&app, &t).await;
    app.stop().await;
}

#[tokio::test]
async fn a_header_or_claims_naming_a_member_twice_are_refused() {
    let app = spawn_app(Db::Sqlite).await;
    let t = sign_with_header(
        r#"{"alg":"ES256","kid":"county-mh-dev-1","kid":"metro-pd-dev-1"}"#,
        &claims_living(300),
    );
    refused(&app, &t, "token_malformed").await;
    let t = sign_with_header(
        r#"{"alg":"ES256","kid":"metro-pd-dev-1","crit":["x"],"crit":["y"]}"#,
        &claims_living(300),
    );
    refused(&app, &t, "token_malformed").await;

    // Two `iat` members: one would hide a future issue time from a lenient reader.
    let c = claims_living(300);
    let body = c.to_string();
    let doubled = body.replacen('{', &format!("{{\"iat\":{},", now() + DAY), 1);
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","kid":"metro-pd-dev-1"}"#),
        URL_SAFE_NO_PAD.encode(doubled)
    );
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&pki().signing_key("metro-pd")).unwrap();
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::ES256)
            .unwrap();
    let t = format!("{message}.{signature}");
    refused(&app, &t, "token_claims_invalid").await;
    app.stop().await;
}
