//! Policy impact: every flow whose outcome differs between two policy sets, found by running
//! [`decide_with`] itself over the whole, finite space of flows.
//!
//! Security role: an MOU amendment is where a data-sharing program most often goes wrong (a
//! line moves from one rule to another and a diagnosis starts flowing to the police). The
//! diff tells a reviewer exactly what an edit changes, field by field, and `policy diff` exits
//! 3 when anything is newly revealed (or revealed in a more revealing form), so it can gate a
//! change; the gateway records the same diff with every policy load (CJIS AU-2).
//!
//! # The flow space, and why the diff is exhaustive
//!
//! A decision depends on the recipient partner, the user's roles, the purpose, the record kind,
//! the holder, the subject's consents and directives, the emergency statements and the time.
//! The diff enumerates, under both sets:
//!
//! - every recipient partner registered in either set;
//! - every non-empty set of the roles that some rule of either set names for that recipient
//!   (a role no rule names changes no decision, so sets of named roles are every case; a
//!   change seen for a set of roles is reported only when no smaller set shows the same
//!   change);
//! - every purpose of the vocabulary;
//! - every record kind of either set, each holder of it in either set, every field of it in
//!   either set;
//! - no consent, or a consent of the subject covering the flow and naming every field (the
//!   strongest consent there is: a weaker one covers a subset of the fields and decides each
//!   field it covers the same way);
//! - for purpose `emergency`: no emergency statement, a complete HIPAA 164.512(j) assertion, or
//!   a complete 42 CFR 2.51 medical emergency (for other purposes these change nothing);
//! - the given time and every later day on which an MOU of either set takes effect or ends.
//!
//! Restrictions and court orders are per-person directives, not policy: the diff runs without
//! them. Report definitions are not flows: the diff lists those added, removed or changed, and
//! in what ([`super::report_diff`]). A test compares the diff with an independent brute-force loop over `decide` on random
//! policy mutations.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::PolicySet;
use super::decide::{EmergencyAssertion, Inputs, MedicalEmergency, Outcome, Request, decide_with};
use super::model::{EMERGENCY_PURPOSE, PURPOSES, Transform};
use super::report_diff;
pub use super::report_diff::{ReportAspect, ReportChange, ReportChangeType};
use crate::domain::{
    CertFingerprint, Consent, ConsentScope, Label, PartnerId, Principal, Purpose, Role, SubjectRef,
    UserId,
};

/// Most roles of one recipient the diff enumerates sets of (2^16 role sets).
pub const MAX_ROLES: usize = 16;

/// Why a diff cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiffError {
    /// Rules name more roles of one recipient than the diff enumerates sets of.
    #[error(
        "rules name {count} roles of partner `{partner}`; the diff enumerates every set of at \
         most {MAX_ROLES}"
    )]
    TooManyRoles {
        /// The recipient.
        partner: String,
        /// How many roles the rules name.
        count: usize,
    },
    /// A constant the diff needs did not parse (a defect).
    #[error("policy diff: {0}")]
    Internal(String),
}

/// How a flow's outcome changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeType {
    /// Omitted before, some of it leaves now.
    NewlyRevealed,
    /// Some of it left before, omitted now.
    NewlyWithheld,
    /// It leaves either way, transformed differently (e.g. `mask` -> `reveal`).
    TransformChanged,
}

impl ChangeType {
    /// The name shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewlyRevealed => "newly revealed",
            Self::NewlyWithheld => "newly withheld",
            Self::TransformChanged => "transform changed",
        }
    }
}

/// Which emergency statement the request carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EmergencyCase {
    /// None (every purpose but `emergency` has only this case).
    None,
    /// A complete HIPAA 164.512(j) serious-and-imminent-threat assertion.
    Threat,
    /// A complete 42 CFR 2.51 medical emergency.
    Medical,
}

impl EmergencyCase {
    /// The name shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "no emergency",
            Self::Threat => "164.512(j) threat",
            Self::Medical => "2.51 medical emergency",
        }
    }
}

