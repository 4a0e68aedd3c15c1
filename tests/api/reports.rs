//! Program outcome reports over real TLS with real tokens, on both backends: the demo year's
//! reports match counts computed here from the seeded data; who may run what; no published
//! count from 1 to 10 whatever the data; the differential-privacy budget; failing closed; the
//! vault opening only what a report's grant names.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Datelike, Duration, SecondsFormat, Utc};
use coresponse_gateway::audit::{EntryKind, LegalBasis, Outcome, query};
use coresponse_gateway::devinit::demo_year::{self, DemoYear};
use coresponse_gateway::devinit::seed;
use coresponse_gateway::domain::{Author, ManualClock, SubjectIdentifier};
use coresponse_gateway::reports::definition::{Grant, KindGrant};
use coresponse_gateway::reports::suppress::is_small;
use coresponse_gateway::vault::{self, NewRecord};
use serde_json::{Value, json};

use crate::records_api::{Who, who_at};
use crate::support::{self, Db, TestApp, client, exec, scalar, spawn_with_clock};

const BOTH: [Db; 2] = [Db::Sqlite, Db::Postgres];

fn now() -> DateTime<Utc> {
    "2026-12-15T12:00:00Z".parse().unwrap()
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn pm(partner: &str) -> Who {
    who_at(partner, "pm-1", &["program-manager"], now())
}

fn compliance() -> Who {
    who_at("oversight", "aud-1", &["compliance"], now())
}

fn officer() -> Who {
    who_at("metro-pd", "officer-17", &["officer"], now())
}

async fn get(app: &TestApp, w: &Who, path: &str) -> reqwest::Response {
    client(Some(&w.0))
        .get(app.url(path))
        .bearer_auth(&w.1)
        .send()
        .await
        .unwrap()
}

async fn report(
    app: &TestApp,
    w: &Who,
    id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> (u16, Value) {
    let res = get(
        app,
        w,
        &format!("/v1/reports/{id}?from={}&to={}", ts(from), ts(to)),
    )
    .await;
    let status = res.status().as_u16();
    let header = res
        .headers()
        .get("report-log-entry")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if status == 200 {
        assert_eq!(
            header.as_deref(),
            Some(body["log_entry"].to_string().as_str()),
            "Report-Log-Entry names the run's entry"
        );
    }
    (status, body)
}

async fn app_at(db: Db) -> TestApp {
    let clock = ManualClock::new(now());
    spawn_with_clock(db, &clock, |_| {}).await
}

fn table<'a>(r: &'a Value, id: &str) -> &'a Value {
    r["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no table {id} in {r}"))
}

