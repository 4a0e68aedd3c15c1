//! The services for agreed restrictions (HIPAA 164.522(a), 42 CFR 2.26) and court orders
//! (42 CFR 2.64, 2.65): recording, reading and ending them.
//!
//! - A **restriction** is recorded by the agency that agreed to it with the person (any user of
//!   a partner that holds records; the partner becomes the restricted discloser) and
//!   terminated by it (164.522(a)(2)). It is shown to that partner and to compliance officers;
//!   to anyone else it does not exist (404), so no partner learns that a person asked for one.
//! - A **court order** is recorded, read and ended by compliance officers only.
//!
//! Every change, and every refused attempt, is a `restriction_changed` or `court_order_changed`
//! entry committed in the same transaction as the change (if the log cannot be written nothing
//! changes); every read is a `directive_read` entry. Entries name ids, pseudonyms, partners,
//! purposes, field names and problem codes, never an identifier, a court, a docket number or a
//! free-text reason. Each change moves the consent epoch, so the very next decision on every
//! replica sees it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use tracing::instrument;

use super::{Caller, Error, Services, log_error};
use crate::audit::{EntryKind, LegalBasis, NewEntry, Outcome, SubjectPseudonym};
use crate::consent::directive::{MAX_LONG_TEXT, Problem};
use crate::consent::directives::{
    self, DirectiveBody, DirectiveEnd, DirectiveStoreError, StoredDirective,
};
use crate::consent::orders::{self, CourtOrderRecord, CourtOrderRequest};
use crate::consent::restrictions::{self, RestrictionRecord, RestrictionRequest};
use crate::domain::Code;
use crate::domain::{Author, SubjectIdentifier};

/// Maps a registry error to the answer.
pub fn store_error(e: DirectiveStoreError) -> Error {
    match e {
        DirectiveStoreError::NotFound { what, id } => no_such(what, &id),
        DirectiveStoreError::AlreadyEnded { what, id, at } => Error::Conflict {
            code: if what == "court order" {
                Code::CourtOrderEnded
            } else {
                Code::RestrictionEnded
            },
            message: format!(
                "{what} `{id}` already ended at {}; it cannot be ended again",
                at.to_rfc3339()
            ),
            details: Some(json!({ "ended_at": at })),
        },
        DirectiveStoreError::Conflict(id) => Error::conflict(
            Code::DirectiveConflict,
            format!("`{id}` was changed at the same moment; retry"),
        ),
        e @ (DirectiveStoreError::Integrity { .. } | DirectiveStoreError::Crypto(_)) => {
            tracing::error!(alert = "directive_integrity", error = %e, "stored directive not used");
            Error::Internal(e.into())
        }
        e @ (DirectiveStoreError::Key(_) | DirectiveStoreError::Store(_)) => {
            Error::Unavailable(e.into())
        }
    }
}

impl From<DirectiveStoreError> for Error {
    fn from(e: DirectiveStoreError) -> Self {
        store_error(e)
    }
}

fn no_such(what: &str, id: &str) -> Error {
    if what == "court order" {
        Error::not_found(
            Code::CourtOrderNotFound,
            format!(
                "no court order `{id}` is recorded; check the id returned when it was recorded"
            ),
        )
    } else {
        Error::not_found(
            Code::RestrictionNotFound,
            format!(
                "no restriction `{id}` is recorded; check the id returned when it was recorded"
            ),
        )
    }
}

fn invalid(code: Code, what: &str, problems: &[Problem]) -> Error {
    let list: Vec<String> = problems.iter().map(|p| p.message.clone()).collect();
    Error::Invalid {
        code,
        message: format!("the {what} is refused: {}", list.join("; ")),
        details: Some(json!({ "problems": problems })),
    }
}

fn problem_codes(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("{} at {}", p.code, p.field))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks a restriction or court-order id given in a path.
pub fn check_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            Code::InvalidPath,
            "an id is 1 to 128 characters from `A-Z a-z 0-9 - _ .`",
        ))
    }
}

/// A restriction or court order as answered.
#[derive(Debug, Clone, Serialize)]
pub struct DirectiveView<T> {
    /// Its id.
    pub id: String,
    /// `pending`, `active`, `expired` or `ended`.
    pub status: &'static str,
    /// The partner that recorded it.
    pub recorded_by: String,
    /// The user that recorded it.
    pub recorded_by_user: String,
    /// When.
    pub recorded_at: DateTime<Utc>,
    /// How it ended, if it was ended before its time.
    pub ended: Option<DirectiveEnd>,
    /// The directive.
    #[serde(flatten)]
    pub record: T,
}

