//! The decision: a pure function from a request, the subject's consents, the policy set and
//! the time to a [`Decision`] that says why.
//!
//! Default deny. An explicit deny rule or a hard limit beats every permit. A field that no
//! applicable rule names is omitted. Only a permit can produce a [`Permit`], and a [`Permit`] is
//! what the redaction step (`redaction::apply`) requires: no code path can disclose without one.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::PolicySet;
use super::limits::{self, FieldFlow, HardLimit};
use super::model::{
    EMERGENCY_PURPOSE, Effect, Label, LegalBasis, Mou, Rule, Transform, is_known_purpose,
};
use crate::domain::{Consent, ConsentQuery, SubjectRef};
use crate::domain::{PartnerId, Principal, Purpose};

/// A stated serious-and-imminent-threat basis (HIPAA 164.512(j)); both parts are required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmergencyAssertion {
    /// The good-faith basis: actual knowledge, or a credible representation and its source.
    pub basis: String,
    /// The threat.
    pub threat: String,
}

impl EmergencyAssertion {
    fn is_complete(&self) -> bool {
        !self.basis.trim().is_empty() && !self.threat.trim().is_empty()
    }
}

/// What is asked.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Who asks.
    pub principal: &'a Principal,
    /// The stated purpose of use.
    pub purpose: &'a Purpose,
    /// The record kind.
    pub kind: &'a str,
    /// The partner holding the record (the discloser).
    pub holder: &'a PartnerId,
    /// The person the record is about.
    pub subject: &'a SubjectRef,
    /// The emergency basis, for purpose `emergency`.
    pub emergency: Option<&'a EmergencyAssertion>,
}

/// Why a decision or a field plan is what it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case", tag = "code")]
pub enum Reason {
    /// An MOU rule grants the field.
    MouRule {
        /// MOU id.
        mou: String,
        /// Rule id.
        rule: String,
        /// Legal basis, e.g. `law: 45 CFR 164.506(c)`.
        basis: String,
    },
    /// A consent covers the field.
    Consent {
        /// Consent id.
        consent: String,
    },
    /// An emergency rule applies with a complete stated basis.
    EmergencyBasis,
    /// A hard limit forbids the field.
    HardLimit {
        /// Which one.
        limit: HardLimit,
    },
    /// No applicable rule names the field.
    NotInProfile,
    /// A consent-based rule names the field but no active consent covers it.
    ConsentMissing {
        /// MOU id.
        mou: String,
        /// Rule id.
        rule: String,
    },
    /// An emergency rule matched but the emergency basis or threat was not stated.
    EmergencyBasisMissing {
        /// MOU id.
        mou: String,
        /// Rule id.
        rule: String,
    },
    /// A deny rule forbids the flow.
    DenyRule {
        /// MOU id.
        mou: String,
        /// Rule id.
        rule: String,
    },
    /// No MOU rule in force permits this flow.
    NoApplicableRule,
    /// Every field the rules grant was removed (by hard limits or missing consent).
    NothingDisclosed,
    /// The record kind is not declared.
    UnknownKind,
    /// The purpose is not in the vocabulary.
    UnknownPurpose,
    /// The caller's or the holder's partner is not registered, or its kind does not match.
    UnknownPartner,
    /// The holder does not hold records of this kind.
    HolderMismatch,
}

impl Reason {
    /// A compact stable form, e.g. `mou-rule:metro-county/r3`, `consent:c-1`,
    /// `hard-limit-part2-law-enforcement`, used by golden cases.
    pub fn key(&self) -> String {
        match self {
            Self::MouRule { mou, rule, .. } => format!("mou-rule:{mou}/{rule}"),
            Self::Consent { consent } => format!("consent:{consent}"),
            Self::EmergencyBasis => "emergency-basis".into(),
            Self::HardLimit { limit } => limit.code().into(),
            Self::NotInProfile => "not-in-profile".into(),
            Self::ConsentMissing { mou, rule } => format!("consent-missing:{mou}/{rule}"),
            Self::EmergencyBasisMissing { mou, rule } => {
                format!("emergency-basis-missing:{mou}/{rule}")
            }
            Self::DenyRule { mou, rule } => format!("deny-rule:{mou}/{rule}"),
            Self::NoApplicableRule => "no-applicable-rule".into(),
            Self::NothingDisclosed => "nothing-disclosed".into(),
            Self::UnknownKind => "unknown-kind".into(),
            Self::UnknownPurpose => "unknown-purpose".into(),
            Self::UnknownPartner => "unknown-partner".into(),
            Self::HolderMismatch => "holder-mismatch".into(),
        }
    }

