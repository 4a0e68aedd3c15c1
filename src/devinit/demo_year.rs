//! A year of fictional crisis incidents and referrals for the demo, so that the outcome reports
//! show something.
//!
//! Generated deterministically from a fixed seed (ChaCha8) relative to the time the demo is
//! seeded: the same `now` always gives the same year, which lets tests recompute every count
//! independently. Everything is fictional: people are `Demo Person NNNN` with police person
//! numbers `P-7NNNN`. The year ends a week before `now`, so it never overlaps the README's
//! journey records.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

/// The generator's seed.
pub const SEED: u64 = 0x0c0_5e5f_0de0_2026;
/// Incidents in the year.
pub const INCIDENTS: usize = 640;
/// People the incidents are about (some have several crises).
pub const PEOPLE: usize = 420;

/// A fictional crisis incident.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoIncident {
    /// Record id, `INC-Y-0001`.
    pub id: String,
    /// The person (index into the demo's people).
    pub person: usize,
    /// When the call was received.
    pub occurred_at: DateTime<Utc>,
    /// Call type.
    pub call_type: &'static str,
    /// Disposition.
    pub disposition: &'static str,
    /// Whether a co-responder was on scene.
    pub co_responder: bool,
    /// Most serious type of force.
    pub use_of_force: &'static str,
    /// FBI qualifying event.
    pub qualifying: &'static str,
    /// The person was injured.
    pub injury_subject: bool,
    /// An officer was injured.
    pub injury_officer: bool,
    /// Dispatch, arrival and clearing times.
    pub times: [DateTime<Utc>; 3],
    /// Age.
    pub age: u32,
}

/// A fictional referral and its status moves.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoReferral {
    /// Record id, `REF-Y-0001`.
    pub id: String,
    /// The incident it comes from.
    pub incident: usize,
    /// Urgency.
    pub urgency: &'static str,
    /// `(status, when)`, oldest first; the first is SUBMITTED.
    pub moves: Vec<(&'static str, DateTime<Utc>)>,
}

/// The demo year.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoYear {
    /// Incidents, oldest first.
    pub incidents: Vec<DemoIncident>,
    /// Referrals.
    pub referrals: Vec<DemoReferral>,
}

impl DemoYear {
    /// The first instant the year covers.
    pub fn start(now: DateTime<Utc>) -> DateTime<Utc> {
        now - Duration::days(372)
    }

    /// The instant after the last it covers (a week before `now`).
    pub fn end(now: DateTime<Utc>) -> DateTime<Utc> {
        now - Duration::days(7)
    }
}

fn pick<'a>(rng: &mut ChaCha8Rng, weighted: &[(&'a str, u32)]) -> &'a str {
    let total: u32 = weighted.iter().map(|(_, w)| w).sum();
    let mut x = rng.random_range(0..total.max(1));
    for (v, w) in weighted {
        if x < *w {
            return v;
        }
        x -= w;
    }
    weighted.first().map_or("OTHER", |(v, _)| v)
}

fn minutes(rng: &mut ChaCha8Rng, lo: i64, hi: i64) -> Duration {
    Duration::minutes(rng.random_range(lo..=hi))
}

/// The person number of demo person `p`.
pub fn person_number(p: usize) -> String {
    format!("P-7{p:04}")
}