fn view<T: DirectiveBody>(d: StoredDirective<T>, now: DateTime<Utc>) -> DirectiveView<T> {
    DirectiveView {
        status: d.status(now),
        id: d.id,
        recorded_by: d.recorded_by.to_string(),
        recorded_by_user: d.recorded_by_user,
        recorded_at: d.recorded_at,
        ended: d.ended,
        record: d.record,
    }
}

/// Why a directive is ended (`POST .../terminate`, `POST .../end`).
#[derive(Debug, Clone)]
pub struct EndRequest {
    /// The reason, as documented (sealed; never logged).
    pub reason: String,
}

impl Services {
    fn directive_entry(
        &self,
        caller: &Caller<'_>,
        kind: EntryKind,
        outcome: Outcome,
        subjects: &[SubjectPseudonym],
        detail: String,
    ) -> NewEntry {
        let mut e = caller.entry(kind, self.now(), outcome);
        e.subject = subjects.first().copied();
        e.detail = Some(detail);
        e
    }

    async fn log_refusal(
        &self,
        caller: &Caller<'_>,
        kind: EntryKind,
        code: Code,
        subjects: &[SubjectPseudonym],
        detail: String,
    ) -> Result<(), Error> {
        let e = self.directive_entry(caller, kind, Outcome::deny(code.as_str()), subjects, detail);
        self.log.append(e).await.map_err(log_error)?;
        Ok(())
    }

    async fn log_directive_read(
        &self,
        caller: &Caller<'_>,
        subjects: &[SubjectPseudonym],
        detail: String,
    ) -> Result<(), Error> {
        let e = self.directive_entry(
            caller,
            EntryKind::DirectiveRead,
            Outcome::Permit,
            subjects,
            detail,
        );
        self.log.append(e).await.map_err(log_error)?;
        Ok(())
    }

    fn subject_pseudonyms(&self, subjects: &[SubjectIdentifier]) -> Vec<SubjectPseudonym> {
        subjects.iter().map(|s| self.log.pseudonym(s)).collect()
    }

    /// Records a restriction the caller's agency agreed to: `POST /v1/restrictions`.
    #[instrument(skip_all)]
    pub async fn create_restriction(
        &self,
        caller: &Caller<'_>,
        request: RestrictionRequest,
    ) -> Result<DirectiveView<RestrictionRecord>, Error> {
        let who = caller.principal;
        let now = self.now();
        let policy = self.policy();
        let subjects = self.subject_pseudonyms(&request.subjects);
        let holds_records = policy.kinds.values().any(|k| k.owner == who.partner_kind);
        if !holds_records {
            self.log_refusal(
                caller,
                EntryKind::RestrictionChanged,
                Code::NotAHolder,
                &subjects,
                "refused: a restriction by a partner that holds no records".into(),
            )
            .await?;
            return Err(Error::forbidden(
                Code::NotAHolder,
                format!(
                    "a restriction is recorded by the agency that agreed to it and discloses the \
                     records it covers; `{}` holds no records",
                    who.partner
                ),
            ));
        }
        let record = match restrictions::validate(&request, &who.partner, &policy, now) {
            Ok(r) => r,
            Err(problems) => {
                self.log_refusal(
                    caller,
                    EntryKind::RestrictionChanged,
                    Code::InvalidRestriction,
                    &subjects,
                    format!("refused restriction: {}", problem_codes(&problems)),
                )
                .await?;
                return Err(invalid(Code::InvalidRestriction, "restriction", &problems));
            }
        };
        let id = format!("restr-{}", uuid::Uuid::now_v7());
        let author = Author {
            partner: who.partner.clone(),
            user: who.user.clone(),
        };
        let list = |v: Vec<String>| {
            if v.is_empty() {
                "all".to_owned()
            } else {
                v.join(", ")
            }
        };
        let detail = format!(
            "restriction {id} recorded by `{}` (HIPAA 164.522(a), 42 CFR 2.26): recipients {}; \
             purposes {}; kinds {}; categories {}; fields {}; until {}",
            who.partner,
            list(record.recipients.iter().map(ToString::to_string).collect()),
            list(record.purposes.iter().map(ToString::to_string).collect()),
            list(record.scope.kinds.iter().cloned().collect()),
            list(
                record
                    .scope
                    .categories
                    .iter()
                    .map(ToString::to_string)
                    .collect()
            ),
            list(record.scope.fields.iter().cloned().collect()),
            record
                .until
                .map_or_else(|| "terminated".to_owned(), |u| u.to_rfc3339()),
        );
        let mut tx = self.log.begin().await.map_err(log_error)?;
        let stored =
            directives::create(&mut tx.conn(), &self.keyring, &id, &record, &author, now).await?;
        let e = self.directive_entry(
            caller,
            EntryKind::RestrictionChanged,
            Outcome::Permit,
            &subjects,
            detail,
        );
        tx.append(e).await.map_err(log_error)?;
        tx.commit().await.map_err(log_error)?;
        self.directives.clear();
        Ok(view(stored, now))
    }