/// Checks a released table against counts computed independently: every published count is
/// the true one, every true count from 1 to 10 is withheld, every rate that is published is the
/// true one. Returns how many counts were published.
fn check(t: &Value, expected: &BTreeMap<(String, String), i64>) -> usize {
    let rows: Vec<String> = serde_json::from_value(t["rows"]["labels"].clone()).unwrap();
    let cols: Vec<String> = serde_json::from_value(t["columns"]["labels"].clone()).unwrap();
    let cell = |r: &str, c: &str| {
        expected
            .get(&(r.to_owned(), c.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    for key in expected.keys() {
        assert!(
            rows.contains(&key.0) && cols.contains(&key.1),
            "{key:?} has no cell in {t}"
        );
    }
    let mut published = 0;
    let mut small = 0;
    let mut compare = |got: &Value, want: i64, what: String| {
        if is_small(want) {
            small += 1;
            assert!(
                got.is_null(),
                "{what}: {want} is small and must be withheld"
            );
        }
        if !got.is_null() {
            published += 1;
            assert_eq!(got.as_i64(), Some(want), "{what}");
        }
    };
    for (ri, r) in rows.iter().enumerate() {
        for (ci, c) in cols.iter().enumerate() {
            compare(&t["cells"][ri][ci], cell(r, c), format!("{r}/{c}"));
        }
        if let Some(rt) = t.get("row_totals") {
            let want: i64 = cols.iter().map(|c| cell(r, c)).sum();
            compare(&rt[ri], want, format!("{r}/total"));
        }
    }
    if let Some(ct) = t.get("column_totals") {
        for (ci, c) in cols.iter().enumerate() {
            let want: i64 = rows.iter().map(|r| cell(r, c)).sum();
            compare(&ct[ci], want, format!("total/{c}"));
        }
    }
    if let Some(total) = t.get("total") {
        compare(total, expected.values().sum(), "total".into());
    }
    assert_eq!(
        t["suppression"]["primary"].as_u64(),
        Some(small as u64),
        "{t}"
    );
    // Each published rate is the share of its published row in its categories.
    for rate in t["rates"].as_array().unwrap() {
        for (ri, r) in rows.iter().enumerate() {
            let Some(v) = rate["rows"][ri].as_f64() else {
                continue;
            };
            assert_eq!(rate["withheld"][ri], false);
            let share: Vec<String> = cols
                .iter()
                .filter(|c| {
                    // The rate's categories are not in the answer; the table's definition
                    // decides them, so recompute from the title of the known rates.
                    rate_categories(rate["id"].as_str().unwrap()).contains(&c.as_str())
                })
                .cloned()
                .collect();
            let num: i64 = share.iter().map(|c| cell(r, c)).sum();
            let den: i64 = cols.iter().map(|c| cell(r, c)).sum();
            let want = (num as f64 * 1000.0 / den as f64).round() / 10.0;
            assert_eq!(v, want, "rate {} of {r}", rate["id"]);
        }
    }
    published
}

fn rate_categories(id: &str) -> Vec<&'static str> {
    match id {
        "diversion" => vec![
            "RESOLVED_ON_SCENE",
            "TRANSPORTED_VOLUNTARY",
            "TRANSPORTED_INVOLUNTARY",
            "REFERRED",
            "OTHER",
        ],
        "involuntary-transport" => vec!["TRANSPORTED_INVOLUNTARY"],
        "engagement" => vec!["ENGAGED"],
        "repeat-30" => vec!["WITHIN_30_DAYS"],
        "repeat-90" => vec!["WITHIN_30_DAYS", "WITHIN_31_TO_90_DAYS"],
        other => panic!("unknown rate {other}"),
    }
}

fn month(t: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", t.year(), t.month())
}

fn quarter(t: DateTime<Utc>) -> String {
    format!("{:04}-Q{}", t.year(), (t.month() - 1) / 3 + 1)
}

/// The repeat category of each incident of the year, computed here.
fn repeat_categories(year: &DemoYear) -> Vec<&'static str> {
    year.incidents
        .iter()
        .map(|inc| {
            let prev = year
                .incidents
                .iter()
                .filter(|o| o.person == inc.person && o.occurred_at < inc.occurred_at)
                .map(|o| o.occurred_at)
                .max();
            match prev.map(|p| inc.occurred_at - p) {
                Some(gap) if gap <= Duration::days(30) => "WITHIN_30_DAYS",
                Some(gap) if gap <= Duration::days(90) => "WITHIN_31_TO_90_DAYS",
                _ => "NONE_IN_PRIOR_90_DAYS",
            }
        })
        .collect()
}

fn outcome(r: &demo_year::DemoReferral) -> &'static str {
    let has = |s: &str| r.moves.iter().any(|(m, _)| *m == s);
    [
        "ENGAGED",
        "DECLINED",
        "UNABLE_TO_CONTACT",
        "WITHDRAWN",
        "REJECTED",
    ]
    .into_iter()
    .find(|s| has(s))
    .unwrap_or("OPEN")
}

