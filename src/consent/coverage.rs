//! Consent coverage: which fields of each record kind would flow to a recipient for a purpose,
//! given a subject's consents and the MOUs, and why (or why not).
//!
//! The answer is computed by the pure [`decide_with()`] itself (with the subject's consents and
//! restrictions), once per record kind, holder and role, with a synthetic principal of the
//! recipient partner, so it is exactly what a request made now would get. Used by `GET /v1/subjects/{system}/{value}/coverage` and by
//! `coresponse-gateway consent coverage` (offline, on the database).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::SubjectRef;
use super::directive_cache::SubjectDirectives;
use super::registry::StoredConsent;
use crate::domain::{CertFingerprint, PartnerId, Principal, Purpose, Role, UserId};
use crate::policy::model::{PURPOSES, is_known_purpose};
use crate::policy::{Inputs, Outcome, PolicySet, Reason, Request, Transform, decide_with};

/// A coverage question that cannot be answered as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{parameter}`: {message}")]
pub struct CoverageError {
    /// The parameter at fault: `recipient`, `purpose` or `role`.
    pub parameter: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// The question.
#[derive(Debug, Clone, Copy)]
pub struct CoverageQuery<'a> {
    /// The partner that would receive.
    pub recipient: &'a PartnerId,
    /// The purpose of use.
    pub purpose: &'a Purpose,
    /// One role of the recipient's users; `None`: every role the recipient registers.
    pub role: Option<&'a Role>,
    /// Only records held by this partner; `None`: every partner that holds records of a kind.
    pub holder: Option<&'a PartnerId>,
    /// The time of the decision.
    pub at: DateTime<Utc>,
}

/// One consent as the coverage saw it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConsentSummary {
    /// Consent id.
    pub id: String,
    /// Its status at the time asked.
    pub status: &'static str,
    /// Whether it names the recipient and the purpose (and so may count for this flow).
    pub names_recipient_and_purpose: bool,
}

/// One field of a kind.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldCoverage {
    /// Field name.
    pub field: String,
    /// Whether any of it would leave.
    pub flows: bool,
    /// The transform, e.g. `reveal`, `mask(keep last 4)`, `omit`.
    pub transform: String,
    /// The consents that let it flow.
    pub consents: Vec<String>,
    /// The MOU rules that let it flow, as `mou/rule`.
    pub mou_rules: Vec<String>,
    /// Every reason, as `decide` gives them (e.g. `consent-missing:MOU/RULE`, a hard limit).
    pub reasons: Vec<String>,
}

/// One record kind, holder and role.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KindCoverage {
    /// Record kind.
    pub kind: String,
    /// The partner holding such records.
    pub holder: String,
    /// The role the recipient's user would act in.
    pub role: String,
    /// `permit` or `deny`.
    pub decision: &'static str,
    /// For a denial, why.
    pub reasons: Vec<String>,
    /// For a permit, every field of the kind.
    pub fields: Vec<FieldCoverage>,
}

/// The answer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CoverageReport {
    /// The subject as the decision saw it (the subject pseudonym).
    pub subject: String,
    /// The recipient.
    pub recipient: String,
    /// The purpose.
    pub purpose: String,
    /// The decision time.
    pub at: DateTime<Utc>,
    /// The policy set's content hash.
    pub policy_set: String,
    /// The subject's consents that were taken into account.
    pub consents: Vec<ConsentSummary>,
    /// The subject's agreed restrictions (HIPAA 164.522(a), 42 CFR 2.26) in force that restrict
    /// flows to the recipient for the purpose: their ids (fields they withhold say
    /// `restriction:ID`).
    pub restrictions: Vec<String>,
    /// The subject's court orders (42 CFR 2.64, 2.65) in force for the recipient and purpose:
    /// their ids (fields they release say `court-order:ID`).
    pub court_orders: Vec<String>,
    /// One entry per record kind, holder and role.
    pub flows: Vec<KindCoverage>,
}

fn bad(parameter: &'static str, message: String) -> CoverageError {
    CoverageError { parameter, message }
}

