//! Counting: from facts to the grid of one table.
//!
//! Every unit (incident, person, referral, disclosure, review) in the period that passes the
//! table's filters falls in exactly one row and one column, so the grid's margins are the
//! totals of the units counted. A value the policy set does not list (or none) counts as
//! `NOT_RECORDED`, a category every non-time dimension has, so the shape of a table never
//! depends on the data.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::definition::{DimensionKind, Metric, NOT_RECORDED, REPEAT_CATEGORIES, TableDef};
use super::facts::{Facts, IncidentFact, Period, Person, month_of, quarter_of};
use super::table::Grid;

/// One unit to count: its category per dimension, its person and time (for bounding a
/// person's contribution), and a duration for duration metrics.
struct Unit {
    categories: BTreeMap<DimensionKind, String>,
    person: Option<Person>,
    at: DateTime<Utc>,
    hours: Option<f64>,
}

fn time_categories(at: DateTime<Utc>, out: &mut BTreeMap<DimensionKind, String>) {
    out.insert(DimensionKind::Month, month_of(at));
    out.insert(DimensionKind::Quarter, quarter_of(at));
    out.insert(DimensionKind::All, "all".to_owned());
}

/// The repeat category of each incident: the gap to the same person's previous crisis (any
/// incident the gateway holds, also before the period).
fn repeats(incidents: &[IncidentFact]) -> Vec<&'static str> {
    let mut by_person: BTreeMap<Person, Vec<usize>> = BTreeMap::new();
    for (i, f) in incidents.iter().enumerate() {
        if let Some(p) = f.person {
            by_person.entry(p).or_default().push(i);
        }
    }
    let last = REPEAT_CATEGORIES.len() - 1;
    let mut out =
        vec![REPEAT_CATEGORIES.get(last).copied().unwrap_or(NOT_RECORDED); incidents.len()];
    for list in by_person.values_mut() {
        list.sort_by_key(|i| incidents.get(*i).map(|f| f.occurred_at));
        for pair in list.windows(2) {
            let (Some(&a), Some(&b)) = (pair.first(), pair.get(1)) else {
                continue;
            };
            let (Some(fa), Some(fb)) = (incidents.get(a), incidents.get(b)) else {
                continue;
            };
            let gap = fb.occurred_at - fa.occurred_at;
            let cat = if gap <= Duration::days(30) {
                REPEAT_CATEGORIES.first()
            } else if gap <= Duration::days(90) {
                REPEAT_CATEGORIES.get(1)
            } else {
                REPEAT_CATEGORIES.get(last)
            };
            if let (Some(slot), Some(cat)) = (out.get_mut(b), cat) {
                *slot = cat;
            }
        }
    }
    out
}

fn incident_units(facts: &Facts, period: &Period) -> Vec<Unit> {
    let repeat = repeats(&facts.incidents);
    facts
        .incidents
        .iter()
        .zip(repeat)
        .filter(|(f, _)| period.contains(f.occurred_at))
        .map(|(f, rep)| {
            let mut c = BTreeMap::new();
            time_categories(f.occurred_at, &mut c);
            c.insert(DimensionKind::Agency, f.agency.clone());
            for d in [
                DimensionKind::CallType,
                DimensionKind::Disposition,
                DimensionKind::UseOfForce,
                DimensionKind::ForceQualifying,
            ] {
                if let Some((_, field)) = d.enum_field()
                    && let Some(v) = f.values.get(field)
                {
                    c.insert(d, v.clone());
                }
            }
            let co = match f.co_responder {
                Some(true) => "PRESENT",
                Some(false) => "ABSENT",
                None => NOT_RECORDED,
            };
            c.insert(DimensionKind::CoResponder, co.to_owned());
            c.insert(DimensionKind::Repeat, rep.to_owned());
            Unit {
                categories: c,
                person: f.person,
                at: f.occurred_at,
                hours: None,
            }
        })
        .collect()
}

/// People with a crisis in the period (after the table's filters): each person's agency is
/// that of their first such incident, their repeat category the nearest of their incidents'.
fn person_units(table: &TableDef, facts: &Facts, period: &Period) -> Vec<Unit> {
    let mut people: BTreeMap<Person, Unit> = BTreeMap::new();
    let mut incidents = incident_units(facts, period);
    incidents.sort_by_key(|u| u.at);
    for u in incidents {
        if !passes(table, &u) {
            continue;
        }
        let Some(p) = u.person else { continue };
        let rank = |cat: Option<&String>| {
            cat.and_then(|c| REPEAT_CATEGORIES.iter().position(|r| r == c))
                .unwrap_or(REPEAT_CATEGORIES.len())
        };
        match people.get_mut(&p) {
            None => {
                let mut c = BTreeMap::new();
                c.insert(DimensionKind::All, "all".to_owned());
                for d in [DimensionKind::Agency, DimensionKind::Repeat] {
                    if let Some(v) = u.categories.get(&d) {
                        c.insert(d, v.clone());
                    }
                }
                people.insert(
                    p,
                    Unit {
                        categories: c,
                        person: Some(p),
                        at: u.at,
                        hours: None,
                    },
                );
            }
            Some(existing) => {
                let new = u.categories.get(&DimensionKind::Repeat);
                if rank(new) < rank(existing.categories.get(&DimensionKind::Repeat))
                    && let Some(v) = new
                {
                    existing.categories.insert(DimensionKind::Repeat, v.clone());
                }
            }
        }
    }
    people.into_values().collect()
}

