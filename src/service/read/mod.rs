//! The read service: the one path by which stored record content leaves the gateway.
//!
//! Every read of a record, by id or by subject, goes through [`Services::read_record`] or
//! [`Services::read_subject`], and both go through one function, `disclose_one`:
//!
//! 1. read and decrypt the record (a [`DecryptedRecord`], whose values are private), with the
//!    cache epochs in the same round trip;
//! 2. take the subject's consents (from the consent cache if nothing changed since) and decide
//!    ([`crate::policy::decide()`], pure, at the clock's time);
//! 3. append the disclosure-log entry describing exactly what will leave (or the denial) and
//!    wait until it is durable;
//! 4. only then open the values ([`DecryptedRecord::open`] takes the decision's permit and
//!    the log's [`Receipt`] of step 3, which only the log makes, once the entry committed),
//!    redact, answer.
//!
//! This is enforced by types, not by convention: outside the storage layer's own tests there
//! is no way to get a stored value without a [`crate::policy::Permit`] (only `decide` makes
//! one) and a [`Receipt`] for that record. If the log cannot be written, the caller gets an
//! unavailable error and nothing is disclosed.
//!
//! A denial is logged the same way and answered with 403 and the reasons (rules, consent,
//! limits), never with which fields exist. A record that does not exist is answered as the
//! caller would be answered for an existing record without consent: if the caller's rules for
//! the kind need a consent or an emergency basis, the answer is the same 403; only a caller the
//! MOU entitles to the kind outright learns that the id does not exist (404). So a denial
//! never reveals whether a record exists.

mod views;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use tracing::instrument;
use uuid::Uuid;

use super::{Caller, Error, Services, log_error, record_error};
use crate::audit::{self, EntryKind, FieldDisclosure, LegalBasis, NewEntry, Receipt};
use crate::consent::directive_cache::SubjectDirectives;
use crate::consent::registry;
use crate::domain::Code;
use crate::domain::{
    Consent, PartnerKind, Principal, Purpose, RecordId, RecordKind, SubjectIdentifier, SubjectRef,
};
use crate::emergency;
use crate::policy::{
    self, Decision, EmergencyAssertion, Inputs, MedicalEmergency, Outcome, Permit, PolicySet,
    Reason, Request, Transform,
};
use crate::redaction::{self, RedactionKeys};
use crate::store::epochs::Epochs;
use crate::vault::{self, DecryptedRecord};

pub use views::{REFERRAL_KIND, REFERRAL_STATUS_VIEW};

/// Who asks, why, and from where.
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    /// The caller and the request.
    pub caller: Caller<'a>,
    /// The stated purpose of use.
    pub purpose: &'a Purpose,
    /// The emergency basis, for purpose `emergency`.
    pub emergency: Option<&'a EmergencyAssertion>,
    /// A stated 42 CFR 2.51 medical emergency, for purpose `emergency`.
    pub medical: Option<&'a MedicalEmergency>,
}

/// What the decision reads about a record's subject: the reference standing for the person,
/// their consents, and their restrictions and court orders.
type SubjectInputs = (SubjectRef, Vec<Consent>, SubjectDirectives);

/// One record as disclosed: the body for the recipient and its log entry.
#[derive(Debug)]
pub struct DisclosedRecord {
    /// The disclosure-log entry (its sequence number is the disclosure id).
    pub disclosure_id: audit::LogRef,
    /// The JSON the recipient receives.
    pub body: Value,
    /// The time of the log entry (the decision time).
    pub logged_at: DateTime<Utc>,
}

/// The answer for one record.
#[derive(Debug)]
pub enum RecordAnswer {
    /// Disclosed.
    Disclosed(DisclosedRecord),
    /// Denied (logged).
    Denied(Denial),
}

/// A logged denial.
#[derive(Debug)]
pub struct Denial {
    /// The log entry.
    pub disclosure_id: audit::LogRef,
    /// The decision.
    pub decision_id: Uuid,
    /// Why.
    pub reasons: Vec<Reason>,
}

impl Denial {
    /// The refusal to answer with.
    pub fn into_error(self) -> Error {
        let keys: Vec<String> = self.reasons.iter().map(Reason::key).collect();
        Error::Denied {
            code: Code::DisclosureDenied,
            message: format!(
                "no rule, consent or emergency basis permits this disclosure for the stated \
                 purpose ({}); nothing was disclosed and the denial is logged",
                keys.join(", ")
            ),
            details: json!({
                "reasons": keys,
                "decision_id": self.decision_id,
            }),
            disclosure_id: Box::new(self.disclosure_id),
        }
    }
}

