//! Record writes and record history: owners write their records; everyone else reads them only
//! through the read service.
//!
//! A write is checked against the kind's schema (every problem named), runs in one transaction
//! with its `record_changed` log entry (names of the fields changed, never their values), and
//! a write refused for lack of authority is logged before the refusal is answered (CJIS AU-2).

use serde_json::{Value, json};
use tracing::instrument;

use super::read::REFERRAL_KIND;
use super::{Caller, Error, Services, log_error, record_error};
use crate::audit::{self, EntryKind, LogTx, NewEntry, Outcome, SubjectPseudonym};
use crate::domain::Code;
use crate::domain::{Author, MAX_SUBJECT_IDENTIFIERS, RecordId, RecordKind, SubjectIdentifier};
use crate::policy::schema;
use crate::vault::{self, NewRecord, PutOutcome, RecordError, RecordVersionInfo};

/// What a record write did, for the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Kind.
    pub kind: RecordKind,
    /// Id.
    pub id: RecordId,
    /// The vault's report: version, created, changed fields.
    pub outcome: PutOutcome,
}

/// Checks the number of identifiers a record or referral names.
pub fn check_subjects(subjects: &[SubjectIdentifier]) -> Result<(), Error> {
    if subjects.is_empty() || subjects.len() > MAX_SUBJECT_IDENTIFIERS {
        return Err(Error::invalid(
            Code::InvalidSubjects,
            format!(
                "`subjects` must list 1 to {MAX_SUBJECT_IDENTIFIERS} identifiers of the person, \
                 e.g. {{\"system\": \"metro-pd\", \"value\": \"P-2231\"}}"
            ),
        ));
    }
    Ok(())
}

/// The answer for field values that do not fit the kind's schema.
pub fn problems_error(problems: Vec<schema::FieldProblem>) -> Error {
    Error::Invalid {
        code: Code::InvalidFields,
        message: format!(
            "the record does not fit its kind's schema: {}",
            problems
                .iter()
                .map(|p| format!("`{}`: {}", p.field, p.message))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        details: Some(json!({ "fields": problems })),
    }
}

/// A `record_changed` log entry for a write by the caller (the actor is logged as the entry's
/// recipient partner and user, as for every entry that records an act).
pub(super) fn change_entry(
    services: &Services,
    caller: &Caller<'_>,
    outcome: Outcome,
    record: (&RecordKind, &RecordId),
    subject: Option<SubjectPseudonym>,
    detail: String,
) -> NewEntry {
    let mut e = caller.entry(EntryKind::RecordChanged, services.now(), outcome);
    e.record = Some(audit::RecordRef {
        kind: record.0.to_string(),
        id: record.1.to_string(),
    });
    e.subject = subject;
    e.detail = Some(detail);
    e
}

/// Logs a refused write durably, then returns the refusal: refusals of privileged acts are
/// audit events (CJIS AU-2) like denied disclosures.
pub(super) async fn refuse_write(
    services: &Services,
    caller: &Caller<'_>,
    record: (&RecordKind, &RecordId),
    answer: Error,
) -> Error {
    let entry = change_entry(
        services,
        caller,
        Outcome::deny(answer.code().as_str()),
        record,
        None,
        format!("write refused: {}", answer.code()),
    );
    match services.log.append(entry).await {
        Ok(_) => answer,
        Err(e) => log_error(e),
    }
}

/// Appends the write's log entry in the write's transaction and commits both.
pub(super) async fn commit_with_entry(
    mut tx: LogTx,
    entry: NewEntry,
    record: (&RecordKind, &RecordId),
) -> Result<(), Error> {
    tx.append(entry).await.map_err(log_error)?;
    match tx.commit().await {
        Ok(_) => Ok(()),
        Err(audit::LogError::Store(e)) => {
            Err(record_error(vault::write_error(e, record.0, record.1)))
        }
        Err(e) => Err(log_error(e)),
    }
}

/// Describes a successful write for the log (field names only).
pub(super) fn write_detail(what: &str, outcome: &PutOutcome) -> String {
    let mut d = format!(
        "{what}: version {}{}",
        outcome.version,
        if outcome.created { " (created)" } else { "" }
    );
    if outcome.changed_fields.is_empty() && !outcome.subjects_changed {
        d.push_str("; nothing changed");
    } else {
        if !outcome.changed_fields.is_empty() {
            d.push_str(&format!("; fields: {}", outcome.changed_fields.join(", ")));
        }
        if outcome.subjects_changed {
            d.push_str("; subject identifiers changed");
        }
    }
    d
}

/// A write could not be applied: a refusal decided inside the edit, or a vault error.
pub(super) enum WriteError {
    Refused(Error),
    Record(RecordError),
}

impl From<RecordError> for WriteError {
    fn from(e: RecordError) -> Self {
        Self::Record(e)
    }
}

impl From<WriteError> for Error {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Refused(e) => e,
            WriteError::Record(e) => record_error(e),
        }
    }
}

