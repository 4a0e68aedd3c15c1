//! The code systems and codes the FHIR mapping uses: HL7 terminology (ActReason purpose of
//! use, ActCode sensitivity, refrain and policy codes, Confidentiality, ParticipationType,
//! consent scope and action), LOINC consent categories, and the gateway's own code and
//! identifier systems under [`BASE`].
//!
//! Security role: one table each way, so a purpose, a sensitivity category or a referral state
//! has exactly one FHIR form on the way out and is recognised on the way in only from the codes
//! listed here; anything else is refused by the mapping, never guessed.

use crate::domain::Label;
use crate::policy::PURPOSES;

/// The base of the gateway's canonical URLs (code systems, identifier systems, extensions).
/// These are names, not addresses to fetch.
pub const BASE: &str = "https://coresponse-gateway.example/fhir";

/// HL7 v3 ActReason (purpose of use).
pub const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
/// HL7 v3 ActCode (sensitivity, refrain, privacy policy and consent directive codes).
pub const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
/// HL7 v3 Confidentiality.
pub const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
/// HL7 v3 ParticipationType (consent actor roles).
pub const PARTICIPATION_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
/// FHIR consent scope.
pub const CONSENT_SCOPE: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
/// FHIR consent action.
pub const CONSENT_ACTION: &str = "http://terminology.hl7.org/CodeSystem/consentaction";
/// FHIR consent policy codes.
pub const CONSENT_POLICY: &str = "http://terminology.hl7.org/CodeSystem/consentpolicycodes";
/// LOINC.
pub const LOINC: &str = "http://loinc.org";
/// FHIR provenance participant type.
pub const PROVENANCE_PARTICIPANT: &str =
    "http://terminology.hl7.org/CodeSystem/provenance-participant-type";
/// FHIR data-absent-reason extension.
pub const DATA_ABSENT_REASON_EXT: &str =
    "http://hl7.org/fhir/StructureDefinition/data-absent-reason";
/// The FHIR version served.
pub const FHIR_VERSION: &str = "4.0.1";

/// The media type of FHIR JSON.
pub const FHIR_JSON: &str = "application/fhir+json";

/// A gateway URL under [`BASE`].
pub fn gw(path: &str) -> String {
    format!("{BASE}/{path}")
}

/// The gateway's purpose-of-use codes (every purpose of the policy vocabulary).
pub fn purpose_system() -> String {
    gw("CodeSystem/purpose-of-use")
}
/// The gateway's sensitivity categories (the policy labels).
pub fn label_system() -> String {
    gw("CodeSystem/label")
}
/// Record kinds.
pub fn kind_system() -> String {
    gw("CodeSystem/record-kind")
}
/// Record fields, `kind.field`.
pub fn field_system() -> String {
    gw("CodeSystem/record-field")
}
/// Referral states (and the police view's `IN_PROGRESS`).
pub fn referral_status_system() -> String {
    gw("CodeSystem/referral-status")
}
/// The gateway's error codes (the JSON API's `code`).
pub fn error_system() -> String {
    gw("CodeSystem/error")
}
/// The code of one problem within an error (`details.problems[].code`).
pub fn problem_system() -> String {
    gw("CodeSystem/problem")
}
/// Partner agencies, by partner id.
pub fn partner_system() -> String {
    gw("sid/partner")
}
/// A person's identifiers in a partner's system `system` (the gateway's subject systems).
pub fn subject_system(system: &str) -> String {
    gw(&format!("sid/subject/{system}"))
}
/// The prefix of subject identifier systems.
pub fn subject_system_prefix() -> String {
    gw("sid/subject/")
}
/// Records of `kind`.
pub fn record_system(kind: &str) -> String {
    gw(&format!("sid/record/{kind}"))
}
/// Disclosure-log entries, by sequence number.
pub fn log_entry_system() -> String {
    gw("sid/disclosure-log-entry")
}
/// Extension: the statement of the right to revoke (42 CFR 2.31(a)(6)).
pub fn revocation_statement_ext() -> String {
    gw("StructureDefinition/consent-revocation-statement")
}
/// Extension on `Consent.provision`: the event on which the consent expires (2.31(a)(7)).
pub fn expiry_event_ext() -> String {
    gw("StructureDefinition/consent-expiry-event")
}
/// Extension: the gateway's own consent status (pending | active | expired | revoked).
pub fn consent_status_ext() -> String {
    gw("StructureDefinition/consent-status")
}
/// Extension: a revocation (`receivedAt`, `receivedHow`, `note`).
pub fn revocation_ext() -> String {
    gw("StructureDefinition/consent-revocation")
}
/// Extension on `Provenance.entity`: the log entry's leaf in the disclosure log's Merkle tree
/// (`index` and base64 `hash`, as the `Log-Leaf-Index` and `Log-Leaf-Hash` headers give them).
pub fn log_leaf_ext() -> String {
    gw("StructureDefinition/log-leaf")
}
/// Extension on `Basic`: one record field (`name`, `value`, `transform`).
pub fn record_field_ext() -> String {
    gw("StructureDefinition/record-field")
}

