//! What a report is computed from: one plain fact per incident, referral, disclosure or
//! review, holding only what the report's tables use, and the period.
//!
//! Facts are built inside the gateway from the values the vault opened for the report's grant
//! and from the log; they never leave it, and their `Debug` shows no value. People are never
//! named: records of one person are linked by the keyed blind indexes of their subject
//! identifiers ([`link_people`]), and a person is a number local to one run.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use serde_json::Value;

/// The reporting period, `[from, to)`, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

/// The longest period a report may cover.
pub const MAX_PERIOD_DAYS: i64 = 3660;

/// A period that cannot be reported on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    /// `to` is not after `from`.
    #[error("`to` must be after `from`")]
    Empty,
    /// Longer than [`MAX_PERIOD_DAYS`].
    #[error("a report covers at most {MAX_PERIOD_DAYS} days (ten years); split the period")]
    TooLong,
}

impl Period {
    /// `[from, to)`.
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Self, PeriodError> {
        if to <= from {
            return Err(PeriodError::Empty);
        }
        if to - from > Duration::days(MAX_PERIOD_DAYS) {
            return Err(PeriodError::TooLong);
        }
        Ok(Self { from, to })
    }

    /// The first instant.
    pub fn from(&self) -> DateTime<Utc> {
        self.from
    }

    /// The instant after the last.
    pub fn to(&self) -> DateTime<Utc> {
        self.to
    }

    /// Whether `t` is in the period.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.from <= t && t < self.to
    }

    /// The calendar months the period touches, `2026-03`.
    pub fn months(&self) -> Vec<String> {
        let mut out = Vec::new();
        let (mut y, mut m) = (self.from.year(), self.from.month());
        while let Some(start) = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single() {
            if start >= self.to {
                break;
            }
            out.push(month_label(y, m));
            (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        }
        out
    }

    /// The calendar quarters the period touches, `2026-Q1`.
    pub fn quarters(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for m in self.months() {
            let q = m
                .split_once('-')
                .and_then(|(y, mm)| mm.parse::<u32>().ok().map(|mm| quarter_label_ym(y, mm)));
            if let Some(q) = q
                && out.last() != Some(&q)
            {
                out.push(q);
            }
        }
        out
    }
}

/// A date (`2026-01-01`, midnight UTC) or an RFC 3339 time, as a period's bound.
pub fn parse_instant(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn month_label(y: i32, m: u32) -> String {
    format!("{y:04}-{m:02}")
}

fn quarter_label_ym(y: &str, m: u32) -> String {
    format!("{y}-Q{}", (m - 1) / 3 + 1)
}

/// The month label of a time.
pub fn month_of(t: DateTime<Utc>) -> String {
    month_label(t.year(), t.month())
}

/// The quarter label of a time.
pub fn quarter_of(t: DateTime<Utc>) -> String {
    format!("{:04}-Q{}", t.year(), (t.month() - 1) / 3 + 1)
}

/// A person within one run (from [`link_people`]).
pub type Person = usize;

/// A crisis incident, as the report sees it.
#[derive(Clone, PartialEq)]
pub struct IncidentFact {
    /// The police agency holding it.
    pub agency: String,
    /// When the call was received.
    pub occurred_at: DateTime<Utc>,
    /// Enum-valued fields the report reads (`call_type`, `disposition`, ...).
    pub values: BTreeMap<String, String>,
    /// Whether a co-responder was present, if recorded.
    pub co_responder: Option<bool>,
    /// The person, when the report links people.
    pub person: Option<Person>,
}

/// A referral, as the report sees it: its status moves, oldest first.
#[derive(Clone, PartialEq)]
pub struct ReferralFact {
    /// The referring police agency.
    pub agency: String,
    /// `(status, when)` of every version, oldest first; the first is the submission.
    pub moves: Vec<(String, DateTime<Utc>)>,
    /// Enum-valued fields the report reads (`urgency`).
    pub values: BTreeMap<String, String>,
    /// The person, when the report links people.
    pub person: Option<Person>,
}

impl ReferralFact {
    /// When it was submitted.
    pub fn submitted_at(&self) -> Option<DateTime<Utc>> {
        self.moves.first().map(|(_, t)| *t)
    }

    /// When it first reached `status`.
    pub fn reached(&self, status: &str) -> Option<DateTime<Utc>> {
        self.moves
            .iter()
            .find(|(s, _)| s == status)
            .map(|(_, t)| *t)
    }

    /// Where it ended up: the engagement outcome if one was reached, else withdrawn or
    /// rejected, else open.
    pub fn outcome(&self) -> &'static str {
        for o in ["ENGAGED", "DECLINED", "UNABLE_TO_CONTACT"] {
            if self.reached(o).is_some() {
                return o;
            }
        }
        for o in ["WITHDRAWN", "REJECTED"] {
            if self.reached(o).is_some() {
                return o;
            }
        }
        "OPEN"
    }
}