    /// Reads a restriction the caller may see (its discloser, or a compliance officer).
    async fn visible_restriction(
        &self,
        caller: &Caller<'_>,
        id: &str,
    ) -> Result<Option<StoredDirective<RestrictionRecord>>, Error> {
        let found = {
            let mut pooled = self.store.acquire().await?;
            directives::get::<RestrictionRecord>(&mut pooled.conn(), &self.keyring, id).await?
        };
        Ok(found.filter(|r| {
            caller.is_compliance_officer() || r.record.discloser == caller.principal.partner
        }))
    }

    /// One restriction: `GET /v1/restrictions/{id}`.
    #[instrument(skip_all)]
    pub async fn restriction(
        &self,
        caller: &Caller<'_>,
        id: &str,
    ) -> Result<DirectiveView<RestrictionRecord>, Error> {
        check_id(id)?;
        let Some(r) = self.visible_restriction(caller, id).await? else {
            self.log_refusal(
                caller,
                EntryKind::DirectiveRead,
                Code::RestrictionNotFound,
                &[],
                format!("read of restriction {id}: not found or not visible"),
            )
            .await?;
            return Err(no_such("restriction", id));
        };
        let subjects = self.subject_pseudonyms(&r.record.subjects);
        self.log_directive_read(caller, &subjects, format!("read restriction {id}"))
            .await?;
        Ok(view(r, self.now()))
    }

    /// Terminates a restriction (HIPAA 164.522(a)(2)): `POST /v1/restrictions/{id}/terminate`,
    /// by its discloser only. It stops counting from now on.
    #[instrument(skip_all)]
    pub async fn terminate_restriction(
        &self,
        caller: &Caller<'_>,
        id: &str,
        request: EndRequest,
    ) -> Result<DirectiveView<RestrictionRecord>, Error> {
        check_id(id)?;
        let reason = checked_reason(&request.reason)?;
        let who = caller.principal;
        let now = self.now();
        let mut tx = self.log.begin().await.map_err(log_error)?;
        let found = directives::get::<RestrictionRecord>(&mut tx.conn(), &self.keyring, id).await?;
        let Some(r) = found.filter(|r| r.record.discloser == who.partner) else {
            drop(tx);
            self.log_refusal(
                caller,
                EntryKind::RestrictionChanged,
                Code::RestrictionNotFound,
                &[],
                format!("refused termination of restriction {id}: not found, or not its discloser"),
            )
            .await?;
            return Err(no_such("restriction", id));
        };
        let subjects = self.subject_pseudonyms(&r.record.subjects);
        let author = Author {
            partner: who.partner.clone(),
            user: who.user.clone(),
        };
        let ended =
            match directives::end(&mut tx.conn(), &self.keyring, &r, reason, &author, now).await {
                Ok(e) => e,
                Err(e @ DirectiveStoreError::AlreadyEnded { .. }) => {
                    drop(tx);
                    let answer = store_error(e);
                    self.log_refusal(
                        caller,
                        EntryKind::RestrictionChanged,
                        Code::RestrictionEnded,
                        &subjects,
                        format!("refused termination of restriction {id}: already ended"),
                    )
                    .await?;
                    return Err(answer);
                }
                Err(e) => return Err(e.into()),
            };
        let e = self.directive_entry(
            caller,
            EntryKind::RestrictionChanged,
            Outcome::Permit,
            &subjects,
            format!(
                "restriction {id} terminated by `{}` (HIPAA 164.522(a)(2))",
                who.partner
            ),
        );
        tx.append(e).await.map_err(log_error)?;
        tx.commit().await.map_err(log_error)?;
        self.directives.clear();
        Ok(view(ended, now))
    }

