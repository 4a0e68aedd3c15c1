//! Suspensions of the accounting of disclosures (HIPAA 164.528(a)(2)).
//!
//! A law-enforcement or health-oversight agency may state in writing that giving an individual
//! an accounting of disclosures to it would be reasonably likely to impede its activities, and
//! for how long. For that time the accounting leaves out the disclosures to that agency (for one
//! subject, or for every subject); when the time ends they appear again. The disclosures stay
//! in the log all along: a suspension changes what the accounting shows, never the log.

use super::{LogError, SubjectPseudonym};
use crate::store::Conn;
use crate::store::suspensions::{self, SuspensionRow};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One recorded suspension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suspension {
    /// Its id.
    pub id: String,
    /// The agency (partner id) whose disclosures are left out.
    pub recipient: String,
    /// The subject it applies to (`None`: every subject).
    #[serde(serialize_with = "hex_opt")]
    pub subject: Option<SubjectPseudonym>,
    /// The agency's statement, or a reference to it.
    pub statement: String,
    /// When the suspension ends.
    pub ends_at: DateTime<Utc>,
    /// Who recorded it (partner).
    pub recorded_by_partner: String,
    /// Who recorded it (user).
    pub recorded_by_user: String,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}

fn hex_opt<S: serde::Serializer>(v: &Option<SubjectPseudonym>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(p) => s.serialize_str(&p.to_hex()),
        None => s.serialize_none(),
    }
}

impl Suspension {
    /// Whether it applies, at `now`, to disclosures about one of `subjects`.
    pub fn applies(&self, subjects: &[SubjectPseudonym], now: DateTime<Utc>) -> bool {
        now < self.ends_at && self.subject.is_none_or(|s| subjects.contains(&s))
    }
}

/// Records a suspension inside the caller's transaction (which also appends its log entry).
pub async fn insert(c: &mut Conn<'_>, s: &Suspension) -> Result<(), LogError> {
    suspensions::insert(
        c,
        &SuspensionRow {
            id: s.id.clone(),
            recipient: s.recipient.clone(),
            subject: s.subject.map(|p| p.as_bytes().to_vec()),
            statement: s.statement.clone(),
            ends_at_us: s.ends_at.timestamp_micros(),
            recorded_by_partner: s.recorded_by_partner.clone(),
            recorded_by_user: s.recorded_by_user.clone(),
            recorded_at_us: s.recorded_at.timestamp_micros(),
        },
    )
    .await?;
    Ok(())
}

/// Suspensions ending after `after` (all of them with `None`), oldest first.
pub async fn list(
    c: &mut Conn<'_>,
    after: Option<DateTime<Utc>>,
) -> Result<Vec<Suspension>, LogError> {
    let rows =
        suspensions::ending_after(c, after.map_or(i64::MIN, |t| t.timestamp_micros())).await?;
    let micros = |us: i64| DateTime::from_timestamp_micros(us).unwrap_or_default();
    rows.into_iter()
        .map(|r| {
            let subject = match r.subject {
                None => None,
                Some(b) => Some(
                    <[u8; 32]>::try_from(b.as_slice())
                        .map(SubjectPseudonym)
                        .map_err(|_| LogError::Corrupt {
                            seq: 0,
                            why: format!("suspension `{}`: malformed subject", r.id),
                        })?,
                ),
            };
            Ok(Suspension {
                id: r.id,
                recipient: r.recipient,
                subject,
                statement: r.statement,
                ends_at: micros(r.ends_at_us),
                recorded_by_partner: r.recorded_by_partner,
                recorded_by_user: r.recorded_by_user,
                recorded_at: micros(r.recorded_at_us),
            })
        })
        .collect()
}