/// The records of one subject the caller may see, each decided and logged on its own.
#[derive(Debug)]
pub struct SubjectAnswer {
    /// The records disclosed.
    pub records: Vec<DisclosedRecord>,
    /// The log entries to quote to the caller: one per record disclosed, or, when nothing was
    /// disclosed, the one entry recording that (never one per record denied, which would tell
    /// the caller how many records it may not see).
    pub disclosure_ids: Vec<audit::LogRef>,
}

impl Services {
    /// Reads one record for `asker`: decide, log, redact, answer.
    #[instrument(skip_all, fields(kind = %kind, id = %id))]
    pub async fn read_record(
        &self,
        asker: &Asker<'_>,
        kind: &RecordKind,
        id: &RecordId,
    ) -> Result<RecordAnswer, Error> {
        let policy = self.policy();
        let Some(schema) = policy.kinds.get(kind.as_str()) else {
            return Err(unknown_kind(&policy, kind));
        };
        let now = self.now();
        let mut pooled = self.store.acquire().await?;
        let mut c = pooled.conn();
        let (found, epochs) = vault::read_current(&mut c, &self.keyring, kind, id)
            .await
            .map_err(record_error)?;
        match found {
            Some(rec) => {
                let consents = self.consents_for(&mut c, &rec, epochs).await?;
                drop(pooled);
                self.disclose_one(&policy, asker, rec, consents, now).await
            }
            None => {
                drop(pooled);
                self.absent(&policy, asker, schema.owner, kind, id, now)
                    .await
            }
        }
    }

    /// Reads every record of a subject (optionally of one kind) that `asker` may see. Records
    /// the caller may not see are left out of the answer (and their denials logged), so the
    /// answer never tells a caller that a record it may not see exists.
    #[instrument(skip_all, fields(kind = ?kind.map(RecordKind::as_str)))]
    pub async fn read_subject(
        &self,
        asker: &Asker<'_>,
        subject: &SubjectIdentifier,
        kind: Option<&RecordKind>,
    ) -> Result<SubjectAnswer, Error> {
        let policy = self.policy();
        if let Some(k) = kind
            && !policy.kinds.contains_key(k.as_str())
        {
            return Err(unknown_kind(&policy, k));
        }
        let now = self.now();
        let refs = {
            let mut pooled = self.store.acquire().await?;
            vault::find_by_subject(&mut pooled.conn(), &self.keyring, subject, kind)
                .await
                .map_err(record_error)?
        };
        let mut out = SubjectAnswer {
            records: Vec::new(),
            disclosure_ids: Vec::new(),
        };
        let mut denied = 0_usize;
        let found = refs.len();
        for r in refs {
            let (rec, consents) = {
                let mut pooled = self.store.acquire().await?;
                let mut c = pooled.conn();
                let (rec, epochs) = vault::read_current(&mut c, &self.keyring, &r.kind, &r.id)
                    .await
                    .map_err(record_error)?;
                // Deleted between the lookup and the read: nothing to disclose.
                let Some(rec) = rec else { continue };
                let consents = self.consents_for(&mut c, &rec, epochs).await?;
                (rec, consents)
            };
            match self
                .disclose_one(&policy, asker, rec, consents, now)
                .await?
            {
                RecordAnswer::Disclosed(d) => {
                    out.disclosure_ids.push(d.disclosure_id);
                    out.records.push(d);
                }
                RecordAnswer::Denied(_) => denied += 1,
            }
        }
        if out.records.is_empty() {
            // One entry whether nothing was found or everything was denied: the caller learns
            // neither; the log (and the per-record denials in it) does.
            let mut e = base_entry(asker, now, audit::Outcome::deny("nothing-disclosed"));
            e.subject = Some(self.log.pseudonym(subject));
            e.detail = Some(format!(
                "subject lookup: {found} record(s) found, {denied} denied"
            ));
            let receipt = self.log.append(e).await.map_err(log_error)?;
            out.disclosure_ids.push(receipt.log_ref());
        }
        Ok(out)
    }

