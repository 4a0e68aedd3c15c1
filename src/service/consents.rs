//! The consent services: recording, reading, revoking consent directives, and coverage.
//!
//! A consent is shown to the partners listed among its disclosers and to compliance officers
//! (role `compliance` of a compliance partner); to every other caller it does not exist: an
//! unknown id and a consent the caller may not see get the same answer, so no partner learns
//! that a person has a consent on file. Every creation and revocation, and every refused
//! attempt (invalid or incomplete directives, bodies that do not parse, malformed ids or
//! revocations, callers that are not disclosers, repeated revocations), is a `consent_changed`
//! entry; every read is a `consent_read` entry. A change
//! commits in the same transaction as its entry, so if the log cannot be written nothing
//! changes. Entries name consent ids, pseudonyms and problem codes, never identifiers, names or
//! content.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::json;
use tracing::instrument;

use super::{Caller, Error, Services, log_error};
use crate::audit::{EntryKind, LegalBasis, NewEntry, Outcome, SubjectPseudonym};
use crate::consent::coverage::{self, CoverageQuery, CoverageReport};
use crate::consent::directive::{self, ConsentDirective, MAX_LONG_TEXT, Rejection};
use crate::consent::registry::{
    self, ConsentEvent, ConsentStoreError, ReceivedHow, Revocation, StoredConsent,
};
use crate::crypto::CryptoError;
use crate::domain::Code;
use crate::domain::{Author, PartnerId, Purpose, Role, SubjectIdentifier, SubjectRef};
use crate::policy::PolicySet;

/// How far in the future a revocation's `received_at` may be (clock skew).
const RECEIVED_AT_SKEW_SECS: i64 = 300;

/// Maps a registry error to the answer.
pub fn store_error(e: ConsentStoreError) -> Error {
    match e {
        ConsentStoreError::NotFound(id) => not_found(&id),
        ConsentStoreError::AlreadyRevoked { id, at } => Error::Conflict {
            code: Code::ConsentAlreadyRevoked,
            message: format!(
                "consent `{id}` was already revoked at {}; a revocation cannot be repeated",
                at.to_rfc3339()
            ),
            details: Some(json!({ "revoked_at": at })),
        },
        ConsentStoreError::Conflict(id) => Error::conflict(
            Code::ConsentConflict,
            format!("consent `{id}` was changed at the same moment; retry"),
        ),
        e @ (ConsentStoreError::Integrity { .. } | ConsentStoreError::Crypto(_)) => {
            tracing::error!(alert = "consent_integrity", error = %e, "stored consent not used");
            Error::Internal(e.into())
        }
        ConsentStoreError::Key(CryptoError::UnknownMasterVersion(v)) => super::key_unavailable(v),
        e @ (ConsentStoreError::Key(_) | ConsentStoreError::Store(_)) => {
            Error::Unavailable(e.into())
        }
    }
}

impl From<ConsentStoreError> for Error {
    fn from(e: ConsentStoreError) -> Self {
        store_error(e)
    }
}

fn not_found(id: &str) -> Error {
    Error::not_found(
        Code::ConsentNotFound,
        format!("no consent `{id}` is recorded; check the id returned when it was recorded"),
    )
}

/// The answer to a refused directive.
pub fn rejection(r: &Rejection) -> Error {
    let message = r.message();
    match r {
        Rejection::Invalid(problems) => Error::Invalid {
            code: Code::InvalidConsent,
            message,
            details: Some(json!({ "problems": problems })),
        },
        Rejection::Incomplete { part2, missing } => {
            let elements: Vec<_> = missing
                .iter()
                .map(|e| {
                    json!({
                        "element": e.name(),
                        "paragraph": if *part2 { e.paragraph() } else { None },
                        "what": e.what(),
                    })
                })
                .collect();
            Error::Invalid {
                code: Code::ConsentIncomplete,
                message,
                details: Some(json!({
                    "part2": part2,
                    "missing": missing.iter().map(|e| e.name()).collect::<Vec<_>>(),
                    "elements": elements,
                })),
            }
        }
    }
}