fn referral_units(metric: Metric, facts: &Facts, period: &Period) -> Vec<Unit> {
    let mut out = Vec::new();
    for f in &facts.referrals {
        let Some(submitted) = f.submitted_at() else {
            continue;
        };
        if !period.contains(submitted) {
            continue;
        }
        let hours = match metric {
            Metric::TimeToContactAttempt => match f.reached("CONTACT_ATTEMPTED") {
                Some(t) => Some(hours_between(submitted, t)),
                None => continue,
            },
            Metric::TimeToEngagement => match f.reached("ENGAGED") {
                Some(t) => Some(hours_between(submitted, t)),
                None => continue,
            },
            _ => None,
        };
        let mut c = BTreeMap::new();
        time_categories(submitted, &mut c);
        c.insert(DimensionKind::Agency, f.agency.clone());
        if let Some(u) = f.values.get("urgency") {
            c.insert(DimensionKind::Urgency, u.clone());
        }
        c.insert(DimensionKind::ReferralOutcome, f.outcome().to_owned());
        out.push(Unit {
            categories: c,
            person: f.person,
            at: submitted,
            hours,
        });
    }
    out
}

fn hours_between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    ((b - a).num_seconds().max(0) as f64) / 3600.0
}

fn log_units(metric: Metric, facts: &Facts, period: &Period) -> Vec<Unit> {
    match metric {
        Metric::EmergencyReviews => facts
            .reviews
            .iter()
            .filter(|r| period.contains(r.opened_at))
            .map(|r| {
                let mut c = BTreeMap::new();
                time_categories(r.opened_at, &mut c);
                c.insert(DimensionKind::Recipient, r.recipient.clone());
                c.insert(DimensionKind::ReviewOutcome, r.outcome.clone());
                Unit {
                    categories: c,
                    person: None,
                    at: r.opened_at,
                    hours: None,
                }
            })
            .collect(),
        _ => facts
            .disclosures
            .iter()
            .filter(|d| period.contains(d.at))
            .filter(|d| metric != Metric::EmergencyAccesses || d.basis == "emergency")
            .map(|d| {
                let mut c = BTreeMap::new();
                time_categories(d.at, &mut c);
                c.insert(DimensionKind::Recipient, d.recipient.clone());
                c.insert(DimensionKind::Purpose, d.purpose.clone());
                c.insert(DimensionKind::Basis, d.basis.clone());
                Unit {
                    categories: c,
                    person: None,
                    at: d.at,
                    hours: None,
                }
            })
            .collect(),
    }
}

/// A unit's category along `d`, as one of `categories` (an unlisted or missing value is
/// `NOT_RECORDED`).
fn category(u: &Unit, d: DimensionKind, categories: &[String]) -> Option<usize> {
    let v = u.categories.get(&d).map_or(NOT_RECORDED, String::as_str);
    categories
        .iter()
        .position(|c| c == v)
        .or_else(|| categories.iter().position(|c| c == NOT_RECORDED))
}

fn passes(table: &TableDef, u: &Unit) -> bool {
    table.filters.iter().all(|(d, allowed)| {
        let v = u.categories.get(d).map_or(NOT_RECORDED, String::as_str);
        allowed.contains(v)
    })
}

/// The categories of a dimension for this period.
pub fn categories(kind: DimensionKind, fixed: &[String], period: &Period) -> Vec<String> {
    match kind {
        DimensionKind::Month => period.months(),
        DimensionKind::Quarter => period.quarters(),
        DimensionKind::All => vec!["all".to_owned()],
        _ => fixed.to_vec(),
    }
}

/// The units of `table`'s metric in the period, after its filters, with each person's
/// contribution bounded to `cap` units (their earliest) when given.
fn units(table: &TableDef, facts: &Facts, period: &Period, cap: Option<u32>) -> Vec<Unit> {
    let mut all = match table.metric {
        Metric::Incidents => incident_units(facts, period),
        Metric::Persons => person_units(table, facts, period),
        Metric::Referrals | Metric::TimeToContactAttempt | Metric::TimeToEngagement => {
            referral_units(table.metric, facts, period)
        }
        Metric::EmergencyAccesses | Metric::EmergencyReviews | Metric::Disclosures => {
            log_units(table.metric, facts, period)
        }
    };
    all.retain(|u| passes(table, u));
    if let Some(cap) = cap {
        all.sort_by_key(|u| u.at);
        let mut seen: BTreeMap<Person, u32> = BTreeMap::new();
        all.retain(|u| match u.person {
            Some(p) => {
                let n = seen.entry(p).or_insert(0);
                *n += 1;
                *n <= cap
            }
            // Without a person nothing can be bounded; such units are not counted under
            // differential privacy.
            None => false,
        });
    }
    all
}