impl Services {
    /// Creates or updates a record owned by the caller's partner: `PUT /v1/records/{kind}/{id}`.
    #[instrument(skip_all, fields(kind = %kind, id = %id))]
    pub async fn put_record(
        &self,
        caller: &Caller<'_>,
        kind: &RecordKind,
        id: &RecordId,
        subjects: Vec<SubjectIdentifier>,
        fields: serde_json::Map<String, Value>,
    ) -> Result<WriteOutcome, Error> {
        check_subjects(&subjects)?;
        let who = caller.principal;
        let policy = self.policy();
        let Some(schema_kind) = policy.kinds.get(kind.as_str()) else {
            return Err(Error::not_found(
                Code::UnknownKind,
                format!("there is no record kind `{kind}`"),
            ));
        };
        if kind.as_str() == REFERRAL_KIND {
            return Err(Error::invalid(
                Code::UseReferralApi,
                "referrals follow a life cycle: create them with `POST /v1/referrals` and move \
                 them with `POST /v1/referrals/{id}/transitions`",
            ));
        }
        if who.partner_kind != schema_kind.owner {
            let answer = Error::forbidden(
                Code::NotOwnerKind,
                format!(
                    "`{kind}` records are held by {} partners; `{}` is a {} partner",
                    schema_kind.owner, who.partner, who.partner_kind
                ),
            );
            return Err(refuse_write(self, caller, (kind, id), answer).await);
        }
        let author = Author::from(who);
        let now = self.now();
        // The record change and its log entry commit together.
        let mut tx = self.log.begin().await.map_err(log_error)?;
        let edited = vault::edit_record(
            &mut tx.conn(),
            &self.keyring,
            kind,
            id,
            &author,
            now,
            |current| -> Result<NewRecord, WriteError> {
                if let Some(c) = &current
                    && c.owner != &who.partner
                {
                    return Err(RecordError::OwnerMismatch {
                        kind: kind.clone(),
                        id: id.clone(),
                    }
                    .into());
                }
                let fields = schema::check_write(
                    schema_kind,
                    who.partner_kind,
                    &fields,
                    current.as_ref().map(|c| c.fields),
                )
                .map_err(|p| WriteError::Refused(problems_error(p)))?;
                Ok(NewRecord {
                    kind: kind.clone(),
                    id: id.clone(),
                    owner: who.partner.clone(),
                    subjects: subjects.clone(),
                    fields,
                })
            },
        )
        .await;
        let outcome = match edited {
            Ok(o) => o,
            Err(WriteError::Record(e @ RecordError::OwnerMismatch { .. })) => {
                drop(tx);
                let answer = record_error(e);
                return Err(refuse_write(self, caller, (kind, id), answer).await);
            }
            Err(e) => return Err(e.into()),
        };
        let subject = subjects.first().map(|s| self.log.pseudonym(s));
        let entry = change_entry(
            self,
            caller,
            Outcome::Permit,
            (kind, id),
            subject,
            write_detail("record written", &outcome),
        );
        commit_with_entry(tx, entry, (kind, id)).await?;
        Ok(WriteOutcome {
            kind: kind.clone(),
            id: id.clone(),
            outcome,
        })
    }

    /// A record's history (who changed which fields, when; no values), for its owner only:
    /// anyone else cannot tell whether the record exists.
    pub async fn record_versions(
        &self,
        caller: &Caller<'_>,
        kind: &RecordKind,
        id: &RecordId,
    ) -> Result<Vec<RecordVersionInfo>, Error> {
        let who = caller.principal;
        let mut pooled = self.store.acquire().await?;
        let mut c = pooled.conn();
        let owner = vault::record_owner(&mut c, kind, id)
            .await
            .map_err(record_error)?;
        if owner.as_ref() != Some(&who.partner) {
            return Err(Error::not_found(
                Code::RecordNotFound,
                format!("`{}` holds no `{kind}` record `{id}`", who.partner),
            ));
        }
        vault::record_history(&mut c, &self.keyring, kind, id)
            .await
            .map_err(record_error)
    }

    /// Writes records without a caller, for the demo data: the same vault path, committed with
    /// a `record_changed` entry naming the seeding partner and user.
    pub async fn seed_record(
        &self,
        author: &Author,
        rec: &NewRecord,
        detail: &str,
    ) -> Result<PutOutcome, Error> {
        let mut done = self
            .seed_records(std::slice::from_ref(&(author.clone(), rec.clone())), detail)
            .await?;
        done.pop()
            .ok_or_else(|| Error::internal("the seed wrote nothing"))
    }

    /// Writes many records (or successive versions of one) in one transaction, each through
    /// the vault like [`Services::seed_record`] and each with its own `record_changed` entry, for
    /// the demo data: one commit for the batch keeps seeding a year of data fast.
    pub async fn seed_records(
        &self,
        writes: &[(Author, NewRecord)],
        detail: &str,
    ) -> Result<Vec<PutOutcome>, Error> {
        let now = self.now();
        let mut tx = self.log.begin().await.map_err(log_error)?;
        let mut out = Vec::with_capacity(writes.len());
        for (author, rec) in writes {
            let outcome = vault::put_record(&mut tx.conn(), &self.keyring, rec, author, now)
                .await
                .map_err(record_error)?;
            let mut entry = NewEntry::new(EntryKind::RecordChanged, now, Outcome::Permit);
            entry.recipient_partner = Some(author.partner.to_string());
            entry.recipient_user = Some(author.user.to_string());
            entry.record = Some(audit::RecordRef {
                kind: rec.kind.to_string(),
                id: rec.id.to_string(),
            });
            entry.subject = rec.subjects.first().map(|s| self.log.pseudonym(s));
            entry.detail = Some(write_detail(detail, &outcome));
            tx.append(entry).await.map_err(log_error)?;
            out.push(outcome);
        }
        match tx.commit().await {
            Ok(_) => Ok(out),
            Err(audit::LogError::Store(e)) => Err(Error::Unavailable(e.into())),
            Err(e) => Err(log_error(e)),
        }
    }

    /// How many records are stored.
    pub async fn record_count(&self) -> Result<i64, Error> {
        let mut pooled = self.store.acquire().await?;
        Ok(crate::store::records::count(&mut pooled.conn()).await?)
    }
}