/// What the log keeps of a refused directive: the problem codes and fields, or the missing
/// elements; never a value from the directive.
fn rejection_summary(r: &Rejection) -> String {
    match r {
        Rejection::Invalid(problems) => {
            let list: Vec<String> = problems
                .iter()
                .map(|p| format!("{} at {}", p.code, p.field))
                .collect();
            format!("invalid_consent: {}", list.join(", "))
        }
        Rejection::Incomplete { part2, missing } => {
            let list: Vec<&str> = missing.iter().map(|e| e.name()).collect();
            format!(
                "consent_incomplete{}: missing {}",
                if *part2 { " (42 CFR Part 2)" } else { "" },
                list.join(", ")
            )
        }
    }
}

/// A consent id as given in a path: 1 to 128 characters from `A-Z a-z 0-9 - _ .`.
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
            "a consent id is 1 to 128 characters from A-Z, a-z, 0-9, `-`, `_` and `.`; use the \
             id returned when the consent was recorded",
        ))
    }
}

/// A consent as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ConsentView {
    /// Its id.
    pub id: String,
    /// `pending`, `active`, `expired` or `revoked`, at the time of the answer.
    pub status: &'static str,
    /// Whether the consent covers 42 CFR Part 2 information (under the current policy set).
    pub part2: bool,
    /// The partner that recorded it.
    pub collected_by: PartnerId,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// The directive as recorded.
    #[serde(flatten)]
    pub directive: ConsentDirective,
    /// Every event, oldest first.
    pub history: Vec<ConsentEvent>,
    /// Remarks on the scope (e.g. Part 2 fields of the listed kinds it does not cover).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

fn view(
    c: StoredConsent,
    policy: &PolicySet,
    now: DateTime<Utc>,
    notes: Vec<String>,
) -> ConsentView {
    ConsentView {
        status: c.status(now).as_str(),
        part2: directive::covers_part2(&c.directive.scope, policy),
        id: c.id,
        collected_by: c.collected_by,
        created_at: c.created_at,
        revoked_at: c.revoked_at,
        directive: c.directive,
        history: c.history,
        notes,
    }
}

/// A revocation as the partner reports it.
#[derive(Debug, Clone)]
pub struct RevokeRequest {
    /// When the partner received it.
    pub received_at: DateTime<Utc>,
    /// How.
    pub received_how: ReceivedHow,
    /// An optional note (personal data possible: sealed, never logged).
    pub note: Option<String>,
}

fn invalid_revocation(field: &str, message: String) -> Error {
    Error::invalid_field(
        Code::InvalidRevocation,
        field,
        format!("`{field}`: {message}"),
    )
}

/// Checks a revocation request at `now`.
pub fn revocation(body: RevokeRequest, now: DateTime<Utc>) -> Result<Revocation, Error> {
    if body.received_at > now + Duration::seconds(RECEIVED_AT_SKEW_SECS) {
        return Err(invalid_revocation(
            "received_at",
            "is in the future; give the time the revocation was received".into(),
        ));
    }
    let note = body
        .note
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    if let Some(n) = &note {
        if n.chars().count() > MAX_LONG_TEXT {
            return Err(invalid_revocation(
                "note",
                format!("use at most {MAX_LONG_TEXT} characters"),
            ));
        }
        if n.chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
        {
            return Err(invalid_revocation(
                "note",
                "remove control characters (line breaks and tabs are allowed)".into(),
            ));
        }
    }
    Ok(Revocation {
        received_at: body.received_at,
        received_how: body.received_how,
        note,
    })
}

/// What a consent request asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentAction {
    /// `POST /v1/consents`.
    Record,
    /// `POST /v1/consents/{id}/revoke`.
    Revoke,
}

/// A coverage question: which fields would flow to `recipient` for `purpose`.
#[derive(Debug, Clone)]
pub struct CoverageAsk {
    /// The partner that would receive.
    pub recipient: PartnerId,
    /// The purpose of use.
    pub purpose: Purpose,
    /// One role of the recipient (all of its roles when `None`).
    pub role: Option<Role>,
}