    /// The restrictions of a subject the caller may see: `GET
    /// /v1/subjects/{system}/{value}/restrictions`.
    #[instrument(skip_all)]
    pub async fn subject_restrictions(
        &self,
        caller: &Caller<'_>,
        subject: &SubjectIdentifier,
    ) -> Result<(SubjectPseudonym, Vec<DirectiveView<RestrictionRecord>>), Error> {
        let pseudonym = self.log.pseudonym(subject);
        let all = {
            let mut pooled = self.store.acquire().await?;
            directives::find::<RestrictionRecord>(
                &mut pooled.conn(),
                &self.keyring,
                std::slice::from_ref(subject),
            )
            .await?
        };
        let visible: Vec<_> = all
            .into_iter()
            .filter(|r| {
                caller.is_compliance_officer() || r.record.discloser == caller.principal.partner
            })
            .collect();
        self.log_directive_read(
            caller,
            &[pseudonym],
            format!("listed {} restriction(s) of a subject", visible.len()),
        )
        .await?;
        let now = self.now();
        Ok((
            pseudonym,
            visible.into_iter().map(|r| view(r, now)).collect(),
        ))
    }

    /// Refuses (and logs) anyone but a compliance officer, for court orders.
    async fn court_orders_officer(&self, caller: &Caller<'_>, what: &str) -> Result<(), Error> {
        if caller.is_compliance_officer() {
            return Ok(());
        }
        self.log_refusal(
            caller,
            EntryKind::CourtOrderChanged,
            Code::ComplianceRoleRequired,
            &[],
            format!("refused: {what}"),
        )
        .await?;
        Err(Error::forbidden(
            Code::ComplianceRoleRequired,
            format!(
                "court orders are recorded and read by compliance officers (role `{}` of a \
                 compliance partner); `{}` is a {} partner",
                super::COMPLIANCE_ROLE,
                caller.principal.partner,
                caller.principal.partner_kind
            ),
        ))
    }

    /// Records a court order: `POST /v1/court-orders`.
    #[instrument(skip_all)]
    pub async fn create_court_order(
        &self,
        caller: &Caller<'_>,
        request: CourtOrderRequest,
    ) -> Result<DirectiveView<CourtOrderRecord>, Error> {
        self.court_orders_officer(caller, "record a court order")
            .await?;
        let now = self.now();
        let policy = self.policy();
        let subjects = self.subject_pseudonyms(&request.subjects);
        let record = match orders::validate(&request, &policy, now) {
            Ok(r) => r,
            Err(problems) => {
                self.log_refusal(
                    caller,
                    EntryKind::CourtOrderChanged,
                    Code::InvalidCourtOrder,
                    &subjects,
                    format!("refused court order: {}", problem_codes(&problems)),
                )
                .await?;
                return Err(invalid(Code::InvalidCourtOrder, "court order", &problems));
            }
        };
        let id = format!("co-{}", uuid::Uuid::now_v7());
        let who = caller.principal;
        let author = Author {
            partner: who.partner.clone(),
            user: who.user.clone(),
        };
        let mut e = self.directive_entry(
            caller,
            EntryKind::CourtOrderChanged,
            Outcome::Permit,
            &subjects,
            format!(
                "court order {id} recorded ({}): disclosers {}; recipient `{}`; purposes {}; \
                 fields {}; from {} until {}",
                record.section.citation(),
                record
                    .disclosers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                record.recipient,
                record
                    .purposes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                record.fields.iter().cloned().collect::<Vec<_>>().join(", "),
                record.valid_from.to_rfc3339(),
                record.until.to_rfc3339(),
            ),
        );
        e.basis = Some(LegalBasis::CourtOrder {
            order_id: id.clone(),
        });
        let mut tx = self.log.begin().await.map_err(log_error)?;
        let stored =
            directives::create(&mut tx.conn(), &self.keyring, &id, &record, &author, now).await?;
        tx.append(e).await.map_err(log_error)?;
        tx.commit().await.map_err(log_error)?;
        self.directives.clear();
        Ok(view(stored, now))
    }