/// One side of a change: the field's transform and the reasons behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Side {
    /// `omit`, `reveal`, `mask(keep last 4)`, ...
    pub transform: String,
    /// The decision's reasons for the field (MOU rules, consent, limits), or for the denial.
    pub reasons: Vec<String>,
}

/// One flow of one field whose outcome changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowChange {
    /// The field.
    pub field: String,
    /// Its sensitivity labels (in the new set, or the old one if the field is gone).
    pub labels: Vec<Label>,
    /// What changed.
    pub change: ChangeType,
    /// Whether more of the value leaves now (newly revealed, or a more revealing transform).
    pub more_revealing: bool,
    /// The user's roles.
    pub roles: Vec<String>,
    /// The purpose of use.
    pub purpose: String,
    /// The partner holding the record.
    pub holder: String,
    /// Whether the subject consented (a consent covering the flow and the field).
    pub consent: bool,
    /// The emergency statement.
    pub emergency: EmergencyCase,
    /// From when the change holds (the time asked, or the day an MOU takes effect or ends).
    pub from: DateTime<Utc>,
    /// Until when (exclusive), if it stops within the time points evaluated.
    pub until: Option<DateTime<Utc>>,
    /// Under the old set.
    pub before: Side,
    /// Under the new set.
    pub after: Side,
}

/// The changes for one recipient and record kind, most sensitive fields first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// The recipient partner.
    pub recipient: String,
    /// The record kind.
    pub kind: String,
    /// The changes.
    pub changes: Vec<FlowChange>,
}

/// Counts by change type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Summary {
    /// Flows of a field newly revealed.
    pub newly_revealed: usize,
    /// Flows of a field newly withheld.
    pub newly_withheld: usize,
    /// Flows of a field transformed differently.
    pub transform_changed: usize,
    /// Of those, transformed more revealingly (e.g. `mask` -> `reveal`).
    pub more_revealing: usize,
}

impl Summary {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.newly_revealed == 0 && self.newly_withheld == 0 && self.transform_changed == 0
    }

    /// One line: `3 newly revealed, 0 newly withheld, 1 transform changed (1 more revealing)`.
    pub fn line(&self) -> String {
        format!(
            "{} newly revealed, {} newly withheld, {} transform changed ({} more revealing)",
            self.newly_revealed, self.newly_withheld, self.transform_changed, self.more_revealing
        )
    }
}

/// What changed between two policy sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyDiff {
    /// The old set's hash.
    pub old_hash: String,
    /// The new set's hash.
    pub new_hash: String,
    /// The time asked (the first time point).
    pub at: DateTime<Utc>,
    /// Every time point evaluated.
    pub time_points: Vec<DateTime<Utc>>,
    /// How many decisions were compared (each under both sets).
    pub decisions_compared: u64,
    /// Counts by change type.
    pub summary: Summary,
    /// The changes by recipient and kind.
    pub groups: Vec<Group>,
    /// The report definitions added, removed or changed, by id.
    pub reports: Vec<ReportChange>,
}

impl PolicyDiff {
    /// Whether anything is newly revealed, or revealed in a more revealing form, or a report
    /// definition widens (see [`ReportChange::widens`]): the gate (`policy diff` exits 3).
    pub fn reveals_more(&self) -> bool {
        self.summary.newly_revealed > 0
            || self.summary.more_revealing > 0
            || self.reports.iter().any(|r| r.widens)
    }
}

/// The sensitivity rank of a label, most sensitive first.
fn label_rank(l: Label) -> u8 {
    match l {
        Label::PsychotherapyNotes => 0,
        Label::Sud => 1,
        Label::Cji => 2,
        Label::Clinical => 3,
        Label::Safety => 4,
        Label::Identity => 5,
        Label::Contact => 6,
        Label::Incident => 7,
    }
}

fn field_rank(labels: &[Label]) -> u8 {
    labels.iter().map(|l| label_rank(*l)).min().unwrap_or(8)
}

/// One flow, without the field and the time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Flow {
    recipient: PartnerId,
    kind: String,
    purpose: Purpose,
    holder: PartnerId,
    consent: bool,
    emergency: EmergencyCase,
}