impl Services {
    /// A `consent_changed` (or, with `read`, `consent_read`) entry for this caller.
    fn consent_entry(
        &self,
        caller: &Caller<'_>,
        outcome: Outcome,
        consent_id: Option<&str>,
        subjects: &[SubjectPseudonym],
        what: &str,
    ) -> NewEntry {
        let mut e = caller.entry(EntryKind::ConsentChanged, self.now(), outcome);
        e.basis = consent_id.map(|id| LegalBasis::Consent {
            consent_id: id.to_owned(),
        });
        e.subject = subjects.first().copied();
        let mut detail = what.to_owned();
        if subjects.len() > 1 {
            let all: Vec<String> = subjects.iter().map(SubjectPseudonym::to_hex).collect();
            detail.push_str(&format!("; subject pseudonyms: {}", all.join(" ")));
        }
        e.detail = Some(detail);
        e
    }

    fn pseudonyms(&self, subjects: &[SubjectIdentifier]) -> Vec<SubjectPseudonym> {
        subjects.iter().map(|s| self.log.pseudonym(s)).collect()
    }

    /// Whether the caller may see `c`: a partner listed among its disclosers, or a compliance
    /// officer.
    fn may_see(caller: &Caller<'_>, c: &StoredConsent) -> bool {
        caller.is_compliance_officer() || c.directive.disclosers.contains(&caller.principal.partner)
    }

    /// Logs a read of consent directives (`consent_read`) durably before the answer leaves: a
    /// consent reveals, for one, that a person is in treatment.
    async fn log_consent_read(
        &self,
        caller: &Caller<'_>,
        consent_id: Option<&str>,
        subjects: &[SubjectPseudonym],
        what: &str,
    ) -> Result<(), Error> {
        let mut e = self.consent_entry(caller, Outcome::Permit, consent_id, subjects, what);
        e.kind = EntryKind::ConsentRead;
        self.log.append(e).await.map_err(log_error)?;
        Ok(())
    }

    /// Logs a consent request refused before it reached the registry (a body that does not
    /// parse or arrive in time, a malformed consent id or revocation): a `consent_changed` deny
    /// entry naming the action, the error `code` and the `field` at fault, never a value from
    /// the request. Every refused consent attempt leaves its entry.
    #[instrument(skip_all)]
    pub async fn refused_consent_request(
        &self,
        caller: &Caller<'_>,
        action: ConsentAction,
        code: Code,
        field: Option<&str>,
    ) -> Result<(), Error> {
        let what = format!(
            "refused to {} a consent: {code}{}",
            match action {
                ConsentAction::Record => "record",
                ConsentAction::Revoke => "revoke",
            },
            field.map(|f| format!(" at {f}")).unwrap_or_default()
        );
        let entry = self.consent_entry(caller, Outcome::deny(code.as_str()), None, &[], &what);
        self.log.append(entry).await.map_err(log_error)?;
        Ok(())
    }

    /// Records a consent directive: `POST /v1/consents`.
    #[instrument(skip_all)]
    pub async fn create_consent(
        &self,
        caller: &Caller<'_>,
        submitted: ConsentDirective,
    ) -> Result<ConsentView, Error> {
        let who = caller.principal;
        let now = self.now();
        let policy = self.policy();
        let subjects = self.pseudonyms(&submitted.subjects);
        let valid = match directive::validate(&submitted, &policy, now) {
            Ok(v) => v,
            Err(r) => {
                let answer = rejection(&r);
                let entry = self.consent_entry(
                    caller,
                    Outcome::deny(answer.code().as_str()),
                    None,
                    &subjects,
                    &format!("refused to record a consent: {}", rejection_summary(&r)),
                );
                self.log.append(entry).await.map_err(log_error)?;
                return Err(answer);
            }
        };
        if !valid.directive.disclosers.contains(&who.partner) {
            let entry = self.consent_entry(
                caller,
                Outcome::deny(Code::NotADiscloser.as_str()),
                None,
                &subjects,
                "refused to record a consent: the caller's partner is not among its disclosers",
            );
            self.log.append(entry).await.map_err(log_error)?;
            return Err(Error::forbidden(
                Code::NotADiscloser,
                format!(
                    "only a partner listed in the consent's `disclosers` (the partner that \
                     collected it) may record it; `{}` is not listed",
                    who.partner
                ),
            ));
        }
        let id = format!("consent-{}", uuid::Uuid::now_v7());
        let mut tx = self.log.begin().await.map_err(log_error)?;
        let stored = registry::create(
            &mut tx.conn(),
            &self.keyring,
            &id,
            &valid,
            &Author::from(who),
            now,
        )
        .await?;
        let what = format!("consent {id} recorded");
        tx.append(self.consent_entry(caller, Outcome::Permit, Some(&id), &subjects, &what))
            .await
            .map_err(log_error)?;
        tx.commit().await.map_err(log_error)?;
        self.consents.clear();
        tracing::info!(consent = %id, "consent recorded");
        Ok(view(stored, &policy, now, valid.notes))
    }

