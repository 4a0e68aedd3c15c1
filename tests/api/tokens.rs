//! User tokens: the attacks are refused with precise codes, recorded as security events; a
//! valid bound token of each demo partner gets `whoami`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::support::{Db, PARTNERS, Pki, TestApp, pki, spawn_app};

async fn expect_refusal(
    app: &TestApp,
    identity: &(String, String),
    token: Option<&str>,
    status: u16,
    code: &str,
) -> Value {
    let res = app.get(Some(identity), "/v1/whoami", token).await.unwrap();
    assert_eq!(res.status(), status, "expected {code}");
    if status == 401 {
        let www = res
            .headers()
            .get("www-authenticate")
            .expect("401 carries WWW-Authenticate")
            .to_str()
            .unwrap()
            .to_owned();
        assert!(www.starts_with("Bearer"), "{www}");
    }
    assert!(res.headers().contains_key("request-id"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert!(!body["message"].as_str().unwrap_or("").is_empty());
    if let Some(t) = token {
        assert!(
            !body.to_string().contains(t),
            "a refusal must not echo the token"
        );
    }
    let event = app.security_event(code).await;
    assert_eq!(event.kind, "authentication_failed");
    assert_eq!(event.partner.as_deref(), Some("metro-pd"));
    if let Some(t) = token {
        assert!(!event.detail.contains(t));
    }
    body
}

fn metro() -> (String, String) {
    pki().partner_cert("metro-pd")
}

#[tokio::test]
async fn each_demo_partner_user_gets_whoami() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = spawn_app(db).await;
        for (partner, user, role) in PARTNERS {
            let identity = pki().partner_cert(partner);
            let token = pki().token(partner, user, &[role], &identity.0);
            let res = app
                .get(Some(&identity), "/v1/whoami", Some(&token))
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            let body: Value = res.json().await.unwrap();
            let fp = coresponse_gateway::domain::CertFingerprint::of_der(&crate::support::der_of(
                &identity.0,
            ));
            assert_eq!(body["partner"], partner);
            assert_eq!(body["user"], user);
            assert_eq!(body["roles"], json!([role]));
            assert_eq!(body["certificate_sha256"], fp.to_hex());
            let kind = match partner {
                "metro-pd" => "police",
                "county-mh" => "mental-health",
                _ => "compliance",
            };
            assert_eq!(body["partner_kind"], kind);
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn missing_and_malformed_tokens_are_refused() {
    let app = spawn_app(Db::Sqlite).await;
    expect_refusal(&app, &metro(), None, 401, "token_missing").await;
    expect_refusal(&app, &metro(), Some("not.a.jwt"), 401, "token_malformed").await;
    app.stop().await;
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_refused() {
    let app = spawn_app(Db::Sqlite).await;
    let pki = pki();
    let now = chrono::Utc::now().timestamp();
    let mut c = pki.claims("metro-pd", &metro().0);
    c["exp"] = json!(now - 3600);
    c["nbf"] = json!(now - 7200);
    let t = pki.sign_claims("metro-pd", &c);
    expect_refusal(&app, &metro(), Some(&t), 401, "token_expired").await;

    let mut c = pki.claims("metro-pd", &metro().0);
    c["nbf"] = json!(now + 3600);
    c["exp"] = json!(now + 7200);
    let t = pki.sign_claims("metro-pd", &c);
    expect_refusal(&app, &metro(), Some(&t), 401, "token_not_yet_valid").await;
    app.stop().await;
}

#[tokio::test]
async fn wrong_audience_and_wrong_issuer_are_refused() {
    let app = spawn_app(Db::Sqlite).await;
    let pki = pki();
    let mut c = pki.claims("metro-pd", &metro().0);
    c["aud"] = json!("some-other-service");
    let t = pki.sign_claims("metro-pd", &c);
    expect_refusal(&app, &metro(), Some(&t), 401, "token_wrong_audience").await;

    let mut c = pki.claims("metro-pd", &metro().0);
    c["iss"] = json!("https://idp.evil.example");
    let t = pki.sign_claims("metro-pd", &c);
    expect_refusal(&app, &metro(), Some(&t), 401, "token_wrong_issuer").await;
    app.stop().await;
}

#[tokio::test]
async fn alg_none_is_refused() {
    let app = spawn_app(Db::Sqlite).await;
    let claims = pki().claims("metro-pd", &metro().0);
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    for token in [format!("{header}.{body}."), format!("{header}.{body}")] {
        expect_refusal(&app, &metro(), Some(&token), 401, "token_malformed").await;
    }
    app.stop().await;
}

#[tokio::test]
async fn hs256_signed_with_the_partner_public_key_is_refused() {
    let app = spawn_app(Db::Sqlite).await;
    let pki = pki();
    // The key-confusion attack: HMAC keyed with the partner's public key, in PEM and as the
    // JWKS file the gateway loads.
    let private = String::from_utf8(pki.signing_key("metro-pd")).unwrap();
    let public_pem = rcgen::KeyPair::from_pem(&private).unwrap().public_key_pem();
    let jwks = std::fs::read(pki.dir.join("partner-keys/metro-pd.jwks.json")).unwrap();
    let claims = pki.claims("metro-pd", &metro().0);
    for secret in [public_pem.as_bytes(), jwks.as_slice()] {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("metro-pd-dev-1".into());
        let t = jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .unwrap();
        expect_refusal(&app, &metro(), Some(&t), 401, "token_algorithm_not_allowed").await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_token_signed_by_another_partner_key_is_refused() {
    let app = spawn_app(Db::Sqlite).await;
    let pki = pki();
    // metro-pd's claims and kid, county-mh's signature: a forgery.
    let claims = pki.claims("metro-pd", &metro().0);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("metro-pd-dev-1".into());
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&pki.signing_key("county-mh")).unwrap();
    let t = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    expect_refusal(&app, &metro(), Some(&t), 401, "token_signature_invalid").await;

    // A valid token whose signature bytes were tampered with.
    let good = pki.token("metro-pd", "officer-17", &["officer"], &metro().0);
    let (head, sig) = good.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    sig[5] ^= 0x01;
    let forged = format!("{head}.{}", URL_SAFE_NO_PAD.encode(sig));
    expect_refusal(
        &app,
        &metro(),
        Some(&forged),
        401,
        "token_signature_invalid",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_valid_token_over_another_partner_certificate_is_refused() {
    let app = spawn_app(Db::Sqlite).await;
    let pki = pki();
    let county = pki.partner_cert("county-mh");
    let t = pki.token("county-mh", "clin-7", &["clinician"], &county.0);
    let body = expect_refusal(&app, &metro(), Some(&t), 403, "token_partner_mismatch").await;
    assert!(body["message"].as_str().unwrap().contains("county-mh"));
    app.stop().await;
}

#[tokio::test]
async fn certificate_binding_is_enforced() {
    let app = spawn_app(Db::Sqlite).await;
    let pki = pki();
    // Bound to another metro-pd certificate (e.g. a stolen token replayed from elsewhere).
    let other = pki
        .ca
        .issue_partner(coresponse_gateway::devinit::DEV_TRUST_DOMAIN, "metro-pd")
        .unwrap();
    let t = pki.token("metro-pd", "officer-17", &["officer"], &other.cert_pem);
    expect_refusal(&app, &metro(), Some(&t), 401, "token_binding_mismatch").await;

    // No cnf at all, and the registry requires binding.
    let mut c = pki.claims("metro-pd", &metro().0);
    c.as_object_mut().unwrap().remove("cnf");
    let t = pki.sign_claims("metro-pd", &c);
    expect_refusal(&app, &metro(), Some(&t), 401, "token_binding_missing").await;
    app.stop().await;
}

#[tokio::test]
async fn claims_with_invalid_roles_or_subject_are_refused() {
    let app = spawn_app(Db::Sqlite).await;
    let pki = pki();
    let mut c = pki.claims("metro-pd", &metro().0);
    c["roles"] = json!("officer");
    let t = pki.sign_claims("metro-pd", &c);
    expect_refusal(&app, &metro(), Some(&t), 401, "token_claims_invalid").await;
    let mut c = pki.claims("metro-pd", &metro().0);
    c["sub"] = json!("has space");
    let t = pki.sign_claims("metro-pd", &c);
    expect_refusal(&app, &metro(), Some(&t), 401, "token_claims_invalid").await;
    app.stop().await;
}

#[test]
fn the_issuer_helper_matches_the_registry() {
    let text = std::fs::read_to_string(crate::support::repo_root().join("policies/partners.toml"))
        .unwrap();
    for (p, _, _) in PARTNERS {
        assert!(text.contains(&Pki::issuer(p)), "{p}");
    }
}