    /// Every identifier known for the same person as `subject`: the identifiers of the
    /// records and consents that name it (one hop), `subject` first. Used to make a subject's
    /// accounting of disclosures complete, since a disclosure is logged under the pseudonym of
    /// its record's first identifier. Reads identifiers only, never field values.
    pub async fn linked_identifiers(
        &self,
        subject: &SubjectIdentifier,
    ) -> Result<Vec<SubjectIdentifier>, Error> {
        let mut out = vec![subject.clone()];
        let mut pooled = self.store.acquire().await?;
        let mut c = pooled.conn();
        let refs = vault::find_by_subject(&mut c, &self.keyring, subject, None)
            .await
            .map_err(record_error)?;
        for r in refs {
            if let (Some(rec), _) = vault::read_current(&mut c, &self.keyring, &r.kind, &r.id)
                .await
                .map_err(record_error)?
            {
                out.extend(rec.subjects.iter().cloned());
            }
        }
        for consent in registry::find(&mut c, &self.keyring, std::slice::from_ref(subject))
            .await
            .map_err(super::consents::store_error)?
        {
            out.extend(consent.directive.subjects.iter().cloned());
        }
        let mut seen = BTreeSet::new();
        out.retain(|s| seen.insert(s.clone()));
        Ok(out)
    }

    /// The subject's consents, restrictions and court orders (matched by any of the record's
    /// identifiers) as decision inputs, current as of the consent epoch read with the record
    /// (it moves with every change of any of them). A directive whose stored data does not
    /// authenticate fails the read: a decision is never taken on a partial view of the
    /// person's directives.
    async fn consents_for(
        &self,
        c: &mut crate::store::Conn<'_>,
        rec: &DecryptedRecord,
        epochs: Epochs,
    ) -> Result<SubjectInputs, Error> {
        let subject = self.subject_ref(rec)?;
        let consents = self
            .consents
            .for_subjects(c, &self.keyring, &rec.subjects, &subject, epochs.consents)
            .await
            .map_err(super::consents::store_error)?;
        let directives = self
            .directives
            .for_subjects(c, &self.keyring, &rec.subjects, &subject, epochs.consents)
            .await
            .map_err(super::directives::store_error)?;
        Ok((subject, consents, directives))
    }

    /// The decision subject of a record: a stable reference derived from the pseudonym of its
    /// first identifier. Consents are matched to the record by any of its identifiers.
    fn subject_ref(&self, rec: &DecryptedRecord) -> Result<SubjectRef, Error> {
        let text = match rec.subjects.first() {
            Some(s) => {
                let hex = self.log.pseudonym(s).to_hex();
                format!("subj-{}", hex.get(..32).unwrap_or(&hex))
            }
            None => format!("record-{}-{}", rec.kind, rec.id),
        };
        text.parse()
            .map_err(|e| Error::internal(format!("subject reference: {e}")))
    }

