//! Benchmarks: `decide` alone, `decide` + redaction of a 30-field record, and the same
//! field-level authorization written in Cedar (one `is_authorized` call per field, the way a
//! Cedar user does field-level access).
//!
//! Run: `cargo bench --bench policy`

// Test and benchmark code may unwrap, expect, panic and index: a failure here is a failed
// test, not an outage (library code denies all four, see Cargo.toml).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use cedar_policy::{
    Authorizer, Context, Entities, EntityUid, PolicySet as CedarPolicySet, Request as CedarRequest,
};
use coresponse_gateway::consent::SubjectRef;
use coresponse_gateway::domain::{CertFingerprint, PartnerId, Principal, Purpose};
use coresponse_gateway::policy::{PolicySet, Request, decide};
use coresponse_gateway::redaction::{self, Record, RedactionKeys};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

const FIELDS: usize = 30;

/// Field `i`: its type and the transform the rule gives it (`None`: not in the profile).
fn field_spec(i: usize) -> (&'static str, Option<&'static str>) {
    match i % 6 {
        0 => ("string", Some("\"reveal\"")),
        1 => ("text", Some("\"reveal\"")),
        2 => (
            "phone",
            Some("{ transform = \"mask\", keep = \"last\", chars = 4 }"),
        ),
        3 => (
            "date",
            Some("{ transform = \"generalize\", to = \"month\" }"),
        ),
        4 => ("string", Some("\"pseudonymize\"")),
        _ => ("text", None),
    }
}

fn bench_policy_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let copy = |from: &Path, to: &Path| {
        std::fs::copy(from, to)
            .map(|_| ())
            .unwrap_or_else(|e| panic!("{e}"))
    };
    std::fs::create_dir(dir.path().join("kinds")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir(dir.path().join("mous")).unwrap_or_else(|e| panic!("{e}"));
    copy(
        &root.join("partners.toml"),
        &dir.path().join("partners.toml"),
    );
    let mut kind = String::from("[kind]\nid = \"bench-record\"\nowner = \"police\"\n");
    let mut fields = String::new();
    for i in 0..FIELDS {
        let (ty, t) = field_spec(i);
        let _ = write!(
            kind,
            "\n[[field]]\nname = \"f{i}\"\ntype = \"{ty}\"\nlabels = [\"incident\"]\n"
        );
        if let Some(t) = t {
            let _ = writeln!(fields, "f{i} = {t}");
        }
    }
    std::fs::write(dir.path().join("kinds/bench-record.toml"), kind)
        .unwrap_or_else(|e| panic!("{e}"));
    let mou = format!(
        "[mou]\nid = \"bench\"\ntitle = \"bench\"\ndocument = \"x\"\nparties = [\"metro-pd\", \"county-mh\"]\n\
         effective = 2026-01-01\nexpires = 2028-12-31\nretention_days = 30\n\n[[rule]]\nid = \"r1\"\n\
         recipients = [\"county-mh\"]\nroles = [\"clinician\"]\npurposes = [\"treatment\"]\n\
         kind = \"bench-record\"\nlegal_basis = \"law\"\ncitation = \"x\"\n\n[rule.fields]\n{fields}"
    );
    std::fs::write(dir.path().join("mous/bench.toml"), mou).unwrap_or_else(|e| panic!("{e}"));
    dir
}

fn record() -> Record {
    let fields = (0..FIELDS)
        .map(|i| {
            let v = match field_spec(i).0 {
                "phone" => json!("555-867-5309"),
                "date" => json!("2026-03-14"),
                _ => json!(format!("value of field {i} with some text")),
            };
            (format!("f{i}"), v)
        })
        .collect::<BTreeMap<_, _>>();
    Record {
        kind: "bench-record".into(),
        id: "r-1".into(),
        fields,
    }
}

fn cedar_setup() -> (CedarPolicySet, Entities) {
    let mut text = String::new();
    for i in 0..FIELDS {
        if field_spec(i).1.is_some() {
            let _ = writeln!(
                text,
                "permit(principal in Role::\"clinician\", action == Action::\"read\", resource == Field::\"bench-record.f{i}\") \
                 when {{ principal.partner == \"county-mh\" && context.purpose == \"treatment\" && resource.mou_in_force }};"
            );
        }
    }
    text.push_str(
        "forbid(principal, action, resource) when { resource.labels.contains(\"sud\") && principal.partner_kind == \"police\" && context.purpose == \"investigation\" };\n",
    );
    let policies = CedarPolicySet::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let mut entities = vec![
        json!({"uid": {"type": "User", "id": "u-1"}, "attrs": {"partner": "county-mh", "partner_kind": "mental-health"}, "parents": [{"type": "Role", "id": "clinician"}]}),
        json!({"uid": {"type": "Role", "id": "clinician"}, "attrs": {}, "parents": []}),
    ];
    for i in 0..FIELDS {
        entities.push(json!({"uid": {"type": "Field", "id": format!("bench-record.f{i}")}, "attrs": {"labels": ["incident"], "mou_in_force": true}, "parents": []}));
    }
    let entities =
        Entities::from_json_value(json!(entities), None).unwrap_or_else(|e| panic!("{e}"));
    (policies, entities)
}

