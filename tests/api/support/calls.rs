//! Calls to the gateway as its users make them: a partner certificate with a signed token for
//! one user, writes and reads of records, and the record bodies most tests write.

use serde_json::Value;

use super::{TestApp, client, pki};

use super::bodies;

pub type Who = ((String, String), String);

pub fn who(partner: &str, user: &str, roles: &[&str]) -> Who {
    let id = pki().partner_cert(partner);
    let token = pki().token(partner, user, roles, &id.0);
    (id, token)
}

/// A caller whose token is issued at `at`: for tests that move the gateway's clock, since the
/// gateway checks a token's times against that clock.
pub fn who_at(partner: &str, user: &str, roles: &[&str], at: chrono::DateTime<chrono::Utc>) -> Who {
    let id = pki().partner_cert(partner);
    let mut claims = pki().claims(partner, &id.0);
    let t = at.timestamp();
    claims["sub"] = serde_json::json!(user);
    claims["roles"] = serde_json::json!(roles);
    claims["iat"] = serde_json::json!(t);
    claims["nbf"] = serde_json::json!(t);
    claims["exp"] = serde_json::json!(t + 300);
    let token = pki().sign_claims(partner, &claims);
    (id, token)
}

pub fn officer() -> Who {
    who("metro-pd", "officer-17", &["officer"])
}

pub fn clinician() -> Who {
    who("county-mh", "clin-3", &["clinician"])
}

pub async fn put(app: &TestApp, w: &Who, path: &str, body: &Value) -> (u16, Value) {
    send(app, w, reqwest::Method::PUT, path, body).await
}

pub async fn post(app: &TestApp, w: &Who, path: &str, body: &Value) -> (u16, Value) {
    send(app, w, reqwest::Method::POST, path, body).await
}

/// Sends `body` as JSON with `w`'s certificate and token; the status and the JSON answer.
async fn send(
    app: &TestApp,
    w: &Who,
    method: reqwest::Method,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    let res = client(Some(&w.0))
        .request(method, app.url(path))
        .bearer_auth(&w.1)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// A read with `Purpose-Of-Use` (if given) and extra headers: status, Disclosure-Id, body.
pub async fn read(
    app: &TestApp,
    w: &Who,
    path: &str,
    purpose: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, Value) {
    let mut req = client(Some(&w.0)).get(app.url(path)).bearer_auth(&w.1);
    if let Some(p) = purpose {
        req = req.header("Purpose-Of-Use", p);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let id = res
        .headers()
        .get("disclosure-id")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, id, res.json().await.unwrap_or(Value::Null))
}

/// A crisis incident about metro-pd person `subject` (see `tests/common/bodies.rs`).
pub fn incident_body(subject: &str) -> Value {
    bodies::incident(
        subject,
        "NARRATIVE-MARKER caller reported the person pacing outside",
    )
}

/// A safety plan of metro-pd person `subject`, county-mh `MRN-88`.
pub fn safety_plan_body(subject: &str) -> Value {
    bodies::safety_plan(subject, "MRN-88")
}