    /// One consent with its status and history: `GET /v1/consents/{id}`.
    #[instrument(skip_all)]
    pub async fn consent(&self, caller: &Caller<'_>, id: &str) -> Result<ConsentView, Error> {
        check_id(id)?;
        let found = {
            let mut pooled = self.store.acquire().await?;
            registry::get(&mut pooled.conn(), &self.keyring, id).await?
        };
        match found {
            Some(c) if Self::may_see(caller, &c) => {
                let subjects = self.pseudonyms(&c.directive.subjects);
                self.log_consent_read(caller, Some(id), &subjects, "read a consent")
                    .await?;
                Ok(view(c, &self.policy(), self.now(), Vec::new()))
            }
            // Not shown to others, and not said to exist.
            _ => Err(not_found(id)),
        }
    }

    /// Revokes a consent: `POST /v1/consents/{id}/revoke`. Effective at once: every decision
    /// from now on, on every replica, sees it revoked. A caller that is not a discloser gets
    /// the answer an unknown id gets (and the attempt is logged).
    #[instrument(skip_all)]
    pub async fn revoke_consent(
        &self,
        caller: &Caller<'_>,
        id: &str,
        request: RevokeRequest,
    ) -> Result<ConsentView, Error> {
        self.revoke_consent_as_recorded(caller, id, request, None)
            .await
    }