#[tokio::test]
async fn the_demo_year_reports_match_counts_computed_from_the_seed() {
    let year = demo_year::generate(now());
    let (from, to) = (DemoYear::start(now()), DemoYear::end(now()));
    let repeat = repeat_categories(&year);
    for db in BOTH {
        let app = app_at(db).await;
        seed::seed(app.services()).await.unwrap();

        // Incidents by month and disposition.
        let (s, r) = report(&app, &pm("county-mh"), "incident-outcomes", from, to).await;
        assert_eq!(s, 200, "{r}");
        let mut want = BTreeMap::new();
        for inc in &year.incidents {
            *want
                .entry((month(inc.occurred_at), inc.disposition.to_owned()))
                .or_insert(0) += 1;
        }
        let shown = check(table(&r, "by-month"), &want);
        assert!(shown > 40, "the demo year shows something: {shown}");
        assert_eq!(r["release"], "internal");
        assert_eq!(
            r["disclosure_control"]["source"],
            "https://www.hhs.gov/guidance/document/cms-cell-suppression-policy"
        );

        // Co-responder presence and outcome.
        let (s, r) = report(&app, &pm("metro-pd"), "co-responder-outcomes", from, to).await;
        assert_eq!(s, 200, "{r}");
        let mut want = BTreeMap::new();
        for inc in &year.incidents {
            let row = if inc.co_responder {
                "PRESENT"
            } else {
                "ABSENT"
            };
            *want
                .entry((row.to_owned(), inc.disposition.to_owned()))
                .or_insert(0) += 1;
        }
        check(table(&r, "by-presence"), &want);

        // Repeat crises, through the blind index.
        let (s, r) = report(&app, &pm("metro-pd"), "repeat-crises", from, to).await;
        assert_eq!(s, 200, "{r}");
        let mut want = BTreeMap::new();
        let mut people: BTreeMap<usize, &str> = BTreeMap::new();
        for (inc, cat) in year.incidents.iter().zip(&repeat) {
            *want
                .entry((quarter(inc.occurred_at), (*cat).to_owned()))
                .or_insert(0) += 1;
            let nearest = people.entry(inc.person).or_insert(cat);
            if demo_rank(cat) < demo_rank(nearest) {
                *nearest = cat;
            }
        }
        check(table(&r, "incidents-by-quarter"), &want);
        let mut want = BTreeMap::new();
        for cat in people.values() {
            *want
                .entry(("all".to_owned(), (*cat).to_owned()))
                .or_insert(0) += 1;
        }
        check(table(&r, "people"), &want);
        assert!(!r.to_string().contains("P-7"), "no identifier in a report");

        // Engagement by urgency (mental-health only).
        let (s, r) = report(&app, &pm("county-mh"), "engagement", from, to).await;
        assert_eq!(s, 200, "{r}");
        let mut want = BTreeMap::new();
        for rf in &year.referrals {
            let submitted = rf.moves[0].1;
            assert!(from <= submitted && submitted < to);
            *want
                .entry((rf.urgency.to_owned(), outcome(rf).to_owned()))
                .or_insert(0) += 1;
        }
        check(table(&r, "by-urgency"), &want);

        // Hours to the first contact attempt, by urgency: nearest-rank median and 90th
        // percentile of the published rows.
        let (s, r) = report(&app, &pm("county-mh"), "referral-response-times", from, to).await;
        assert_eq!(s, 200, "{r}");
        let t = table(&r, "contact-by-urgency");
        let rows: Vec<String> = serde_json::from_value(t["rows"]["labels"].clone()).unwrap();
        let mut checked = 0;
        for (ri, urgency) in rows.iter().enumerate() {
            let mut hours: Vec<f64> = year
                .referrals
                .iter()
                .filter(|rf| rf.urgency == urgency)
                .filter_map(|rf| {
                    let sub = rf.moves[0].1;
                    rf.moves
                        .iter()
                        .find(|(m, _)| *m == "CONTACT_ATTEMPTED")
                        .map(|(_, at)| (*at - sub).num_seconds() as f64 / 3600.0)
                })
                .collect();
            hours.sort_by(f64::total_cmp);
            let n = hours.len() as i64;
            let got = &t["cells"][ri][0];
            if is_small(n) {
                assert!(got.is_null());
                assert!(t["durations"]["median"][ri].is_null());
                continue;
            }
            if got.is_null() {
                continue;
            }
            assert_eq!(got.as_i64(), Some(n));
            if n == 0 {
                // A row without units (such as `NOT_RECORDED`) shows 0 and no statistic.
                assert!(t["durations"]["median"][ri].is_null(), "{t}");
                continue;
            }
            let rank = |p: f64| {
                let k = ((p * n as f64).ceil() as usize).clamp(1, hours.len());
                (hours[k - 1] * 10.0).round() / 10.0
            };
            assert_eq!(t["durations"]["median"][ri].as_f64(), Some(rank(0.5)));
            assert_eq!(t["durations"]["p90"][ri].as_f64(), Some(rank(0.9)));
            checked += 1;
        }
        assert!(checked >= 2, "{t}");

        // Each run is one `report_generated` entry: the definition's hash, the period, the
        // caller, what was withheld, never a withheld value or a category.
        let entries = app
            .log_entries(&query::Filter {
                kinds: vec![EntryKind::ReportGenerated],
                limit: 50,
                ..Default::default()
            })
            .await;
        assert_eq!(entries.len(), 5);
        let last = &entries[0];
        assert_eq!(last.seq, r["log_entry"].as_u64().unwrap());
        assert_eq!(last.data.outcome, Outcome::Permit);
        assert_eq!(last.data.decision_id.as_deref(), r["run_id"].as_str());
        assert_eq!(last.data.recipient_partner.as_deref(), Some("county-mh"));
        assert_eq!(last.data.recipient_user.as_deref(), Some("pm-1"));
        assert!(matches!(
            &last.data.basis,
            Some(LegalBasis::Mou { mou_id, rule })
                if mou_id == "metro-county-coresponse-2026" && rule == "section 8.1"
        ));
        let detail = last.data.detail.as_deref().unwrap();
        let hash = r["definition_hash"].as_str().unwrap();
        assert!(
            detail.contains(hash) && detail.contains(&ts(from)),
            "{detail}"
        );
        let summary = &r["disclosure_control"]["summary"];
        assert!(
            detail.contains(&format!("{} withheld from 1 to 10", summary["primary"])),
            "{detail}"
        );
        assert!(
            detail.contains("referral fields status, status_updated_at, urgency (every version)")
        );
        for label in ["URGENT", "ENGAGED", "ROUTINE", "EMERGENT"] {
            assert!(!detail.contains(label), "no category in the log: {detail}");
        }
        assert!(last.data.subject.is_none());
        app.assert_log_verifies().await;

        // The same report as CSV: every withheld number has no value.
        let res = get(
            &app,
            &pm("county-mh"),
            &format!(
                "/v1/reports/engagement?from={}&to={}&format=csv",
                ts(from),
                ts(to)
            ),
        )
        .await;
        assert_eq!(res.status(), 200);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/csv")
        );
        let csv = res.text().await.unwrap();
        let mut lines = csv.lines();
        assert!(lines.next().unwrap().starts_with("report,period_from"));
        let mut withheld = 0;
        for l in lines {
            let cols: Vec<&str> = l.split(',').collect();
            let (value, status) = (cols[cols.len() - 2], cols[cols.len() - 1]);
            match status {
                "withheld" => {
                    withheld += 1;
                    assert!(value.is_empty(), "{l}");
                }
                "published" => {
                    let v: f64 = value.parse().unwrap();
                    if cols[9] == "count" {
                        assert!(!is_small(v as i64), "{l}");
                    }
                }
                "none" => {}
                other => panic!("status {other} in {l}"),
            }
        }
        assert!(withheld > 0);
        app.stop().await;
    }
}

