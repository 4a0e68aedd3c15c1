//! Refused query and search parameters, answer by answer: the status, the code, the message and
//! `details.parameter` of every route that checks its own parameters, and the OperationOutcome
//! the FHIR searches give for the same refusal.

use coresponse_gateway::fhir::codes;
use serde_json::{Value, json};

use crate::records_api::{Who, clinician, officer, who};
use crate::support::{Db, TestApp, client, pki, spawn_app};

fn compliance() -> Who {
    who("oversight", "aud-1", &["compliance"])
}

fn program_manager() -> Who {
    who("county-mh", "pm-1", &["program-manager"])
}

/// A GET with the caller's certificate, its token if any and `Purpose-Of-Use` if given.
async fn answer(
    app: &TestApp,
    identity: &(String, String),
    token: Option<&str>,
    purpose: Option<&str>,
    path: &str,
) -> (u16, Value) {
    let mut req = client(Some(identity)).get(app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(p) = purpose {
        req = req.header("Purpose-Of-Use", p);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn refusal(parameter: &str, message: &str) -> Value {
    json!({
        "code": "invalid_parameter",
        "message": message,
        "details": { "parameter": parameter },
    })
}

#[tokio::test]
async fn every_refused_parameter_is_answered_the_same_way() {
    let app = spawn_app(Db::Sqlite).await;
    let subject = "/v1/subjects/county-mh/MRN-1";
    let cases: Vec<(Who, String, &str, &str)> = vec![
        // Reports: each parameter once, from a fixed list; dates or RFC 3339 times.
        (
            program_manager(),
            "/v1/reports/engagement?from=2026-01-01&to=2026-02-01&limit=1".into(),
            "limit",
            "query parameter `limit`: unknown parameter; accepted: from, to, format",
        ),
        (
            program_manager(),
            "/v1/reports/engagement?from=2026-01-01&from=2026-01-02&to=2026-02-01".into(),
            "from",
            "query parameter `from`: given more than once",
        ),
        (
            program_manager(),
            "/v1/reports/engagement?to=2026-01-01".into(),
            "from",
            "query parameter `from`: required: the first day of the period",
        ),
        (
            program_manager(),
            "/v1/reports/engagement?from=soon&to=2026-01-01".into(),
            "from",
            "query parameter `from`: use a date such as `2026-01-01` (midnight UTC) or an RFC \
             3339 time",
        ),
        (
            program_manager(),
            "/v1/reports/engagement?from=2026-01-01&to=2026-02-01&format=pdf".into(),
            "format",
            "query parameter `format`: use `json` or `csv`",
        ),
        // Part 2 disclosures.
        (
            compliance(),
            format!("{subject}/part2-disclosures?years=x"),
            "years",
            "query parameter `years`: use 1 to 3",
        ),
        (
            compliance(),
            format!("{subject}/part2-disclosures?format=xml"),
            "format",
            "query parameter `format`: use `json` or `csv`",
        ),
        (
            compliance(),
            format!("{subject}/part2-disclosures?years=2&colour=red"),
            "colour",
            "query parameter `colour`: unknown parameter; accepted: years, format",
        ),
        // Policy changes.
        (
            compliance(),
            "/v1/policy/changes?limit=0".into(),
            "limit",
            "query parameter `limit`: use 1 to 100",
        ),
        (
            compliance(),
            "/v1/policy/changes?cursor=x".into(),
            "cursor",
            "query parameter `cursor`: pass the `next_cursor` of a previous page unchanged",
        ),
        (
            compliance(),
            "/v1/policy/changes?page=2".into(),
            "page",
            "query parameter `page`: unknown parameter; accepted: cursor, limit",
        ),
        // Consents and coverage.
        (
            clinician(),
            format!("{subject}/consents?x=1"),
            "x",
            "query parameter `x`: unknown parameter; this route takes none",
        ),
        (
            clinician(),
            format!("{subject}/coverage?purpose=treatment"),
            "recipient",
            "query parameter `recipient`: required: the partner that would receive",
        ),
        (
            clinician(),
            format!("{subject}/coverage?recipient=metro-pd"),
            "purpose",
            "query parameter `purpose`: required: the purpose of use",
        ),
        (
            clinician(),
            format!("{subject}/coverage?recipient=metro-pd&colour=red"),
            "colour",
            "query parameter `colour`: unknown parameter; accepted: recipient, purpose, role",
        ),
        (
            clinician(),
            format!("{subject}/coverage?recipient=metro-pd&recipient=county-mh"),
            "recipient",
            "query parameter `recipient`: given more than once",
        ),
        // Court orders and emergency reviews.
        (
            compliance(),
            "/v1/court-orders?all=yes".into(),
            "all",
            "query parameter `all`: the only parameter is `all=true|false`",
        ),
        (
            compliance(),
            "/v1/court-orders?x=1".into(),
            "x",
            "query parameter `x`: the only parameter is `all=true|false`",
        ),
        (
            compliance(),
            "/v1/reviews?state=pending".into(),
            "state",
            "query parameter `state`: use `open`, `closed` or `all`, not `pending`",
        ),
    ];
    for (w, path, parameter, message) in cases {
        let (s, b) = answer(&app, &w.0, Some(&w.1), None, &path).await;
        assert_eq!((s, b), (400, refusal(parameter, message)), "{path}");
    }

    // A repeated Part 2 parameter is not refused: the last one counts.
    let w = compliance();
    let path = format!("{subject}/part2-disclosures?years=1&years=2");
    let (s, b) = answer(&app, &w.0, Some(&w.1), None, &path).await;
    assert_eq!(s, 200, "{b}");

    // Transparency proofs: a partner certificate, no token.
    let cert = pki().partner_cert("metro-pd");
    for (path, parameter, message) in [
        (
            "/v1/audit/proof/inclusion?index=1",
            "size",
            "query parameter `size`: missing; give a decimal number",
        ),
        (
            "/v1/audit/proof/inclusion?index=x&size=1",
            "index",
            "query parameter `index`: not a decimal number",
        ),
        (
            "/v1/audit/proof/consistency?from=1&to=2&extra=1",
            "extra",
            "query parameter `extra`: unknown parameter; accepted: from, to",
        ),
        // A repeated parameter is refused, not read as its last value; with several faults
        // the first in the query is named.
        (
            "/v1/audit/proof/inclusion?index=1&size=3&size=2",
            "size",
            "query parameter `size`: given more than once",
        ),
        (
            "/v1/audit/proof/consistency?b=1&a=2&from=1&to=2",
            "b",
            "query parameter `b`: unknown parameter; accepted: from, to",
        ),
    ] {
        let (s, b) = answer(&app, &cert, None, None, path).await;
        assert_eq!((s, b), (400, refusal(parameter, message)), "{path}");
    }
    app.stop().await;
}

/// The OperationOutcome of a refused FHIR search parameter.
fn outcome(parameter: &str, message: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{
            "severity": "error",
            "code": "invalid",
            "details": {
                "coding": [{
                    "system": codes::error_system(),
                    "code": "invalid_parameter",
                }],
                "text": message,
            },
            "expression": [parameter],
        }],
    })
}