/// Generates the year ending a week before `now`.
pub fn generate(now: DateTime<Utc>) -> DemoYear {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let start = DemoYear::start(now);
    let span = (DemoYear::end(now) - start).num_seconds().max(1);
    let mut times: Vec<i64> = (0..INCIDENTS).map(|_| rng.random_range(0..span)).collect();
    times.sort_unstable();
    let mut incidents = Vec::with_capacity(INCIDENTS);
    for (n, offset) in times.into_iter().enumerate() {
        let occurred_at = start + Duration::seconds(offset);
        // A few people have many crises: squaring favours the low numbers.
        let u: f64 = rng.random();
        let person = ((u * u) * PEOPLE as f64) as usize % PEOPLE;
        // The program grows: co-responders join more calls as the year goes on.
        let progress = offset as f64 / span as f64;
        let co_responder = rng.random_bool(0.25 + 0.3 * progress);
        let call_type = pick(
            &mut rng,
            &[
                ("WELFARE_CHECK", 30),
                ("SUICIDE_THREAT", 25),
                ("DISTURBANCE", 25),
                ("OVERDOSE", 10),
                ("OTHER", 10),
            ],
        );
        let disposition = if co_responder {
            pick(
                &mut rng,
                &[
                    ("RESOLVED_ON_SCENE", 35),
                    ("TRANSPORTED_VOLUNTARY", 20),
                    ("TRANSPORTED_INVOLUNTARY", 8),
                    ("REFERRED", 30),
                    ("ARREST", 3),
                    ("OTHER", 4),
                ],
            )
        } else {
            pick(
                &mut rng,
                &[
                    ("RESOLVED_ON_SCENE", 30),
                    ("TRANSPORTED_VOLUNTARY", 15),
                    ("TRANSPORTED_INVOLUNTARY", 18),
                    ("REFERRED", 17),
                    ("ARREST", 14),
                    ("OTHER", 6),
                ],
            )
        };
        let force_rate = if co_responder { 0.03 } else { 0.08 };
        let use_of_force = if rng.random_bool(force_rate) {
            pick(
                &mut rng,
                &[
                    ("HANDS_FISTS_FEET", 50),
                    ("ELECTRONIC_CONTROL_WEAPON", 20),
                    ("CHEMICAL_AGENT", 10),
                    ("BLUNT_INSTRUMENT", 5),
                    ("CANINE", 3),
                    ("VEHICLE", 2),
                    ("FIREARM", 4),
                    ("OTHER", 6),
                ],
            )
        } else {
            "NONE"
        };
        let qualifying = match use_of_force {
            "NONE" => "NOT_QUALIFYING",
            "FIREARM" => "FIREARM_DISCHARGED_AT_PERSON",
            _ if rng.random_bool(0.1) => "SERIOUS_BODILY_INJURY",
            _ => "NOT_QUALIFYING",
        };
        let injury_subject = rng.random_bool(if use_of_force == "NONE" { 0.03 } else { 0.4 });
        let injury_officer = rng.random_bool(if use_of_force == "NONE" { 0.01 } else { 0.15 });
        let dispatched = occurred_at + minutes(&mut rng, 1, 8);
        let arrived = dispatched + minutes(&mut rng, 4, 25);
        let cleared = arrived + minutes(&mut rng, 20, 150);
        let age = rng.random_range(18..=80);
        incidents.push(DemoIncident {
            id: format!("INC-Y-{:04}", n + 1),
            person,
            occurred_at,
            call_type,
            disposition,
            co_responder,
            use_of_force,
            qualifying,
            injury_subject,
            injury_officer,
            times: [dispatched, arrived, cleared],
            age,
        });
    }
    let cutoff = DemoYear::end(now);
    let mut referrals = Vec::new();
    for (i, inc) in incidents.iter().enumerate() {
        let refer = match inc.disposition {
            "REFERRED" => true,
            "RESOLVED_ON_SCENE" => rng.random_bool(0.3),
            "TRANSPORTED_VOLUNTARY" => rng.random_bool(0.2),
            _ => false,
        };
        if !refer {
            continue;
        }
        let urgency = pick(
            &mut rng,
            &[("EMERGENT", 15), ("URGENT", 45), ("ROUTINE", 40)],
        );
        let mut moves = Vec::new();
        let mut t = inc.times[2] + minutes(&mut rng, 30, 360);
        moves.push(("SUBMITTED", t));
        t += minutes(&mut rng, 60, 1200);
        moves.push(("RECEIVED", t));
        if rng.random_bool(0.03) {
            t += minutes(&mut rng, 120, 1800);
            moves.push(("REJECTED", t));
        } else {
            t += minutes(&mut rng, 120, 2880);
            moves.push(("ASSIGNED", t));
            if rng.random_bool(0.05) {
                t += minutes(&mut rng, 60, 2880);
                moves.push(("WITHDRAWN", t));
            } else {
                let (lo, hi) = match urgency {
                    "EMERGENT" => (120, 720),
                    "URGENT" => (360, 2880),
                    _ => (1440, 7200),
                };
                t += minutes(&mut rng, lo, hi);
                moves.push(("CONTACT_ATTEMPTED", t));
                let outcome = pick(
                    &mut rng,
                    &[("ENGAGED", 60), ("DECLINED", 20), ("UNABLE_TO_CONTACT", 20)],
                );
                t += minutes(&mut rng, 720, 14_400);
                moves.push((outcome, t));
                t += minutes(&mut rng, 10_080, 43_200);
                moves.push(("CLOSED", t));
            }
        }
        // Nothing has happened after the end of the year yet.
        moves.retain(|(_, at)| *at < cutoff);
        if moves.is_empty() {
            continue;
        }
        referrals.push(DemoReferral {
            id: format!("REF-Y-{:04}", referrals.len() + 1),
            incident: i,
            urgency,
            moves,
        });
    }
    DemoYear {
        incidents,
        referrals,
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The fields of a demo incident.
pub fn incident_fields(inc: &DemoIncident) -> Value {
    json!({
        "incident_id": inc.id,
        "subject_name": format!("Demo Person {:04}", inc.person),
        "subject_age": inc.age,
        "occurred_at": ts(inc.occurred_at),
        "call_type": inc.call_type,
        "narrative": "Fictional demo incident.",
        "disposition": inc.disposition,
        "co_responder_present": inc.co_responder,
        "use_of_force": inc.use_of_force,
        "force_qualifying_event": inc.qualifying,
        "injury_subject": inc.injury_subject,
        "injury_officer": inc.injury_officer,
        "dispatched_at": ts(inc.times[0]),
        "arrived_at": ts(inc.times[1]),
        "cleared_at": ts(inc.times[2]),
        "safety_weapon": false,
        "safety_violence": false,
        "safety_threats": false,
        "safety_self_harm": inc.call_type == "SUICIDE_THREAT",
    })
}

/// The fields of each version of a demo referral, oldest first: one version per status move.
pub fn referral_versions(r: &DemoReferral, inc: &DemoIncident) -> Vec<Value> {
    let mut out = Vec::with_capacity(r.moves.len());
    let mut engaged: Option<&str> = None;
    let mut assigned = false;
    for (status, at) in &r.moves {
        if matches!(*status, "ENGAGED" | "DECLINED" | "UNABLE_TO_CONTACT") {
            engaged = Some(status);
        }
        assigned |= *status == "ASSIGNED";
        let mut v = json!({
            "referral_id": r.id,
            "incident_id": inc.id,
            "referring_officer": "officer-17",
            "referring_agency": "metro-pd",
            "receiving_agency": "county-mh",
            "subject_name": format!("Demo Person {:04}", inc.person),
            "reason": "Fictional demo referral.",
            "urgency": r.urgency,
            "status": status,
            "status_updated_at": ts(*at),
        });
        if let Some(obj) = v.as_object_mut() {
            if assigned {
                obj.insert("clinician_contact".into(), json!("Crisis team desk"));
            }
            if let Some(o) = engaged {
                obj.insert("engagement_outcome".into(), json!(o));
            }
        }
        out.push(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_year_is_reproducible_and_inside_its_bounds() {
        let now: DateTime<Utc> = "2026-12-15T12:00:00Z".parse().unwrap();
        let a = generate(now);
        assert_eq!(a, generate(now));
        assert_eq!(a.incidents.len(), INCIDENTS);
        assert!(a.referrals.len() > 150, "{}", a.referrals.len());
        for i in &a.incidents {
            assert!(DemoYear::start(now) <= i.occurred_at && i.occurred_at < DemoYear::end(now));
        }
        for r in &a.referrals {
            assert_eq!(r.moves.first().map(|m| m.0), Some("SUBMITTED"));
            assert!(r.moves.windows(2).all(|w| w[0].1 <= w[1].1));
            assert!(r.moves.iter().all(|(_, t)| *t < DemoYear::end(now)));
        }
        // Some people have repeat crises.
        let mut per: std::collections::BTreeMap<usize, usize> = Default::default();
        for i in &a.incidents {
            *per.entry(i.person).or_default() += 1;
        }
        assert!(per.values().any(|n| *n >= 3));
    }
}
