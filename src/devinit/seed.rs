//! Demo data for the one-command demo: a few people, crisis incidents, safety plans, referrals
//! and consents, so that each user's journey in the README works, and a year of fictional
//! incidents and referrals ([`super::demo_year`]) for the outcome reports.
//!
//! Everything is fictional. Written once, into an empty database, through the same vault and
//! registry the API uses (so it is encrypted at rest like any record), each record and consent
//! with its log entry (`record_changed`, `consent_changed`), like every other write.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::consent::directive::ConsentDirective;
use crate::domain::{Author, SubjectIdentifier};
use crate::service::Services;
use crate::vault::NewRecord;

/// What the seed wrote.
#[derive(Debug, Default)]
pub struct SeedReport {
    /// Records written.
    pub records: usize,
    /// Record versions written (each with its `record_changed` entry): a demo referral has one
    /// per status move.
    pub versions: usize,
    /// Consents written.
    pub consents: usize,
}

struct Demo<'a> {
    services: &'a Services,
    report: SeedReport,
}

fn ids(pairs: &[(&str, &str)]) -> anyhow::Result<Vec<SubjectIdentifier>> {
    pairs
        .iter()
        .map(|(s, v)| SubjectIdentifier::new(*s, *v).map_err(anyhow::Error::from))
        .collect()
}

fn fields(v: Value) -> anyhow::Result<BTreeMap<String, Value>> {
    Ok(serde_json::from_value(v)?)
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Demo<'_> {
    async fn put(
        &mut self,
        kind: &str,
        id: &str,
        owner: &str,
        user: &str,
        subjects: &[(&str, &str)],
        values: Value,
    ) -> anyhow::Result<()> {
        let rec = NewRecord {
            kind: kind.parse()?,
            id: id.parse()?,
            owner: owner.parse()?,
            subjects: ids(subjects)?,
            fields: fields(values)?,
        };
        let author = Author {
            partner: owner.parse()?,
            user: user.parse()?,
        };
        let policy = self.services.policy();
        if let Some(k) = policy.kinds.get(kind) {
            for (name, value) in &rec.fields {
                let def = k
                    .field(name)
                    .ok_or_else(|| anyhow::anyhow!("demo {kind} has unknown field {name}"))?;
                crate::policy::schema::check_value(def, value)
                    .map_err(|e| anyhow::anyhow!("demo {kind}.{name}: {e}"))?;
            }
        }
        self.services
            .seed_record(&author, &rec, "demo record written")
            .await?;
        self.report.records += 1;
        self.report.versions += 1;
        Ok(())
    }

    /// Writes the demo year: each incident, then each referral version by version (the
    /// submission by the referring officer, every later move by the receiving clinician), in
    /// batches of one transaction each.
    async fn year(&mut self, now: DateTime<Utc>) -> anyhow::Result<()> {
        use super::demo_year::{generate, incident_fields, person_number, referral_versions};
        let year = generate(now);
        let policy = self.services.policy();
        let officer = Author {
            partner: "metro-pd".parse()?,
            user: "officer-17".parse()?,
        };
        let clinician = Author {
            partner: "county-mh".parse()?,
            user: "clin-7".parse()?,
        };
        let mut writes: Vec<(Author, NewRecord)> = Vec::new();
        let mut record = |kind: &str, id: &str, person: usize, values: Value, author: &Author| {
            let rec = NewRecord {
                kind: kind.parse()?,
                id: id.parse()?,
                owner: "metro-pd".parse()?,
                subjects: ids(&[("metro-pd", &person_number(person))])?,
                fields: fields(values)?,
            };
            if let Some(k) = policy.kinds.get(kind) {
                for (name, value) in &rec.fields {
                    let def = k
                        .field(name)
                        .ok_or_else(|| anyhow::anyhow!("demo {kind} has unknown field {name}"))?;
                    crate::policy::schema::check_value(def, value)
                        .map_err(|e| anyhow::anyhow!("demo {kind}.{name}: {e}"))?;
                }
            }
            writes.push((author.clone(), rec));
            anyhow::Ok(())
        };
        for inc in &year.incidents {
            record(
                "crisis-incident",
                &inc.id,
                inc.person,
                incident_fields(inc),
                &officer,
            )?;
        }
        for r in &year.referrals {
            let Some(inc) = year.incidents.get(r.incident) else {
                continue;
            };
            for (n, v) in referral_versions(r, inc).into_iter().enumerate() {
                let author = if n == 0 { &officer } else { &clinician };
                record("referral", &r.id, inc.person, v, author)?;
            }
        }
        for chunk in writes.chunks(400) {
            self.services
                .seed_records(chunk, "demo year record written")
                .await?;
            self.report.versions += chunk.len();
        }
        self.report.records += year.incidents.len() + year.referrals.len();
        Ok(())
    }
}