#[tokio::test]
async fn refused_fhir_search_parameters_are_operation_outcomes() {
    let app = spawn_app(Db::Sqlite).await;
    let cases = [
        (
            clinician(),
            None,
            "/fhir/r4/Consent?status=active",
            "status",
            "search parameter `status`: not supported; search consents by \
             `patient:identifier=system|value`",
        ),
        (
            clinician(),
            None,
            "/fhir/r4/Consent",
            "patient:identifier",
            "search parameter `patient:identifier`: required: \
             `patient:identifier=<system>|<value>`",
        ),
        (
            clinician(),
            None,
            "/fhir/r4/Consent?patient:identifier=MRN-1",
            "patient:identifier",
            "search parameter `patient:identifier`: give it as `<system>|<value>`",
        ),
        (
            clinician(),
            None,
            "/fhir/r4/Consent?patient:identifier=a|b&patient:identifier=a|b",
            "patient:identifier",
            "search parameter `patient:identifier`: given more than once",
        ),
        (
            officer(),
            Some("crisis-response"),
            "/fhir/r4/Task?_revinclude=Patient:link",
            "_revinclude",
            "search parameter `_revinclude`: only `Provenance:target` is supported",
        ),
        (
            officer(),
            Some("crisis-response"),
            "/fhir/r4/Task",
            "_id",
            "search parameter `_id`: required: the referral id",
        ),
        (
            officer(),
            Some("crisis-response"),
            "/fhir/r4/Task?_count=1",
            "_count",
            "search parameter `_count`: not supported; search tasks by `_id` (and \
             `_revinclude=Provenance:target`)",
        ),
    ];
    for (w, purpose, path, parameter, message) in cases {
        let (s, b) = answer(&app, &w.0, Some(&w.1), purpose, path).await;
        assert_eq!((s, b), (400, outcome(parameter, message)), "{path}");
    }
    app.stop().await;
}
