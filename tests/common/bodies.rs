//! Request bodies the API tests and the scale-out tests both send: a crisis incident, a safety
//! plan, and a consent to read the plan's de-escalation preferences. Each carries markers
//! (`NARRATIVE-MARKER`, `CJI-MARKER`, `DIAGNOSIS-MARKER`, ...) that tests search for where
//! they must never appear. Included by path into each test program.

// Each program that includes this file uses part of it.
#![allow(dead_code)]

use serde_json::{Value, json};

/// A crisis incident about metro-pd person `subject`, with `narrative`.
pub fn incident(subject: &str, narrative: &str) -> Value {
    json!({
        "subjects": [{"system": "metro-pd", "value": subject}],
        "fields": {
            "incident_id": "INC-1",
            "subject_name": "Jordan Example",
            "subject_age": 34,
            "occurred_at": "2026-11-02T21:40:00Z",
            "location": {"street": "12 Elm St", "city": "Metro City", "state": "ST", "zip": "00001"},
            "call_type": "WELFARE_CHECK",
            "narrative": narrative,
            "observed_behaviour": "agitated, responsive to de-escalation",
            "safety_weapon": true,
            "safety_violence": false,
            "safety_threats": false,
            "safety_self_harm": true,
            "disposition": "REFERRED",
            "officer_ids": ["B-1107"],
            "callback_number": "+1 555 010 4477",
            "criminal_history_summary": "CJI-MARKER prior record"
        }
    })
}

/// A safety plan of the person known as metro-pd `person` and county-mh `mrn`.
pub fn safety_plan(person: &str, mrn: &str) -> Value {
    json!({
        "subjects": [{"system": "metro-pd", "value": person}, {"system": "county-mh", "value": mrn}],
        "fields": {
            "plan_id": "SP-1",
            "updated_on": "2026-10-30",
            "warning_signs": "not sleeping",
            "deescalation_preferences": "speak slowly, no sirens",
            "crisis_contacts": "sister: +1 555 010 2222",
            "means_safety": "medications locked by sister",
            "diagnoses": ["DIAGNOSIS-MARKER"],
            "substance_use_history": "SUD-MARKER in treatment",
            "psychotherapy_notes": "PSYNOTES-MARKER"
        }
    })
}

/// A consent of county-mh `mrn` letting county-mh tell metro-pd the safety plan's
/// de-escalation preferences for crisis response, valid from five minutes ago for 30 days.
pub fn plan_consent(mrn: &str) -> Value {
    let now = chrono::Utc::now();
    json!({
        "subjects": [{"system": "county-mh", "value": mrn}],
        "patient_name": "Jordan Example",
        "disclosers": ["county-mh"],
        "recipients": ["metro-pd"],
        "purposes": ["crisis-response"],
        "scope": {"fields": ["safety-plan.deescalation_preferences"]},
        "valid_from": (now - chrono::Duration::minutes(5)).to_rfc3339(),
        "expires": (now + chrono::Duration::days(30)).to_rfc3339(),
        "signature_reference": "DMS-2026-0001",
        "signed_on": now.date_naive().to_string(),
        "revocation_statement": "You may revoke this consent at any time, in writing.",
    })
}
