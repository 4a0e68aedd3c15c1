//! MOU terms: which MOUs are in force, which expire soon, which have expired.
//!
//! An MOU's rules apply from its `effective` day to its `expires` day (inclusive, UTC); after
//! that the flows it grants stop, which is easy to miss until a clinician's request is refused.
//! `/healthz` and a daily log line therefore warn `policy.expiry_warning_days` days ahead, and
//! the expiry itself is logged once. Pure: the set and the time are parameters.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::PolicySet;

/// Where an MOU's term stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TermStatus {
    /// Not in force yet.
    NotYetInForce,
    /// In force, and not expiring within the warning period.
    InForce,
    /// In force, expiring within the warning period.
    Expiring,
    /// Expired: its rules no longer apply.
    Expired,
}

/// One MOU's term at a given time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MouTerm {
    /// MOU id.
    pub id: String,
    /// First day in force.
    pub effective: NaiveDate,
    /// Last day in force.
    pub expires: NaiveDate,
    /// Days from today to the last day in force (0 on the last day; negative once expired).
    pub days_left: i64,
    /// Where it stands.
    pub status: TermStatus,
}

/// The term of every MOU of `set` at `now`, warning `warn_days` days ahead.
pub fn terms(set: &PolicySet, now: DateTime<Utc>, warn_days: u32) -> Vec<MouTerm> {
    let today = now.date_naive();
    set.mous
        .iter()
        .map(|m| {
            let days_left = (m.expires - today).num_days();
            let status = if today < m.effective {
                TermStatus::NotYetInForce
            } else if days_left < 0 {
                TermStatus::Expired
            } else if days_left < i64::from(warn_days) {
                TermStatus::Expiring
            } else {
                TermStatus::InForce
            };
            MouTerm {
                id: m.id.clone(),
                effective: m.effective,
                expires: m.expires,
                days_left,
                status,
            }
        })
        .collect()
}

/// Decides which term lines to log: a warning for each expiring MOU once per day, and one line
/// for each expired MOU, once per process.
#[derive(Debug, Default)]
pub struct TermWatch {
    warned: BTreeSet<(String, NaiveDate)>,
    expired: BTreeSet<String>,
}

/// A line to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TermNotice {
    /// The MOU expires within the warning period.
    Expiring {
        /// MOU id.
        id: String,
        /// Its last day in force.
        expires: NaiveDate,
        /// Days left.
        days_left: i64,
    },
    /// The MOU has expired; its rules no longer apply.
    Expired {
        /// MOU id.
        id: String,
        /// Its last day in force.
        expires: NaiveDate,
    },
}

impl TermWatch {
    /// The notices due at `now`: each expiring MOU once per calendar day, each expired MOU
    /// once.
    pub fn due(&mut self, set: &PolicySet, now: DateTime<Utc>, warn_days: u32) -> Vec<TermNotice> {
        let today = now.date_naive();
        let mut out = Vec::new();
        for t in terms(set, now, warn_days) {
            match t.status {
                TermStatus::Expiring if self.warned.insert((t.id.clone(), today)) => {
                    out.push(TermNotice::Expiring {
                        id: t.id,
                        expires: t.expires,
                        days_left: t.days_left,
                    });
                }
                TermStatus::Expired if self.expired.insert(t.id.clone()) => {
                    out.push(TermNotice::Expired {
                        id: t.id,
                        expires: t.expires,
                    });
                }
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> PolicySet {
        let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/policies"));
        PolicySet::load_unkeyed(dir, "2026-03-01T00:00:00Z".parse().unwrap())
            .unwrap()
            .0
    }

    #[test]
    fn terms_warn_ahead_and_expire_after_the_last_day() {
        let set = set();
        let m = set
            .mous
            .iter()
            .find(|m| m.id == "metro-county-coresponse-2026")
            .unwrap();
        let last = m.expires.and_hms_opt(12, 0, 0).unwrap().and_utc();
        let status = |t: DateTime<Utc>| {
            terms(&set, t, 30)
                .into_iter()
                .find(|x| x.id == m.id)
                .unwrap()
        };
        assert_eq!(
            status(last - chrono::Duration::days(60)).status,
            TermStatus::InForce
        );
        let soon = status(last - chrono::Duration::days(10));
        assert_eq!(soon.status, TermStatus::Expiring);
        assert_eq!(soon.days_left, 10);
        assert_eq!(status(last).status, TermStatus::Expiring);
        assert_eq!(
            status(last + chrono::Duration::days(1)).status,
            TermStatus::Expired
        );
    }

    #[test]
    fn the_watch_warns_daily_and_reports_an_expiry_once() {
        let set = set();
        let m = &set.mous[0];
        let last = m.expires.and_hms_opt(8, 0, 0).unwrap().and_utc();
        let mut w = TermWatch::default();
        let day = |d: i64| last - chrono::Duration::days(d);
        assert!(!w.due(&set, day(5), 30).is_empty());
        assert!(
            w.due(&set, day(5) + chrono::Duration::hours(3), 30)
                .is_empty()
        );
        assert!(!w.due(&set, day(4), 30).is_empty());
        let after = last + chrono::Duration::days(2);
        let notices = w.due(&set, after, 30);
        assert!(
            notices
                .iter()
                .any(|n| matches!(n, TermNotice::Expired { id, .. } if *id == m.id))
        );
        assert!(
            w.due(&set, after + chrono::Duration::days(1), 30)
                .is_empty()
        );
    }
}