fn benches(c: &mut Criterion) {
    let dir = bench_policy_dir();
    let now = "2026-03-01T12:00:00Z"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let (set, _) = PolicySet::load_unkeyed(dir.path(), now).unwrap_or_else(|e| panic!("{e}"));
    let partner: PartnerId = "county-mh".parse().unwrap_or_else(|e| panic!("{e}"));
    let principal = Principal {
        partner_kind: set
            .partner_kind(&partner)
            .unwrap_or_else(|| panic!("partner")),
        partner,
        user: "u-1".parse().unwrap_or_else(|e| panic!("{e}")),
        roles: ["clinician".parse().unwrap_or_else(|e| panic!("{e}"))].into(),
        cert_fingerprint: CertFingerprint::of_der(b"x"),
    };
    let purpose: Purpose = "treatment".parse().unwrap_or_else(|e| panic!("{e}"));
    let holder: PartnerId = "metro-pd".parse().unwrap_or_else(|e| panic!("{e}"));
    let subject: SubjectRef = "subj-1".parse().unwrap_or_else(|e| panic!("{e}"));
    let req = Request {
        principal: &principal,
        purpose: &purpose,
        kind: "bench-record",
        holder: &holder,
        subject: &subject,
        emergency: None,
    };
    let d = decide(&req, &[], &set, now);
    let disclosed = d.permit().iter().count();
    assert_eq!(disclosed, 1, "the bench request must be permitted");
    let rec = record();
    let secret = [7u8; 32];

    let mut g = c.benchmark_group("policy");
    g.sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g.bench_function("decide (30-field kind)", |b| {
        b.iter(|| black_box(decide(black_box(&req), &[], &set, now)))
    });
    g.bench_function("decide + redact (30 fields)", |b| {
        b.iter(|| {
            let d = decide(black_box(&req), &[], &set, now);
            let p = d.permit()?;
            redaction::apply(
                p,
                black_box(&rec),
                &RedactionKeys {
                    pseudonym_secret: &secret,
                    recipient_key: None,
                },
            )
            .ok()
        })
    });

    let (policies, entities) = cedar_setup();
    let authorizer = Authorizer::new();
    let user = EntityUid::from_str("User::\"u-1\"").unwrap_or_else(|e| panic!("{e}"));
    let action = EntityUid::from_str("Action::\"read\"").unwrap_or_else(|e| panic!("{e}"));
    let resources: Vec<EntityUid> = (0..FIELDS)
        .map(|i| {
            EntityUid::from_str(&format!("Field::\"bench-record.f{i}\""))
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    let allowed = resources
        .iter()
        .filter(|r| {
            let ctx = Context::from_json_value(json!({"purpose": "treatment"}), None)
                .unwrap_or_else(|e| panic!("{e}"));
            let q = CedarRequest::new(user.clone(), action.clone(), (*r).clone(), ctx, None)
                .unwrap_or_else(|e| panic!("{e}"));
            authorizer
                .is_authorized(&q, &policies, &entities)
                .decision()
                == cedar_policy::Decision::Allow
        })
        .count();
    assert_eq!(
        allowed,
        (0..FIELDS).filter(|i| field_spec(*i).1.is_some()).count(),
        "cedar must agree"
    );
    let ctx = Context::from_json_value(json!({"purpose": "treatment"}), None)
        .unwrap_or_else(|e| panic!("{e}"));
    g.bench_function("cedar: 30 field requests", |b| {
        b.iter(|| {
            let mut n = 0;
            for r in &resources {
                let q =
                    CedarRequest::new(user.clone(), action.clone(), r.clone(), ctx.clone(), None)
                        .unwrap_or_else(|e| panic!("{e}"));
                if authorizer
                    .is_authorized(&q, &policies, &entities)
                    .decision()
                    == cedar_policy::Decision::Allow
                {
                    n += 1;
                }
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(policy, benches);
criterion_main!(policy);
