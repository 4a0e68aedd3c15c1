//! The one path by which stored record content leaves the gateway.
//!
//! Every read of a record, by id or by subject, goes through [`read_record`] or
//! [`read_subject`], and both go through one function, `disclose_one`:
//!
//! 1. read and decrypt the record (a [`DecryptedRecord`], whose values are private);
//! 2. load the subject's consents and decide ([`crate::policy::decide()`], pure);
//! 3. append the disclosure-log entry describing exactly what will leave (or the denial) and
//!    wait until it is durable;
//! 4. only then open the values ([`DecryptedRecord::open`] takes the decision's permit and
//!    the [`Logged`] receipt of step 3, which only this module can make), redact, answer.
//!
//! This is enforced by types, not by convention: outside the storage layer's own tests there
//! is no way to get a stored value without a [`crate::policy::Permit`] (only `decide` makes
//! one) and a [`Logged`] receipt (only this module makes one, right after the durable append).
//! If the log cannot be written, the caller gets 503 and nothing is disclosed.
//!
//! A denial is logged the same way and answered with 403 and the reasons (rules, consent,
//! limits), never with which fields exist. A record that does not exist is answered as the
//! caller would be answered for an existing record without consent: if the caller's rules for
//! the kind need a consent or an emergency basis, the answer is the same 403; only a caller the
//! MOU entitles to the kind outright learns that the id does not exist (404). So a denial
//! never reveals whether a record exists.

mod views;

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use tracing::instrument;
use uuid::Uuid;

use crate::audit::{self, EntryKind, FieldDisclosure, LegalBasis, NewEntry};
use crate::consent::{Consent, SubjectRef, registry};
use crate::domain::{Principal, Purpose};
use crate::emergency;
use crate::error::ApiError;
use crate::policy::{
    self, Decision, EmergencyAssertion, Outcome, Permit, PolicySet, Reason, Request, Transform,
};
use crate::redaction::{self, RedactionKeys};
use crate::startup::AppState;
use crate::store::records::{
    self, DecryptedRecord, RecordError, RecordId, RecordKind, SubjectIdentifier,
};

pub use views::{REFERRAL_KIND, REFERRAL_STATUS_VIEW};

/// Receipt of a durable disclosure-log entry for one decision about one record. Only this
/// module can make one, and only after the append committed.
#[derive(Debug)]
pub struct Logged {
    decision_id: Uuid,
    seq: u64,
    kind: String,
    id: String,
}

impl Logged {
    /// The decision the entry records.
    pub fn decision_id(&self) -> Uuid {
        self.decision_id
    }

    /// The entry's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The record the entry is about, as `(kind, id)`.
    pub fn record(&self) -> (&str, &str) {
        (&self.kind, &self.id)
    }
}

/// Who asks, why, and from where.
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    /// The authenticated caller.
    pub principal: &'a Principal,
    /// The stated purpose of use.
    pub purpose: &'a Purpose,
    /// The emergency basis, for purpose `emergency`.
    pub emergency: Option<&'a EmergencyAssertion>,
    /// The request id (for the log).
    pub request_id: Option<&'a str>,
    /// The peer address (for the log).
    pub source_addr: Option<&'a str>,
}

/// One record as disclosed: the body for the recipient and its log entry.
#[derive(Debug)]
pub struct DisclosedRecord {
    /// The disclosure-log entry's sequence number.
    pub disclosure_id: u64,
    /// The JSON the recipient receives.
    pub body: Value,
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
    pub disclosure_id: u64,
    /// The decision.
    pub decision_id: Uuid,
    /// Why.
    pub reasons: Vec<Reason>,
}

impl Denial {
    /// The 403 answer.
    pub fn into_error(self) -> ApiError {
        let keys: Vec<String> = self.reasons.iter().map(Reason::key).collect();
        ApiError::Denied {
            code: "disclosure_denied",
            message: format!(
                "no rule, consent or emergency basis permits this disclosure for the stated \
                 purpose ({}); nothing was disclosed and the denial is logged",
                keys.join(", ")
            ),
            details: json!({
                "reasons": keys,
                "decision_id": self.decision_id,
            }),
            disclosure_id: self.disclosure_id,
        }
    }
}

