//! `policy::diff` against an independent brute-force loop over `decide`: on the shipped policies,
//! a deliberately widened copy, and random mutations of a copy of `policies/`.

// Test and benchmark code may unwrap, expect, panic and index: a failure here is a failed
// test, not an outage (library code denies all four, see Cargo.toml).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use coresponse_gateway::domain::{
    CertFingerprint, Consent, ConsentScope, PartnerId, Principal, Purpose, Role, SubjectRef,
};
use coresponse_gateway::policy::diff::{
    self, ChangeType, EmergencyCase, PolicyDiff, ReportAspect, ReportChange, ReportChangeType,
};
use coresponse_gateway::policy::model::PURPOSES;
use coresponse_gateway::policy::{
    EmergencyAssertion, Inputs, MedicalEmergency, Outcome, PolicySet, Request, Transform,
    decide_with,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use toml_edit::{DocumentMut, Item, value};

fn policies() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/policies"))
}

fn at() -> DateTime<Utc> {
    "2026-06-01T12:00:00Z".parse().unwrap()
}

fn load(dir: &Path) -> Result<PolicySet, String> {
    PolicySet::load_unkeyed(dir, at())
        .map(|(s, _)| s)
        .map_err(|e| e.to_string())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// One flow's field outcome change, as the brute force sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct BruteChange {
    t: DateTime<Utc>,
    recipient: String,
    roles: BTreeSet<String>,
    purpose: String,
    kind: String,
    holder: String,
    consent: bool,
    emergency: EmergencyCase,
    field: String,
    before: String,
    after: String,
}

fn described(t: Option<Transform>) -> String {
    t.map_or_else(|| "omit".to_owned(), Transform::describe)
}

/// Every field's transform under `set` for one request, or all omitted on a denial.
#[allow(clippy::too_many_arguments)]
fn field_transforms(
    set: &PolicySet,
    recipient: &PartnerId,
    roles: &BTreeSet<Role>,
    purpose: &Purpose,
    kind: &str,
    holder: &PartnerId,
    consent: bool,
    emergency: EmergencyCase,
    fields: &[String],
    t: DateTime<Utc>,
) -> Vec<String> {
    let Some(partner_kind) = set.partner_kind(recipient) else {
        return fields.iter().map(|_| "omit".to_owned()).collect();
    };
    let principal = Principal {
        partner: recipient.clone(),
        partner_kind,
        user: "brute".parse().unwrap(),
        roles: roles.clone(),
        cert_fingerprint: CertFingerprint::of_der(b"brute"),
    };
    let subject: SubjectRef = "brute-subject".parse().unwrap();
    let threat = EmergencyAssertion {
        basis: "actual knowledge".into(),
        threat: "brute".into(),
    };
    let medical = MedicalEmergency {
        personnel: "brute".into(),
        nature: "brute".into(),
    };
    // The strongest consent: naming every field of the kind.
    let c = Consent {
        id: "c".into(),
        subject: subject.clone(),
        disclosers: [holder.clone()].into(),
        recipients: [recipient.clone()].into(),
        purposes: [purpose.clone()].into(),
        scope: ConsentScope {
            kinds: BTreeSet::new(),
            categories: BTreeSet::new(),
            fields: fields.iter().map(|f| format!("{kind}.{f}")).collect(),
        },
        valid_from: "2000-01-01T00:00:00Z".parse().unwrap(),
        expires: Some("2100-01-01T00:00:00Z".parse().unwrap()),
        expiry_event: None,
        revoked_at: None,
    };
    let consents = if consent { vec![c] } else { Vec::new() };
    let d = decide_with(
        &Request {
            principal: &principal,
            purpose,
            kind,
            holder,
            subject: &subject,
            emergency: (emergency == EmergencyCase::Threat).then_some(&threat),
        },
        &Inputs {
            consents: &consents,
            medical_emergency: (emergency == EmergencyCase::Medical).then_some(&medical),
            ..Inputs::default()
        },
        set,
        t,
    );
    match d.outcome {
        Outcome::Deny { .. } => fields.iter().map(|_| "omit".to_owned()).collect(),
        Outcome::Permit(p) => fields
            .iter()
            .map(|f| {
                described(
                    p.fields()
                        .iter()
                        .find(|x| &x.field == f)
                        .map(|x| x.transform)
                        .filter(|t| *t != Transform::Omit),
                )
            })
            .collect(),
    }
}