/// A field's outcome under one set.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldOutcome {
    transform: Option<Transform>,
    reasons: Vec<String>,
}

impl FieldOutcome {
    fn rank(&self) -> u8 {
        self.transform.map_or(0, Transform::disclosure_rank)
    }

    fn side(&self) -> Side {
        Side {
            transform: self
                .transform
                .map_or_else(|| "omit".to_owned(), Transform::describe),
            reasons: self.reasons.clone(),
        }
    }
}

/// The outcome of every field of one flow under one set.
fn outcomes(
    set: &PolicySet,
    flow: &Flow,
    roles: &BTreeSet<Role>,
    fields: &[String],
    consent: &Consent,
    user: &UserId,
    at: DateTime<Utc>,
) -> Vec<FieldOutcome> {
    let subject: SubjectRef = consent.subject.clone();
    let kind = set.partner_kind(&flow.recipient);
    let Some(partner_kind) = kind else {
        let reasons = vec!["unknown-partner".to_owned()];
        return fields
            .iter()
            .map(|_| FieldOutcome {
                transform: None,
                reasons: reasons.clone(),
            })
            .collect();
    };
    let principal = Principal {
        partner: flow.recipient.clone(),
        partner_kind,
        user: user.clone(),
        roles: roles.clone(),
        cert_fingerprint: CertFingerprint::of_der(b"policy-diff"),
    };
    let threat = EmergencyAssertion {
        basis: "actual-knowledge".into(),
        threat: "policy diff".into(),
    };
    let medical = MedicalEmergency {
        personnel: "policy diff".into(),
        nature: "policy diff".into(),
    };
    let req = Request {
        principal: &principal,
        purpose: &flow.purpose,
        kind: &flow.kind,
        holder: &flow.holder,
        subject: &subject,
        emergency: (flow.emergency == EmergencyCase::Threat).then_some(&threat),
    };
    let consents = if flow.consent {
        std::slice::from_ref(consent)
    } else {
        &[]
    };
    let inputs = Inputs {
        consents,
        medical_emergency: (flow.emergency == EmergencyCase::Medical).then_some(&medical),
        ..Inputs::default()
    };
    let decision = decide_with(&req, &inputs, set, at);
    match &decision.outcome {
        Outcome::Deny { reasons } => {
            let keys: Vec<String> = reasons.iter().map(|r| r.key()).collect();
            fields
                .iter()
                .map(|_| FieldOutcome {
                    transform: None,
                    reasons: keys.clone(),
                })
                .collect()
        }
        Outcome::Permit(permit) => fields
            .iter()
            .map(
                |name| match permit.fields().iter().find(|f| &f.field == name) {
                    Some(plan) => FieldOutcome {
                        transform: (plan.transform != Transform::Omit).then_some(plan.transform),
                        reasons: plan.reasons.iter().map(|r| r.key()).collect(),
                    },
                    None => FieldOutcome {
                        transform: None,
                        reasons: vec!["no-such-field".to_owned()],
                    },
                },
            )
            .collect(),
    }
}

/// The roles that rules of `sets` name for `recipient`.
fn named_roles(sets: [&PolicySet; 2], recipient: &PartnerId) -> BTreeSet<Role> {
    sets.iter()
        .flat_map(|s| s.mous.iter())
        .flat_map(|m| m.rules.iter())
        .filter(|r| r.recipients.contains(recipient))
        .flat_map(|r| r.roles.iter().cloned())
        .collect()
}

/// Every non-empty subset of `roles`, smallest first.
fn role_sets(roles: &BTreeSet<Role>) -> Vec<BTreeSet<Role>> {
    let all: Vec<&Role> = roles.iter().collect();
    let n = all.len();
    let mut out: Vec<BTreeSet<Role>> = (1u32..(1u32 << n))
        .map(|mask| {
            all.iter()
                .enumerate()
                .filter(|(i, _)| mask & (1u32 << i) != 0)
                .map(|(_, r)| (*r).clone())
                .collect()
        })
        .collect();
    out.sort_by_key(BTreeSet::len);
    out
}