    /// Revokes a consent, as [`Services::revoke_consent`], when the caller restates it whole
    /// (`PUT /fhir/r4/Consent/{id}`): if `recorded` is given and differs from the consent on
    /// record in any field, nothing changes and the answer is 400 `consent_not_editable`
    /// naming the fields (a recorded consent is revoked, never edited), logged like every
    /// refused revocation.
    #[instrument(skip_all)]
    pub async fn revoke_consent_as_recorded(
        &self,
        caller: &Caller<'_>,
        id: &str,
        request: RevokeRequest,
        recorded: Option<&ConsentDirective>,
    ) -> Result<ConsentView, Error> {
        let who = caller.principal;
        let now = self.now();
        // Checked before the consent is looked up: the answer to a bad request is the same
        // whether the consent exists or not. Refused here, the attempt is still logged.
        let revocation = match check_id(id).and_then(|()| revocation(request, now)) {
            Ok(r) => r,
            Err(e) => {
                let field = match &e {
                    Error::Invalid {
                        details: Some(d), ..
                    } => d.get("field").and_then(|f| f.as_str()),
                    _ => None,
                };
                self.refused_consent_request(caller, ConsentAction::Revoke, e.code(), field)
                    .await?;
                return Err(e);
            }
        };
        let mut tx = self.log.begin().await.map_err(log_error)?;
        let stored = registry::get(&mut tx.conn(), &self.keyring, id).await?;
        let Some(stored) = stored.filter(|c| c.directive.disclosers.contains(&who.partner)) else {
            // Unknown, or not this partner's to revoke: the same answer, so that the caller
            // does not learn that the consent exists. The attempt is logged either way.
            let entry = self.consent_entry(
                caller,
                Outcome::deny(Code::ConsentNotFound.as_str()),
                None,
                &[],
                "refused to revoke a consent: no such consent, or the caller's partner is not \
                 a discloser",
            );
            tx.append(entry).await.map_err(log_error)?;
            tx.commit().await.map_err(log_error)?;
            return Err(not_found(id));
        };
        let subjects = self.pseudonyms(&stored.directive.subjects);
        if let Some(asked) = recorded {
            let differ = directive::differences(&stored.directive, asked);
            if !differ.is_empty() {
                let entry = self.consent_entry(
                    caller,
                    Outcome::deny(Code::ConsentNotEditable.as_str()),
                    Some(id),
                    &subjects,
                    &format!(
                        "refused to revoke consent {id}: the request changes {}",
                        differ.join(", ")
                    ),
                );
                drop(tx);
                self.log.append(entry).await.map_err(log_error)?;
                return Err(Error::Invalid {
                    code: Code::ConsentNotEditable,
                    message: format!(
                        "a recorded consent is revoked, never edited: the request differs from \
                         consent `{id}` in {}; send it as recorded with only its status changed, \
                         or record a new consent",
                        differ.join(", ")
                    ),
                    details: Some(json!({ "fields": differ })),
                });
            }
        }
        match registry::revoke(
            &mut tx.conn(),
            &self.keyring,
            &stored,
            &revocation,
            &Author::from(who),
            now,
        )
        .await
        {
            Err(e @ ConsentStoreError::AlreadyRevoked { .. }) => {
                let entry = self.consent_entry(
                    caller,
                    Outcome::deny(Code::ConsentAlreadyRevoked.as_str()),
                    Some(id),
                    &subjects,
                    &format!("refused to revoke consent {id}: already revoked"),
                );
                // The failed revocation changed nothing; roll it back, then log the refusal.
                drop(tx);
                self.log.append(entry).await.map_err(log_error)?;
                Err(e.into())
            }
            Err(e) => Err(e.into()),
            Ok(revoked) => {
                let entry = self.consent_entry(
                    caller,
                    Outcome::Permit,
                    Some(id),
                    &subjects,
                    &format!("consent {id} revoked"),
                );
                tx.append(entry).await.map_err(log_error)?;
                tx.commit().await.map_err(log_error)?;
                self.consents.clear();
                tracing::info!(consent = %id, "consent revoked");
                Ok(view(revoked, &self.policy(), now, Vec::new()))
            }
        }
    }

    /// The subject's consents the caller may see, and the subject's pseudonym.
    async fn visible_consents(
        &self,
        caller: &Caller<'_>,
        subject: &SubjectIdentifier,
    ) -> Result<(Vec<StoredConsent>, SubjectPseudonym), Error> {
        let all = {
            let mut pooled = self.store.acquire().await?;
            registry::find(
                &mut pooled.conn(),
                &self.keyring,
                std::slice::from_ref(subject),
            )
            .await?
        };
        let visible = all
            .into_iter()
            .filter(|c| Self::may_see(caller, c))
            .collect();
        Ok((visible, self.log.pseudonym(subject)))
    }

    /// A subject's consents with status and history: `GET /v1/subjects/{s}/{v}/consents`.
    #[instrument(skip_all)]
    pub async fn subject_consents(
        &self,
        caller: &Caller<'_>,
        subject: &SubjectIdentifier,
    ) -> Result<(SubjectPseudonym, Vec<ConsentView>), Error> {
        let (consents, pseudonym) = self.visible_consents(caller, subject).await?;
        let what = format!("listed {} consent(s) of a subject", consents.len());
        self.log_consent_read(caller, None, &[pseudonym], &what)
            .await?;
        let policy = self.policy();
        let now = self.now();
        Ok((
            pseudonym,
            consents
                .into_iter()
                .map(|c| view(c, &policy, now, Vec::new()))
                .collect(),
        ))
    }

