//! The validated policy model: record kinds with typed, labelled fields; MOUs with rules; the
//! transforms a rule may apply to a field; the purposes of use the engine knows.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

pub use crate::domain::{FieldType, Generalization, Label, MaskKeep, Transform};
use crate::domain::{PartnerId, PartnerKind, Purpose, Role};

/// One field of a record kind.
#[derive(Debug, Clone, Serialize)]
pub struct FieldDef {
    /// Field name, unique in its kind.
    pub name: String,
    /// Value type.
    pub ty: FieldType,
    /// Sensitivity labels.
    pub labels: BTreeSet<Label>,
    /// Partner kinds that may write the field (the owner by default).
    pub writable_by: BTreeSet<PartnerKind>,
    /// Whether every record of the kind must hold the field.
    pub required: bool,
    /// What the field holds, for people reading the policy.
    pub description: String,
}

/// A record kind: its owner and its fields, in declaration order.
#[derive(Debug, Clone, Serialize)]
pub struct KindDef {
    /// Kind id, e.g. `crisis-incident`.
    pub id: String,
    /// The partner kind whose agencies hold (and disclose) records of this kind.
    pub owner: PartnerKind,
    /// What the kind is.
    pub description: String,
    /// Fields in declaration order.
    pub fields: Vec<FieldDef>,
}

impl KindDef {
    /// The field with this name.
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// The legal basis a rule's disclosures rest on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "basis", rename_all = "kebab-case")]
pub enum LegalBasis {
    /// The subject's consent is required: the rule applies only with an active consent that
    /// covers the flow, and only to the fields that consent covers.
    Consent,
    /// Permitted by law without consent.
    Law {
        /// The provision, e.g. `45 CFR 164.506(c)`.
        citation: String,
    },
    /// The serious-and-imminent-threat profile (HIPAA 164.512(j)): purpose `emergency` only,
    /// with a stated good-faith basis and threat description.
    Emergency {
        /// The provision.
        citation: String,
    },
    /// The medical-emergency profile (42 CFR 2.51): purpose `emergency` only, to a user acting
    /// in a role the recipient marks as medical personnel, with the medical personnel's name
    /// and the nature of the emergency stated. The only basis on which Part 2 information
    /// leaves without consent or a court order; never to police.
    MedicalEmergency {
        /// The provision.
        citation: String,
    },
}

impl LegalBasis {
    /// A short form for reasons, e.g. `law: 45 CFR 164.506(c)`.
    pub fn describe(&self) -> String {
        match self {
            Self::Consent => "consent".into(),
            Self::Law { citation } => format!("law: {citation}"),
            Self::Emergency { citation } => format!("emergency: {citation}"),
            Self::MedicalEmergency { citation } => format!("medical-emergency: {citation}"),
        }
    }

    /// Whether an agreed restriction (HIPAA 164.522(a), 42 CFR 2.26) can stop disclosures on
    /// this basis. It cannot stop the emergency profiles: 164.522(a)(1)(iii) keeps emergency
    /// treatment open (2.51 here), and 164.522(a)(1)(v) makes a restriction ineffective against
    /// disclosures permitted under 164.512, which includes 164.512(j) (the `emergency`
    /// profile).
    pub fn restrictable(&self) -> bool {
        matches!(self, Self::Consent | Self::Law { .. })
    }
}

/// Whether a rule permits or forbids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    /// The rule grants its field profile.
    Permit,
    /// The rule forbids the flow outright; it beats every permit.
    Deny,
}

/// One flow of an MOU.
#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    /// Rule id, unique in its MOU (a clause number works well).
    pub id: String,
    /// What the rule is for.
    pub title: String,
    /// Permit or deny.
    pub effect: Effect,
    /// Partners that may receive.
    pub recipients: BTreeSet<PartnerId>,
    /// Roles that may receive (any one suffices).
    pub roles: BTreeSet<Role>,
    /// Purposes of use it serves.
    pub purposes: BTreeSet<Purpose>,
    /// The record kind.
    pub kind: String,
    /// The legal basis (permit rules).
    pub basis: LegalBasis,
    /// The field profile: field name to transform. Fields not named are omitted.
    pub fields: BTreeMap<String, Transform>,
    /// Criminal-justice-information fields the MOU names explicitly for release to a
    /// non-criminal-justice recipient.
    pub release_cji: BTreeSet<String>,
}

impl Rule {
    /// Whether the rule's recipients, roles, purposes and kind match the request.
    pub fn matches(
        &self,
        recipient: &PartnerId,
        roles: &BTreeSet<Role>,
        purpose: &Purpose,
        kind: &str,
    ) -> bool {
        self.kind == kind
            && self.recipients.contains(recipient)
            && self.purposes.contains(purpose)
            && self.roles.iter().any(|r| roles.contains(r))
    }
}

/// A memorandum of understanding between partner agencies.
#[derive(Debug, Clone, Serialize)]
pub struct Mou {
    /// MOU id, quoted in every decision that rests on it.
    pub id: String,
    /// Title.
    pub title: String,
    /// Reference to the signed document (document-management id or URL).
    pub document: String,
    /// Signatories, as written in the signed document.
    pub signatories: Vec<String>,
    /// Partner agencies party to it.
    pub parties: BTreeSet<PartnerId>,
    /// First day in force (UTC).
    pub effective: NaiveDate,
    /// Last day in force (UTC, inclusive).
    pub expires: NaiveDate,
    /// How long recipients keep what they receive, in days.
    pub retention_days: u32,
    /// The flows.
    pub rules: Vec<Rule>,
    /// The file it came from, relative to the policy directory.
    pub file: String,
}

impl Mou {
    /// Whether the MOU is in force at `now`.
    pub fn in_force(&self, now: DateTime<Utc>) -> bool {
        let day = now.date_naive();
        self.effective <= day && day <= self.expires
    }
}

/// Purposes of use the engine knows, with what they mean. The vocabulary is closed: a purpose
/// drives hard limits (`investigation` and `prosecution` are law-enforcement purposes), so a
/// policy file cannot invent one to step around them.
pub const PURPOSES: [(&str, &str); 8] = [
    (
        "crisis-response",
        "responding to a behavioural-health crisis in progress",
    ),
    (
        "referral-followup",
        "following up a referral from police to a mental-health agency",
    ),
    ("treatment", "treatment by a health-care provider"),
    (
        "care-coordination",
        "coordinating services between the partners",
    ),
    ("audit", "compliance audit and oversight"),
    (
        "emergency",
        "preventing a serious and imminent threat (HIPAA 164.512(j))",
    ),
    (
        "investigation",
        "a criminal investigation (law enforcement)",
    ),
    ("prosecution", "a criminal prosecution (law enforcement)"),
];

/// Whether `purpose` is in the engine's vocabulary.
pub fn is_known_purpose(purpose: &str) -> bool {
    PURPOSES.iter().any(|(p, _)| *p == purpose)
}

/// Whether `purpose` is a law-enforcement purpose (investigation or prosecution): 42 CFR 2.12
/// forbids using Part 2 records for it.
pub fn is_law_enforcement_purpose(purpose: &str) -> bool {
    matches!(purpose, "investigation" | "prosecution")
}

/// The emergency purpose.
pub const EMERGENCY_PURPOSE: &str = "emergency";
