//! The emergency-access review queue for compliance officers ([`crate::emergency`]): listing
//! reviews with the stated basis and threat of the access that opened them (a read of the log,
//! itself logged), and closing one with an outcome and a note (an `emergency_reviewed` entry
//! committed with the change).

use serde::Serialize;

use super::{Caller, Error, Services, log_error};
use crate::audit::{EntryKind, LegalBasis, Outcome, SubjectPseudonym, query};
use crate::domain::Code;
use crate::emergency::{self, CloseError, Review, ReviewOutcome};

/// Longest reviewer note, in characters.
pub const MAX_NOTE: usize = 4000;

/// A review with what the access that opened it stated.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewView {
    /// The review.
    #[serde(flatten)]
    pub review: Review,
    /// The stated basis (`actual-knowledge` or `credible-representation ...`).
    pub stated_basis: Option<String>,
    /// The threat as described, or for a 42 CFR 2.51 medical emergency its nature (opened for
    /// compliance officers only).
    pub threat: Option<String>,
    /// For a 42 CFR 2.51 medical emergency, the documentation 2.51(c) asks for: the medical
    /// personnel's name and affiliation, who disclosed, when (opened for compliance officers
    /// only).
    pub medical_emergency: Option<String>,
}

/// Which reviews to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewState {
    /// Open ones.
    Open,
    /// Closed ones.
    Closed,
    /// All.
    All,
}

impl ReviewState {
    fn filter(self) -> Option<&'static str> {
        match self {
            Self::Open => Some("open"),
            Self::Closed => Some("closed"),
            Self::All => None,
        }
    }
}

/// The label a review's note is sealed under (with the review id).
const REVIEW_NOTE: &str = "review-note";

impl Services {
    /// The review (its note opened) with the stated basis and threat of the access that
    /// opened it.
    pub(super) async fn with_access(&self, mut review: Review) -> Result<ReviewView, Error> {
        review.note = review
            .note
            .map(|n| self.log.open_field(REVIEW_NOTE, &review.id, &n))
            .transpose()?;
        let mut first = {
            let mut pooled = self.store.acquire().await?;
            query::get(&mut pooled.conn(), review.first_disclosure).await?
        };
        if let Some(e) = first.as_mut() {
            self.open_entries(std::slice::from_mut(e))?;
        }
        let (stated_basis, medical_emergency, threat) = match first.as_ref().map(|e| &e.data) {
            Some(d) => (
                match &d.basis {
                    Some(LegalBasis::Emergency { stated_basis }) => Some(stated_basis.clone()),
                    _ => None,
                },
                match &d.basis {
                    // The entry's detail holds the whole 2.51(c) documentation.
                    Some(LegalBasis::MedicalEmergency { .. }) => d
                        .detail
                        .as_deref()
                        .and_then(super::read::medical_documentation_in)
                        .map(str::to_owned),
                    _ => None,
                },
                d.justification.clone(),
            ),
            None => (None, None, None),
        };
        Ok(ReviewView {
            review,
            stated_basis,
            threat,
            medical_emergency,
        })
    }

    /// Emergency reviews in `state`, oldest first, at most `limit` (1 to 1000).
    #[tracing::instrument(skip_all)]
    pub async fn reviews(
        &self,
        caller: &Caller<'_>,
        state: ReviewState,
        limit: u32,
    ) -> Result<Vec<ReviewView>, Error> {
        self.authorize_compliance(caller, "list emergency reviews")
            .await?;
        let reviews = {
            let mut pooled = self.store.acquire().await?;
            emergency::list(&mut pooled.conn(), state.filter(), limit.clamp(1, 1000)).await?
        };
        let mut out = Vec::with_capacity(reviews.len());
        for r in reviews {
            out.push(self.with_access(r).await?);
        }
        self.log
            .append(self.read_entry(
                caller,
                Outcome::Permit,
                format!(
                    "listed {} emergency review(s) (state {})",
                    out.len(),
                    state.filter().unwrap_or("all")
                ),
            ))
            .await
            .map_err(log_error)?;
        Ok(out)
    }

    /// Closes an open review with an outcome and a note.
    #[tracing::instrument(skip_all)]
    pub async fn close_review(
        &self,
        caller: &Caller<'_>,
        id: &str,
        outcome: &str,
        note: &str,
    ) -> Result<ReviewView, Error> {
        self.authorize_compliance(caller, "close an emergency review")
            .await?;
        let who = caller.principal;
        let outcome = ReviewOutcome::parse(outcome).ok_or_else(|| {
            Error::invalid_field(
                Code::InvalidOutcome,
                "outcome",
                format!("`outcome` must be `justified` or `not-justified`, not `{outcome}`"),
            )
        })?;
        let note = note.trim();
        if note.is_empty() || note.chars().count() > MAX_NOTE {
            return Err(Error::invalid_field(
                Code::InvalidNote,
                "note",
                format!("`note` must say why, in 1 to {MAX_NOTE} characters"),
            ));
        }
        let now = self.now();
        let sealed_note = self.log.seal_field(REVIEW_NOTE, id, note)?;
        let mut tx = self.log.begin().await.map_err(log_error)?;
        let review = emergency::close(
            &mut tx.conn(),
            id,
            outcome,
            &sealed_note,
            (who.partner.as_str(), who.user.as_str()),
            now,
        )
        .await
        .map_err(|e| match e {
            CloseError::NotFound(_) => Error::not_found(Code::ReviewNotFound, e.to_string()),
            CloseError::Closed(_) => Error::conflict(Code::ReviewClosed, e.to_string()),
            CloseError::Store(e) => Error::Unavailable(e.into()),
        })?;
        let mut entry = self.read_entry(
            caller,
            Outcome::Permit,
            format!(
                "emergency review {} of `{}`/`{}` (first disclosure {}, {} access(es)): {}",
                review.id,
                review.partner,
                review.user,
                review.first_disclosure,
                review.accesses,
                outcome.as_str()
            ),
        );
        entry.kind = EntryKind::EmergencyReviewed;
        entry.at = now;
        entry.justification = Some(note.to_owned());
        entry.subject = SubjectPseudonym::from_hex(&review.subject);
        tx.append(entry).await.map_err(log_error)?;
        tx.commit().await.map_err(log_error)?;
        self.with_access(review).await
    }
}
