//! What the benchmarks share: settings from the environment and a realistic disclosure entry.

use chrono::Utc;
use coresponse_gateway::audit::{
    EntryKind, FieldDisclosure, LegalBasis, NewEntry, Outcome, RecordRef, SubjectKey,
};

/// A number from the environment variable `name`, or `default`.
pub fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `i`th disclosure entry: the size and shape of a real one (5,000 distinct subjects).
pub fn entry(key: &SubjectKey, i: u64) -> NewEntry {
    let mut e = NewEntry::new(EntryKind::Disclosure, Utc::now(), Outcome::Permit);
    e.request_id = Some("0190f3a2-7b1c-7d4e-9a2b-3c4d5e6f7a8b".into());
    e.decision_id = Some(format!("dec-{i}"));
    e.policy_hash = Some("3f".repeat(32));
    e.recipient_partner = Some("county-mh".into());
    e.recipient_user = Some("clin-7".into());
    e.recipient_role = Some("clinician".into());
    e.purpose = Some("crisis-response".into());
    e.basis = Some(LegalBasis::Mou {
        mou_id: "mou-metro-county-2026".into(),
        rule: "mh-crisis-incident".into(),
    });
    e.subject = Some(key.pseudonym("mrn", &format!("S-{}", i % 5000)));
    e.record = Some(RecordRef {
        kind: "crisis-incident".into(),
        id: format!("inc-{i}"),
    });
    e.fields_disclosed = vec![
        FieldDisclosure::new("time", "reveal"),
        FieldDisclosure::new("location", "generalize"),
        FieldDisclosure::new("narrative", "reveal"),
        FieldDisclosure::new("safety_flags", "reveal"),
        FieldDisclosure::new("callback_number", "mask"),
    ];
    e.fields_withheld = 4;
    e.source_addr = Some("10.0.0.17:51234".into());
    e.cert_sha256 = Some("ab".repeat(32));
    e
}
