//! The edges of HTTP, tried as a hostile partner would, over raw TLS: request bodies sent a
//! byte at a time, more connections than a partner may hold, requests the HTTP parser refuses,
//! methods a route does not take, headers sent twice, and `/healthz` on a connection whose
//! certificate was revoked while it was open.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coresponse_gateway::audit::{EntryKind, Outcome, query};
use coresponse_gateway::domain::PartnerId;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::records_api::{incident_body, who};
use crate::support::{self, Db, TestApp, client_config, pki, scalar, spawn_app, spawn_with};

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A TLS connection presenting `identity`.
async fn connect(app: &TestApp, identity: &(String, String)) -> Tls {
    support::tls_connect(app, Arc::new(client_config(Some(identity))))
        .await
        .unwrap()
}

/// One HTTP/1.1 answer: status, headers (names lower-case), body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    /// The JSON error body's code, after checking that the answer is a JSON error with a
    /// `Request-Id`.
    fn error_code(&self) -> String {
        assert!(
            self.header("request-id").is_some_and(|v| !v.is_empty()),
            "no Request-Id: {self:?}"
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        let v = self.json();
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        v["code"].as_str().unwrap().to_owned()
    }
}

/// Reads one answer (a head and a `Content-Length` body), within 10 s.
async fn answer<R: AsyncRead + Unpin>(r: &mut R) -> Answer {
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            let n = r.read(&mut byte).await.expect("read the answer");
            assert!(n == 1, "the connection ended before an answer: {buf:?}");
            buf.push(byte[0]);
        }
        let head = String::from_utf8(buf).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).await.unwrap();
        Answer {
            status,
            headers,
            body: String::from_utf8(body).unwrap(),
        }
    })
    .await
    .expect("an answer within 10 s")
}

/// Whether the server closes the connection within `within` (reads until end of stream).
async fn closes<R: AsyncRead + Unpin>(r: &mut R, within: Duration) -> bool {
    let mut sink = Vec::new();
    matches!(
        tokio::time::timeout(within, r.read_to_end(&mut sink)).await,
        Ok(Ok(_) | Err(_))
    )
}

/// Sends `bytes` to `w` one at a time, one every `every`, until they run out or the server
/// stops reading.
fn dribble<W: AsyncWrite + Unpin + Send + 'static>(
    mut w: W,
    bytes: Vec<u8>,
    every: Duration,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut sent = 0;
        for b in bytes {
            if w.write_all(&[b]).await.is_err() || w.flush().await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(every).await;
        }
        sent
    })
}

async fn raw_request(app: &TestApp, identity: &(String, String), request: &[u8]) -> Answer {
    let mut tls = connect(app, identity).await;
    tls.write_all(request).await.unwrap();
    answer(&mut tls).await
}

const BOTH: [Db; 2] = [Db::Sqlite, Db::Postgres];