fn midnight(day: NaiveDate) -> Option<DateTime<Utc>> {
    day.and_hms_opt(0, 0, 0).map(|t| t.and_utc())
}

/// `at`, then every later day on which an MOU of either set takes effect or ends.
pub fn time_points(old: &PolicySet, new: &PolicySet, at: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut points: BTreeSet<DateTime<Utc>> = BTreeSet::new();
    for m in old.mous.iter().chain(new.mous.iter()) {
        if let Some(t) = midnight(m.effective) {
            points.insert(t);
        }
        if let Some(t) = m.expires.succ_opt().and_then(midnight) {
            points.insert(t);
        }
    }
    let mut out = vec![at];
    out.extend(points.into_iter().filter(|t| *t > at));
    out
}

/// Compares two policy sets over every flow (see the module documentation) from `at` on.
pub fn diff(old: &PolicySet, new: &PolicySet, at: DateTime<Utc>) -> Result<PolicyDiff, DiffError> {
    let sets = [old, new];
    let recipients: BTreeSet<PartnerId> = old
        .partners
        .iter()
        .chain(new.partners.iter())
        .map(|p| p.id.clone())
        .collect();
    let kinds: BTreeSet<String> = old.kinds.keys().chain(new.kinds.keys()).cloned().collect();
    let purposes: Vec<Purpose> = PURPOSES
        .iter()
        .filter_map(|(p, _)| p.parse().ok())
        .collect();
    let subject: SubjectRef = "policy-diff-subject"
        .parse()
        .map_err(|e: crate::domain::IdError| DiffError::Internal(e.to_string()))?;
    // The decision never reads the user; any valid id does.
    let user: UserId = "policy-diff"
        .parse()
        .map_err(|e: crate::domain::IdError| DiffError::Internal(e.to_string()))?;
    let points = time_points(old, new, at);

    // (time index, flow, field, roles) -> (before, after), for every change.
    type Key = (usize, Flow, String);
    let mut changes: BTreeMap<Key, Vec<(BTreeSet<Role>, FieldOutcome, FieldOutcome)>> =
        BTreeMap::new();
    let mut compared: u64 = 0;

    for recipient in &recipients {
        let roles = named_roles(sets, recipient);
        if roles.len() > MAX_ROLES {
            return Err(DiffError::TooManyRoles {
                partner: recipient.to_string(),
                count: roles.len(),
            });
        }
        let role_sets = role_sets(&roles);
        for kind in &kinds {
            let fields: Vec<String> = {
                let mut f: Vec<String> = Vec::new();
                for s in sets {
                    if let Some(k) = s.kinds.get(kind) {
                        for fd in &k.fields {
                            if !f.contains(&fd.name) {
                                f.push(fd.name.clone());
                            }
                        }
                    }
                }
                f
            };
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
                    let consent =
                        all_fields_consent(&subject, holder, recipient, purpose, kind, &fields);
                    let emergencies: &[EmergencyCase] = if purpose.as_str() == EMERGENCY_PURPOSE {
                        &[
                            EmergencyCase::None,
                            EmergencyCase::Threat,
                            EmergencyCase::Medical,
                        ]
                    } else {
                        &[EmergencyCase::None]
                    };
                    for &emergency in emergencies {
                        for with_consent in [false, true] {
                            let flow = Flow {
                                recipient: recipient.clone(),
                                kind: kind.clone(),
                                purpose: purpose.clone(),
                                holder: holder.clone(),
                                consent: with_consent,
                                emergency,
                            };
                            for (ti, t) in points.iter().enumerate() {
                                for roles in &role_sets {
                                    compared += 1;
                                    let before =
                                        outcomes(old, &flow, roles, &fields, &consent, &user, *t);
                                    let after =
                                        outcomes(new, &flow, roles, &fields, &consent, &user, *t);
                                    for ((name, b), a) in fields.iter().zip(before).zip(after) {
                                        if b.transform.filter(|t| *t != Transform::Omit)
                                            == a.transform.filter(|t| *t != Transform::Omit)
                                        {
                                            continue;
                                        }
                                        changes
                                            .entry((ti, flow.clone(), name.clone()))
                                            .or_default()
                                            .push((roles.clone(), b, a));
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    // Keep a change for a set of roles only if no smaller set shows the same change (same
    // transforms before and after), then merge consecutive time points.
    type Kept = BTreeMap<(Flow, String, Vec<Role>, String, String), Vec<(usize, Side, Side, bool)>>;
    let mut kept: Kept = BTreeMap::new();
    for ((ti, flow, field), list) in changes {
        let mut minimal: Vec<&(BTreeSet<Role>, FieldOutcome, FieldOutcome)> = Vec::new();
        for c in &list {
            let covered = minimal.iter().any(|m| {
                m.0.is_subset(&c.0)
                    && m.1.transform == c.1.transform
                    && m.2.transform == c.2.transform
            });
            if !covered {
                minimal.push(c);
            }
        }
        for (roles, b, a) in minimal {
            kept.entry((
                flow.clone(),
                field.clone(),
                roles.iter().cloned().collect(),
                b.side().transform,
                a.side().transform,
            ))
            .or_default()
            .push((ti, b.side(), a.side(), a.rank() > b.rank()));
        }
    }

    let mut by_group: BTreeMap<(String, String), Vec<FlowChange>> = BTreeMap::new();
    let mut summary = Summary::default();
    for ((flow, field, roles, _, _), mut times) in kept {
        times.sort_by_key(|(ti, _, _, _)| *ti);
        // Runs of consecutive time points.
        let mut runs: Vec<(usize, usize, Side, Side, bool)> = Vec::new();
        for (ti, b, a, more) in times {
            match runs.last_mut() {
                Some(run) if run.1 + 1 == ti => run.1 = ti,
                _ => runs.push((ti, ti, b, a, more)),
            }
        }
        let labels = field_labels(new, &flow.kind, &field)
            .or_else(|| field_labels(old, &flow.kind, &field))
            .unwrap_or_default();
        for (first, last, before, after, more) in runs {
            let was = before.transform != "omit";
            let is = after.transform != "omit";
            let change = match (was, is) {
                (false, true) => ChangeType::NewlyRevealed,
                (true, false) => ChangeType::NewlyWithheld,
                _ => ChangeType::TransformChanged,
            };
            let more_revealing = more;
            match change {
                ChangeType::NewlyRevealed => summary.newly_revealed += 1,
                ChangeType::NewlyWithheld => summary.newly_withheld += 1,
                ChangeType::TransformChanged => {
                    summary.transform_changed += 1;
                    if more_revealing {
                        summary.more_revealing += 1;
                    }
                }
            }
            let from = points.get(first).copied().unwrap_or(at);
            let until = points.get(last + 1).copied();
            by_group
                .entry((flow.recipient.to_string(), flow.kind.clone()))
                .or_default()
                .push(FlowChange {
                    field: field.clone(),
                    labels: labels.clone(),
                    change,
                    more_revealing,
                    roles: roles.iter().map(ToString::to_string).collect(),
                    purpose: flow.purpose.to_string(),
                    holder: flow.holder.to_string(),
                    consent: flow.consent,
                    emergency: flow.emergency,
                    from,
                    until,
                    before,
                    after,
                });
        }
    }
    let groups = by_group
        .into_iter()
        .map(|((recipient, kind), mut changes)| {
            changes.sort_by(|a, b| {
                (
                    field_rank(&a.labels),
                    &a.field,
                    a.from,
                    &a.roles,
                    &a.purpose,
                    &a.holder,
                )
                    .cmp(&(
                        field_rank(&b.labels),
                        &b.field,
                        b.from,
                        &b.roles,
                        &b.purpose,
                        &b.holder,
                    ))
                    .then((a.consent, a.emergency).cmp(&(b.consent, b.emergency)))
            });
            Group {
                recipient,
                kind,
                changes,
            }
        })
        .collect();
    Ok(PolicyDiff {
        old_hash: old.hash.clone(),
        new_hash: new.hash.clone(),
        at,
        time_points: points,
        decisions_compared: compared,
        summary,
        groups,
        reports: report_diff::report_changes(&old.reports, &new.reports),
    })
}

fn field_labels(set: &PolicySet, kind: &str, field: &str) -> Option<Vec<Label>> {
    set.kinds
        .get(kind)
        .and_then(|k| k.field(field))
        .map(|f| f.labels.iter().copied().collect())
}

/// A consent of `subject` covering the flow and naming every field of the kind.
fn all_fields_consent(
    subject: &SubjectRef,
    holder: &PartnerId,
    recipient: &PartnerId,
    purpose: &Purpose,
    kind: &str,
    fields: &[String],
) -> Consent {
    Consent {
        id: "any-consent".into(),
        subject: subject.clone(),
        disclosers: [holder.clone()].into(),
        recipients: [recipient.clone()].into(),
        purposes: [purpose.clone()].into(),
        scope: ConsentScope {
            kinds: BTreeSet::new(),
            categories: BTreeSet::new(),
            fields: fields.iter().map(|f| format!("{kind}.{f}")).collect(),
        },
        valid_from: DateTime::<Utc>::MIN_UTC,
        expires: None,
        expiry_event: Some("policy diff".into()),
        revoked_at: None,
    }
}

impl PolicyDiff {
    /// The diff for people: grouped by recipient and kind, most sensitive fields first.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let short = |h: &str| h.get(..12).unwrap_or(h).to_owned();
        let _ = writeln!(
            out,
            "policy set {} -> {}, from {}: {} decisions compared under each set",
            short(&self.old_hash),
            short(&self.new_hash),
            self.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            self.decisions_compared
        );
        let _ = writeln!(out, "{}", self.summary.line());
        if self.summary.is_empty() {
            let _ = writeln!(out, "no flow changes");
        }
        if self.reports.is_empty() {
            let _ = writeln!(out, "no report definition changes");
        }
        for g in &self.groups {
            let _ = writeln!(out);
            let _ = writeln!(out, "to {} -- {} records:", g.recipient, g.kind);
            for c in &g.changes {
                let labels: Vec<&str> = c.labels.iter().map(|l| l.as_str()).collect();
                let _ = writeln!(
                    out,
                    "  {} `{}` [{}]{}",
                    c.change.as_str().to_uppercase(),
                    c.field,
                    labels.join(", "),
                    if c.change == ChangeType::TransformChanged && c.more_revealing {
                        " (more revealing)"
                    } else {
                        ""
                    }
                );
                let mut when = String::new();
                if c.from != self.at {
                    let _ = write!(when, ", from {}", c.from.date_naive());
                }
                if let Some(u) = c.until {
                    let _ = write!(when, ", until {}", u.date_naive());
                }
                let _ = writeln!(
                    out,
                    "    as {} for `{}`, held by {}, {}, {}{when}",
                    c.roles.join("+"),
                    c.purpose,
                    c.holder,
                    if c.consent {
                        "with consent"
                    } else {
                        "without consent"
                    },
                    c.emergency.as_str()
                );
                let _ = writeln!(
                    out,
                    "    before: {} ({})",
                    c.before.transform,
                    c.before.reasons.join(", ")
                );
                let _ = writeln!(
                    out,
                    "    after:  {} ({})",
                    c.after.transform,
                    c.after.reasons.join(", ")
                );
            }
        }
        for r in &self.reports {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "report `{}` {}{}:",
                r.report,
                r.change.as_str().to_uppercase(),
                if r.widens { " (widens)" } else { "" }
            );
            let _ = writeln!(out, "  may be run by: {}", r.runners);
            for a in &r.aspects {
                let _ = writeln!(
                    out,
                    "  {}{}",
                    a.aspect,
                    if a.widens { " (widens)" } else { "" }
                );
                let _ = writeln!(out, "    before: {}", a.before);
                let _ = writeln!(out, "    after:  {}", a.after);
            }
        }
        out
    }
}