/// Reads one record for `asker`: decide, log, redact, answer.
#[instrument(skip_all, fields(kind = %kind, id = %id))]
pub async fn read_record(
    state: &AppState,
    asker: &Asker<'_>,
    kind: &RecordKind,
    id: &RecordId,
) -> Result<RecordAnswer, ApiError> {
    let policy = state.policy.load_full();
    let Some(schema) = policy.kinds.get(kind.as_str()) else {
        return Err(unknown_kind(&policy, kind));
    };
    let now = Utc::now();
    let found = {
        let mut conn = state.store.pool().acquire().await?;
        records::get_record(&mut conn, &state.keyring, kind, id, None)
            .await
            .map_err(record_error)?
    };
    match found {
        Some(rec) => disclose_one(state, &policy, asker, rec, now).await,
        None => absent(state, &policy, asker, schema.owner, kind, id, now).await,
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
    pub disclosure_ids: Vec<u64>,
}

/// Reads every record of a subject (optionally of one kind) that `asker` may see. Records the
/// caller may not see are left out of the answer (and their denials logged), so the answer
/// never tells a caller that a record it may not see exists.
#[instrument(skip_all, fields(kind = ?kind.map(RecordKind::as_str)))]
pub async fn read_subject(
    state: &AppState,
    asker: &Asker<'_>,
    subject: &SubjectIdentifier,
    kind: Option<&RecordKind>,
) -> Result<SubjectAnswer, ApiError> {
    let policy = state.policy.load_full();
    if let Some(k) = kind
        && !policy.kinds.contains_key(k.as_str())
    {
        return Err(unknown_kind(&policy, k));
    }
    let now = Utc::now();
    let refs = {
        let mut conn = state.store.pool().acquire().await?;
        records::find_by_subject(&mut conn, &state.keyring, subject, kind)
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
        let rec = {
            let mut conn = state.store.pool().acquire().await?;
            records::get_record(&mut conn, &state.keyring, &r.kind, &r.id, None)
                .await
                .map_err(record_error)?
        };
        // Deleted between the lookup and the read: nothing to disclose.
        let Some(rec) = rec else { continue };
        match disclose_one(state, &policy, asker, rec, now).await? {
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
        e.subject = Some(state.audit.pseudonym(subject));
        e.detail = Some(format!(
            "subject lookup: {found} record(s) found, {denied} denied"
        ));
        let appended = state.audit.append(e).await.map_err(log_error)?;
        out.disclosure_ids.push(appended.seq);
    }
    Ok(out)
}

/// Every identifier known for the same person as `subject`: the identifiers of the records and
/// consents that name it (one hop), `subject` first. Used to make a subject's accounting of
/// disclosures complete, since a disclosure is logged under the pseudonym of its record's first
/// identifier. Reads identifiers only, never field values.
pub async fn linked_identifiers(
    state: &AppState,
    subject: &SubjectIdentifier,
) -> Result<Vec<SubjectIdentifier>, ApiError> {
    let mut out = vec![subject.clone()];
    let mut conn = state.store.pool().acquire().await?;
    let refs = records::find_by_subject(&mut conn, &state.keyring, subject, None)
        .await
        .map_err(record_error)?;
    for r in refs {
        if let Some(rec) = records::get_record(&mut conn, &state.keyring, &r.kind, &r.id, None)
            .await
            .map_err(record_error)?
        {
            out.extend(rec.subjects.iter().cloned());
        }
    }
    for c in registry::find(&mut conn, &state.keyring, std::slice::from_ref(subject)).await? {
        out.extend(c.directive.subjects.iter().cloned());
    }
    let mut seen = BTreeSet::new();
    out.retain(|s| seen.insert(s.clone()));
    Ok(out)
}

/// The decision subject of a record: a stable reference derived from the pseudonym of its
/// first identifier. Consents are matched to the record by any of its identifiers.
fn subject_ref(state: &AppState, rec: &DecryptedRecord) -> Result<SubjectRef, ApiError> {
    let text = match rec.subjects.first() {
        Some(s) => {
            let hex = state.audit.pseudonym(s).to_hex();
            format!("subj-{}", hex.get(..32).unwrap_or(&hex))
        }
        None => format!("record-{}-{}", rec.kind, rec.id),
    };
    text.parse()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("subject reference: {e}")))
}

/// The subject's consents (matched by any of the record's identifiers), read live for every
/// decision, as decision input. A consent whose stored data does not authenticate fails the
/// read: a decision is never taken on a partial view of the person's consents.
async fn consents_for(
    state: &AppState,
    subjects: &[SubjectIdentifier],
    as_subject: &SubjectRef,
) -> Result<Vec<Consent>, ApiError> {
    let mut conn = state.store.pool().acquire().await?;
    Ok(registry::for_subjects(&mut conn, &state.keyring, subjects, as_subject).await?)
}

