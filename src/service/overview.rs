//! The compliance console's overview and review detail, as services: the aggregate behind the
//! overview's charts (disclosures per day by recipient, purpose and outcome; denials;
//! emergency accesses and open reviews; the log's size and its last verification), and one
//! emergency review with the disclosures counted in its window.
//!
//! Security role: like every compliance read, each call is refused (and the refusal logged)
//! unless the caller is a compliance officer of a compliance partner, and each answer is
//! preceded by its durable `log_read` entry. The aggregate names agencies, purposes and counts
//! only: no subject, user, record or field, so it carries no personal data.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::reviews::ReviewView;
use super::{Caller, Error, Services, log_error};
use crate::audit::query::{self, EntryView, Filter};
use crate::audit::summary::{self, DayCount, Extent, LastVerification};
use crate::audit::{Entry, EntryKind, Outcome, SubjectPseudonym};
use crate::domain::Code;
use crate::emergency;

/// The longest period one overview covers, in days.
pub const MAX_PERIOD_DAYS: i64 = 400;

/// The default period of an overview, in days.
pub const DEFAULT_PERIOD_DAYS: i64 = 30;

/// Most disclosures listed with one review.
const MAX_REVIEW_DISCLOSURES: u32 = 500;

/// The aggregate behind the console's overview.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Overview {
    /// The period covered (RFC 3339).
    pub period: super::compliance::Period,
    /// Disclosure entries per UTC day, recipient, purpose, outcome and basis kind.
    pub days: Vec<DayCount>,
    /// Totals over the period.
    pub totals: Totals,
    /// Emergency-access reviews now.
    pub reviews: ReviewCounts,
    /// The stored log's extent.
    pub log: Extent,
    /// The newest chain verification recorded in the log, if any.
    pub last_verification: Option<LastVerification>,
}

/// Totals over an overview's period.
#[derive(Debug, Clone, Copy, Default, Serialize, utoipa::ToSchema)]
pub struct Totals {
    /// Permitted disclosures.
    pub disclosures: u64,
    /// Denied requests.
    pub denials: u64,
    /// Permitted disclosures on an emergency basis (HIPAA 164.512(j)).
    pub emergency_accesses: u64,
}

/// Emergency-access reviews by state.
#[derive(Debug, Clone, Copy, Default, Serialize, utoipa::ToSchema)]
pub struct ReviewCounts {
    /// Open reviews.
    pub open: u64,
    /// Closed reviews.
    pub closed: u64,
}

/// One review and the disclosures counted in its window.
#[derive(Debug, Clone)]
pub struct ReviewDetail {
    /// The review, with the stated basis and threat.
    pub review: ReviewView,
    /// The emergency disclosures of its window, oldest first.
    pub disclosures: Vec<Entry>,
}

impl ReviewDetail {
    /// The disclosures in their JSON form.
    pub fn disclosure_views(&self) -> Vec<EntryView<'_>> {
        self.disclosures.iter().map(EntryView::from).collect()
    }
}

impl Services {
    /// The aggregate behind the overview, over `since` to `until` (default: the last
    /// [`DEFAULT_PERIOD_DAYS`] days to now; at most [`MAX_PERIOD_DAYS`] days).
    #[tracing::instrument(skip_all)]
    pub async fn overview(
        &self,
        caller: &Caller<'_>,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Overview, Error> {
        self.authorize_compliance(caller, "overview").await?;
        let now = self.now();
        let until = until.unwrap_or(now);
        let since = since.unwrap_or(until - Duration::days(DEFAULT_PERIOD_DAYS));
        if since > until {
            return Err(Error::invalid_parameter(
                "until",
                "must not be before `since`",
            ));
        }
        if until - since > Duration::days(MAX_PERIOD_DAYS) {
            return Err(Error::invalid_parameter(
                "since",
                format!("an overview covers at most {MAX_PERIOD_DAYS} days"),
            ));
        }
        let (days, log, last_verification, reviews) = {
            let mut pooled = self.store.acquire().await?;
            let mut c = pooled.conn();
            let days = summary::daily_disclosures(
                &mut c,
                since.timestamp_micros(),
                until.timestamp_micros(),
            )
            .await?;
            let log = summary::extent(&mut c).await?;
            let last = summary::last_verification(&mut c).await?;
            let open = crate::store::reviews::count(&mut c, "open").await?;
            let closed = crate::store::reviews::count(&mut c, "closed").await?;
            (days, log, last, ReviewCounts { open, closed })
        };
        // The verification's detail is sealed: open it as for any compliance read (a text
        // that does not open fails the overview rather than showing a result it cannot read).
        let last_verification = match last_verification {
            Some(mut e) => {
                self.open_entries(std::slice::from_mut(&mut e))?;
                LastVerification::of(&e)
            }
            None => None,
        };
        let mut totals = Totals::default();
        for d in &days {
            match d.outcome.as_str() {
                "permit" => {
                    totals.disclosures += d.count;
                    if d.basis.as_deref() == Some("emergency") {
                        totals.emergency_accesses += d.count;
                    }
                }
                _ => totals.denials += d.count,
            }
        }
        self.log
            .append(self.read_entry(
                caller,
                Outcome::Permit,
                format!(
                    "overview of the disclosure log from {} to {} (counts only)",
                    query::rfc3339(&since),
                    query::rfc3339(&until)
                ),
            ))
            .await
            .map_err(log_error)?;
        Ok(Overview {
            period: super::compliance::Period {
                from: query::rfc3339(&since),
                to: query::rfc3339(&until),
            },
            days,
            totals,
            reviews,
            log,
            last_verification,
        })
    }

    /// One emergency review with the disclosures counted in its window.
    #[tracing::instrument(skip_all)]
    pub async fn review(&self, caller: &Caller<'_>, id: &str) -> Result<ReviewDetail, Error> {
        self.authorize_compliance(caller, "read an emergency review")
            .await?;
        let found = {
            let mut pooled = self.store.acquire().await?;
            emergency::get(&mut pooled.conn(), id).await?
        };
        let Some(review) = found else {
            self.log
                .append(self.read_entry(
                    caller,
                    Outcome::Permit,
                    "read an emergency review (not found)".to_owned(),
                ))
                .await
                .map_err(log_error)?;
            return Err(Error::not_found(
                Code::ReviewNotFound,
                format!("there is no review `{id}`"),
            ));
        };
        let subject = SubjectPseudonym::from_hex(&review.subject);
        let filter = Filter {
            kinds: vec![EntryKind::Disclosure],
            subject,
            recipient: Some(review.partner.clone()),
            user: Some(review.user.clone()),
            basis: Some("emergency".into()),
            outcome: Some("permit".into()),
            since_us: Some(review.opened_at.timestamp_micros()),
            until_us: Some(review.window_until.timestamp_micros()),
            limit: MAX_REVIEW_DISCLOSURES,
            ..Filter::default()
        };
        let mut disclosures = {
            let mut pooled = self.store.acquire().await?;
            query::list(&mut pooled.conn(), &filter).await?
        };
        self.open_entries(&mut disclosures)?;
        // A window over a record that names nobody is keyed by the record, not a pseudonym.
        if subject.is_none() {
            disclosures.retain(|e| e.data.subject.is_none());
        }
        disclosures.reverse();
        let mut entry = self.read_entry(
            caller,
            Outcome::Permit,
            format!(
                "read emergency review {} with {} disclosure(s)",
                review.id,
                disclosures.len()
            ),
        );
        entry.subject = subject;
        self.log.append(entry).await.map_err(log_error)?;
        let review = self.with_access(review).await?;
        Ok(ReviewDetail {
            review,
            disclosures,
        })
    }
}