/// The FHIR coding of a purpose: an HL7 ActReason code where one means the same, else the
/// gateway's own code.
pub fn purpose_coding(purpose: &str) -> (String, String, String) {
    match hl7_purpose(purpose) {
        Some((code, display)) => (ACT_REASON.to_owned(), code.to_owned(), display.to_owned()),
        None => (
            purpose_system(),
            purpose.to_owned(),
            PURPOSES
                .iter()
                .find(|(p, _)| *p == purpose)
                .map(|(_, d)| (*d).to_owned())
                .unwrap_or_default(),
        ),
    }
}

/// Purposes with an HL7 ActReason code of the same meaning: `(purpose, code, display)`.
pub const HL7_PURPOSES: [(&str, &str, &str); 4] = [
    ("treatment", "TREAT", "treatment"),
    ("care-coordination", "COC", "coordination of care"),
    ("audit", "HCOMPL", "health compliance"),
    ("emergency", "THREAT", "threat"),
];

fn hl7_purpose(purpose: &str) -> Option<(&'static str, &'static str)> {
    HL7_PURPOSES
        .iter()
        .find(|(p, _, _)| *p == purpose)
        .map(|(_, c, d)| (*c, *d))
}

/// The purpose an ActReason code stands for.
pub fn purpose_of_hl7(code: &str) -> Option<&'static str> {
    HL7_PURPOSES
        .iter()
        .find(|(_, c, _)| *c == code)
        .map(|(p, _, _)| *p)
}

/// HL7 sensitivity codes (v3 ActCode) of a label: `(code, display)`.
pub fn hl7_sensitivity(label: Label) -> Option<(&'static str, &'static str)> {
    match label {
        Label::Sud => Some(("ETH", "substance abuse information sensitivity")),
        Label::Clinical => Some(("PSY", "psychiatry disorder information sensitivity")),
        Label::PsychotherapyNotes => {
            Some(("PSYTHPN", "psychotherapy note information sensitivity"))
        }
        _ => None,
    }
}

/// The label an HL7 sensitivity code (v3 ActCode) stands for (`SUD` too, for Part 2).
pub fn label_of_hl7(code: &str) -> Option<Label> {
    match code {
        "ETH" | "SUD" => Some(Label::Sud),
        "PSY" => Some(Label::Clinical),
        "PSYTHPN" => Some(Label::PsychotherapyNotes),
        _ => None,
    }
}

/// The FHIR Task status and business status of a referral state as shown to the caller
/// (`IN_PROGRESS` is the police view's coarse state).
pub fn task_status(shown: &str) -> Option<&'static str> {
    Some(match shown {
        "SUBMITTED" => "requested",
        "RECEIVED" => "received",
        "ASSIGNED" => "accepted",
        "CONTACT_ATTEMPTED" | "ENGAGED" | "DECLINED" | "UNABLE_TO_CONTACT" | "IN_PROGRESS" => {
            "in-progress"
        }
        "CLOSED" => "completed",
        "WITHDRAWN" => "cancelled",
        "REJECTED" => "rejected",
        _ => return None,
    })
}

/// ServiceRequest priority to the referral urgency, one to one.
pub fn urgency_of_priority(priority: &str) -> Option<&'static str> {
    Some(match priority {
        "routine" => "ROUTINE",
        "urgent" => "URGENT",
        "stat" => "EMERGENT",
        _ => return None,
    })
}

/// Referral urgency to the FHIR request priority.
pub fn priority_of_urgency(urgency: &str) -> Option<&'static str> {
    Some(match urgency {
        "ROUTINE" => "routine",
        "URGENT" => "urgent",
        "EMERGENT" => "stat",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_purpose_has_one_coding_and_hl7_codes_come_back() {
        for (p, _) in PURPOSES {
            let (system, code, _) = purpose_coding(p);
            if system == ACT_REASON {
                assert_eq!(purpose_of_hl7(&code), Some(p));
            } else {
                assert_eq!(code, p);
            }
        }
    }

    #[test]
    fn every_referral_state_has_a_task_status() {
        for s in [
            "SUBMITTED",
            "RECEIVED",
            "ASSIGNED",
            "CONTACT_ATTEMPTED",
            "ENGAGED",
            "DECLINED",
            "UNABLE_TO_CONTACT",
            "CLOSED",
            "WITHDRAWN",
            "REJECTED",
            "IN_PROGRESS",
        ] {
            assert!(task_status(s).is_some(), "{s}");
        }
        // The police view never lets the task status tell more than the business status:
        // every finer state between RECEIVED and CLOSED that the view coarsens to IN_PROGRESS
        // has the task status of IN_PROGRESS, except ASSIGNED, which the view never shows.
        assert_eq!(task_status("IN_PROGRESS"), Some("in-progress"));
    }

    #[test]
    fn labels_and_priorities_round_trip() {
        for l in Label::ALL {
            if let Some((code, _)) = hl7_sensitivity(l) {
                assert_eq!(label_of_hl7(code), Some(l));
            }
        }
        for u in ["ROUTINE", "URGENT", "EMERGENT"] {
            assert_eq!(
                urgency_of_priority(priority_of_urgency(u).unwrap()),
                Some(u)
            );
        }
    }
}