/// Computes the coverage of `consents` (the subject's consents, `subject` standing for the
/// person) for the question `q`, without restrictions or court orders. Pure.
pub fn compute(
    set: &PolicySet,
    consents: &[StoredConsent],
    subject: &SubjectRef,
    q: &CoverageQuery<'_>,
) -> Result<CoverageReport, CoverageError> {
    compute_with(set, consents, &SubjectDirectives::default(), subject, q)
}

/// Computes the coverage of `consents` and the subject's restrictions and court orders
/// (`subject` standing for the person) for the question `q`. Pure.
pub fn compute_with(
    set: &PolicySet,
    consents: &[StoredConsent],
    directives: &SubjectDirectives,
    subject: &SubjectRef,
    q: &CoverageQuery<'_>,
) -> Result<CoverageReport, CoverageError> {
    let partner = set.partners.get(q.recipient).ok_or_else(|| {
        let known: Vec<String> = set.partners.iter().map(|p| p.id.to_string()).collect();
        bad(
            "recipient",
            format!(
                "partner `{}` is not registered; registered partners: {}",
                q.recipient,
                known.join(", ")
            ),
        )
    })?;
    if !is_known_purpose(q.purpose.as_str()) {
        let known: Vec<&str> = PURPOSES.iter().map(|(p, _)| *p).collect();
        return Err(bad(
            "purpose",
            format!(
                "purpose `{}` is not one the gateway knows; use one of: {}",
                q.purpose,
                known.join(", ")
            ),
        ));
    }
    let registered: Vec<String> = partner.roles.iter().map(ToString::to_string).collect();
    let roles: Vec<Role> = match q.role {
        Some(r) if partner.roles.contains(r) => vec![r.clone()],
        Some(r) => {
            return Err(bad(
                "role",
                format!(
                    "`{r}` is not a role of partner `{}`; its roles: {}",
                    partner.id,
                    registered.join(", ")
                ),
            ));
        }
        None if partner.roles.is_empty() => {
            return Err(bad(
                "role",
                format!(
                    "partner `{}` registers no roles; pass the role to check",
                    partner.id
                ),
            ));
        }
        None => partner.roles.clone(),
    };
    // The decision never looks at the user; any valid id does.
    let user: UserId = "coverage-check"
        .parse()
        .map_err(|e: crate::domain::IdError| bad("recipient", e.to_string()))?;
    let inputs: Vec<super::Consent> = consents.iter().map(|c| c.to_consent(subject)).collect();
    let summaries = consents
        .iter()
        .map(|c| ConsentSummary {
            id: c.id.clone(),
            status: c.status(q.at).as_str(),
            names_recipient_and_purpose: c.directive.recipients.contains(q.recipient)
                && c.directive.purposes.contains(q.purpose),
        })
        .collect();

    let mut flows = Vec::new();
    for kind in set.kinds.values() {
        let holders = set
            .partners
            .iter()
            .filter(|p| p.kind == kind.owner)
            .filter(|p| q.holder.is_none_or(|h| *h == p.id));
        for holder in holders {
            for role in &roles {
                let principal = Principal {
                    partner: partner.id.clone(),
                    partner_kind: partner.kind,
                    user: user.clone(),
                    roles: BTreeSet::from([role.clone()]),
                    cert_fingerprint: CertFingerprint::of_der(b""),
                };
                let req = Request {
                    principal: &principal,
                    purpose: q.purpose,
                    kind: &kind.id,
                    holder: &holder.id,
                    subject,
                    emergency: None,
                };
                let decision = decide_with(
                    &req,
                    &Inputs {
                        consents: &inputs,
                        restrictions: &directives.restrictions,
                        court_orders: &directives.court_orders,
                        medical_emergency: None,
                    },
                    set,
                    q.at,
                );
                flows.push(match &decision.outcome {
                    Outcome::Deny { reasons } => KindCoverage {
                        kind: kind.id.clone(),
                        holder: holder.id.to_string(),
                        role: role.to_string(),
                        decision: "deny",
                        reasons: reasons.iter().map(Reason::describe).collect(),
                        fields: Vec::new(),
                    },
                    Outcome::Permit(permit) => KindCoverage {
                        kind: kind.id.clone(),
                        holder: holder.id.to_string(),
                        role: role.to_string(),
                        decision: "permit",
                        reasons: Vec::new(),
                        fields: permit
                            .fields()
                            .iter()
                            .map(|f| FieldCoverage {
                                field: f.field.clone(),
                                flows: f.transform != Transform::Omit,
                                transform: f.transform.describe(),
                                consents: f
                                    .reasons
                                    .iter()
                                    .filter_map(|r| match r {
                                        Reason::Consent { consent } => Some(consent.clone()),
                                        _ => None,
                                    })
                                    .collect(),
                                mou_rules: f
                                    .reasons
                                    .iter()
                                    .filter_map(|r| match r {
                                        Reason::MouRule { mou, rule, .. }
                                            if f.transform != Transform::Omit =>
                                        {
                                            Some(format!("{mou}/{rule}"))
                                        }
                                        _ => None,
                                    })
                                    .collect(),
                                reasons: f.reasons.iter().map(Reason::describe).collect(),
                            })
                            .collect(),
                    },
                });
            }
        }
    }
    let restrictions = directives
        .restrictions
        .iter()
        .filter(|r| {
            r.is_active(q.at)
                && (r.recipients.is_empty() || r.recipients.contains(q.recipient))
                && (r.purposes.is_empty() || r.purposes.contains(q.purpose))
        })
        .map(|r| r.id.clone())
        .collect();
    let court_orders = directives
        .court_orders
        .iter()
        .filter(|o| {
            o.is_active(q.at) && &o.recipient == q.recipient && o.purposes.contains(q.purpose)
        })
        .map(|o| o.id.clone())
        .collect();
    Ok(CoverageReport {
        subject: subject.to_string(),
        recipient: q.recipient.to_string(),
        purpose: q.purpose.to_string(),
        at: q.at,
        policy_set: set.hash.clone(),
        consents: summaries,
        restrictions,
        court_orders,
        flows,
    })
}