/// The single disclosure function: decide, log durably, open, redact, answer.
async fn disclose_one(
    state: &AppState,
    policy: &PolicySet,
    asker: &Asker<'_>,
    rec: DecryptedRecord,
    now: DateTime<Utc>,
) -> Result<RecordAnswer, ApiError> {
    let subject = subject_ref(state, &rec)?;
    let consents = consents_for(state, &rec.subjects, &subject).await?;
    let decision = policy::decide(
        &Request {
            principal: asker.principal,
            purpose: asker.purpose,
            kind: rec.kind.as_str(),
            holder: &rec.owner,
            subject: &subject,
            emergency: asker.emergency,
        },
        &consents,
        policy,
        now,
    );
    let view = views::View::for_record(policy, asker, &rec, &consents, &subject, now);
    let mut entry = decision_entry(policy, asker, &decision, now);
    entry.subject = rec.subjects.first().map(|s| state.audit.pseudonym(s));
    entry.record = Some(audit::RecordRef {
        kind: rec.kind.to_string(),
        id: rec.id.to_string(),
    });
    let present: BTreeSet<&str> = rec.field_names().collect();
    if let Some(permit) = decision.permit() {
        let disclosed: Vec<FieldDisclosure> = permit
            .fields()
            .iter()
            .filter(|p| p.transform != Transform::Omit && present.contains(p.field.as_str()))
            .map(|p| FieldDisclosure::new(&p.field, view.transform_label(&p.field, p.transform)))
            .collect();
        entry.fields_withheld = count(present.len().saturating_sub(disclosed.len()));
        entry.fields_disclosed = disclosed;
        if permit
            .fields()
            .iter()
            .any(|p| p.transform == Transform::Encrypt)
            && recipient_key(policy, permit).is_none()
        {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "the plan encrypts a field but partner `{}` has no encryption key",
                permit.recipient()
            )));
        }
    } else {
        entry.fields_withheld = count(present.len());
    }
    let emergency = decision.is_permit() && asker.emergency.is_some();
    let (appended, review) = if emergency {
        let subject_key = entry
            .subject
            .map(|s| s.to_hex())
            .unwrap_or_else(|| format!("record:{}/{}", rec.kind, rec.id));
        // At most a year, whatever the configuration says.
        let secs = state.settings.emergency.window_secs.min(366 * 24 * 3600);
        let window = Duration::seconds(i64::try_from(secs).unwrap_or(3600));
        let mut tx = state.audit.begin().await.map_err(log_error)?;
        let appended = state
            .audit
            .append_in_tx(&mut tx, entry)
            .await
            .map_err(log_error)?;
        let p = asker.principal;
        let review = emergency::record_access(
            &mut tx,
            emergency::Access {
                partner: p.partner.as_str(),
                user: p.user.as_str(),
                subject: &subject_key,
            },
            appended.seq,
            window,
            now,
        )
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?;
        tx.commit()
            .await
            .map_err(|e| ApiError::Unavailable(e.into()))?;
        (appended, Some(review))
    } else {
        (state.audit.append(entry).await.map_err(log_error)?, None)
    };
    let logged = Logged {
        decision_id: decision.id,
        seq: appended.seq,
        kind: rec.kind.to_string(),
        id: rec.id.to_string(),
    };
    let permit = match decision.outcome {
        Outcome::Deny { reasons } => {
            return Ok(RecordAnswer::Denied(Denial {
                disclosure_id: appended.seq,
                decision_id: decision.id,
                reasons,
            }));
        }
        Outcome::Permit(permit) => permit,
    };
    let version = rec.version;
    let input = rec
        .open(&permit, &logged)
        .map_err(|e| ApiError::Internal(e.into()))?;
    let secret = state.keyring.redaction_secret();
    let keys = RedactionKeys {
        pseudonym_secret: secret.expose_secret(),
        recipient_key: recipient_key(policy, &permit),
    };
    let mut out = redaction::apply(&permit, &input, &keys).map_err(|e| {
        ApiError::Internal(anyhow::anyhow!("redaction of a logged disclosure: {e}"))
    })?;
    view.apply(&mut out.fields);
    let mut body = json!({
        "kind": out.kind,
        "id": out.id,
        "version": version,
        "disclosure_id": logged.seq,
        "decision_id": out.decision_id,
        "purpose": asker.purpose,
        "fields": out.fields,
    });
    if let Some(r) = review {
        body["emergency"] = json!({ "review_id": r.id, "review_opened": r.opened });
    }
    if !out.notices.is_empty() {
        body["notices"] = json!(out.notices);
        body["refrains"] = json!(out.refrains);
    }
    Ok(RecordAnswer::Disclosed(DisclosedRecord {
        disclosure_id: logged.seq,
        body,
    }))
}