    /// Which fields of each record kind would flow to a recipient for a purpose, and why:
    /// `GET /v1/subjects/{s}/{v}/coverage`. A partner sees what it would disclose itself; a
    /// compliance officer sees every holder.
    #[instrument(skip_all)]
    pub async fn coverage(
        &self,
        caller: &Caller<'_>,
        subject: &SubjectIdentifier,
        ask: &CoverageAsk,
    ) -> Result<CoverageReport, Error> {
        let (consents, pseudonym) = self.visible_consents(caller, subject).await?;
        let subject_ref: SubjectRef = pseudonym
            .to_hex()
            .parse()
            .map_err(|e: crate::domain::IdError| Error::Internal(e.into()))?;
        let policy = self.policy();
        let holder = (!caller.is_compliance_officer()).then_some(&caller.principal.partner);
        // The subject's restrictions and court orders count too; a partner sees those that
        // govern its own disclosures (it is their discloser), a compliance officer all.
        let mut directives = {
            let mut pooled = self.store.acquire().await?;
            crate::consent::directive_cache::load(
                &mut pooled.conn(),
                &self.keyring,
                std::slice::from_ref(subject),
                &subject_ref,
            )
            .await
            .map_err(super::directives::store_error)?
        };
        if let Some(h) = holder {
            directives.restrictions.retain(|r| &r.discloser == h);
            directives.court_orders.retain(|o| o.disclosers.contains(h));
        }
        let report = coverage::compute_with(
            &policy,
            &consents,
            &directives,
            &subject_ref,
            &CoverageQuery {
                recipient: &ask.recipient,
                purpose: &ask.purpose,
                role: ask.role.as_ref(),
                holder,
                at: self.now(),
            },
        )
        .map_err(|e| Error::invalid_parameter(e.parameter, &e.message))?;
        let what = format!(
            "coverage for `{}` and purpose `{}` ({} consent(s) considered)",
            ask.recipient,
            ask.purpose,
            consents.len()
        );
        self.log_consent_read(caller, None, &[pseudonym], &what)
            .await?;
        Ok(report)
    }

    /// Records a consent without a caller, for the demo data: validated like any directive,
    /// committed with its `consent_changed` entry naming the seeding partner and user.
    pub async fn seed_consent(
        &self,
        author: &Author,
        submitted: &ConsentDirective,
        id: &str,
    ) -> Result<StoredConsent, Error> {
        let now = self.now();
        let policy = self.policy();
        let valid = directive::validate(submitted, &policy, now).map_err(|r| rejection(&r))?;
        let subjects = self.pseudonyms(&valid.directive.subjects);
        let mut tx = self.log.begin().await.map_err(log_error)?;
        let stored =
            registry::create(&mut tx.conn(), &self.keyring, id, &valid, author, now).await?;
        let mut e = NewEntry::new(EntryKind::ConsentChanged, now, Outcome::Permit);
        e.recipient_partner = Some(author.partner.to_string());
        e.recipient_user = Some(author.user.to_string());
        e.basis = Some(LegalBasis::Consent {
            consent_id: id.to_owned(),
        });
        e.subject = subjects.first().copied();
        e.detail = Some(format!("consent {id} recorded (demo data)"));
        tx.append(e).await.map_err(log_error)?;
        tx.commit().await.map_err(log_error)?;
        self.consents.clear();
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consent_ids_are_checked() {
        assert!(check_id("consent-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").is_ok());
        assert!(check_id("").is_err());
        assert!(check_id("a/b").is_err());
        assert!(check_id(&"a".repeat(129)).is_err());
    }

    #[test]
    fn revocations_are_checked() {
        let now: DateTime<Utc> = "2026-03-01T12:00:00Z".parse().unwrap();
        let body = |received_at: &str, note: Option<&str>| RevokeRequest {
            received_at: received_at.parse().unwrap(),
            received_how: ReceivedHow::Written,
            note: note.map(str::to_owned),
        };
        assert!(revocation(body("2026-03-01T11:00:00Z", None), now).is_ok());
        assert_eq!(
            revocation(body("2026-03-02T11:00:00Z", None), now)
                .unwrap_err()
                .code(),
            Code::InvalidRevocation
        );
        assert!(revocation(body("2026-03-01T11:00:00Z", Some("a\u{7}b")), now).is_err());
        let r = revocation(body("2026-03-01T11:00:00Z", Some("  ")), now).unwrap();
        assert_eq!(r.note, None);
    }
}