#[tokio::test]
async fn a_body_sent_a_byte_at_a_time_gets_408_and_changes_nothing() {
    for db in BOTH {
        let app = spawn_with(db, |s| s.server.body_timeout_ms = 400).await;
        let (identity, token) = who("metro-pd", "officer-17", &["officer"]);
        for chunked in [false, true] {
            let tls = connect(&app, &identity).await;
            let (mut rd, mut wr) = tokio::io::split(tls);
            let framing = if chunked {
                "Transfer-Encoding: chunked"
            } else {
                // What the attack declared: 100,000 bytes, then one per interval.
                "Content-Length: 100000"
            };
            let head = format!(
                "PUT /v1/records/crisis-incident/INC-SLOW HTTP/1.1\r\nHost: localhost\r\n\
                 Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
                 {framing}\r\n\r\n"
            );
            wr.write_all(head.as_bytes()).await.unwrap();
            let body = incident_body("P-SLOW").to_string().into_bytes();
            let body = if chunked {
                // One chunk of one byte at a time.
                body.iter()
                    .flat_map(|b| {
                        let mut c = b"1\r\n".to_vec();
                        c.push(*b);
                        c.extend_from_slice(b"\r\n");
                        c
                    })
                    .collect()
            } else {
                body
            };
            let started = Instant::now();
            let writer = dribble(wr, body, Duration::from_millis(20));
            let a = answer(&mut rd).await;
            let took = started.elapsed();
            assert_eq!(a.status, 408, "{db:?} chunked={chunked}: {a:?}");
            assert_eq!(a.error_code(), "body_timeout");
            assert_eq!(a.header("connection"), Some("close"), "{a:?}");
            assert!(took >= Duration::from_millis(400), "{took:?}");
            assert!(closes(&mut rd, Duration::from_secs(5)).await, "held open");
            writer.abort();
        }
        // Nothing was written, and no write was logged.
        assert_eq!(scalar(app.store(), "SELECT COUNT(*) FROM records").await, 0);
        let writes = app
            .log_entries(&query::Filter {
                kinds: vec![EntryKind::RecordChanged],
                limit: 10,
                ..Default::default()
            })
            .await;
        assert!(writes.is_empty(), "{writes:?}");
        // A body that arrives in time is still accepted.
        let (s, b) = crate::records_api::put(
            &app,
            &(identity.clone(), token.clone()),
            "/v1/records/crisis-incident/INC-SLOW",
            &incident_body("P-SLOW"),
        )
        .await;
        assert_eq!(s, 201, "{b}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_slow_body_on_a_refused_request_does_not_hold_the_connection() {
    let app = spawn_app(Db::Sqlite).await;
    let identity = pki().partner_cert("metro-pd");
    for framing in ["Content-Length: 100000", "Transfer-Encoding: chunked"] {
        let tls = connect(&app, &identity).await;
        let (mut rd, mut wr) = tokio::io::split(tls);
        // No token: refused before the body is read.
        let head = format!(
            "PUT /v1/records/crisis-incident/INC-1 HTTP/1.1\r\nHost: localhost\r\n\
             Content-Type: application/json\r\n{framing}\r\n\r\n"
        );
        wr.write_all(head.as_bytes()).await.unwrap();
        let filler = if framing.starts_with("Transfer") {
            b"1\r\na\r\n".repeat(2000)
        } else {
            vec![b'a'; 10_000]
        };
        let writer = dribble(wr, filler, Duration::from_millis(20));
        let a = answer(&mut rd).await;
        assert_eq!(a.status, 401, "{framing}: {a:?}");
        assert!(
            closes(&mut rd, Duration::from_secs(5)).await,
            "{framing}: the connection was held open while the client dribbled"
        );
        writer.abort();
    }
    app.stop().await;
}

#[tokio::test]
async fn a_partner_past_its_connection_cap_is_refused_counted_and_recorded() {
    let app = spawn_with(Db::Sqlite, |s| s.server.max_connections_per_partner = 2).await;
    let metro = pki().partner_cert("metro-pd");
    let keep = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tls = connect(&app, &metro).await;
        tls.write_all(keep).await.unwrap();
        assert_eq!(answer(&mut tls).await.status, 200);
        held.push(tls);
    }
    // The third connection of the same partner: refused with a JSON 429, then closed.
    let mut third = connect(&app, &metro).await;
    third.write_all(keep).await.unwrap();
    let a = answer(&mut third).await;
    assert_eq!(a.status, 429, "{a:?}");
    assert_eq!(a.error_code(), "too_many_connections");
    assert!(closes(&mut third, Duration::from_secs(5)).await);
    // Another partner is not affected.
    let county = pki().partner_cert("county-mh");
    let mut other = connect(&app, &county).await;
    other.write_all(keep).await.unwrap();
    assert_eq!(answer(&mut other).await.status, 200);
    // Counted, and recorded as a security event (and in the disclosure log).
    let metro_id: PartnerId = "metro-pd".parse().unwrap();
    assert_eq!(app.state.connections.refused_total(&metro_id), 1);
    assert_eq!(app.state.connections.open(&metro_id), 2);
    let event = app.security_event("too_many_connections").await;
    assert_eq!(event.kind, "connection_refused");
    assert_eq!(event.partner.as_deref(), Some("metro-pd"));
    assert!(
        event.detail.contains("max_connections_per_partner"),
        "{event:?}"
    );
    let mut logged = Vec::new();
    for _ in 0..100 {
        logged = app
            .log_entries(&query::Filter {
                kinds: vec![EntryKind::ConnectionRefused],
                limit: 10,
                ..Default::default()
            })
            .await;
        if !logged.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(
        logged[0].data.outcome,
        Outcome::deny("too_many_connections")
    );

    // A flood of refused connections adds no entry per connection.
    for _ in 0..20 {
        let mut c = connect(&app, &metro).await;
        c.write_all(keep).await.unwrap();
        assert_eq!(answer(&mut c).await.status, 429);
    }
    assert_eq!(app.state.connections.refused_total(&metro_id), 21);
    let logged = app
        .log_entries(&query::Filter {
            kinds: vec![EntryKind::ConnectionRefused],
            limit: 100,
            ..Default::default()
        })
        .await;
    assert_eq!(logged.len(), 1, "reported at most once per interval");

    // A closed connection frees its slot.
    drop(held.pop());
    let mut admitted = false;
    for _ in 0..100 {
        let mut c = connect(&app, &metro).await;
        c.write_all(keep).await.unwrap();
        if answer(&mut c).await.status == 200 {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        admitted,
        "the slot of the closed connection was never freed"
    );
    app.stop().await;
}

/// A partner over its cap must not hold descriptors by opening connections that send nothing:
/// such a connection is closed once its grace has passed, long before the request timeout.
#[tokio::test]
async fn a_refused_connection_that_sends_nothing_is_dropped_after_its_grace() {
    let app = spawn_with(Db::Sqlite, |s| {
        s.server.max_connections_per_partner = 1;
        s.server.request_timeout_ms = 30_000;
    })
    .await;
    let metro = pki().partner_cert("metro-pd");
    let keep = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut held = connect(&app, &metro).await;
    held.write_all(keep).await.unwrap();
    assert_eq!(answer(&mut held).await.status, 200);

    let mut idle = connect(&app, &metro).await;
    let started = Instant::now();
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), idle.read_to_end(&mut sink)).await;
    assert!(
        matches!(read, Ok(Ok(_) | Err(_))),
        "a refused connection that sent nothing was held open"
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "closed after {took:?}, not after its grace"
    );
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    assert!(sink.is_empty(), "{}", String::from_utf8_lossy(&sink));
    let metro_id: PartnerId = "metro-pd".parse().unwrap();
    assert_eq!(app.state.connections.refused_total(&metro_id), 1);

    // A refused connection that sends its request in time is still told why.
    let mut prompt = connect(&app, &metro).await;
    prompt.write_all(keep).await.unwrap();
    assert_eq!(
        answer(&mut prompt).await.error_code(),
        "too_many_connections"
    );
    // The admitted connection is not affected.
    held.write_all(keep).await.unwrap();
    assert_eq!(answer(&mut held).await.status, 200);
    app.stop().await;
}

#[tokio::test]
async fn requests_the_parser_refuses_get_a_json_error_with_a_request_id() {
    let app = spawn_app(Db::Sqlite).await;
    let identity = pki().partner_cert("oversight");
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "a NUL byte in a header",
            b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-A: a\0b\r\n\r\n".to_vec(),
            400,
            "malformed_request",
        ),
        (
            "no Host",
            b"GET /healthz HTTP/1.1\r\n\r\n".to_vec(),
            400,
            "malformed_request",
        ),
        (
            "a malformed request line",
            b"GET /healthz HTTP/1.1 extra\r\nHost: localhost\r\n\r\n".to_vec(),
            400,
            "malformed_request",
        ),
        (
            "too many headers",
            format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\n{many}\r\n").into_bytes(),
            431,
            "headers_too_large",
        ),
    ];
    for (what, request, status, code) in cases {
        let mut tls = connect(&app, &identity).await;
        // The gateway may answer before an oversized head is fully written.
        let _ = tls.write_all(&request).await;
        let a = answer(&mut tls).await;
        assert_eq!(a.status, status, "{what}: {a:?}");
        assert_eq!(a.error_code(), code, "{what}");
        assert_eq!(a.header("connection"), Some("close"), "{what}: {a:?}");
    }
    // The gateway still serves, and its own answers are untouched.
    let a = raw_request(
        &app,
        &identity,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_head_that_does_not_arrive_in_time_gets_a_json_408() {
    let app = spawn_with(Db::Sqlite, |s| s.server.request_timeout_ms = 300).await;
    let identity = pki().partner_cert("oversight");
    let mut tls = connect(&app, &identity).await;
    tls.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let a = answer(&mut tls).await;
    assert_eq!(a.status, 408, "{a:?}");
    assert_eq!(a.error_code(), "request_timeout");
    app.stop().await;
}

#[tokio::test]
async fn a_method_a_route_does_not_take_is_405_with_allow() {
    let app = spawn_app(Db::Sqlite).await;
    let (identity, token) = who("oversight", "auditor-2", &["compliance"]);
    for (method, path, allow) in [
        ("POST", "/healthz", "GET"),
        ("DELETE", "/v1/whoami", "GET"),
        ("GET", "/v1/referrals", "POST"),
        ("PUT", "/v1/referrals/REF-1", "GET"),
        ("DELETE", "/v1/records/crisis-incident/INC-1", "PUT, GET"),
        ("DELETE", "/v1/accounting-suspensions", "POST, GET"),
        ("GET", "/v1/consents/consent-1/revoke", "POST"),
        ("PATCH", "/v1/subjects/metro-pd/P-1/coverage", "GET"),
    ] {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let a = raw_request(&app, &identity, request.as_bytes()).await;
        assert_eq!(a.status, 405, "{method} {path}: {a:?}");
        assert_eq!(a.header("allow"), Some(allow), "{method} {path}: {a:?}");
        assert_eq!(a.error_code(), "method_not_allowed");
        let allowed: Vec<String> = allow.split(", ").map(str::to_owned).collect();
        assert_eq!(a.json()["details"]["allowed"], serde_json::json!(allowed));
    }
    // An unknown path is still 404.
    let a = raw_request(
        &app,
        &identity,
        b"POST /v1/nothing HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(a.status, 404);
    assert_eq!(a.error_code(), "route_not_found");
    app.stop().await;
}

#[tokio::test]
async fn purpose_or_authorization_sent_twice_is_400_naming_the_header() {
    let app = spawn_app(Db::Sqlite).await;
    let (identity, token) = who("county-mh", "clin-7", &["clinician"]);
    let a = raw_request(
        &app,
        &identity,
        format!(
            "GET /v1/records/crisis-incident/INC-1 HTTP/1.1\r\nHost: localhost\r\n\
             Authorization: Bearer {token}\r\nPurpose-Of-Use: treatment\r\n\
             Purpose-Of-Use: investigation\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(a.status, 400, "{a:?}");
    assert_eq!(a.error_code(), "invalid_header");
    assert_eq!(a.json()["details"]["header"], "Purpose-Of-Use");

    let (_, other) = who("county-mh", "clin-8", &["clinician"]);
    let a = raw_request(
        &app,
        &identity,
        format!(
            "GET /v1/whoami HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
             Authorization: Bearer {other}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(a.status, 400, "{a:?}");
    assert_eq!(a.error_code(), "invalid_header");
    assert_eq!(a.json()["details"]["header"], "Authorization");
    let event = app.security_event("invalid_header").await;
    assert_eq!(event.kind, "authentication_failed");
    assert!(!event.detail.contains(&token), "never the token: {event:?}");

    // One of each still works, and nothing was disclosed above.
    let a = raw_request(
        &app,
        &identity,
        format!(
            "GET /v1/whoami HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
             Connection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    let disclosures = app
        .log_entries(&query::Filter {
            kinds: vec![EntryKind::Disclosure],
            limit: 10,
            ..Default::default()
        })
        .await;
    assert!(disclosures.is_empty(), "{disclosures:?}");
    app.stop().await;
}

#[tokio::test]
async fn healthz_on_an_open_connection_whose_certificate_was_revoked_is_refused() {
    let app = spawn_app(Db::Sqlite).await;
    let pki = pki();
    let issued = pki
        .ca
        .issue_partner(coresponse_gateway::devinit::DEV_TRUST_DOMAIN, "metro-pd")
        .unwrap();
    let identity = (issued.cert_pem.clone(), issued.key_pem.clone());
    let mut tls = connect(&app, &identity).await;
    let keep = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    tls.write_all(keep).await.unwrap();
    assert_eq!(answer(&mut tls).await.status, 200);

    // Revoke it and reload, while the connection stays open.
    std::fs::write(
        app.workdir.path().join("crl.pem"),
        pki.ca
            .crl(&[pki.revoked_serial.clone(), issued.serial.clone()])
            .unwrap(),
    )
    .unwrap();
    app.state.reload().await.expect("reload");

    tls.write_all(keep).await.unwrap();
    let a = answer(&mut tls).await;
    assert_eq!(a.status, 403, "{a:?}");
    assert_eq!(a.error_code(), "certificate_refused");
    let event = app.security_event("certificate_refused").await;
    assert!(event.detail.contains("revoked"), "{event:?}");
    app.stop().await;
}