    /// One line for people: the key plus the legal basis or the limit's explanation.
    pub fn describe(&self) -> String {
        match self {
            Self::MouRule { basis, .. } => format!("{} ({basis})", self.key()),
            Self::HardLimit { limit } => format!("{}: {}", self.key(), limit.explanation()),
            _ => self.key(),
        }
    }
}

/// The plan for one field of the kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldPlan {
    /// Field name.
    pub field: String,
    /// What happens to it.
    pub transform: Transform,
    /// Its sensitivity labels (the redaction step attaches notices from them).
    pub labels: BTreeSet<Label>,
    /// Why.
    pub reasons: Vec<Reason>,
}

/// A permit: the only value the redaction step (`redaction::apply`) accepts. It has no public constructor
/// and cannot be deserialized; only [`decide`] makes one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Permit {
    decision_id: Uuid,
    recipient: PartnerId,
    holder: PartnerId,
    kind: String,
    fields: Vec<FieldPlan>,
}

impl Permit {
    /// The decision this permit belongs to.
    pub fn decision_id(&self) -> Uuid {
        self.decision_id
    }

    /// The partner the disclosure goes to.
    pub fn recipient(&self) -> &PartnerId {
        &self.recipient
    }

    /// The partner disclosing.
    pub fn holder(&self) -> &PartnerId {
        &self.holder
    }

    /// The record kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The plan, one entry per field of the kind, in the kind's order.
    pub fn fields(&self) -> &[FieldPlan] {
        &self.fields
    }
}

/// Permit or deny.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "effect", rename_all = "kebab-case")]
pub enum Outcome {
    /// Nothing leaves.
    Deny {
        /// Why.
        reasons: Vec<Reason>,
    },
    /// The per-field plan.
    Permit(Permit),
}

/// A decision, recorded in the disclosure log whatever its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Unique id (UUID v7 from the decision time).
    pub id: Uuid,
    /// Content hash of the policy set that decided.
    pub policy_hash: String,
    /// The decision time.
    pub decided_at: DateTime<Utc>,
    /// The outcome.
    pub outcome: Outcome,
}

impl Decision {
    /// The permit, if the decision is one.
    pub fn permit(&self) -> Option<&Permit> {
        match &self.outcome {
            Outcome::Permit(p) => Some(p),
            Outcome::Deny { .. } => None,
        }
    }

    /// Whether the decision permits.
    pub fn is_permit(&self) -> bool {
        self.permit().is_some()
    }
}

fn decision_id(now: DateTime<Utc>) -> Uuid {
    let secs = u64::try_from(now.timestamp()).unwrap_or(0);
    let ts = uuid::Timestamp::from_unix(uuid::NoContext, secs, now.timestamp_subsec_nanos());
    Uuid::new_v7(ts)
}

/// Decides a request. Pure: no I/O, and `now` is the only clock.
pub fn decide(
    req: &Request<'_>,
    consents: &[Consent],
    set: &PolicySet,
    now: DateTime<Utc>,
) -> Decision {
    let id = decision_id(now);
    let outcome = match decide_outcome(id, req, consents, set, now) {
        Ok(p) => Outcome::Permit(p),
        Err(mut reasons) => {
            reasons.sort();
            reasons.dedup();
            Outcome::Deny { reasons }
        }
    };
    Decision {
        id,
        policy_hash: set.hash.clone(),
        decided_at: now,
        outcome,
    }
}

struct Grant<'a> {
    mou: &'a Mou,
    rule: &'a Rule,
}