fn subsets(roles: &BTreeSet<Role>) -> Vec<BTreeSet<Role>> {
    let all: Vec<&Role> = roles.iter().collect();
    (1u32..(1u32 << all.len()))
        .map(|m| {
            all.iter()
                .enumerate()
                .filter(|(i, _)| m & (1 << i) != 0)
                .map(|(_, r)| (*r).clone())
                .collect()
        })
        .collect()
}

/// Every change between `old` and `new`, by brute force: every partner, every set of the roles
/// partners declare or rules name, every purpose, kind, holder of the kind, field, consent or
/// not, every emergency statement with every purpose, at `at()` and around every day an MOU
/// starts or ends.
fn brute_force(old: &PolicySet, new: &PolicySet) -> Vec<BruteChange> {
    let sets = [old, new];
    let partners: BTreeSet<PartnerId> = sets
        .iter()
        .flat_map(|s| s.partners.iter().map(|p| p.id.clone()))
        .collect();
    let kinds: BTreeSet<String> = sets.iter().flat_map(|s| s.kinds.keys().cloned()).collect();
    let purposes: Vec<Purpose> = PURPOSES.iter().map(|(p, _)| p.parse().unwrap()).collect();
    let mut times: BTreeSet<DateTime<Utc>> = [at()].into();
    for m in old.mous.iter().chain(new.mous.iter()) {
        for day in [m.effective, m.expires.succ_opt().unwrap()] {
            let t = day.and_hms_opt(0, 0, 0).unwrap().and_utc();
            for probe in [t, t + chrono::Duration::hours(1)] {
                if probe >= at() {
                    times.insert(probe);
                }
            }
        }
    }
    let mut out = Vec::new();
    for recipient in &partners {
        let mut roles: BTreeSet<Role> = sets
            .iter()
            .filter_map(|s| s.partners.get(recipient))
            .flat_map(|p| p.roles.iter().cloned())
            .collect();
        roles.extend(
            sets.iter()
                .flat_map(|s| s.mous.iter())
                .flat_map(|m| m.rules.iter())
                .filter(|r| r.recipients.contains(recipient))
                .flat_map(|r| r.roles.iter().cloned()),
        );
        for role_set in subsets(&roles) {
            for kind in &kinds {
                let mut fields: Vec<String> = Vec::new();
                for s in sets {
                    if let Some(k) = s.kinds.get(kind) {
                        for f in &k.fields {
                            if !fields.contains(&f.name) {
                                fields.push(f.name.clone());
                            }
                        }
                    }
                }
                let holders: BTreeSet<PartnerId> = sets
                    .iter()
                    .flat_map(|s| {
                        let owner = s.kinds.get(kind).map(|k| k.owner);
                        s.partners
                            .iter()
                            .filter(move |p| Some(p.kind) == owner)
                            .map(|p| p.id.clone())
                    })
                    .collect();
                for holder in &holders {
                    for purpose in &purposes {
                        for consent in [false, true] {
                            for emergency in [
                                EmergencyCase::None,
                                EmergencyCase::Threat,
                                EmergencyCase::Medical,
                            ] {
                                for &t in &times {
                                    let args = |s: &PolicySet| {
                                        field_transforms(
                                            s, recipient, &role_set, purpose, kind, holder,
                                            consent, emergency, &fields, t,
                                        )
                                    };
                                    let (b, a) = (args(old), args(new));
                                    for (i, f) in fields.iter().enumerate() {
                                        if b[i] != a[i] {
                                            out.push(BruteChange {
                                                t,
                                                recipient: recipient.to_string(),
                                                roles: role_set
                                                    .iter()
                                                    .map(ToString::to_string)
                                                    .collect(),
                                                purpose: purpose.to_string(),
                                                kind: kind.clone(),
                                                holder: holder.to_string(),
                                                consent,
                                                emergency,
                                                field: f.clone(),
                                                before: b[i].clone(),
                                                after: a[i].clone(),
                                            });
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// Every brute-force change is shown by the diff (for the same flow, at a smaller or equal set
/// of roles, within the row's time window; for purposes other than `emergency` the row says
/// `no emergency`, which the diff shows is every case), and every row of the diff is a real
/// change.
fn assert_agree(old: &PolicySet, new: &PolicySet, d: &PolicyDiff, what: &str) {
    let brute = brute_force(old, new);
    let rows: Vec<(&str, &str, &diff::FlowChange)> = d
        .groups
        .iter()
        .flat_map(|g| {
            g.changes
                .iter()
                .map(move |c| (g.recipient.as_str(), g.kind.as_str(), c))
        })
        .collect();
    for b in &brute {
        let emergency = if b.purpose == "emergency" {
            b.emergency
        } else {
            EmergencyCase::None
        };
        let shown = rows.iter().any(|(r, k, c)| {
            *r == b.recipient
                && *k == b.kind
                && c.field == b.field
                && c.purpose == b.purpose
                && c.holder == b.holder
                && c.consent == b.consent
                && c.emergency == emergency
                && c.before.transform == b.before
                && c.after.transform == b.after
                && c.roles.iter().all(|r| b.roles.contains(r))
                && c.from <= b.t
                && c.until.is_none_or(|u| b.t < u)
        });
        assert!(shown, "{what}: the diff misses {b:?}\n{}", d.render());
    }
    for (r, k, c) in &rows {
        let set_of = |s: &PolicySet| {
            let mut fields: Vec<String> = Vec::new();
            for set in [old, new] {
                if let Some(kind) = set.kinds.get(*k) {
                    for f in &kind.fields {
                        if !fields.contains(&f.name) {
                            fields.push(f.name.clone());
                        }
                    }
                }
            }
            let i = fields.iter().position(|f| *f == c.field).unwrap();
            field_transforms(
                s,
                &r.parse().unwrap(),
                &c.roles.iter().map(|x| x.parse().unwrap()).collect(),
                &c.purpose.parse().unwrap(),
                k,
                &c.holder.parse().unwrap(),
                c.consent,
                c.emergency,
                &fields,
                c.from,
            )[i]
                .clone()
        };
        assert_eq!(set_of(old), c.before.transform, "{what}: row {c:?}");
        assert_eq!(set_of(new), c.after.transform, "{what}: row {c:?}");
        let expected = match (c.before.transform.as_str(), c.after.transform.as_str()) {
            ("omit", _) => ChangeType::NewlyRevealed,
            (_, "omit") => ChangeType::NewlyWithheld,
            _ => ChangeType::TransformChanged,
        };
        assert_eq!(c.change, expected, "{what}: row {c:?}");
    }
}

#[test]
fn the_shipped_policies_against_themselves_change_nothing() {
    let set = load(&policies()).unwrap();
    let d = diff::diff(&set, &set, at()).unwrap();
    assert!(d.summary.is_empty(), "{}", d.render());
    assert!(d.reports.is_empty(), "{}", d.render());
    assert!(!d.reveals_more());
    assert!(d.decisions_compared > 100);
}

fn edit(dir: &Path, file: &str, f: impl FnOnce(&mut DocumentMut)) {
    let path = dir.join(file);
    let mut doc: DocumentMut = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    f(&mut doc);
    std::fs::write(&path, doc.to_string()).unwrap();
}

fn rule<'a>(doc: &'a mut DocumentMut, id: &str) -> &'a mut toml_edit::Table {
    doc["rule"]
        .as_array_of_tables_mut()
        .unwrap()
        .iter_mut()
        .find(|t| t["id"].as_str() == Some(id))
        .unwrap()
}

#[test]
fn a_widened_copy_names_the_new_flows() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&policies(), tmp.path());
    edit(tmp.path(), "mous/metro-county-coresponse.toml", |doc| {
        // The crisis-plan extract now also carries the diagnoses to the police...
        rule(doc, "4.3-crisis-plan-extract")["fields"]["diagnoses"] = value("reveal");
        // ...and clinicians see the officer's callback number in full.
        rule(doc, "5.1-incident-for-care")["fields"]["callback_number"] = value("reveal");
    });
    let old = load(&policies()).unwrap();
    let new = load(tmp.path()).unwrap();
    let d = diff::diff(&old, &new, at()).unwrap();
    assert!(d.reveals_more(), "{}", d.render());
    let police = d
        .groups
        .iter()
        .find(|g| g.recipient == "metro-pd" && g.kind == "safety-plan")
        .unwrap();
    let dx = police
        .changes
        .iter()
        .find(|c| c.field == "diagnoses")
        .unwrap();
    assert_eq!(dx.change, ChangeType::NewlyRevealed);
    assert_eq!(dx.purpose, "crisis-response");
    assert!(dx.consent, "only with the person's consent");
    assert_eq!(dx.before.transform, "omit");
    assert_eq!(dx.after.transform, "reveal");
    assert!(
        dx.after
            .reasons
            .iter()
            .any(|r| r == "mou-rule:metro-county-coresponse-2026/4.3-crisis-plan-extract"),
        "{dx:?}"
    );
    // Without consent nothing new flows to the police.
    assert!(
        police
            .changes
            .iter()
            .all(|c| c.consent || c.field != "diagnoses")
    );
    let clinicians = d
        .groups
        .iter()
        .find(|g| g.recipient == "county-mh" && g.kind == "crisis-incident")
        .unwrap();
    let cb = clinicians
        .changes
        .iter()
        .find(|c| c.field == "callback_number")
        .unwrap();
    assert_eq!(cb.change, ChangeType::TransformChanged);
    assert!(cb.more_revealing);
    assert_eq!(cb.before.transform, "mask(keep last 4)");
    // Most sensitive fields first: the clinical field leads the police group.
    assert_eq!(police.changes[0].field, "diagnoses");
    assert_agree(&old, &new, &d, "widened copy");
    // The other way round, the same flows are newly withheld and nothing is revealed.
    let back = diff::diff(&new, &old, at()).unwrap();
    assert!(!back.reveals_more(), "{}", back.render());
    assert_eq!(back.summary.newly_withheld, d.summary.newly_revealed);
}

/// One random edit of an MOU file; may produce an invalid set (the caller retries).
fn mutate(rng: &mut StdRng, dir: &Path, set: &PolicySet) {
    let mou = &set.mous[rng.random_range(0..set.mous.len())];
    let file = mou.file.clone();
    let rule_ids: Vec<String> = mou.rules.iter().map(|r| r.id.clone()).collect();
    let rid = rule_ids[rng.random_range(0..rule_ids.len())].clone();
    let r = mou.rules.iter().find(|r| r.id == rid).unwrap().clone();
    let kind = set.kinds.get(&r.kind).unwrap().clone();
    let field = kind.fields[rng.random_range(0..kind.fields.len())]
        .name
        .clone();
    let declared: Vec<String> = r
        .recipients
        .iter()
        .filter_map(|p| set.partners.get(p))
        .flat_map(|p| p.roles.iter().map(ToString::to_string))
        .collect();
    let purposes: Vec<&str> = PURPOSES.iter().map(|(p, _)| *p).collect();
    let choice = rng.random_range(0..8);
    edit(dir, &file, |doc| {
        if choice == 7 {
            let days = rng.random_range(-400..400);
            let expires = mou.expires + chrono::Duration::days(days);
            doc["mou"]["expires"] = Item::Value(
                toml_edit::Datetime {
                    date: Some(toml_edit::Date {
                        year: u16::try_from(chrono::Datelike::year(&expires)).unwrap(),
                        month: u8::try_from(chrono::Datelike::month(&expires)).unwrap(),
                        day: u8::try_from(chrono::Datelike::day(&expires)).unwrap(),
                    }),
                    time: None,
                    offset: None,
                }
                .into(),
            );
            return;
        }
        let t = rule(doc, &rid);
        match choice {
            0 | 1 => {
                if t.get("fields").is_some() {
                    let tr = ["reveal", "omit", "encrypt"][rng.random_range(0..3)];
                    t["fields"][field.as_str()] = value(tr);
                }
            }
            2 => {
                if let Some(f) = t.get_mut("fields").and_then(Item::as_table_like_mut) {
                    f.remove(&field);
                }
            }
            3 => {
                if !declared.is_empty() {
                    let role = &declared[rng.random_range(0..declared.len())];
                    let roles = t["roles"].as_array_mut().unwrap();
                    let found = roles.iter().position(|v| v.as_str() == Some(role));
                    if let Some(i) = found {
                        if roles.len() > 1 {
                            roles.remove(i);
                        }
                    } else {
                        roles.push(role.as_str());
                    }
                }
            }
            4 => {
                let p = purposes[rng.random_range(0..purposes.len())];
                let list = t["purposes"].as_array_mut().unwrap();
                let found = list.iter().position(|v| v.as_str() == Some(p));
                if let Some(i) = found {
                    if list.len() > 1 {
                        list.remove(i);
                    }
                } else {
                    list.push(p);
                }
            }
            5 => match t.get("legal_basis").and_then(Item::as_str) {
                Some("consent") => {
                    t["legal_basis"] = value("law");
                    t["citation"] = value("45 CFR 164.506(c)");
                }
                Some("law") => {
                    t["legal_basis"] = value("consent");
                    t.remove("citation");
                }
                _ => {}
            },
            _ => {
                // A new deny rule over this rule's flow.
                let mut deny = toml_edit::Table::new();
                deny["id"] = value(format!("{rid}-deny"));
                deny["effect"] = value("deny");
                deny["recipients"] = t["recipients"].clone();
                deny["roles"] = t["roles"].clone();
                deny["purposes"] = t["purposes"].clone();
                deny["kind"] = t["kind"].clone();
                doc["rule"].as_array_of_tables_mut().unwrap().push(deny);
            }
        }
    });
}

#[test]
fn the_diff_agrees_with_a_brute_force_loop_on_random_mutations() {
    let base = load(&policies()).unwrap();
    let mut compared = 0;
    let mut changed = 0;
    for seed in 0..8u64 {
        let mut rng = StdRng::seed_from_u64(0x5eed_0000 + seed);
        let mut found = None;
        for _attempt in 0..40 {
            let tmp = tempfile::tempdir().unwrap();
            copy_dir(&policies(), tmp.path());
            for _ in 0..rng.random_range(1..=3) {
                let current = load(tmp.path()).unwrap_or_else(|_| base.clone());
                mutate(&mut rng, tmp.path(), &current);
            }
            if let Ok(set) = load(tmp.path()) {
                found = Some((tmp, set));
                break;
            }
        }
        let Some((_tmp, new)) = found else { continue };
        let d = diff::diff(&base, &new, at()).unwrap();
        if !d.summary.is_empty() {
            changed += 1;
        }
        assert_agree(&base, &new, &d, &format!("seed {seed}"));
        compared += 1;
    }
    assert!(compared >= 6, "too few valid mutations: {compared}");
    assert!(
        changed >= 3,
        "too few mutations changed anything: {changed}"
    );
}

#[test]
fn a_diff_renders_and_round_trips_as_json() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&policies(), tmp.path());
    edit(tmp.path(), "mous/metro-county-coresponse.toml", |doc| {
        rule(doc, "4.2-referral-status")["fields"]
            .as_table_like_mut()
            .unwrap()
            .remove("clinician_contact");
    });
    let d = diff::diff(
        &load(&policies()).unwrap(),
        &load(tmp.path()).unwrap(),
        at(),
    )
    .unwrap();
    assert!(!d.reveals_more());
    assert!(d.summary.newly_withheld > 0);
    let text = d.render();
    assert!(
        text.contains("NEWLY WITHHELD `clinician_contact`"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::to_value(&d).unwrap();
    assert_eq!(json["summary"]["newly_withheld"], d.summary.newly_withheld);
    let _: BTreeMap<String, serde_json::Value> = serde_json::from_value(json).unwrap();
}

fn report_change<'a>(d: &'a PolicyDiff, id: &str) -> &'a ReportChange {
    d.reports
        .iter()
        .find(|r| r.report == id)
        .unwrap_or_else(|| panic!("no change of report `{id}`:\n{}", d.render()))
}

fn report_aspect<'a>(c: &'a ReportChange, aspect: &str) -> &'a ReportAspect {
    c.aspects
        .iter()
        .find(|a| a.aspect == aspect)
        .unwrap_or_else(|| panic!("report `{}` has no `{aspect}` change: {c:?}", c.report))
}

#[test]
fn report_definition_changes_name_the_report_and_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&policies(), tmp.path());
    // Police program managers may now run the engagement report.
    edit(tmp.path(), "reports/engagement.toml", |doc| {
        let mut runner = toml_edit::Table::new();
        runner["partner_kind"] = value("police");
        runner["roles"] = value(toml_edit::Array::from_iter(["program-manager"]));
        doc["runner"].as_array_of_tables_mut().unwrap().push(runner);
    });
    // The dashboard spends twice the privacy loss per run.
    edit(tmp.path(), "reports/public-dashboard.toml", |doc| {
        doc["privacy"]["epsilon"] = value(2.0);
    });
    // The annual report's force table is grouped by call type instead: it reads `call_type`.
    edit(tmp.path(), "reports/annual-report.toml", |doc| {
        let table = doc["table"]
            .as_array_of_tables_mut()
            .unwrap()
            .iter_mut()
            .find(|t| t["id"].as_str() == Some("force"))
            .unwrap();
        table["columns"] = value("call-type");
    });
    // The use-of-force report is gone; the disclosures report only gets a comment.
    std::fs::remove_file(tmp.path().join("reports/use-of-force.toml")).unwrap();
    let path = tmp.path().join("reports/disclosures.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("# Reviewed 2026-06-01.\n{text}")).unwrap();

    let old = load(&policies()).unwrap();
    let new = load(tmp.path()).unwrap();
    let d = diff::diff(&old, &new, at()).unwrap();
    // No flow changes: report definitions decide no disclosure of a record.
    assert!(d.summary.is_empty(), "{}", d.render());
    let ids: Vec<&str> = d.reports.iter().map(|r| r.report.as_str()).collect();
    assert_eq!(
        ids,
        [
            "annual-report",
            "disclosures",
            "engagement",
            "public-dashboard",
            "use-of-force"
        ],
        "{}",
        d.render()
    );

    let engagement = report_change(&d, "engagement");
    assert_eq!(engagement.change, ReportChangeType::Changed);
    assert!(engagement.widens);
    let runners = report_aspect(engagement, "runners");
    assert!(runners.widens);
    assert!(!runners.before.contains("police"), "{runners:?}");
    assert!(
        runners
            .after
            .contains("police partners (role program-manager)"),
        "{runners:?}"
    );
    assert!(engagement.runners.contains("police partners"));
    assert_eq!(engagement.aspects.len(), 1, "{engagement:?}");

    let dashboard = report_change(&d, "public-dashboard");
    let privacy = report_aspect(dashboard, "privacy");
    assert!(privacy.widens && dashboard.widens, "{dashboard:?}");
    assert!(
        privacy.before.starts_with("epsilon 1 per run"),
        "{privacy:?}"
    );
    assert!(
        privacy.after.starts_with("epsilon 2 per run"),
        "{privacy:?}"
    );

    let annual = report_change(&d, "annual-report");
    let table = report_aspect(annual, "table force");
    assert!(
        table.before.contains("by quarter and use-of-force"),
        "{table:?}"
    );
    assert!(
        table.after.contains("by quarter and call-type"),
        "{table:?}"
    );
    let reads = report_aspect(annual, "reads");
    assert!(reads.widens && annual.widens, "{annual:?}");
    assert!(!reads.before.contains("call_type") && reads.after.contains("call_type"));
    assert!(reads.before.contains("use_of_force") && !reads.after.contains("use_of_force"));

    let gone = report_change(&d, "use-of-force");
    assert_eq!(gone.change, ReportChangeType::Removed);
    assert!(!gone.widens);
    assert_eq!(report_aspect(gone, "runners").after, "none");

    let comment = report_change(&d, "disclosures");
    assert_eq!(comment.change, ReportChangeType::Changed);
    assert!(!comment.widens);
    assert_eq!(comment.aspects.len(), 1);
    assert_eq!(comment.aspects[0].aspect, "file");

    // Wider reports gate the change as a newly revealed field does.
    assert!(d.reveals_more());
    let text = d.render();
    assert!(
        text.contains("report `engagement` CHANGED (widens):"),
        "{text}"
    );
    assert!(text.contains("report `use-of-force` REMOVED:"), "{text}");
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["reports"][2]["report"], "engagement");
    assert_eq!(json["reports"][2]["aspects"][0]["aspect"], "runners");

    // The reverse edit narrows the runners and the privacy loss: listed, not a widening. The
    // regrouped table reads `use_of_force` again, and the removed report comes back: both
    // widen.
    let back = diff::diff(&new, &old, at()).unwrap();
    assert!(!report_change(&back, "engagement").widens);
    assert!(!report_change(&back, "public-dashboard").widens);
    let reads = report_aspect(report_change(&back, "annual-report"), "reads");
    assert!(
        reads.widens && reads.after.contains("use_of_force"),
        "{reads:?}"
    );
    assert_eq!(
        report_change(&back, "use-of-force").change,
        ReportChangeType::Added
    );
    assert!(report_change(&back, "use-of-force").widens);
}

#[test]
fn a_narrowed_report_is_listed_but_does_not_gate() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&policies(), tmp.path());
    edit(tmp.path(), "reports/engagement.toml", |doc| {
        doc["runner"].as_array_of_tables_mut().unwrap().remove(1);
    });
    let d = diff::diff(
        &load(&policies()).unwrap(),
        &load(tmp.path()).unwrap(),
        at(),
    )
    .unwrap();
    let c = report_change(&d, "engagement");
    assert_eq!(c.aspects.len(), 1, "{c:?}");
    let runners = report_aspect(c, "runners");
    assert!(
        runners.before.contains("compliance partners"),
        "{runners:?}"
    );
    assert!(!runners.after.contains("compliance"), "{runners:?}");
    assert!(!c.widens);
    assert!(!d.reveals_more(), "{}", d.render());
}
