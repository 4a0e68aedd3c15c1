//! The decision: a pure function from a request, the subject's consents, the policy set and
//! the time to a [`Decision`] that says why.
//!
//! Default deny. An explicit deny rule or a hard limit beats every permit. A field that no
//! applicable rule names is omitted. Only a permit can produce a [`Permit`], and a [`Permit`] is
//! what the redaction step (`redaction::apply`) requires: no code path can disclose without one.
//!
//! Besides the MOUs and the subject's consents, [`decide_with`] reads the subject's other
//! directives ([`Inputs`]), all passed in, so the decision stays pure:
//!
//! - an agreed **restriction** in force (HIPAA 45 CFR 164.522(a), 42 CFR 2.26) removes every
//!   field it covers from the flows it names, whatever an MOU rule or a consent grants (like a
//!   deny rule, field by field), with the reason `restriction:ID`. It does not stop the two
//!   emergency profiles or a court order, which 164.522(a)(1)(iii) and (v) put out of a
//!   restriction's reach (emergency treatment; disclosures permitted under 164.512, which
//!   includes 164.512(e) court orders and 164.512(j) threats): those fields carry
//!   `restriction-not-effective:ID` instead;
//! - a **court order** in force (42 CFR 2.64, 2.65) releases exactly the Part 2 fields it names
//!   to the recipient it names for the purposes it names, also where the Part 2 hard limits or
//!   an MOU deny rule would refuse them (`investigation`, `prosecution`), with the reason
//!   `court-order:ID`; every other field is decided as without it;
//! - a **medical emergency** (42 CFR 2.51) stated with the medical personnel's name and the
//!   nature of the emergency lets `medical-emergency` rules apply to a user acting in a role
//!   the recipient marks as medical; never to police.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::PolicySet;
use super::limits::{self, FieldFlow, HardLimit};
use super::model::{
    EMERGENCY_PURPOSE, Effect, Label, LegalBasis, Mou, Rule, Transform, is_known_purpose,
};
use crate::domain::{Consent, ConsentQuery, CourtOrder, PartnerKind, Restriction, SubjectRef};
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

/// A stated medical emergency (42 CFR 2.51): who receives and what the emergency is. With the
/// discloser and the time (known to the gateway), these are what 2.51(c) asks the program to
/// document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MedicalEmergency {
    /// The name of the medical personnel to whom the disclosure is made (2.51(c)(1)).
    pub personnel: String,
    /// The nature of the emergency (2.51(c)(4)).
    pub nature: String,
}

impl MedicalEmergency {
    fn is_complete(&self) -> bool {
        !self.personnel.trim().is_empty() && !self.nature.trim().is_empty()
    }
}

/// The subject's directives and the request's emergency statements the decision reads besides
/// the MOUs. Everything is passed in: [`decide_with`] does no I/O.
#[derive(Debug, Clone, Copy, Default)]
pub struct Inputs<'a> {
    /// The subject's consents (any status; only those in force count).
    pub consents: &'a [Consent],
    /// The subject's agreed restrictions (any status; only those in force count).
    pub restrictions: &'a [Restriction],
    /// The subject's court orders (any status; only those in force count).
    pub court_orders: &'a [CourtOrder],
    /// A stated 42 CFR 2.51 medical emergency, for purpose `emergency`.
    pub medical_emergency: Option<&'a MedicalEmergency>,
}