    /// Court orders in force (or, with `all`, every one recorded): `GET /v1/court-orders`.
    #[instrument(skip_all)]
    pub async fn court_orders(
        &self,
        caller: &Caller<'_>,
        all: bool,
    ) -> Result<Vec<DirectiveView<CourtOrderRecord>>, Error> {
        self.court_orders_officer(caller, "list court orders")
            .await?;
        let now = self.now();
        let list = {
            let mut pooled = self.store.acquire().await?;
            directives::list::<CourtOrderRecord>(&mut pooled.conn(), &self.keyring).await?
        };
        let list: Vec<_> = list
            .into_iter()
            .filter(|o| all || o.status(now) == "active" || o.status(now) == "pending")
            .collect();
        self.log_directive_read(caller, &[], format!("listed {} court order(s)", list.len()))
            .await?;
        Ok(list.into_iter().map(|o| view(o, now)).collect())
    }

    /// One court order: `GET /v1/court-orders/{id}`.
    #[instrument(skip_all)]
    pub async fn court_order(
        &self,
        caller: &Caller<'_>,
        id: &str,
    ) -> Result<DirectiveView<CourtOrderRecord>, Error> {
        check_id(id)?;
        self.court_orders_officer(caller, "read a court order")
            .await?;
        let found = {
            let mut pooled = self.store.acquire().await?;
            directives::get::<CourtOrderRecord>(&mut pooled.conn(), &self.keyring, id).await?
        };
        let Some(o) = found else {
            self.log_directive_read(caller, &[], format!("read of court order {id}: not found"))
                .await?;
            return Err(no_such("court order", id));
        };
        let subjects = self.subject_pseudonyms(&o.record.subjects);
        self.log_directive_read(caller, &subjects, format!("read court order {id}"))
            .await?;
        Ok(view(o, self.now()))
    }

    /// Ends a court order (vacated, withdrawn): `POST /v1/court-orders/{id}/end`.
    #[instrument(skip_all)]
    pub async fn end_court_order(
        &self,
        caller: &Caller<'_>,
        id: &str,
        request: EndRequest,
    ) -> Result<DirectiveView<CourtOrderRecord>, Error> {
        check_id(id)?;
        self.court_orders_officer(caller, "end a court order")
            .await?;
        let reason = checked_reason(&request.reason)?;
        let now = self.now();
        let who = caller.principal;
        let mut tx = self.log.begin().await.map_err(log_error)?;
        let Some(o) =
            directives::get::<CourtOrderRecord>(&mut tx.conn(), &self.keyring, id).await?
        else {
            drop(tx);
            self.log_refusal(
                caller,
                EntryKind::CourtOrderChanged,
                Code::CourtOrderNotFound,
                &[],
                format!("refused end of court order {id}: not found"),
            )
            .await?;
            return Err(no_such("court order", id));
        };
        let subjects = self.subject_pseudonyms(&o.record.subjects);
        let author = Author {
            partner: who.partner.clone(),
            user: who.user.clone(),
        };
        let ended =
            match directives::end(&mut tx.conn(), &self.keyring, &o, reason, &author, now).await {
                Ok(e) => e,
                Err(e @ DirectiveStoreError::AlreadyEnded { .. }) => {
                    drop(tx);
                    let answer = store_error(e);
                    self.log_refusal(
                        caller,
                        EntryKind::CourtOrderChanged,
                        Code::CourtOrderEnded,
                        &subjects,
                        format!("refused end of court order {id}: already ended"),
                    )
                    .await?;
                    return Err(answer);
                }
                Err(e) => return Err(e.into()),
            };
        let mut e = self.directive_entry(
            caller,
            EntryKind::CourtOrderChanged,
            Outcome::Permit,
            &subjects,
            format!("court order {id} ended"),
        );
        e.basis = Some(LegalBasis::CourtOrder {
            order_id: id.to_owned(),
        });
        tx.append(e).await.map_err(log_error)?;
        tx.commit().await.map_err(log_error)?;
        self.directives.clear();
        Ok(view(ended, now))
    }
}

fn checked_reason(reason: &str) -> Result<&str, Error> {
    let r = reason.trim();
    if r.is_empty() || r.chars().count() > MAX_LONG_TEXT || r.chars().any(char::is_control) {
        return Err(Error::invalid_field(
            Code::InvalidEnd,
            "reason",
            format!(
                "`reason`: say why it ends, 1 to {MAX_LONG_TEXT} characters without control \
                 characters"
            ),
        ));
    }
    Ok(r)
}