fn demo_rank(cat: &str) -> usize {
    [
        "WITHIN_30_DAYS",
        "WITHIN_31_TO_90_DAYS",
        "NONE_IN_PRIOR_90_DAYS",
    ]
    .iter()
    .position(|c| *c == cat)
    .unwrap()
}

#[tokio::test]
async fn who_may_run_a_report_is_in_its_definition_and_refusals_are_logged() {
    for db in BOTH {
        let app = app_at(db).await;
        let (from, to) = (now() - Duration::days(90), now());
        let ids = |v: &Value| -> Vec<String> {
            v["reports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned())
                .collect()
        };
        let listed = |w: Who| {
            let app = &app;
            async move {
                let res = get(app, &w, "/v1/reports").await;
                assert_eq!(res.status(), 200);
                ids(&res.json().await.unwrap())
            }
        };
        // The console lists exactly what each caller may run.
        let mh = listed(pm("county-mh")).await;
        assert!(mh.contains(&"engagement".to_owned()) && mh.contains(&"annual-report".to_owned()));
        let police = listed(pm("metro-pd")).await;
        assert!(police.contains(&"incident-outcomes".to_owned()));
        assert!(!police.contains(&"engagement".to_owned()));
        assert!(!police.contains(&"referral-response-times".to_owned()));
        assert!(listed(officer()).await.is_empty());
        let audit = listed(compliance()).await;
        assert!(
            audit.contains(&"disclosures".to_owned())
                && !audit.contains(&"annual-report".to_owned())
        );

        // A police officer cannot run an internal mental-health-only report, nor a police
        // program manager; a clinician without the program-manager role neither.
        for (w, id) in [
            (officer(), "referral-response-times"),
            (pm("metro-pd"), "engagement"),
            (pm("metro-pd"), "referral-response-times"),
            (
                who_at("county-mh", "clin-7", &["clinician"], now()),
                "engagement",
            ),
            (pm("county-mh"), "disclosures"),
            (officer(), "incident-outcomes"),
        ] {
            let (s, b) = report(&app, &w, id, from, to).await;
            assert_eq!(
                (s, b["code"].as_str()),
                (403, Some("report_not_permitted")),
                "{id}: {b}"
            );
            assert!(b.get("tables").is_none());
        }
        let refused = app
            .log_entries(&query::Filter {
                kinds: vec![EntryKind::ReportGenerated],
                outcome: Some("deny".into()),
                limit: 50,
                ..Default::default()
            })
            .await;
        assert_eq!(refused.len(), 6);
        assert!(
            refused
                .iter()
                .all(|e| e.data.outcome == Outcome::deny("report_not_permitted")
                    && e.data.detail.as_deref().unwrap().contains("refused"))
        );

        // Unknown reports and bad periods are named.
        let (s, b) = report(&app, &pm("county-mh"), "no-such-report", from, to).await;
        assert_eq!((s, b["code"].as_str()), (404, Some("unknown_report")));
        for (query, param) in [
            ("from=2026-02-01&to=2026-01-01", "to"),
            ("to=2026-01-01", "from"),
            ("from=soon&to=2026-01-01", "from"),
            ("from=2026-01-01&to=2026-02-01&format=pdf", "format"),
            ("from=2000-01-01&to=2026-02-01", "to"),
        ] {
            let res = get(
                &app,
                &pm("county-mh"),
                &format!("/v1/reports/engagement?{query}"),
            )
            .await;
            assert_eq!(res.status(), 400, "{query}");
            let b: Value = res.json().await.unwrap();
            assert_eq!(b["code"], "invalid_parameter");
            assert_eq!(b["details"]["parameter"], param, "{query}");
        }
        app.stop().await;
    }
}

/// Writes `n` incidents of one person each in `month_start`'s month, with dispositions cycling
/// through a few values.
async fn write_incidents(app: &TestApp, month_start: DateTime<Utc>, n: usize, tag: &str) {
    let author = Author {
        partner: "metro-pd".parse().unwrap(),
        user: "officer-17".parse().unwrap(),
    };
    let dispositions = [
        "ARREST",
        "REFERRED",
        "RESOLVED_ON_SCENE",
        "TRANSPORTED_INVOLUNTARY",
    ];
    let writes: Vec<(Author, NewRecord)> = (0..n)
        .map(|i| {
            let fields = json!({
                "incident_id": format!("INC-{tag}-{i}"),
                "occurred_at": ts(month_start + Duration::hours(i as i64 * 7)),
                "call_type": "WELFARE_CHECK",
                "disposition": dispositions[i % dispositions.len()],
                "co_responder_present": i % 3 == 0,
                "use_of_force": if i % 5 == 0 { "HANDS_FISTS_FEET" } else { "NONE" },
            });
            (
                author.clone(),
                NewRecord {
                    kind: "crisis-incident".parse().unwrap(),
                    id: format!("INC-{tag}-{i}").parse().unwrap(),
                    owner: "metro-pd".parse().unwrap(),
                    subjects: vec![
                        SubjectIdentifier::new("metro-pd", format!("P-{tag}-{}", i % 7)).unwrap(),
                    ],
                    fields: serde_json::from_value(fields).unwrap(),
                },
            )
        })
        .collect();
    app.services()
        .seed_records(&writes, "test incident")
        .await
        .unwrap();
}

/// Every count a released report publishes (cells, margins, totals).
fn published_counts(r: &Value) -> Vec<i64> {
    let mut out = Vec::new();
    for t in r["tables"].as_array().unwrap() {
        for row in t["cells"].as_array().unwrap() {
            out.extend(row.as_array().unwrap().iter().filter_map(Value::as_i64));
        }
        for k in ["row_totals", "column_totals"] {
            if let Some(v) = t.get(k) {
                out.extend(v.as_array().unwrap().iter().filter_map(Value::as_i64));
            }
        }
        if let Some(v) = t.get("total").and_then(Value::as_i64) {
            out.push(v);
        }
    }
    out
}

#[tokio::test]
async fn a_public_report_never_contains_a_count_from_1_to_10_whatever_the_data() {
    for db in BOTH {
        let app = app_at(db).await;
        let (from, to) = (
            "2026-01-01T00:00:00Z".parse().unwrap(),
            "2026-07-01T00:00:00Z".parse().unwrap(),
        );
        // Little data first, then more: a few months thin, one month full.
        let months: [(&str, usize); 4] = [
            ("2026-01-01T00:00:00Z", 3),
            ("2026-02-01T00:00:00Z", 9),
            ("2026-03-01T00:00:00Z", 14),
            ("2026-05-01T00:00:00Z", 40),
        ];
        for (round, (m, n)) in months.iter().enumerate() {
            write_incidents(&app, m.parse().unwrap(), *n, &format!("T{round}")).await;
            for id in ["annual-report", "public-dashboard"] {
                let (s, r) = report(&app, &pm("metro-pd"), id, from, to).await;
                assert_eq!(s, 200, "{r}");
                assert_eq!(r["release"], "public");
                let counts = published_counts(&r);
                assert!(
                    counts.iter().all(|v| !is_small(*v)),
                    "{id} after round {round}: {counts:?}"
                );
                // Published percentages never sit on a withheld part.
                for t in r["tables"].as_array().unwrap() {
                    for rate in t["rates"].as_array().unwrap() {
                        for (ri, v) in rate["rows"].as_array().unwrap().iter().enumerate() {
                            if !v.is_null() {
                                let total = t
                                    .get("row_totals")
                                    .map(|rt| rt[ri].clone())
                                    .unwrap_or_else(|| t["total"].clone());
                                assert!(!total.is_null(), "{t}");
                            }
                        }
                    }
                }
            }
        }
        app.stop().await;
    }
}

/// A copy of the demo policy directory with one more report definition.
fn policies_with(dir: &Path, file: &str, text: &str) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let target = to.join(e.file_name());
            if e.path().is_dir() {
                copy(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), target).unwrap();
            }
        }
    }
    copy(&support::repo_root().join("policies"), dir);
    std::fs::write(dir.join("reports").join(file), text).unwrap();
}