    /// The single disclosure function: decide, log durably, open, redact, answer.
    async fn disclose_one(
        &self,
        policy: &PolicySet,
        asker: &Asker<'_>,
        rec: DecryptedRecord,
        (subject, consents, directives): SubjectInputs,
        now: DateTime<Utc>,
    ) -> Result<RecordAnswer, Error> {
        let principal = asker.caller.principal;
        let decision = policy::decide_with(
            &Request {
                principal,
                purpose: asker.purpose,
                kind: rec.kind.as_str(),
                holder: &rec.owner,
                subject: &subject,
                emergency: asker.emergency,
            },
            &Inputs {
                consents: &consents,
                restrictions: &directives.restrictions,
                court_orders: &directives.court_orders,
                medical_emergency: asker.medical,
            },
            policy,
            now,
        );
        let view = views::for_record(policy, asker, &rec, &consents, &subject, now);
        let mut entry = decision_entry(policy, asker, &decision, now);
        if asker.medical.is_some() && decision.is_permit() {
            let doc = medical_documentation(policy, asker, &rec.owner, now);
            entry.detail = Some(match entry.detail.take() {
                Some(d) => format!("{doc}; {d}"),
                None => doc,
            });
        }
        entry.subject = rec.subjects.first().map(|s| self.log.pseudonym(s));
        entry.record = Some(audit::RecordRef {
            kind: rec.kind.to_string(),
            id: rec.id.to_string(),
        });
        let present: BTreeSet<&str> = rec.field_names().collect();
        if let Some(permit) = decision.permit() {
            let disclosed: Vec<FieldDisclosure> = permit
                .fields()
                .iter()
                .filter(|p| {
                    p.transform != Transform::Omit
                        && present.contains(p.field.as_str())
                        && !view.withholds(&p.field)
                })
                .map(|p| {
                    FieldDisclosure::new(&p.field, view.transform_label(&p.field, p.transform))
                })
                .collect();
            entry.fields_withheld = count(present.len().saturating_sub(disclosed.len()));
            entry.detail = Some(field_reasons(entry.detail.take(), permit, &disclosed));
            entry.fields_disclosed = disclosed;
            if permit
                .fields()
                .iter()
                .any(|p| p.transform == Transform::Encrypt)
                && recipient_key(policy, permit).is_none()
            {
                return Err(Error::internal(format!(
                    "the plan encrypts a field but partner `{}` has no encryption key",
                    permit.recipient()
                )));
            }
        } else {
            entry.fields_withheld = count(present.len());
        }
        let emergency =
            decision.is_permit() && (asker.emergency.is_some() || asker.medical.is_some());
        let (receipt, review) =
            if emergency {
                let subject_key = entry
                    .subject
                    .map(|s| s.to_hex())
                    .unwrap_or_else(|| format!("record:{}/{}", rec.kind, rec.id));
                let mut tx = self.log.begin().await.map_err(log_error)?;
                let seq = tx.append(entry).await.map_err(log_error)?;
                let review = emergency::record_access(
                    &mut tx.conn(),
                    emergency::Access {
                        partner: principal.partner.as_str(),
                        user: principal.user.as_str(),
                        subject: &subject_key,
                    },
                    seq,
                    self.emergency_window,
                    now,
                )
                .await
                .map_err(|e| Error::Unavailable(e.into()))?;
                let receipt =
                    tx.commit().await.map_err(log_error)?.pop().ok_or_else(|| {
                        Error::internal("an emergency disclosure without its entry")
                    })?;
                (receipt, Some(review))
            } else {
                (self.log.append(entry).await.map_err(log_error)?, None)
            };
        let permit = match decision.outcome {
            Outcome::Deny { reasons } => {
                return Ok(RecordAnswer::Denied(Denial {
                    disclosure_id: receipt.log_ref(),
                    decision_id: decision.id,
                    reasons,
                }));
            }
            Outcome::Permit(permit) => permit,
        };
        self.answer(policy, asker, rec, &permit, (&receipt, now), view, review)
    }

    /// Opens the values with the permit and the receipt, redacts them and builds the answer.
    // Each argument is a different piece of the one disclosure; bundling them would only
    // rename them.
    #[allow(clippy::too_many_arguments)]
    fn answer(
        &self,
        policy: &PolicySet,
        asker: &Asker<'_>,
        rec: DecryptedRecord,
        permit: &Permit,
        (receipt, logged_at): (&Receipt, DateTime<Utc>),
        view: crate::referral::view::StatusView,
        review: Option<emergency::ReviewRef>,
    ) -> Result<RecordAnswer, Error> {
        let version = rec.version;
        let input = rec
            .open(permit, receipt)
            .map_err(|e| Error::Internal(e.into()))?;
        let secret = self.keyring.redaction_secret();
        let keys = RedactionKeys {
            pseudonym_secret: secret.expose_secret(),
            recipient_key: recipient_key(policy, permit),
        };
        let mut out = redaction::apply(permit, &input, &keys)
            .map_err(|e| Error::internal(format!("redaction of a logged disclosure: {e}")))?;
        view.apply(&mut out.fields);
        let mut body = serde_json::Map::new();
        body.insert("kind".into(), json!(out.kind));
        body.insert("id".into(), json!(out.id));
        body.insert("version".into(), json!(version));
        body.insert("disclosure_id".into(), json!(receipt.seq()));
        body.insert("decision_id".into(), json!(out.decision_id));
        body.insert("purpose".into(), json!(asker.purpose));
        body.insert("fields".into(), json!(out.fields));
        if let Some(r) = review {
            body.insert(
                "emergency".into(),
                json!({ "review_id": r.id, "review_opened": r.opened }),
            );
        }
        if !out.notices.is_empty() {
            body.insert("notices".into(), json!(out.notices));
            body.insert("refrains".into(), json!(out.refrains));
        }
        let body = Value::Object(body);
        Ok(RecordAnswer::Disclosed(DisclosedRecord {
            disclosure_id: receipt.log_ref(),
            body,
            logged_at,
        }))
    }

