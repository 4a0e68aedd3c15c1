//! The compliance services over the disclosure log: listing and reading entries, a subject's
//! accounting of disclosures (HIPAA 164.528) with its suspensions (164.528(a)(2)), verifying the
//! chain, and the signed checkpoints.
//!
//! Only users with role `compliance` of a partner of kind `compliance` may read the log
//! (checkpoints are public to every authenticated partner). Every access, allowed or refused,
//! is itself a `log_read` entry, durably committed before the answer leaves; if it cannot be
//! written the caller gets no data. Subject identifiers are turned into pseudonyms at once and
//! never logged.

use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use super::{COMPLIANCE_ROLE, Caller, Error, Services, log_error};
use crate::audit::accounting::{self, AccountingLine};
use crate::audit::query::{self, Filter};
use crate::audit::suspension::{self, Suspension};
use crate::audit::{
    Checkpoint, Entry, EntryKind, NewEntry, Outcome, StoreVerification, SubjectPseudonym,
    stored_checkpoints, verify_store_serving,
};
use crate::domain::Code;
use crate::domain::{PartnerId, PartnerKind, SubjectIdentifier};

/// The purpose recorded for reads of the log.
const AUDIT_PURPOSE: &str = "audit";

/// The label a suspension's statement is sealed under (with the suspension id).
const STATEMENT: &str = "suspension-statement";

/// Longest accounting-suspension statement, in characters.
const MAX_STATEMENT: usize = 4000;

/// A subject's accounting of disclosures.
#[derive(Debug, Clone, Serialize)]
pub struct Accounting {
    /// The subject's pseudonym (hex).
    pub subject: String,
    /// The period covered.
    pub period: Period,
    /// The accounting lines (repeated disclosures summarised).
    pub disclosures: Vec<AccountingLine>,
    /// Disclosures left out under suspensions in force (for the compliance officer; the CSV
    /// given to the individual does not say it).
    pub suspended_disclosures: usize,
}

/// A time period (RFC 3339).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Period {
    /// Start.
    pub from: String,
    /// End.
    pub to: String,
}

/// A suspension as a compliance officer records it.
#[derive(Debug, Clone)]
pub struct SuspensionRequest {
    /// The agency (partner id) that asked.
    pub recipient: String,
    /// The subject (`None`: every subject).
    pub subject: Option<SubjectIdentifier>,
    /// The agency's statement or its reference.
    pub statement: String,
    /// When it ends.
    pub until: DateTime<Utc>,
}

fn bad_field(field: &'static str, why: impl std::fmt::Display) -> Error {
    Error::invalid_field(Code::InvalidSuspension, field, format!("`{field}`: {why}"))
}

impl Services {
    /// A `log_read` entry for this caller with `outcome`.
    pub(super) fn read_entry(
        &self,
        caller: &Caller<'_>,
        outcome: Outcome,
        detail: String,
    ) -> NewEntry {
        let mut e = caller.entry(EntryKind::LogRead, self.now(), outcome);
        if caller.principal.has_role(COMPLIANCE_ROLE) {
            e.recipient_role = Some(COMPLIANCE_ROLE.to_owned());
        }
        e.purpose = Some(AUDIT_PURPOSE.to_owned());
        e.detail = Some(detail);
        e
    }

    /// Opens the sealed free text of entries read for a compliance officer. A sealed text that
    /// does not open (a tampered row, or the wrong key) fails the read: the officer is never
    /// shown an entry with its text silently missing.
    pub(super) fn open_entries(&self, entries: &mut [Entry]) -> Result<(), Error> {
        for e in entries {
            self.log.open(e)?;
        }
        Ok(())
    }

    /// Refuses (and logs the refusal of) anyone but a compliance officer of a compliance
    /// partner.
    pub async fn authorize_compliance(&self, caller: &Caller<'_>, what: &str) -> Result<(), Error> {
        if caller.is_compliance_officer() {
            return Ok(());
        }
        let who = caller.principal;
        let entry = self.read_entry(
            caller,
            Outcome::deny(Code::ComplianceRoleRequired.as_str()),
            format!("refused: {what}"),
        );
        self.log.append(entry).await.map_err(log_error)?;
        Err(Error::forbidden(
            Code::ComplianceRoleRequired,
            format!(
                "reading the disclosure log needs role `{COMPLIANCE_ROLE}` of a compliance \
                 partner; `{}` is a {} partner",
                who.partner, who.partner_kind
            ),
        ))
    }

    /// The pseudonyms of every identifier linked to `id` by the person's records and consents:
    /// a disclosure is logged under its record's first identifier, so a query by any one of
    /// the person's identifiers must look under all of them.
    async fn linked_pseudonyms(
        &self,
        id: &SubjectIdentifier,
    ) -> Result<Vec<SubjectPseudonym>, Error> {
        Ok(self
            .linked_identifiers(id)
            .await?
            .iter()
            .map(|s| self.log.pseudonym(s))
            .collect())
    }