/// A disclosure log entry, as the report sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisclosureFact {
    /// When.
    pub at: DateTime<Utc>,
    /// The recipient partner.
    pub recipient: String,
    /// The purpose of use.
    pub purpose: String,
    /// `mou`, `consent` or `emergency`.
    pub basis: String,
}

/// An emergency-access review, as the report sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewFact {
    /// When its window opened.
    pub opened_at: DateTime<Utc>,
    /// The partner whose user broke the glass.
    pub recipient: String,
    /// `open`, `justified` or `not-justified`.
    pub outcome: String,
}

/// Everything one run reads.
#[derive(Clone, Default, PartialEq)]
pub struct Facts {
    /// Crisis incidents (every one the gateway holds: repeats look back before the period).
    pub incidents: Vec<IncidentFact>,
    /// Referrals.
    pub referrals: Vec<ReferralFact>,
    /// Permitted disclosures in the period.
    pub disclosures: Vec<DisclosureFact>,
    /// Emergency reviews.
    pub reviews: Vec<ReviewFact>,
}

impl fmt::Debug for Facts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Facts")
            .field("incidents", &self.incidents.len())
            .field("referrals", &self.referrals.len())
            .field("disclosures", &self.disclosures.len())
            .field("reviews", &self.reviews.len())
            .finish()
    }
}

fn time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    v.and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

impl IncidentFact {
    /// The fact from a current version's opened values; `None` without a readable
    /// `occurred_at` (the field is required, so only for damaged data).
    pub fn from_values(
        agency: &str,
        values: &BTreeMap<String, Value>,
        person: Option<Person>,
    ) -> Option<Self> {
        let occurred_at = time(values.get("occurred_at"))?;
        let mut enums = BTreeMap::new();
        for (k, v) in values {
            if let Some(s) = v.as_str()
                && k != "occurred_at"
            {
                enums.insert(k.clone(), s.to_owned());
            }
        }
        Some(Self {
            agency: agency.to_owned(),
            occurred_at,
            values: enums,
            co_responder: values.get("co_responder_present").and_then(Value::as_bool),
            person,
        })
    }
}

impl ReferralFact {
    /// The fact from every version's opened values, oldest first; `None` without a readable
    /// submission.
    pub fn from_versions(
        agency: &str,
        versions: &[BTreeMap<String, Value>],
        person: Option<Person>,
    ) -> Option<Self> {
        let mut moves: Vec<(String, DateTime<Utc>)> = Vec::new();
        for v in versions {
            let (Some(status), Some(at)) =
                (text(v.get("status")), time(v.get("status_updated_at")))
            else {
                continue;
            };
            // A version that changed other fields keeps the status: one move per change.
            if moves.last().map(|(s, _)| s) != Some(&status) {
                moves.push((status, at));
            }
        }
        moves.first()?;
        let mut values = BTreeMap::new();
        if let Some(last) = versions.last() {
            for (k, v) in last {
                if let Some(s) = v.as_str()
                    && !matches!(k.as_str(), "status" | "status_updated_at")
                {
                    values.insert(k.clone(), s.to_owned());
                }
            }
        }
        Some(Self {
            agency: agency.to_owned(),
            moves,
            values,
            person,
        })
    }
}

