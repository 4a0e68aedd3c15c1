//! Diagnostics never carry personal data: with every gateway, web-server and database target at
//! TRACE, a full round of writes, reads (normal, emergency, by subject), denials and a failed
//! read leaves no subject identifier, name, field value or emergency description in the output
//! (record ids and pseudonyms are allowed). Its own test binary, so that the global subscriber
//! sees only this test's gateway.

// Test and benchmark code may unwrap, expect, panic and index: a failure here is a failed
// test, not an outage (library code denies all four, see Cargo.toml).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#[allow(dead_code, unreachable_pub)]
#[path = "api/support/mod.rs"]
mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use support::{Db, client, pki, spawn_app};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

type Who = ((String, String), String);

fn who(partner: &str, user: &str, roles: &[&str]) -> Who {
    let id = pki().partner_cert(partner);
    let token = pki().token(partner, user, roles, &id.0);
    (id, token)
}

#[tokio::test]
async fn tracing_output_holds_no_personal_data() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_env_filter(
            "coresponse_gateway=trace,actix_web=trace,actix_http=trace,actix_server=trace,\
             sqlx=trace",
        )
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let app = spawn_app(Db::Sqlite).await;
    let officer = who("metro-pd", "officer-17", &["officer"]);
    let clinician = who("county-mh", "clin-3", &["clinician"]);
    let send = |w: &Who, method: reqwest::Method, path: &str| {
        client(Some(&w.0))
            .request(method, app.url(path))
            .bearer_auth(&w.1)
    };
    let incident = json!({
        "subjects": [{"system": "metro-pd", "value": "PERSON-ID-7731"}],
        "fields": {
            "incident_id": "INC-T1", "occurred_at": "2026-11-02T21:40:00Z",
            "call_type": "WELFARE_CHECK", "subject_name": "Avery Secretname",
            "narrative": "VALUE-MARKER-NARRATIVE", "callback_number": "+1 555 010 7731"
        }
    });
    let plan = json!({
        "subjects": [{"system": "county-mh", "value": "MRN-SECRET-99"}],
        "fields": {
            "plan_id": "SP-T1", "updated_on": "2026-10-30",
            "deescalation_preferences": "VALUE-MARKER-DEESCALATION",
            "substance_use_history": "VALUE-MARKER-SUD"
        }
    });
    for (w, path, body) in [
        (&officer, "/v1/records/crisis-incident/INC-T1", &incident),
        (&clinician, "/v1/records/safety-plan/SP-T1", &plan),
    ] {
        let res = send(w, reqwest::Method::PUT, path)
            .json(body)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    }
    type Read<'a> = (&'a Who, &'a str, &'a str, Vec<(&'a str, &'a str)>);
    let reads: [Read<'_>; 5] = [
        (
            &clinician,
            "/v1/records/crisis-incident/INC-T1",
            "treatment",
            vec![],
        ),
        (
            &clinician,
            "/v1/subjects/metro-pd/PERSON-ID-7731/records",
            "treatment",
            vec![],
        ),
        (
            &officer,
            "/v1/records/safety-plan/SP-T1",
            "crisis-response",
            vec![],
        ),
        (
            &officer,
            "/v1/subjects/county-mh/MRN-SECRET-99/records",
            "emergency",
            vec![
                ("Emergency-Basis", "credible-representation"),
                ("Emergency-Source", "SOURCE-MARKER neighbour"),
                ("Emergency-Description", "THREAT-MARKER on the roof"),
            ],
        ),
        (
            &officer,
            "/v1/records/safety-plan/SP-T1",
            "investigation",
            vec![],
        ),
    ];
    let mut seen = Vec::new();
    for (w, path, purpose, headers) in reads {
        let mut req = send(w, reqwest::Method::GET, path).header("Purpose-Of-Use", purpose);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let res = req.send().await.unwrap();
        seen.push(res.status().as_u16());
        let _: Value = res.json().await.unwrap();
    }
    assert_eq!(
        seen,
        [200, 200, 403, 200, 403],
        "the round exercised each path"
    );
    app.stop().await;

    let out = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        out.contains("INC-T1") && out.contains("request"),
        "the capture works and record ids may appear:\n{out}"
    );
    for secret in [
        "PERSON-ID-7731",
        "MRN-SECRET-99",
        "Avery",
        "Secretname",
        "VALUE-MARKER",
        "SOURCE-MARKER",
        "THREAT-MARKER",
        "555 010 7731",
    ] {
        assert!(
            !out.contains(secret),
            "`{secret}` reached the tracing output:\n{}",
            out.lines()
                .filter(|l| l.contains(secret))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