/// The grid of `table` for the period.
pub fn tabulate(table: &TableDef, facts: &Facts, period: &Period, cap: Option<u32>) -> Grid {
    let rows = categories(table.rows.kind, &table.rows.categories, period);
    let (col_kind, columns) = match &table.columns {
        Some(c) => (Some(c.kind), categories(c.kind, &c.categories, period)),
        None => (None, vec![table.metric.unit().to_owned()]),
    };
    let ncols = columns.len();
    let mut cells = vec![0i64; rows.len() * ncols];
    let duration = table.metric.is_duration();
    let mut durations: Vec<Vec<f64>> = vec![Vec::new(); rows.len()];
    for u in units(table, facts, period, cap) {
        let Some(r) = category(&u, table.rows.kind, &rows) else {
            continue;
        };
        let c = match col_kind {
            Some(k) => match category(&u, k, &columns) {
                Some(c) => c,
                None => continue,
            },
            None => 0,
        };
        if let Some(cell) = cells.get_mut(r * ncols + c) {
            *cell += 1;
        }
        if let (Some(h), Some(list)) = (u.hours, durations.get_mut(r)) {
            list.push(h);
        }
    }
    Grid {
        rows,
        columns,
        cells,
        durations: duration.then_some(durations),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::definition::Dimension;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn incident(at: &str, disposition: &str, person: Person) -> IncidentFact {
        IncidentFact {
            agency: "metro-pd".into(),
            occurred_at: t(at),
            values: BTreeMap::from([("disposition".to_owned(), disposition.to_owned())]),
            co_responder: None,
            person: Some(person),
        }
    }

    fn table(
        metric: Metric,
        rows: DimensionKind,
        cols: Option<(DimensionKind, &[&str])>,
    ) -> TableDef {
        TableDef {
            id: "t".into(),
            title: "t".into(),
            metric,
            rows: Dimension {
                kind: rows,
                categories: vec![],
            },
            columns: cols.map(|(k, c)| Dimension {
                kind: k,
                categories: c.iter().map(|s| (*s).to_owned()).collect(),
            }),
            filters: BTreeMap::new(),
            rates: vec![],
        }
    }

    #[test]
    fn incidents_fall_in_one_cell_each() {
        let facts = Facts {
            incidents: vec![
                incident("2026-01-05T10:00:00Z", "ARREST", 0),
                incident("2026-01-20T10:00:00Z", "REFERRED", 1),
                incident("2026-02-02T10:00:00Z", "BOGUS", 2),
                incident("2025-12-31T23:00:00Z", "ARREST", 3),
            ],
            ..Facts::default()
        };
        let p = Period::new(t("2026-01-01T00:00:00Z"), t("2026-03-01T00:00:00Z")).unwrap();
        let d = table(
            Metric::Incidents,
            DimensionKind::Month,
            Some((
                DimensionKind::Disposition,
                &["ARREST", "REFERRED", NOT_RECORDED],
            )),
        );
        let g = tabulate(&d, &facts, &p, None);
        assert_eq!(g.rows, ["2026-01", "2026-02"]);
        assert_eq!(g.cells, vec![1, 1, 0, 0, 0, 1]);
    }

    #[test]
    fn repeats_look_back_through_the_same_person() {
        let facts = Facts {
            incidents: vec![
                incident("2025-12-20T00:00:00Z", "ARREST", 0),
                incident("2026-01-10T00:00:00Z", "ARREST", 0),
                incident("2026-03-01T00:00:00Z", "ARREST", 0),
                incident("2026-02-01T00:00:00Z", "ARREST", 1),
            ],
            ..Facts::default()
        };
        let p = Period::new(t("2026-01-01T00:00:00Z"), t("2026-04-01T00:00:00Z")).unwrap();
        let cats: Vec<&str> = REPEAT_CATEGORIES.to_vec();
        let d = table(
            Metric::Incidents,
            DimensionKind::All,
            Some((DimensionKind::Repeat, &cats)),
        );
        // Jan 10: 21 days after Dec 20; Mar 1: 50 days after Jan 10; Feb 1: first.
        assert_eq!(tabulate(&d, &facts, &p, None).cells, vec![1, 1, 1]);
        let people = table(
            Metric::Persons,
            DimensionKind::All,
            Some((DimensionKind::Repeat, &cats)),
        );
        assert_eq!(tabulate(&people, &facts, &p, None).cells, vec![1, 0, 1]);
    }

    #[test]
    fn a_person_contributes_at_most_the_cap() {
        let facts = Facts {
            incidents: (0..5)
                .map(|d| incident(&format!("2026-01-0{}T00:00:00Z", d + 1), "ARREST", 0))
                .chain([incident("2026-01-09T00:00:00Z", "ARREST", 1)])
                .collect(),
            ..Facts::default()
        };
        let p = Period::new(t("2026-01-01T00:00:00Z"), t("2026-02-01T00:00:00Z")).unwrap();
        let d = table(Metric::Incidents, DimensionKind::All, None);
        assert_eq!(tabulate(&d, &facts, &p, None).cells, vec![6]);
        assert_eq!(tabulate(&d, &facts, &p, Some(2)).cells, vec![3]);
    }
}