    /// Entries matching `filter` (and, with `subject`, about that person under any of their
    /// identifiers), newest first; `described` says what was asked, for the log (never an
    /// identifier). Returns the page and whether more may follow.
    #[tracing::instrument(skip_all)]
    pub async fn list_log(
        &self,
        caller: &Caller<'_>,
        mut filter: Filter,
        subject: Option<&SubjectIdentifier>,
        described: &str,
    ) -> Result<(Vec<Entry>, bool), Error> {
        self.authorize_compliance(caller, "list disclosures")
            .await?;
        let mut described = described.to_owned();
        if let Some(id) = subject {
            let p = self.log.pseudonym(id);
            filter.subject = Some(p);
            filter.also_subjects = self.linked_pseudonyms(id).await?;
            described = format!("subject={p} {described}");
        }
        let mut entries = {
            let mut pooled = self.store.acquire().await?;
            query::list(&mut pooled.conn(), &filter).await?
        };
        self.open_entries(&mut entries)?;
        let more = entries.len() == filter.limit as usize;
        let mut entry = self.read_entry(
            caller,
            Outcome::Permit,
            format!(
                "listed {} entries of the disclosure log; filters: {}",
                entries.len(),
                described.trim()
            ),
        );
        entry.subject = filter.subject;
        self.log.append(entry).await.map_err(log_error)?;
        Ok((entries, more))
    }

    /// One entry of the log.
    #[tracing::instrument(skip_all)]
    pub async fn log_entry(&self, caller: &Caller<'_>, seq: u64) -> Result<Entry, Error> {
        self.authorize_compliance(caller, "read one entry").await?;
        let mut found = {
            let mut pooled = self.store.acquire().await?;
            query::get(&mut pooled.conn(), seq).await?
        };
        if let Some(e) = found.as_mut() {
            self.open_entries(std::slice::from_mut(e))?;
        }
        let mut entry = self.read_entry(
            caller,
            Outcome::Permit,
            format!(
                "read entry {seq} of the disclosure log{}",
                if found.is_some() { "" } else { " (not found)" }
            ),
        );
        entry.subject = found.as_ref().and_then(|e| e.data.subject);
        self.log.append(entry).await.map_err(log_error)?;
        found.ok_or_else(|| {
            Error::not_found(
                Code::EntryNotFound,
                format!("the disclosure log has no entry {seq} (it may be past retention)"),
            )
        })
    }

    /// A subject's accounting of disclosures over the last six years.
    #[tracing::instrument(skip_all)]
    pub async fn accounting(
        &self,
        caller: &Caller<'_>,
        id: &SubjectIdentifier,
        format: &str,
    ) -> Result<Accounting, Error> {
        self.authorize_compliance(caller, "subject accounting")
            .await?;
        let pseudonym = self.log.pseudonym(id);
        let now = self.now();
        let from = accounting::period_start(now);
        // A disclosure is logged under its record's first identifier: gather the person's
        // other identifiers (from their records and consents) so the accounting misses none.
        let filter = Filter {
            kinds: vec![EntryKind::Disclosure],
            subject: Some(pseudonym),
            also_subjects: self.linked_pseudonyms(id).await?,
            outcome: Some("permit".into()),
            since_us: Some(from.timestamp_micros()),
            until_us: Some(now.timestamp_micros()),
            ..Filter::default()
        };
        let mut subjects = vec![pseudonym];
        subjects.extend(filter.also_subjects.iter().copied());
        let (mut entries, suspensions) = {
            let mut pooled = self.store.acquire().await?;
            let mut c = pooled.conn();
            let entries = query::list_all_ascending(&mut c, &filter).await?;
            (entries, suspension::list(&mut c, Some(now)).await?)
        };
        self.open_entries(&mut entries)?;
        // HIPAA 164.528(a)(2): disclosures to an agency whose suspension is in force are left
        // out until it ends (they stay in the log).
        let suspended: Vec<Suspension> = suspensions
            .into_iter()
            .filter(|s| s.applies(&subjects, now))
            .collect();
        let before = entries.len();
        entries.retain(|e| {
            !suspended
                .iter()
                .any(|s| e.data.recipient_partner.as_deref() == Some(s.recipient.as_str()))
        });
        let withheld_by_suspension = before - entries.len();
        let policy = self.policy();
        let lines: Vec<AccountingLine> = accounting::summarize(&entries, |id| {
            let id: PartnerId = id.parse().ok()?;
            policy
                .partners
                .get(&id)
                .map(|p| (p.display_name.clone(), p.postal_address.clone()))
        });
        let mut entry = self.read_entry(
            caller,
            Outcome::Permit,
            format!(
                "accounting of disclosures ({format}): {} disclosures in {} lines",
                entries.len(),
                lines.len()
            ),
        );
        entry.subject = Some(pseudonym);
        self.log.append(entry).await.map_err(log_error)?;
        Ok(Accounting {
            subject: pseudonym.to_hex(),
            period: Period {
                from: query::rfc3339(&from),
                to: query::rfc3339(&now),
            },
            disclosures: lines,
            suspended_disclosures: withheld_by_suspension,
        })
    }