/// Seeds the demo data if the database holds no record yet. Returns what was written.
pub async fn seed(services: &Services) -> anyhow::Result<SeedReport> {
    if services.record_count().await? > 0 {
        return Ok(SeedReport::default());
    }
    let now = services.now();
    let mut d = Demo {
        services,
        report: SeedReport::default(),
    };
    let jordan = [("metro-pd", "P-2231"), ("county-mh", "MRN-1001")];
    let riley = [("metro-pd", "P-3307"), ("county-mh", "MRN-1002")];
    let sam = [("metro-pd", "P-4410")];

    d.put(
        "crisis-incident",
        "INC-2026-0042",
        "metro-pd",
        "officer-17",
        &jordan[..1],
        json!({
            "incident_id": "INC-2026-0042",
            "subject_name": "Jordan Example",
            "subject_age": 34,
            "occurred_at": ts(now - Duration::hours(20)),
            "location": {"street": "12 Elm Street", "city": "Metro City", "state": "ST", "zip": "00001"},
            "call_type": "SUICIDE_THREAT",
            "narrative": "Caller (sister) reported Jordan on the balcony saying they wanted to die. On arrival Jordan was calm enough to talk; a kitchen knife was on the table.",
            "observed_behaviour": "Tearful, pacing, responded well to a quiet voice and to the sister being present.",
            "safety_weapon": true,
            "safety_violence": false,
            "safety_threats": false,
            "safety_self_harm": true,
            "disposition": "REFERRED",
            "officer_ids": ["B-1107", "B-2210"],
            "callback_number": "+1 555 010 4477",
            "criminal_history_summary": "No record (CJI; never shared with mental-health partners)."
        }),
    )
    .await?;
    d.put(
        "crisis-incident",
        "INC-2026-0057",
        "metro-pd",
        "officer-22",
        &riley[..1],
        json!({
            "incident_id": "INC-2026-0057",
            "subject_name": "Riley Sample",
            "subject_age": 19,
            "occurred_at": ts(now - Duration::days(3)),
            "location": {"street": "400 Harbor Road", "city": "Metro City", "state": "ST", "zip": "00002"},
            "call_type": "WELFARE_CHECK",
            "narrative": "Neighbours worried after three days without contact. Riley answered the door, confused about the date.",
            "observed_behaviour": "Withdrawn, not eating; accepted a referral.",
            "safety_weapon": false,
            "safety_violence": false,
            "safety_threats": false,
            "safety_self_harm": false,
            "disposition": "REFERRED",
            "callback_number": "+1 555 010 3307"
        }),
    )
    .await?;
    d.put(
        "crisis-incident",
        "INC-2026-0061",
        "metro-pd",
        "officer-17",
        &sam,
        json!({
            "incident_id": "INC-2026-0061",
            "subject_name": "Sam Placeholder",
            "subject_age": 52,
            "occurred_at": ts(now - Duration::days(1)),
            "location": {"street": "9 Station Square", "city": "Metro City", "state": "ST", "zip": "00001"},
            "call_type": "DISTURBANCE",
            "narrative": "Shouting in the street; resolved on scene.",
            "safety_weapon": false,
            "safety_violence": true,
            "safety_threats": true,
            "safety_self_harm": false,
            "disposition": "RESOLVED_ON_SCENE"
        }),
    )
    .await?;

    d.put(
        "safety-plan",
        "SP-1001",
        "county-mh",
        "clin-7",
        &jordan,
        json!({
            "plan_id": "SP-1001",
            "updated_on": (now - Duration::days(10)).date_naive().to_string(),
            "warning_signs": "Not sleeping; giving things away.",
            "coping_strategies": "Music, walking the dog.",
            "people_and_places": "Sister's flat; the community garden.",
            "support_contacts": "Sister (Dana), neighbour (Lee).",
            "professional_contacts": "County crisis line; Dr. Rivera.",
            "means_safety": "Medication kept by the sister; no firearms at home.",
            "deescalation_preferences": "Speak slowly, no sirens, let the sister talk first.",
            "crisis_contacts": "Sister Dana +1 555 010 2222; Dr. Rivera +1 555 010 9000",
            "diagnoses": ["Major depressive disorder, recurrent"],
            "medications": ["sertraline 100 mg"],
            "treatment_notes": "Weekly sessions; engaged.",
            "substance_use_history": "Alcohol use disorder, in remission (42 CFR Part 2 program).",
            "psychotherapy_notes": "Process notes (never shared).",
            "clinician_id": "clin-7"
        }),
    )
    .await?;
    d.put(
        "safety-plan",
        "SP-1002",
        "county-mh",
        "clin-9",
        &riley,
        json!({
            "plan_id": "SP-1002",
            "updated_on": (now - Duration::days(2)).date_naive().to_string(),
            "warning_signs": "Staying in bed; missing classes.",
            "deescalation_preferences": "Ask before approaching; no uniforms at the door if possible.",
            "crisis_contacts": "Mother +1 555 010 3300",
            "diagnoses": ["Adjustment disorder"],
            "clinician_id": "clin-9"
        }),
    )
    .await?;

    let referral = |id: &str,
                    incident: &str,
                    name: &str,
                    phone: &str,
                    reason: &str,
                    urgency: &str,
                    consent: Option<&str>,
                    status: &str,
                    extra: Value| {
        let mut v = json!({
            "referral_id": id,
            "incident_id": incident,
            "referring_officer": "officer-17",
            "referring_agency": "metro-pd",
            "receiving_agency": "county-mh",
            "subject_name": name,
            "subject_phone": phone,
            "reason": reason,
            "urgency": urgency,
            "status": status,
            "status_updated_at": ts(now - Duration::hours(2)),
        });
        if let (Some(c), Some(obj)) = (consent, v.as_object_mut()) {
            obj.insert("consent_reference".into(), json!(c));
        }
        if let (Some(obj), Some(more)) = (v.as_object_mut(), extra.as_object()) {
            obj.extend(more.clone());
        }
        v
    };
    d.put(
        "referral",
        "REF-DEMO-1",
        "metro-pd",
        "officer-17",
        &jordan[..1],
        referral(
            "REF-DEMO-1",
            "INC-2026-0042",
            "Jordan Example",
            "+1 555 010 4477",
            "Suicidal statements with access to a knife; agrees to follow-up.",
            "URGENT",
            Some("CONSENT-DEMO-1"),
            "ASSIGNED",
            json!({
                "clinician_contact": "Dr. Rivera, crisis team desk +1 555 010 9000",
                "status_note": "Assigned to the crisis team."
            }),
        ),
    )
    .await?;
    d.put(
        "referral",
        "REF-DEMO-2",
        "metro-pd",
        "officer-22",
        &riley[..1],
        referral(
            "REF-DEMO-2",
            "INC-2026-0057",
            "Riley Sample",
            "+1 555 010 3307",
            "Isolation and confusion; accepted a referral.",
            "ROUTINE",
            None,
            "CONTACT_ATTEMPTED",
            json!({"status_note": "Voicemail left."}),
        ),
    )
    .await?;
    // Jordan consented (a complete 42 CFR 2.31 form) to responding officers seeing the crisis
    // extract of the safety plan, and to the police seeing how the referral progresses.
    let consent = json!({
        "subjects": [{"system": "county-mh", "value": "MRN-1001"}, {"system": "metro-pd", "value": "P-2231"}],
        "patient_name": "Jordan Example",
        "disclosers": ["county-mh"],
        "recipients": ["metro-pd"],
        "purposes": ["crisis-response", "referral-followup"],
        "scope": {
            "kinds": ["referral"],
            "fields": ["safety-plan.updated_on", "safety-plan.deescalation_preferences",
                       "safety-plan.crisis_contacts"]
        },
        "valid_from": ts(now - Duration::days(10)),
        "expires": ts(now + Duration::days(365)),
        "signature_reference": "DMS-DEMO-0001 (signed consent form)",
        "signed_on": (now - Duration::days(10)).date_naive().to_string(),
        "revocation_statement": "You may revoke this consent at any time by telling County \
            Behavioral Health Services in writing; disclosures already made stand."
    });
    d.consent("CONSENT-DEMO-1", consent).await?;
    d.year(now).await?;
    let report = d.report;
    Ok(report)
}

impl Demo<'_> {
    /// Records a consent as the county clinician who collected it, with its log entry.
    async fn consent(&mut self, id: &str, body: Value) -> anyhow::Result<()> {
        let directive: ConsentDirective = serde_json::from_value(body)?;
        let author = Author {
            partner: "county-mh".parse()?,
            user: "clin-7".parse()?,
        };
        self.services
            .seed_consent(&author, &directive, id)
            .await
            .map_err(|e| anyhow::anyhow!("demo consent {id}: {e}"))?;
        self.report.consents += 1;
        Ok(())
    }
}