fn decide_outcome(
    id: Uuid,
    req: &Request<'_>,
    consents: &[Consent],
    set: &PolicySet,
    now: DateTime<Utc>,
) -> Result<Permit, Vec<Reason>> {
    let p = req.principal;
    let Some(kind) = set.kinds.get(req.kind) else {
        return Err(vec![Reason::UnknownKind]);
    };
    if !is_known_purpose(req.purpose.as_str()) {
        return Err(vec![Reason::UnknownPurpose]);
    }
    let recipient_kind = set.partner_kind(&p.partner);
    let holder_kind = set.partner_kind(req.holder);
    if recipient_kind != Some(p.partner_kind) || holder_kind.is_none() {
        return Err(vec![Reason::UnknownPartner]);
    }
    if holder_kind != Some(kind.owner) {
        return Err(vec![Reason::HolderMismatch]);
    }
    let candidates: Vec<Grant<'_>> = set
        .mous
        .iter()
        .filter(|m| {
            m.in_force(now) && m.parties.contains(req.holder) && m.parties.contains(&p.partner)
        })
        .flat_map(|m| m.rules.iter().map(move |r| Grant { mou: m, rule: r }))
        .filter(|g| g.rule.matches(&p.partner, &p.roles, req.purpose, req.kind))
        .collect();

    let denies: Vec<Reason> = candidates
        .iter()
        .filter(|g| g.rule.effect == Effect::Deny)
        .map(|g| Reason::DenyRule {
            mou: g.mou.id.clone(),
            rule: g.rule.id.clone(),
        })
        .collect();
    if !denies.is_empty() {
        return Err(with_limits(denies, req, p.partner_kind, kind, &[]));
    }

    let query = ConsentQuery {
        subject: req.subject,
        discloser: req.holder,
        recipient: &p.partner,
        purpose: req.purpose,
        kind: req.kind,
    };
    let live: Vec<&Consent> = consents
        .iter()
        .filter(|c| c.is_active(now) && c.covers(&query))
        .collect();

    let mut applied: Vec<(&Grant<'_>, bool)> = Vec::new(); // (grant, is consent-based)
    let mut gate_reasons = Vec::new();
    for g in candidates
        .iter()
        .filter(|g| g.rule.effect == Effect::Permit)
    {
        match &g.rule.basis {
            LegalBasis::Law { .. } => applied.push((g, false)),
            LegalBasis::Consent => {
                if live.is_empty() {
                    gate_reasons.push(Reason::ConsentMissing {
                        mou: g.mou.id.clone(),
                        rule: g.rule.id.clone(),
                    });
                } else {
                    applied.push((g, true));
                }
            }
            LegalBasis::Emergency { .. } => {
                let ok = req.purpose.as_str() == EMERGENCY_PURPOSE
                    && req.emergency.is_some_and(EmergencyAssertion::is_complete);
                if ok {
                    applied.push((g, false));
                } else {
                    gate_reasons.push(Reason::EmergencyBasisMissing {
                        mou: g.mou.id.clone(),
                        rule: g.rule.id.clone(),
                    });
                }
            }
        }
    }
    if applied.is_empty() {
        let mut r = vec![Reason::NoApplicableRule];
        r.extend(gate_reasons);
        return Err(with_limits(r, req, p.partner_kind, kind, &live));
    }

    let mut plan = Vec::with_capacity(kind.fields.len());
    let mut limit_reasons = BTreeSet::new();
    for fd in &kind.fields {
        let mut best: Option<(Transform, Vec<Reason>)> = None;
        let mut why_not: Vec<Reason> = Vec::new();
        for (g, by_consent) in &applied {
            let Some(&t) = g.rule.fields.get(&fd.name) else {
                continue;
            };
            if t == Transform::Omit {
                continue;
            }
            let mut reasons = vec![Reason::MouRule {
                mou: g.mou.id.clone(),
                rule: g.rule.id.clone(),
                basis: g.rule.basis.describe(),
            }];
            let mut names_field = false;
            if *by_consent {
                let covering: Vec<&&Consent> = live
                    .iter()
                    .filter(|c| c.covers_field(req.kind, &fd.name, &fd.labels))
                    .collect();
                if covering.is_empty() {
                    why_not.push(Reason::ConsentMissing {
                        mou: g.mou.id.clone(),
                        rule: g.rule.id.clone(),
                    });
                    continue;
                }
                names_field = covering.iter().any(|c| c.names_field(req.kind, &fd.name));
                reasons.extend(covering.iter().map(|c| Reason::Consent {
                    consent: c.id.clone(),
                }));
            }
            if matches!(g.rule.basis, LegalBasis::Emergency { .. }) {
                reasons.push(Reason::EmergencyBasis);
            }
            let flow = FieldFlow {
                labels: &fd.labels,
                recipient_kind: p.partner_kind,
                purpose: req.purpose.as_str(),
                basis: &g.rule.basis,
                cji_named: g.rule.release_cji.contains(&fd.name),
                consent_names_field: names_field,
            };
            if let Some(limit) = limits::check(&flow) {
                why_not.push(Reason::HardLimit { limit });
                limit_reasons.insert(Reason::HardLimit { limit });
                continue;
            }
            best = Some(match best {
                None => (t, reasons),
                Some((bt, mut br)) => {
                    if t.disclosure_rank() < bt.disclosure_rank() {
                        (t, reasons)
                    } else {
                        if t == bt {
                            br.extend(reasons);
                        }
                        (bt, br)
                    }
                }
            });
        }
        // A hard limit hit by any applicable rule removes the field, whatever other rules say.
        let mut limited: Vec<Reason> = why_not
            .iter()
            .filter(|r| matches!(r, Reason::HardLimit { .. }))
            .cloned()
            .collect();
        if best.is_none()
            && let Some(limit) = intrinsic_limit(req, p.partner_kind, fd, &live)
        {
            limited.push(Reason::HardLimit { limit });
        }
        let (transform, mut reasons) = match best {
            Some(b) if limited.is_empty() => b,
            _ if !limited.is_empty() => (Transform::Omit, limited),
            _ if !why_not.is_empty() => (Transform::Omit, why_not),
            _ => (Transform::Omit, vec![Reason::NotInProfile]),
        };
        reasons.sort();
        reasons.dedup();
        plan.push(FieldPlan {
            field: fd.name.clone(),
            transform,
            labels: fd.labels.clone(),
            reasons,
        });
    }
    if plan.iter().all(|f| f.transform == Transform::Omit) {
        let mut r = vec![Reason::NothingDisclosed];
        r.extend(limit_reasons);
        r.extend(gate_reasons);
        return Err(r);
    }
    Ok(Permit {
        decision_id: id,
        recipient: p.partner.clone(),
        holder: req.holder.clone(),
        kind: kind.id.clone(),
        fields: plan,
    })
}

/// The hard limit a field meets whatever rule might name it: the best legal basis for the
/// purpose (consent, or the emergency profile for `emergency`), no `release_cji`, and the
/// consents actually given. Explains why an unnamed field would stay omitted anyway.
fn intrinsic_limit(
    req: &Request<'_>,
    recipient_kind: crate::domain::PartnerKind,
    fd: &super::model::FieldDef,
    live: &[&Consent],
) -> Option<HardLimit> {
    let emergency = LegalBasis::Emergency {
        citation: String::new(),
    };
    let basis = if req.purpose.as_str() == EMERGENCY_PURPOSE {
        &emergency
    } else {
        &LegalBasis::Consent
    };
    limits::check(&FieldFlow {
        labels: &fd.labels,
        recipient_kind,
        purpose: req.purpose.as_str(),
        basis,
        cji_named: false,
        consent_names_field: live.iter().any(|c| c.names_field(req.kind, &fd.name)),
    })
}

/// Adds to a denial the hard limits the kind's fields meet, so the denial says which rules of
/// law would have stood in the way too.
fn with_limits(
    mut reasons: Vec<Reason>,
    req: &Request<'_>,
    recipient_kind: crate::domain::PartnerKind,
    kind: &super::model::KindDef,
    live: &[&Consent],
) -> Vec<Reason> {
    for fd in &kind.fields {
        if let Some(limit) = intrinsic_limit(req, recipient_kind, fd, live)
            && limit != HardLimit::PsychotherapyNotesRequireConsent
            && limit != HardLimit::CjiToNonCriminalJustice
        {
            reasons.push(Reason::HardLimit { limit });
        }
    }
    reasons
}