    /// A record that does not exist, answered without revealing that to a caller who could
    /// not see it if it existed.
    async fn absent(
        &self,
        policy: &PolicySet,
        asker: &Asker<'_>,
        owner: PartnerKind,
        kind: &RecordKind,
        id: &RecordId,
        now: DateTime<Utc>,
    ) -> Result<RecordAnswer, Error> {
        // Decide as if the record existed, held by any partner of the owning kind, with no
        // consent.
        let placeholder: SubjectRef = "absent-record"
            .parse()
            .map_err(|e| Error::internal(format!("{e}")))?;
        let mut denial = None;
        for holder in policy.partners.iter().filter(|p| p.kind == owner) {
            let d = policy::decide_with(
                &Request {
                    principal: asker.caller.principal,
                    purpose: asker.purpose,
                    kind: kind.as_str(),
                    holder: &holder.id,
                    subject: &placeholder,
                    emergency: asker.emergency,
                },
                &Inputs {
                    medical_emergency: asker.medical,
                    ..Inputs::default()
                },
                policy,
                now,
            );
            if d.is_permit() {
                denial = None;
                break;
            }
            denial.get_or_insert(d);
        }
        let record = Some(audit::RecordRef {
            kind: kind.to_string(),
            id: id.to_string(),
        });
        if let Some(d) = denial {
            let mut entry = decision_entry(policy, asker, &d, now);
            entry.record = record;
            let receipt = self.log.append(entry).await.map_err(log_error)?;
            let Outcome::Deny { reasons } = d.outcome else {
                return Err(Error::internal("a denial that permits"));
            };
            return Ok(RecordAnswer::Denied(Denial {
                disclosure_id: receipt.log_ref(),
                decision_id: d.id,
                reasons,
            }));
        }
        let mut entry = base_entry(asker, now, audit::Outcome::deny("record-not-found"));
        entry.policy_hash = Some(policy.hash.clone());
        entry.record = record;
        self.log.append(entry).await.map_err(log_error)?;
        Err(Error::not_found(
            Code::RecordNotFound,
            format!("there is no `{kind}` record `{id}`"),
        ))
    }
}

fn base_entry(asker: &Asker<'_>, now: DateTime<Utc>, outcome: audit::Outcome) -> NewEntry {
    let mut e = asker.caller.entry(EntryKind::Disclosure, now, outcome);
    e.purpose = Some(asker.purpose.to_string());
    if let Some(em) = asker.emergency {
        e.basis = Some(LegalBasis::Emergency {
            stated_basis: em.basis.clone(),
        });
        e.justification = Some(em.threat.clone());
    }
    if let Some(m) = asker.medical {
        // 42 CFR 2.51(c)(1): the medical personnel's name; their affiliation, the discloser,
        // the date and time follow in the entry's detail and fields; (c)(4) the nature of the
        // emergency is the justification.
        e.basis = Some(LegalBasis::MedicalEmergency {
            documentation: format!(
                "medical personnel: {} ({} user `{}`)",
                m.personnel, asker.caller.principal.partner, asker.caller.principal.user
            ),
        });
        e.justification = Some(m.nature.clone());
    }
    e
}

/// How the 42 CFR 2.51(c) documentation starts and ends in a disclosure's detail.
const MEDICAL_DOC_START: &str = "42 CFR 2.51(c):";
const MEDICAL_DOC_END: &str = "nature of the emergency: see the justification";

/// The 42 CFR 2.51(c) documentation within a medical emergency disclosure's detail.
pub(super) fn medical_documentation_in(detail: &str) -> Option<&str> {
    let start = detail.find(MEDICAL_DOC_START)?;
    let end = start + detail.get(start..)?.find(MEDICAL_DOC_END)? + MEDICAL_DOC_END.len();
    detail.get(start..end)
}

/// The documentation 42 CFR 2.51(c) asks for, for the disclosure's log entry: the medical
/// personnel's name and affiliation, who disclosed, the date and time (the nature of the
/// emergency is the entry's justification).
fn medical_documentation(
    policy: &PolicySet,
    asker: &Asker<'_>,
    holder: &crate::domain::PartnerId,
    now: DateTime<Utc>,
) -> String {
    let name = |id: &crate::domain::PartnerId| {
        policy.partners.get(id).map_or_else(
            || id.to_string(),
            |p| format!("{} (`{id}`)", p.display_name),
        )
    };
    let p = asker.caller.principal;
    let roles: Vec<String> = p.roles.iter().map(ToString::to_string).collect();
    format!(
        "{MEDICAL_DOC_START} disclosed to {} of {} (user `{}`, role {}); disclosed by {} through \
         the co-response gateway; at {}; {MEDICAL_DOC_END}",
        asker.medical.map_or("", |m| m.personnel.as_str()),
        name(&p.partner),
        p.user,
        roles.join(", "),
        name(holder),
        now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    )
}