/// A record that does not exist, answered without revealing that to a caller who could not
/// see it if it existed.
async fn absent(
    state: &AppState,
    policy: &PolicySet,
    asker: &Asker<'_>,
    owner: crate::domain::PartnerKind,
    kind: &RecordKind,
    id: &RecordId,
    now: DateTime<Utc>,
) -> Result<RecordAnswer, ApiError> {
    // Decide as if the record existed, held by any partner of the owning kind, with no consent.
    let placeholder: SubjectRef = "absent-record"
        .parse()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("{e}")))?;
    let mut denial = None;
    for holder in policy.partners.iter().filter(|p| p.kind == owner) {
        let d = policy::decide(
            &Request {
                principal: asker.principal,
                purpose: asker.purpose,
                kind: kind.as_str(),
                holder: &holder.id,
                subject: &placeholder,
                emergency: asker.emergency,
            },
            &[],
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
        let appended = state.audit.append(entry).await.map_err(log_error)?;
        let Outcome::Deny { reasons } = d.outcome else {
            return Err(ApiError::Internal(anyhow::anyhow!("a denial that permits")));
        };
        return Ok(RecordAnswer::Denied(Denial {
            disclosure_id: appended.seq,
            decision_id: d.id,
            reasons,
        }));
    }
    let mut entry = base_entry(asker, now, audit::Outcome::deny("record-not-found"));
    entry.policy_hash = Some(policy.hash.clone());
    entry.record = record;
    state.audit.append(entry).await.map_err(log_error)?;
    Err(ApiError::not_found(
        "record_not_found",
        format!("there is no `{kind}` record `{id}`"),
    ))
}

fn base_entry(asker: &Asker<'_>, now: DateTime<Utc>, outcome: audit::Outcome) -> NewEntry {
    let p = asker.principal;
    let mut e = NewEntry::new(EntryKind::Disclosure, now, outcome);
    e.request_id = asker.request_id.map(str::to_owned);
    e.recipient_partner = Some(p.partner.to_string());
    e.recipient_user = Some(p.user.to_string());
    e.recipient_role = Some(
        p.roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(","),
    );
    e.purpose = Some(asker.purpose.to_string());
    e.source_addr = asker.source_addr.map(str::to_owned);
    e.cert_sha256 = Some(p.cert_fingerprint.to_hex());
    if let Some(em) = asker.emergency {
        e.basis = Some(LegalBasis::Emergency {
            stated_basis: em.basis.clone(),
        });
        e.justification = Some(em.threat.clone());
    }
    e
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
        for r in reasons {
            match r {
                Reason::Consent { consent: c } if consent.is_none() => consent = Some(c.clone()),
                Reason::MouRule { mou, rule: id, .. } if rule.is_none() => {
                    rule = Some((mou.clone(), id.clone()));
                }
                _ => {}
            }
        }
        if let Some((mou, id)) = &rule
            && let Some(role) = applied_role(policy, asker.principal, mou, id)
        {
            e.recipient_role = Some(role);
        }
        if asker.emergency.is_none() {
            e.basis = match (consent, rule) {
                (Some(consent_id), _) => Some(LegalBasis::Consent { consent_id }),
                (None, Some((mou_id, rule))) => Some(LegalBasis::Mou { mou_id, rule }),
                (None, None) => None,
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

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn unknown_kind(policy: &PolicySet, kind: &RecordKind) -> ApiError {
    ApiError::not_found(
        "unknown_kind",
        format!(
            "there is no record kind `{kind}`; the kinds are: {}",
            policy.kinds.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    )
}

/// The disclosure log could not be written: nothing is disclosed (503).
pub fn log_error(e: audit::LogError) -> ApiError {
    ApiError::Unavailable(anyhow::anyhow!("disclosure log: {e}"))
}

/// Maps a storage-layer error to the answer (an integrity failure is also a security event).
pub fn record_error(e: RecordError) -> ApiError {
    match e {
        RecordError::Invalid(e) => ApiError::bad_request("invalid_record", e.to_string()),
        RecordError::OwnerMismatch { .. } => ApiError::forbidden("not_record_owner", e.to_string()),
        RecordError::Conflict { .. } => ApiError::Conflict {
            code: "write_conflict",
            message: e.to_string(),
            details: None,
        },
        RecordError::Integrity { .. } => {
            // Operators alert on this line: stored data was tampered with, moved or rolled
            // back. It names the record and the part, never a value.
            tracing::error!(alert = "record_integrity", error = %e, "stored record not served");
            ApiError::Internal(e.into())
        }
        RecordError::Key(_) | RecordError::Store(_) => ApiError::Unavailable(e.into()),
        RecordError::Crypto(_) => ApiError::Internal(e.into()),
    }
}
