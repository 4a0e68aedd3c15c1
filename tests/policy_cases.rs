//! Golden cases: every `policies/cases/*.toml` is a request and the expected decision with its
//! reasons, run against the demo policy set in `policies/`. A permit's `[expect.view]` lists
//! what the record kind's workflow view changes on top of the plan (the police referral-status
//! view, `coresponse_gateway::referral::view`); a case without it expects no change.

// Test and benchmark code may unwrap, expect, panic and index: a failure here is a failed
// test, not an outage (library code denies all four, see Cargo.toml).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{DateTime, Utc};
use coresponse_gateway::consent::{Consent, SubjectRef};
use coresponse_gateway::domain::{
    CertFingerprint, CourtOrder, PartnerId, Principal, Purpose, Restriction, Role,
};
use coresponse_gateway::policy::{
    EmergencyAssertion, Inputs, MedicalEmergency, Outcome, PolicySet, Request, Transform,
    decide_with,
};
use coresponse_gateway::referral::view::{StatusView, ViewRequest};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    description: String,
    request: CaseRequest,
    #[serde(default)]
    consent: Vec<Consent>,
    #[serde(default)]
    restriction: Vec<Restriction>,
    #[serde(default)]
    court_order: Vec<CourtOrder>,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseRequest {
    partner: PartnerId,
    roles: BTreeSet<Role>,
    purpose: Purpose,
    kind: String,
    #[serde(default)]
    holder: Option<PartnerId>,
    subject: SubjectRef,
    at: DateTime<Utc>,
    #[serde(default)]
    emergency: Option<CaseEmergency>,
    #[serde(default)]
    medical_emergency: Option<CaseMedical>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseMedical {
    personnel: String,
    nature: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseEmergency {
    basis: String,
    threat: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    decision: String,
    #[serde(default)]
    reasons: Vec<String>,
    #[serde(default)]
    fields: BTreeMap<String, ExpectField>,
    /// Field -> what the workflow view makes of it (e.g. `omit(referral-status)`).
    #[serde(default)]
    view: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectField {
    transform: String,
    reasons: Vec<String>,
}

fn policies() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/policies"))
}

fn run_case(set: &PolicySet, name: &str, case: &Case) -> Result<(), String> {
    let r = &case.request;
    let partner_kind = set
        .partner_kind(&r.partner)
        .ok_or_else(|| format!("partner `{}` is not registered", r.partner))?;
    let holder = match &r.holder {
        Some(h) => h.clone(),
        None => {
            let owner = set
                .kinds
                .get(&r.kind)
                .map(|k| k.owner)
                .ok_or("unknown kind")?;
            set.partners
                .iter()
                .find(|p| p.kind == owner)
                .map(|p| p.id.clone())
                .ok_or("no holder")?
        }
    };
    let principal = Principal {
        partner: r.partner.clone(),
        partner_kind,
        user: "case-user".parse().map_err(|e| format!("{e}"))?,
        roles: r.roles.clone(),
        cert_fingerprint: CertFingerprint::of_der(b"case"),
    };
    let emergency = r.emergency.as_ref().map(|e| EmergencyAssertion {
        basis: e.basis.clone(),
        threat: e.threat.clone(),
    });
    let req = Request {
        principal: &principal,
        purpose: &r.purpose,
        kind: &r.kind,
        holder: &holder,
        subject: &r.subject,
        emergency: emergency.as_ref(),
    };
    let medical = r.medical_emergency.as_ref().map(|m| MedicalEmergency {
        personnel: m.personnel.clone(),
        nature: m.nature.clone(),
    });
    let decision = decide_with(
        &req,
        &Inputs {
            consents: &case.consent,
            restrictions: &case.restriction,
            court_orders: &case.court_order,
            medical_emergency: medical.as_ref(),
        },
        set,
        r.at,
    );
    if decision.policy_hash != set.hash {
        return Err("the decision does not carry the policy hash".into());
    }
    match (&decision.outcome, case.expect.decision.as_str()) {
        (Outcome::Deny { reasons }, "deny") => {
            let got: BTreeSet<String> = reasons.iter().map(|r| r.key()).collect();
            let want: BTreeSet<String> = case.expect.reasons.iter().cloned().collect();
            if got != want {
                return Err(format!("deny reasons: got {got:?}, expected {want:?}"));
            }
        }
        (Outcome::Permit(permit), "permit") => {
            let kind = set.kinds.get(&r.kind).ok_or("unknown kind")?;
            if permit.fields().len() != kind.fields.len() {
                return Err("the plan does not cover every field of the kind".into());
            }
            for f in permit.fields() {
                match case.expect.fields.get(&f.field) {
                    Some(want) => {
                        let got_reasons: BTreeSet<String> =
                            f.reasons.iter().map(|r| r.key()).collect();
                        let want_reasons: BTreeSet<String> = want.reasons.iter().cloned().collect();
                        if f.transform.describe() != want.transform || got_reasons != want_reasons {
                            return Err(format!(
                                "field `{}`: got {} {got_reasons:?}, expected {} {want_reasons:?}",
                                f.field,
                                f.transform.describe(),
                                want.transform
                            ));
                        }
                    }
                    None if f.transform != Transform::Omit => {
                        return Err(format!(
                            "field `{}` is {} but the case does not list it (unlisted fields must be omitted)",
                            f.field,
                            f.transform.describe()
                        ));
                    }
                    None => {}
                }
            }
            for name in case.expect.fields.keys() {
                if kind.field(name).is_none() {
                    return Err(format!(
                        "the case lists `{name}`, which the kind does not have"
                    ));
                }
            }
            let view = StatusView::for_request(
                set,
                &ViewRequest {
                    recipient: &r.partner,
                    recipient_kind: partner_kind,
                    purpose: &r.purpose,
                    kind: &r.kind,
                    subject: &r.subject,
                },
                &case.consent,
                r.at,
            );
            let changes = view.changes(
                permit
                    .fields()
                    .iter()
                    .map(|f| (f.field.as_str(), f.transform)),
            );
            if changes != case.expect.view {
                return Err(format!(
                    "the workflow view changes {changes:?}, the case expects {:?}",
                    case.expect.view
                ));
            }
        }
        (outcome, want) => {
            return Err(format!(
                "expected {want}, got {}",
                serde_json::to_string(outcome).unwrap_or_default()
            ));
        }
    }
    let _ = name;
    Ok(())
}

#[test]
fn golden_cases() {
    let (set, report) =
        PolicySet::load_unkeyed(policies(), "2026-03-01T00:00:00Z".parse().unwrap())
            .unwrap_or_else(|e| panic!("demo policy invalid: {e}"));
    assert!(report.diagnostics.is_empty(), "{report}");
    let mut paths: Vec<_> = std::fs::read_dir(policies().join("cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 10, "expected the golden cases");
    let mut failures = Vec::new();
    let mut transforms = BTreeSet::new();
    let mut reasons = BTreeSet::new();
    for p in &paths {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let case: Case = toml_edit::de::from_str(&std::fs::read_to_string(p).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!case.description.is_empty());
        for f in case.expect.fields.values() {
            transforms.insert(f.transform.split('(').next().unwrap().to_owned());
            reasons.extend(f.reasons.iter().cloned());
        }
        reasons.extend(case.expect.reasons.iter().cloned());
        if let Err(e) = run_case(&set, &name, &case) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "golden cases failed:\n{}",
        failures.join("\n")
    );
    for t in [
        "reveal",
        "omit",
        "mask",
        "generalize",
        "pseudonymize",
        "encrypt",
    ] {
        assert!(
            transforms.contains(t),
            "no golden case covers transform `{t}`"
        );
    }
    for g in [
        "generalize(year)",
        "generalize(month)",
        "generalize(age-band)",
        "generalize(city)",
        "generalize(zip3)",
    ] {
        assert!(
            paths
                .iter()
                .any(|p| std::fs::read_to_string(p).unwrap().contains(g)),
            "no golden case covers `{g}`"
        );
    }
    for limit in [
        "hard-limit-part2-law-enforcement",
        "hard-limit-part2-emergency-police",
        "hard-limit-psychotherapy-notes",
        "hard-limit-cji",
    ] {
        assert!(reasons.contains(limit), "no golden case covers `{limit}`");
    }
    // Court orders, restrictions and 2.51 medical emergencies each have cases.
    for prefix in [
        "court-order:",
        "restriction:",
        "restriction-not-effective:",
        "medical-emergency-basis",
        "medical-emergency-missing:",
    ] {
        assert!(
            reasons.iter().any(|r| r.starts_with(prefix)),
            "no golden case covers `{prefix}`"
        );
    }
}