impl<'a> Inputs<'a> {
    /// Only consents.
    pub fn consents(consents: &'a [Consent]) -> Self {
        Self {
            consents,
            ..Self::default()
        }
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
    /// An agreed restriction in force (HIPAA 164.522(a), 42 CFR 2.26) withholds the field.
    Restriction {
        /// Restriction id.
        restriction: String,
    },
    /// A restriction covers the field but cannot stop this disclosure (an emergency profile or
    /// a court order: HIPAA 164.522(a)(1)(iii) and (v)).
    RestrictionNotEffective {
        /// Restriction id.
        restriction: String,
    },
    /// A court order in force (42 CFR 2.64, 2.65) authorizes the field.
    CourtOrder {
        /// Order id.
        order: String,
    },
    /// A medical-emergency rule applies: a stated 42 CFR 2.51 medical emergency and a user
    /// acting as medical personnel of the recipient.
    MedicalEmergencyBasis,
    /// A medical-emergency rule matched, but no medical emergency was stated or the user does
    /// not act in a role the recipient marks as medical.
    MedicalEmergencyMissing {
        /// MOU id.
        mou: String,
        /// Rule id.
        rule: String,
    },
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
            Self::Restriction { restriction } => format!("restriction:{restriction}"),
            Self::RestrictionNotEffective { restriction } => {
                format!("restriction-not-effective:{restriction}")
            }
            Self::CourtOrder { order } => format!("court-order:{order}"),
            Self::MedicalEmergencyBasis => "medical-emergency-basis".into(),
            Self::MedicalEmergencyMissing { mou, rule } => {
                format!("medical-emergency-missing:{mou}/{rule}")
            }
        }
    }

    /// One line for people: the key plus the legal basis or the limit's explanation.
    pub fn describe(&self) -> String {
        match self {
            Self::MouRule { basis, .. } => format!("{} ({basis})", self.key()),
            Self::HardLimit { limit } => format!("{}: {}", self.key(), limit.explanation()),
            Self::Restriction { .. } => format!(
                "{}: an agreed restriction withholds it (HIPAA 164.522(a), 42 CFR 2.26)",
                self.key()
            ),
            Self::RestrictionNotEffective { .. } => format!(
                "{}: a restriction covers it but cannot stop an emergency or court-ordered \
                 disclosure (HIPAA 164.522(a)(1)(iii), (v))",
                self.key()
            ),
            Self::CourtOrder { .. } => format!(
                "{}: authorized by a court order (42 CFR 2.64, 2.65)",
                self.key()
            ),
            Self::MedicalEmergencyBasis => format!(
                "{}: a bona fide medical emergency, to medical personnel (42 CFR 2.51)",
                self.key()
            ),
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

/// Decides a request with the subject's consents and no other directive. Pure: no I/O, and
/// `now` is the only clock. See [`decide_with`].
pub fn decide(
    req: &Request<'_>,
    consents: &[Consent],
    set: &PolicySet,
    now: DateTime<Utc>,
) -> Decision {
    decide_with(req, &Inputs::consents(consents), set, now)
}

/// Decides a request with every input (consents, restrictions, court orders, a stated medical
/// emergency). Pure: no I/O, and `now` is the only clock.
pub fn decide_with(
    req: &Request<'_>,
    inputs: &Inputs<'_>,
    set: &PolicySet,
    now: DateTime<Utc>,
) -> Decision {
    let id = decision_id(now);
    let outcome = match decide_outcome(id, req, inputs, set, now) {
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
    inputs: &Inputs<'_>,
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
    let medical = req.purpose.as_str() == EMERGENCY_PURPOSE
        && inputs
            .medical_emergency
            .is_some_and(MedicalEmergency::is_complete);
    let candidates: Vec<Grant<'_>> = set
        .mous
        .iter()
        .filter(|m| {
            m.in_force(now) && m.parties.contains(req.holder) && m.parties.contains(&p.partner)
        })
        .flat_map(|m| m.rules.iter().map(move |r| Grant { mou: m, rule: r }))
        .filter(|g| g.rule.matches(&p.partner, &p.roles, req.purpose, req.kind))
        .collect();

    // Court orders in force for this flow (42 CFR 2.64, 2.65), and restrictions in force for
    // it (HIPAA 164.522(a), 42 CFR 2.26).
    let orders: Vec<&CourtOrder> = inputs
        .court_orders
        .iter()
        .filter(|o| o.is_active(now))
        .collect();
    let restrictions: Vec<&Restriction> = inputs
        .restrictions
        .iter()
        .filter(|r| r.is_active(now) && r.applies(req.subject, req.holder, &p.partner, req.purpose))
        .collect();
    let ordered = |fd: &super::model::FieldDef| -> Vec<Reason> {
        if !fd.labels.contains(&Label::Sud)
            || limits::check_court_order(&fd.labels, p.partner_kind).is_some()
        {
            return Vec::new();
        }
        orders
            .iter()
            .filter(|o| {
                o.authorizes(
                    req.subject,
                    req.holder,
                    &p.partner,
                    req.purpose,
                    req.kind,
                    &fd.name,
                )
            })
            .map(|o| Reason::CourtOrder {
                order: o.id.clone(),
            })
            .collect()
    };
    let restricting = |fd: &super::model::FieldDef| -> Vec<&Restriction> {
        restrictions
            .iter()
            .copied()
            .filter(|r| r.scope.covers_field(req.kind, &fd.name, &fd.labels))
            .collect()
    };
    let not_effective = |rs: &[&Restriction]| -> Vec<Reason> {
        rs.iter()
            .map(|r| Reason::RestrictionNotEffective {
                restriction: r.id.clone(),
            })
            .collect()
    };
    let any_order = kind.fields.iter().any(|fd| !ordered(fd).is_empty());

    let denies: Vec<Reason> = candidates
        .iter()
        .filter(|g| g.rule.effect == Effect::Deny)
        .map(|g| Reason::DenyRule {
            mou: g.mou.id.clone(),
            rule: g.rule.id.clone(),
        })
        .collect();
    if !denies.is_empty() {
        if !any_order {
            return Err(with_limits(denies, req, p.partner_kind, kind, &[], medical));
        }
        // A deny rule forbids the flow under the MOU; a court order authorizes the Part 2
        // fields it names all the same (the order is the legal basis, not the MOU).
        let plan = kind
            .fields
            .iter()
            .map(|fd| {
                let by_order = ordered(fd);
                let (transform, mut reasons) = if by_order.is_empty() {
                    (Transform::Omit, denies.clone())
                } else {
                    let mut r = by_order;
                    r.extend(not_effective(&restricting(fd)));
                    (Transform::Reveal, r)
                };
                reasons.sort();
                reasons.dedup();
                FieldPlan {
                    field: fd.name.clone(),
                    transform,
                    labels: fd.labels.clone(),
                    reasons,
                }
            })
            .collect();
        return Ok(Permit {
            decision_id: id,
            recipient: p.partner.clone(),
            holder: req.holder.clone(),
            kind: kind.id.clone(),
            fields: plan,
        });
    }

    let query = ConsentQuery {
        subject: req.subject,
        discloser: req.holder,
        recipient: &p.partner,
        purpose: req.purpose,
        kind: req.kind,
    };
    let live: Vec<&Consent> = inputs
        .consents
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
            LegalBasis::MedicalEmergency { .. } => {
                // 42 CFR 2.51: to medical personnel only. The user must act in a role that the
                // rule names and that the recipient marks as medical; never a police partner.
                let personnel = set.partners.get(&p.partner).is_some_and(|partner| {
                    partner.kind != PartnerKind::Police
                        && p.roles
                            .iter()
                            .any(|r| g.rule.roles.contains(r) && partner.medical_roles.contains(r))
                });
                if medical && personnel {
                    applied.push((g, false));
                } else {
                    gate_reasons.push(Reason::MedicalEmergencyMissing {
                        mou: g.mou.id.clone(),
                        rule: g.rule.id.clone(),
                    });
                }
            }
        }
    }
    if applied.is_empty() && !any_order {
        let mut r = vec![Reason::NoApplicableRule];
        r.extend(gate_reasons);
        return Err(with_limits(r, req, p.partner_kind, kind, &live, medical));
    }

    let mut plan = Vec::with_capacity(kind.fields.len());
    let mut limit_reasons = BTreeSet::new();
    let mut restriction_reasons = BTreeSet::new();
    for fd in &kind.fields {
        let mut best: Option<(Transform, Vec<Reason>)> = None;
        let mut why_not: Vec<Reason> = Vec::new();
        let restricted = restricting(fd);
        let mut withheld_by: Vec<Reason> = Vec::new();
        for (g, by_consent) in &applied {
            let Some(&t) = g.rule.fields.get(&fd.name) else {
                continue;
            };
            if t == Transform::Omit {
                continue;
            }
            if !restricted.is_empty() && g.rule.basis.restrictable() {
                // HIPAA 164.522(a)(1)(iii): the agreed restriction beats this grant.
                withheld_by.extend(restricted.iter().map(|r| Reason::Restriction {
                    restriction: r.id.clone(),
                }));
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
            match g.rule.basis {
                LegalBasis::Emergency { .. } => reasons.push(Reason::EmergencyBasis),
                LegalBasis::MedicalEmergency { .. } => {
                    reasons.push(Reason::MedicalEmergencyBasis);
                }
                _ => {}
            }
            reasons.extend(not_effective(&restricted));
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
        // A court order authorizes the Part 2 field it names (and lifts the Part 2 limits for
        // it): the field leaves as the MOU would give it, or in full when no rule gives it.
        let by_order = ordered(fd);
        if !by_order.is_empty() {
            let lifted = |r: &Reason| {
                matches!(
                    r,
                    Reason::HardLimit {
                        limit: HardLimit::Part2LawEnforcement
                            | HardLimit::Part2RequiresConsent
                            | HardLimit::Part2EmergencyToPolice
                            | HardLimit::Part2MedicalEmergencyOnly
                    }
                )
            };
            why_not.retain(|r| !lifted(r));
            let mut reasons = by_order;
            reasons.extend(not_effective(&restricted));
            best = Some(match best {
                None => (Transform::Reveal, reasons),
                Some((t, mut br)) => {
                    if t == Transform::Reveal {
                        br.extend(reasons);
                    }
                    (t, br)
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
            && let Some(limit) = intrinsic_limit(req, p.partner_kind, fd, &live, medical)
        {
            limited.push(Reason::HardLimit { limit });
        }
        if best.is_none() && !withheld_by.is_empty() {
            restriction_reasons.extend(withheld_by.iter().cloned());
        }
        let (transform, mut reasons) = match best {
            Some(b) if limited.is_empty() => b,
            _ if !limited.is_empty() => {
                let mut r = limited;
                r.extend(withheld_by);
                (Transform::Omit, r)
            }
            _ if !withheld_by.is_empty() || !why_not.is_empty() => {
                let mut r = withheld_by;
                r.extend(why_not);
                (Transform::Omit, r)
            }
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
        r.extend(restriction_reasons);
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
    medical: bool,
) -> Option<HardLimit> {
    let emergency = if medical {
        LegalBasis::MedicalEmergency {
            citation: String::new(),
        }
    } else {
        LegalBasis::Emergency {
            citation: String::new(),
        }
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
    medical: bool,
) -> Vec<Reason> {
    for fd in &kind.fields {
        if let Some(limit) = intrinsic_limit(req, recipient_kind, fd, live, medical)
            && limit != HardLimit::PsychotherapyNotesRequireConsent
            && limit != HardLimit::CjiToNonCriminalJustice
        {
            reasons.push(Reason::HardLimit { limit });
        }
    }
    reasons
}