    /// Verifies the whole chain, as a compliance officer asked.
    #[tracing::instrument(skip_all)]
    pub async fn verify_log(&self, caller: &Caller<'_>) -> Result<StoreVerification, Error> {
        self.authorize_compliance(caller, "verify the chain")
            .await?;
        let key = self.log.checkpoint_key();
        let report = verify_store_serving(&self.store, key.as_ref()).await?;
        let outcome = match &report.summary.failure {
            None => crate::audit::summary::VERIFIED_OK.to_owned(),
            Some(f) => format!("the chain FAILS at entry {} ({})", f.seq, f.kind.as_str()),
        };
        let mut entry = self.read_entry(
            caller,
            Outcome::Permit,
            format!(
                "{}{} entries): {outcome}",
                crate::audit::summary::VERIFIED_PREFIX,
                report.summary.entries_checked
            ),
        );
        // Its own kind: the overview finds the newest verification by kind, since the detail
        // is sealed.
        entry.kind = EntryKind::LogVerified;
        self.log.append(entry).await.map_err(log_error)?;
        Ok(report)
    }

    /// The signed checkpoints and their public key, for any authenticated partner.
    #[tracing::instrument(skip_all)]
    pub async fn checkpoints(
        &self,
        caller: &Caller<'_>,
    ) -> Result<(VerifyingKey, Vec<Checkpoint>), Error> {
        let Some(key) = self.log.checkpoint_key() else {
            return Err(Error::not_found(
                Code::CheckpointsDisabled,
                "this gateway signs no checkpoints (no `audit.checkpoint_key_file` configured)",
            ));
        };
        let list = stored_checkpoints(&self.store).await?;
        self.log
            .append(self.read_entry(
                caller,
                Outcome::Permit,
                format!("exported {} signed checkpoints", list.len()),
            ))
            .await
            .map_err(log_error)?;
        Ok((key, list))
    }

    /// Records an agency's suspension of the accounting (HIPAA 164.528(a)(2)), with its log
    /// entry in the same transaction.
    #[tracing::instrument(skip_all)]
    pub async fn suspend_accounting(
        &self,
        caller: &Caller<'_>,
        request: SuspensionRequest,
    ) -> Result<Suspension, Error> {
        self.authorize_compliance(caller, "suspend an accounting")
            .await?;
        let who = caller.principal;
        let now = self.now();
        let policy = self.policy();
        let recipient: PartnerId = request
            .recipient
            .parse()
            .map_err(|e| bad_field("recipient", e))?;
        match policy.partner_kind(&recipient) {
            Some(PartnerKind::Police | PartnerKind::Compliance) => {}
            _ => {
                return Err(bad_field(
                    "recipient",
                    "a suspension is requested by a registered law-enforcement or \
                     health-oversight partner",
                ));
            }
        }
        let subject = request.subject.as_ref().map(|id| self.log.pseudonym(id));
        let statement = request.statement.trim();
        if statement.is_empty() || statement.chars().count() > MAX_STATEMENT {
            return Err(bad_field(
                "statement",
                format!(
                    "quote the agency's statement (or its reference) in 1 to {MAX_STATEMENT} \
                     characters"
                ),
            ));
        }
        if request.until <= now {
            return Err(bad_field("until", "the suspension must end in the future"));
        }
        let s = Suspension {
            id: format!("susp-{}", uuid::Uuid::now_v7()),
            recipient: recipient.to_string(),
            subject,
            statement: statement.to_owned(),
            ends_at: request.until,
            recorded_by_partner: who.partner.to_string(),
            recorded_by_user: who.user.to_string(),
            recorded_at: now,
        };
        let mut entry = caller.entry(EntryKind::AccountingSuspended, now, Outcome::Permit);
        entry.subject = subject;
        entry.justification = Some(s.statement.clone());
        entry.detail = Some(format!(
            "suspension {} of the accounting of disclosures to `{recipient}` until {}",
            s.id,
            query::rfc3339(&s.ends_at)
        ));
        let stored = Suspension {
            statement: self.log.seal_field(STATEMENT, &s.id, &s.statement)?,
            ..s.clone()
        };
        let mut tx = self.log.begin().await.map_err(log_error)?;
        suspension::insert(&mut tx.conn(), &stored).await?;
        tx.append(entry).await.map_err(log_error)?;
        tx.commit().await.map_err(log_error)?;
        Ok(s)
    }

    /// The accounting suspensions in force (or, with `all`, every one recorded).
    #[tracing::instrument(skip_all)]
    pub async fn suspensions(
        &self,
        caller: &Caller<'_>,
        all: bool,
    ) -> Result<Vec<Suspension>, Error> {
        self.authorize_compliance(caller, "list accounting suspensions")
            .await?;
        let mut list = {
            let mut pooled = self.store.acquire().await?;
            suspension::list(&mut pooled.conn(), (!all).then(|| self.now())).await?
        };
        for s in &mut list {
            s.statement = self.log.open_field(STATEMENT, &s.id, &s.statement)?;
        }
        self.log
            .append(self.read_entry(
                caller,
                Outcome::Permit,
                format!("listed {} accounting suspension(s)", list.len()),
            ))
            .await
            .map_err(log_error)?;
        Ok(list)
    }
}