const DP_REPORT: &str = r#"
[report]
id = "dp-test"
title = "Differentially private test report"
release = "public"

[[runner]]
partner_kind = "police"
roles = ["program-manager"]

[basis]
mou = "metro-county-coresponse-2026"
section = "8.2"
citation = "45 CFR 164.501"

[[table]]
id = "by-disposition"
title = "Incidents by disposition"
metric = "incidents"
rows = "all"
columns = "disposition"

[privacy]
epsilon = 1.0
budget = BUDGET
series = "dp-test"
max_contributions = 2
"#;

async fn dp_app(db: Db, budget: &str) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    policies_with(
        dir.path(),
        "dp-test.toml",
        &DP_REPORT.replace("BUDGET", budget),
    );
    let clock = ManualClock::new(now());
    let path = dir.path().to_owned();
    let app = spawn_with_clock(db, &clock, move |s| s.policy.dir = path).await;
    (app, dir)
}

#[tokio::test]
async fn the_privacy_budget_refuses_the_run_that_would_exceed_it() {
    for db in BOTH {
        let (app, _dir) = dp_app(db, "2.5").await;
        write_incidents(&app, "2026-03-01T00:00:00Z".parse().unwrap(), 30, "DP").await;
        let (from, to) = (
            "2026-01-01T00:00:00Z".parse().unwrap(),
            "2026-07-01T00:00:00Z".parse().unwrap(),
        );
        for run in 1..=2 {
            let (s, r) = report(&app, &pm("metro-pd"), "dp-test", from, to).await;
            assert_eq!(s, 200, "{r}");
            // The noise scale is published with the numbers: sensitivity 2 over epsilon 1.
            let p = &r["privacy"];
            assert_eq!(p["epsilon"], 1.0);
            assert_eq!(p["tables"][0]["sensitivity"], 2);
            assert!(
                (p["tables"][0]["scale"].as_f64().unwrap() - 2.0).abs() < 1e-9,
                "{p}"
            );
            assert!(p["tables"][0]["margin_95"].as_i64().unwrap() > 0);
            assert_eq!(p["ledger"]["spent_before"], (run - 1) as f64);
            assert_eq!(p["ledger"]["spent_after"], run as f64);
            assert!(p["mechanism"].as_str().unwrap().contains("OpenDP"));
        }
        let listed: Value = get(&app, &pm("metro-pd"), "/v1/reports")
            .await
            .json()
            .await
            .unwrap();
        let dp = listed["reports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == "dp-test")
            .unwrap();
        assert_eq!(dp["privacy"]["spent"], 2.0);
        assert_eq!(dp["privacy"]["runs_left"], 0);
        // The third run would spend 3.0 of 2.5: refused, logged, nothing charged.
        let (s, b) = report(&app, &pm("metro-pd"), "dp-test", from, to).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (409, Some("privacy_budget_exhausted")),
            "{b}"
        );
        assert_eq!(b["details"]["spent"], 2.0);
        assert_eq!(b["details"]["budget"], 2.5);
        assert!(b.get("tables").is_none());
        let store = app.store();
        assert_eq!(
            scalar(store, "SELECT COUNT(*) FROM report_privacy_ledger").await,
            2
        );
        let refused = app
            .log_entries(&query::Filter {
                kinds: vec![EntryKind::ReportGenerated],
                outcome: Some("deny".into()),
                limit: 10,
                ..Default::default()
            })
            .await;
        assert_eq!(refused.len(), 1);
        assert_eq!(
            refused[0].data.outcome,
            Outcome::deny("privacy_budget_exhausted")
        );
        app.assert_log_verifies().await;
        app.stop().await;

        // Concurrent runs cannot overspend: with budget for one run, one of four succeeds.
        let (app, _dir) = dp_app(db, "1.0").await;
        write_incidents(&app, "2026-03-01T00:00:00Z".parse().unwrap(), 12, "DQ").await;
        let w = pm("metro-pd");
        let runs = (0..4).map(|_| report(&app, &w, "dp-test", from, to));
        let statuses: Vec<u16> = futures_util::future::join_all(runs)
            .await
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "{statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| **s == 409).count(),
            3,
            "{statuses:?}"
        );
        assert_eq!(
            scalar(app.store(), "SELECT COUNT(*) FROM report_privacy_ledger").await,
            1
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn emergency_accesses_are_counted_from_the_log_for_compliance_only() {
    use crate::records_api::{put, read, safety_plan_body};
    for db in BOTH {
        let app = app_at(db).await;
        let clin = who_at("county-mh", "clin-3", &["clinician"], now());
        let (s, b) = put(
            &app,
            &clin,
            "/v1/records/safety-plan/SP-1",
            &safety_plan_body("P-2231"),
        )
        .await;
        assert_eq!(s, 201, "{b}");
        let cop = officer();
        let headers = [
            ("Emergency-Basis", "actual-knowledge"),
            ("Emergency-Description", "person on a bridge"),
        ];
        for _ in 0..11 {
            let (s, _, b) = read(
                &app,
                &cop,
                "/v1/records/safety-plan/SP-1",
                Some("emergency"),
                &headers,
            )
            .await;
            assert_eq!(s, 200, "{b}");
        }
        // An ordinary read is no emergency access.
        let (s, _, _) = read(
            &app,
            &clin,
            "/v1/records/safety-plan/SP-1",
            Some("treatment"),
            &[],
        )
        .await;
        assert!(s == 200 || s == 403);
        let (from, to) = (now() - Duration::days(30), now() + Duration::days(1));
        let (s, r) = report(&app, &compliance(), "emergency-access", from, to).await;
        assert_eq!(s, 200, "{r}");
        let t = table(&r, "accesses");
        let cols: Vec<String> = serde_json::from_value(t["columns"]["labels"].clone()).unwrap();
        let police = cols.iter().position(|c| c == "metro-pd").unwrap();
        assert_eq!(t["cells"][0][police], 11, "{t}");
        assert_eq!(t["total"], 11, "{t}");
        // One window, one review, still open: 1 is withheld.
        let reviews = table(&r, "reviews");
        assert!(reviews["total"].is_null(), "{reviews}");
        let (s, _) = report(&app, &pm("metro-pd"), "emergency-access", from, to).await;
        assert_eq!(s, 403);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_report_fails_closed() {
    for db in BOTH {
        let app = app_at(db).await;
        write_incidents(&app, "2026-03-01T00:00:00Z".parse().unwrap(), 20, "FC").await;
        let (from, to) = (
            "2026-01-01T00:00:00Z".parse().unwrap(),
            "2026-07-01T00:00:00Z".parse().unwrap(),
        );
        async fn permitted(app: &TestApp) -> usize {
            app.log_entries(&query::Filter {
                kinds: vec![EntryKind::ReportGenerated],
                outcome: Some("permit".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .len()
        }
        let (s, _) = report(&app, &pm("metro-pd"), "incident-outcomes", from, to).await;
        assert_eq!(s, 200);
        assert_eq!(permitted(&app).await, 1);

        // The log refuses every insert: 503, nothing released.
        match db {
            Db::Sqlite => {
                exec(
                    app.store(),
                    "CREATE TRIGGER fail_log BEFORE INSERT ON audit_log \
                     BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
                )
                .await
            }
            Db::Postgres => {
                exec(
                    app.store(),
                    "CREATE FUNCTION fail_log() RETURNS trigger LANGUAGE plpgsql AS \
                     $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$; \
                     CREATE TRIGGER fail_log BEFORE INSERT ON audit_log \
                     FOR EACH ROW EXECUTE FUNCTION fail_log();",
                )
                .await
            }
        }
        let res = get(
            &app,
            &pm("metro-pd"),
            &format!(
                "/v1/reports/incident-outcomes?from={}&to={}",
                ts(from),
                ts(to)
            ),
        )
        .await;
        assert_eq!(res.status(), 503);
        let body = res.text().await.unwrap();
        assert!(
            !body.contains("tables") && !body.contains("ARREST"),
            "{body}"
        );
        match db {
            Db::Sqlite => exec(app.store(), "DROP TRIGGER fail_log").await,
            Db::Postgres => exec(app.store(), "DROP TRIGGER fail_log ON audit_log").await,
        }
        assert_eq!(permitted(&app).await, 1);

        // A tampered record fails the whole report: 500, nothing released, nothing logged as
        // released.
        exec(
            app.store(),
            "UPDATE record_fields SET ciphertext = ciphertext || ciphertext \
             WHERE kind = 'crisis-incident' AND id = 'INC-FC-3' AND field = 'disposition'",
        )
        .await;
        let (s, b) = report(&app, &pm("metro-pd"), "incident-outcomes", from, to).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (500, Some("internal_error")),
            "{b}"
        );
        assert_eq!(permitted(&app).await, 1);
        app.stop().await;
    }
}

#[tokio::test]
async fn the_vault_opens_only_what_a_reports_grant_names() {
    for db in BOTH {
        let app = app_at(db).await;
        write_incidents(&app, "2026-03-01T00:00:00Z".parse().unwrap(), 3, "VG").await;
        let kind = "crisis-incident".parse().unwrap();
        let grant = |people: bool| {
            Grant::for_tests(
                "t",
                BTreeMap::from([(
                    "crisis-incident".to_owned(),
                    KindGrant {
                        fields: ["occurred_at".to_owned()].into(),
                        history: false,
                        people,
                    },
                )]),
            )
        };
        let services = app.services();
        let mut pooled = services.store.acquire().await.unwrap();
        let rows = vault::report_rows(&mut pooled.conn(), &services.keyring, &grant(false), &kind)
            .await
            .unwrap();
        assert_eq!(rows.len(), 3);
        for r in &rows {
            assert_eq!(r.versions.len(), 1);
            let names: Vec<&String> = r.versions[0].keys().collect();
            assert_eq!(names, ["occurred_at"], "only the granted field");
            assert!(r.people.is_empty(), "no people without the grant");
            assert!(
                !format!("{r:?}").contains("2026-03"),
                "Debug shows no value"
            );
        }
        let rows = vault::report_rows(&mut pooled.conn(), &services.keyring, &grant(true), &kind)
            .await
            .unwrap();
        for r in &rows {
            assert_eq!(r.people.len(), 1);
            // A blind index, never the identifier.
            assert!(!String::from_utf8_lossy(&r.people[0]).contains("P-VG"));
        }
        // A kind the grant does not name is not read at all.
        let referral = "referral".parse().unwrap();
        let none = vault::report_rows(
            &mut pooled.conn(),
            &services.keyring,
            &grant(true),
            &referral,
        )
        .await
        .unwrap();
        assert!(none.is_empty());
        drop(pooled);
        app.stop().await;
    }
}