/// Links records to people: records that share any blind index are one person (union-find
/// over the indexes). Returns each record's person, numbered from 0 in order of first
/// appearance. A record without indexes is its own person.
pub fn link_people(records: &[Vec<[u8; 32]>]) -> Vec<Person> {
    let mut parent: Vec<usize> = (0..records.len()).collect();
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while let Some(&p) = parent.get(i) {
            if p == i {
                break;
            }
            let gp = parent.get(p).copied().unwrap_or(p);
            if let Some(slot) = parent.get_mut(i) {
                *slot = gp;
            }
            i = gp;
        }
        i
    }
    let mut first: BTreeMap<[u8; 32], usize> = BTreeMap::new();
    for (i, indexes) in records.iter().enumerate() {
        for idx in indexes {
            match first.get(idx) {
                Some(&j) => {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    if a != b
                        && let Some(slot) = parent.get_mut(a.max(b))
                    {
                        *slot = a.min(b);
                    }
                }
                None => {
                    first.insert(*idx, i);
                }
            }
        }
    }
    let mut numbers: BTreeMap<usize, Person> = BTreeMap::new();
    (0..records.len())
        .map(|i| {
            let root = find(&mut parent, i);
            let next = numbers.len();
            *numbers.entry(root).or_insert(next)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn months_and_quarters_of_a_period() {
        let p = Period::new(t("2025-11-15T00:00:00Z"), t("2026-04-01T00:00:00Z")).unwrap();
        assert_eq!(
            p.months(),
            ["2025-11", "2025-12", "2026-01", "2026-02", "2026-03"]
        );
        assert_eq!(p.quarters(), ["2025-Q4", "2026-Q1"]);
        assert!(p.contains(t("2026-03-31T23:59:59Z")));
        assert!(!p.contains(t("2026-04-01T00:00:00Z")));
        assert_eq!(
            Period::new(t("2026-01-01T00:00:00Z"), t("2026-01-01T00:00:00Z")),
            Err(PeriodError::Empty)
        );
        assert_eq!(
            Period::new(t("2000-01-01T00:00:00Z"), t("2026-01-01T00:00:00Z")),
            Err(PeriodError::TooLong)
        );
    }

    #[test]
    fn records_sharing_an_index_are_one_person() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        let c = [3u8; 32];
        let d = [4u8; 32];
        // 0 and 2 share a; 2 and 3 share c (so 0, 2, 3 are one person); 1 is alone.
        let people = link_people(&[vec![a], vec![b], vec![a, c], vec![c, d], vec![]]);
        assert_eq!(people, vec![0, 1, 0, 0, 2]);
    }

    #[test]
    fn a_referral_outcome_comes_from_its_moves() {
        let v = |s: &str, at: &str| {
            BTreeMap::from([
                ("status".to_owned(), Value::from(s)),
                ("status_updated_at".to_owned(), Value::from(at)),
                ("urgency".to_owned(), Value::from("URGENT")),
            ])
        };
        let f = ReferralFact::from_versions(
            "metro-pd",
            &[
                v("SUBMITTED", "2026-01-01T00:00:00Z"),
                v("RECEIVED", "2026-01-01T02:00:00Z"),
                v("ASSIGNED", "2026-01-01T05:00:00Z"),
                v("CONTACT_ATTEMPTED", "2026-01-02T00:00:00Z"),
                v("ENGAGED", "2026-01-03T00:00:00Z"),
                v("CLOSED", "2026-02-01T00:00:00Z"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(f.outcome(), "ENGAGED");
        assert_eq!(f.submitted_at(), Some(t("2026-01-01T00:00:00Z")));
        assert_eq!(f.values["urgency"], "URGENT");
    }
}