impl CoverageReport {
    /// A table for people.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "coverage of subject {} to `{}` for `{}` at {} (policy set {})",
            self.subject,
            self.recipient,
            self.purpose,
            self.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            self.policy_set.get(..12).unwrap_or(&self.policy_set)
        );
        if self.consents.is_empty() {
            let _ = writeln!(out, "no consent of this subject is recorded");
        } else {
            let _ = writeln!(out, "consents of this subject:");
            for c in &self.consents {
                let _ = writeln!(
                    out,
                    "  {}  {}{}",
                    c.id,
                    c.status,
                    if c.names_recipient_and_purpose {
                        ""
                    } else {
                        "  (does not name this recipient and purpose)"
                    }
                );
            }
        }
        if !self.restrictions.is_empty() {
            let _ = writeln!(
                out,
                "restrictions in force for this recipient and purpose: {}",
                self.restrictions.join(", ")
            );
        }
        if !self.court_orders.is_empty() {
            let _ = writeln!(
                out,
                "court orders in force for this recipient and purpose: {}",
                self.court_orders.join(", ")
            );
        }
        for k in &self.flows {
            let _ = writeln!(out);
            let head = format!("{} held by {}, as role {}:", k.kind, k.holder, k.role);
            if k.decision == "deny" {
                let _ = writeln!(out, "{head} DENY, nothing flows");
                for r in &k.reasons {
                    let _ = writeln!(out, "  because {r}");
                }
                continue;
            }
            let _ = writeln!(out, "{head} PERMIT");
            let width = k
                .fields
                .iter()
                .map(|f| f.field.len())
                .max()
                .unwrap_or(5)
                .max(5);
            let twidth = k
                .fields
                .iter()
                .map(|f| f.transform.len())
                .max()
                .unwrap_or(9)
                .max(9);
            let _ = writeln!(
                out,
                "  {:width$}  {:5}  {:twidth$}  because",
                "field", "flows", "transform"
            );
            for f in &k.fields {
                let _ = writeln!(
                    out,
                    "  {:width$}  {:5}  {:twidth$}  {}",
                    f.field,
                    if f.flows { "yes" } else { "no" },
                    f.transform,
                    f.reasons.join("; ")
                );
            }
        }
        out
    }
}