/// The log entry for a decision: outcome, basis and the role the applied rule admitted.
fn decision_entry(
    policy: &PolicySet,
    asker: &Asker<'_>,
    decision: &Decision,
    now: DateTime<Utc>,
) -> NewEntry {
    let outcome = match &decision.outcome {
        Outcome::Permit(_) => audit::Outcome::Permit,
        Outcome::Deny { reasons } => audit::Outcome::deny(
            reasons
                .iter()
                .map(Reason::key)
                .collect::<Vec<_>>()
                .join(","),
        ),
    };
    let mut e = base_entry(asker, now, outcome);
    e.decision_id = Some(decision.id.to_string());
    e.policy_hash = Some(decision.policy_hash.clone());
    if let Some(permit) = decision.permit() {
        let reasons = permit.fields().iter().flat_map(|f| f.reasons.iter());
        let mut consent = None;
        let mut rule = None;
        let mut order = None;
        let mut withheld: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for f in permit.fields() {
            for r in &f.reasons {
                if let Reason::Restriction { restriction } = r {
                    withheld
                        .entry(restriction.clone())
                        .or_default()
                        .push(f.field.clone());
                }
            }
        }
        for r in reasons {
            match r {
                Reason::Consent { consent: c } if consent.is_none() => consent = Some(c.clone()),
                Reason::MouRule { mou, rule: id, .. } if rule.is_none() => {
                    rule = Some((mou.clone(), id.clone()));
                }
                Reason::CourtOrder { order: o } if order.is_none() => order = Some(o.clone()),
                _ => {}
            }
        }
        if !withheld.is_empty() {
            // HIPAA 164.522(a): the log says which agreed restriction withheld which fields.
            let parts: Vec<String> = withheld
                .iter()
                .map(|(id, fields)| format!("restriction {id} withheld {}", fields.join(", ")))
                .collect();
            e.detail = Some(parts.join("; "));
        }
        if let Some((mou, id)) = &rule
            && let Some(role) = applied_role(policy, asker.caller.principal, mou, id)
        {
            e.recipient_role = Some(role);
        }
        if asker.emergency.is_none() && asker.medical.is_none() {
            e.basis = match (order, consent, rule) {
                (Some(order_id), _, _) => Some(LegalBasis::CourtOrder { order_id }),
                (None, Some(consent_id), _) => Some(LegalBasis::Consent { consent_id }),
                (None, None, Some((mou_id, rule))) => Some(LegalBasis::Mou { mou_id, rule }),
                (None, None, None) => None,
            };
        }
    }
    e
}

/// The caller's role that the rule admits (the first, if several).
fn applied_role(policy: &PolicySet, p: &Principal, mou: &str, rule: &str) -> Option<String> {
    let rule = policy
        .mous
        .iter()
        .find(|m| m.id == mou)?
        .rules
        .iter()
        .find(|r| r.id == rule)?;
    p.roles
        .iter()
        .find(|r| rule.roles.contains(*r))
        .map(|r| r.to_string())
}

fn recipient_key<'a>(
    policy: &'a PolicySet,
    permit: &Permit,
) -> Option<&'a crate::crypto::RecipientKey> {
    policy
        .partners
        .get(permit.recipient())
        .and_then(|p| p.encryption.as_ref())
}

/// The `detail` of a permitted disclosure: what the decision already wrote there (a
/// restriction that withheld a field, a medical emergency's documentation), then why each
/// disclosed field left (see [`audit::reasons`]).
fn field_reasons(
    existing: Option<String>,
    permit: &Permit,
    disclosed: &[FieldDisclosure],
) -> String {
    let fields: Vec<audit::reasons::FieldReasons> = disclosed
        .iter()
        .filter_map(|d| permit.fields().iter().find(|p| p.field == d.field))
        .map(|p| {
            (
                p.field.clone(),
                p.reasons.iter().map(|r| (r.key(), r.describe())).collect(),
            )
        })
        .collect();
    audit::reasons::append_to_detail(existing, &fields)
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The answer for a kind the policy set does not declare.
pub fn unknown_kind(policy: &PolicySet, kind: &RecordKind) -> Error {
    Error::not_found(
        Code::UnknownKind,
        format!(
            "there is no record kind `{kind}`; the kinds are: {}",
            policy.kinds.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    )
}
