//! The validated policy model: record kinds with typed, labelled fields; MOUs with rules; the
//! transforms a rule may apply to a field; the purposes of use the engine knows.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{PartnerId, PartnerKind, Purpose, Role};

/// A sensitivity label on a field. Labels drive the hard limits and consent coverage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Label {
    /// Names, dates of birth, identifiers of a person.
    Identity,
    /// Phone numbers, addresses, contact people.
    Contact,
    /// What happened in an incident.
    Incident,
    /// Safety information (weapons, violence, threats, self-harm).
    Safety,
    /// Clinical information (diagnoses, medications, treatment notes): HIPAA PHI.
    Clinical,
    /// Substance-use-disorder information under 42 CFR Part 2 (HL7 `SUD`, `ETH`).
    Sud,
    /// Psychotherapy notes (HL7 `PSYNOTES`, HIPAA 164.508(a)(2)).
    PsychotherapyNotes,
    /// Criminal-justice information (CJIS).
    Cji,
}

impl Label {
    /// Every label, in the order documented.
    pub const ALL: [Label; 8] = [
        Self::Identity,
        Self::Contact,
        Self::Incident,
        Self::Safety,
        Self::Clinical,
        Self::Sud,
        Self::PsychotherapyNotes,
        Self::Cji,
    ];

    /// The name used in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Contact => "contact",
            Self::Incident => "incident",
            Self::Safety => "safety",
            Self::Clinical => "clinical",
            Self::Sud => "sud",
            Self::PsychotherapyNotes => "psychotherapy-notes",
            Self::Cji => "cji",
        }
    }

    /// The HL7 confidentiality or sensitivity codes this label stands for, if any.
    pub fn hl7_codes(self) -> &'static [&'static str] {
        match self {
            Self::Sud => &["SUD", "ETH"],
            Self::PsychotherapyNotes => &["PSYNOTES"],
            Self::Cji => &["CJI"],
            _ => &[],
        }
    }

    /// Parses a policy-file name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The type of a field's value (values are JSON in a record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FieldType {
    /// A short string (identifiers, names).
    String,
    /// Free text (narratives, notes).
    Text,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// An RFC 3339 timestamp.
    Datetime,
    /// A whole number.
    Integer,
    /// An age in whole years.
    Age,
    /// `true` or `false`.
    Boolean,
    /// One of a fixed list of values.
    Enum(Vec<String>),
    /// A phone number.
    Phone,
    /// A postal address: an object with `street`, `city`, `state`, `zip`.
    Address,
    /// A list of strings.
    List,
}

impl FieldType {
    /// The name used in policy files.
    pub fn name(&self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Text => "text",
            Self::Date => "date",
            Self::Datetime => "datetime",
            Self::Integer => "integer",
            Self::Age => "age",
            Self::Boolean => "boolean",
            Self::Enum(_) => "enum",
            Self::Phone => "phone",
            Self::Address => "address",
            Self::List => "list",
        }
    }

    /// Type names accepted in policy files.
    pub const NAMES: [&'static str; 11] = [
        "string", "text", "date", "datetime", "integer", "age", "boolean", "enum", "phone",
        "address", "list",
    ];
}

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
pub struct RecordKind {
    /// Kind id, e.g. `crisis-incident`.
    pub id: String,
    /// The partner kind whose agencies hold (and disclose) records of this kind.
    pub owner: PartnerKind,
    /// What the kind is.
    pub description: String,
    /// Fields in declaration order.
    pub fields: Vec<FieldDef>,
}

impl RecordKind {
    /// The field with this name.
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// Which end of a string `mask` keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MaskKeep {
    /// Keep the first characters.
    First,
    /// Keep the last characters.
    Last,
}

/// What `generalize` reduces a value to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Generalization {
    /// A date or timestamp to its year.
    Year,
    /// A date or timestamp to its year and month.
    Month,
    /// An age to a ten-year band; 90 and over become `90+` (HIPAA safe harbor).
    AgeBand,
    /// An address to its city and state.
    City,
    /// An address to the first three ZIP digits, `000` for sparsely populated ZIP3 areas
    /// (HIPAA safe harbor, 45 CFR 164.514(b)(2)(i)(B)).
    Zip3,
}

impl Generalization {
    /// The name used in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Year => "year",
            Self::Month => "month",
            Self::AgeBand => "age-band",
            Self::City => "city",
            Self::Zip3 => "zip3",
        }
    }
}

/// What happens to one field on its way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "transform", rename_all = "kebab-case")]
pub enum Transform {
    /// The value leaves as stored.
    Reveal,
    /// The field does not leave.
    Omit,
    /// All characters but the first or last `chars` become `*`.
    Mask {
        /// Which end is kept.
        keep: MaskKeep,
        /// How many characters are kept.
        chars: u8,
    },
    /// The value is reduced (see [`Generalization`]).
    Generalize {
        /// To what.
        to: Generalization,
    },
    /// The value becomes a keyed pseudonym, stable per recipient, unlinkable across recipients.
    Pseudonymize,
    /// The value leaves as a compact JWE only the recipient partner can open.
    Encrypt,
}

impl Transform {
    /// How much of the value reaches the recipient: 0 for `omit` up to 4 for `reveal` and
    /// `encrypt`. When two rules disagree at run time the lower one wins.
    pub fn disclosure_rank(self) -> u8 {
        match self {
            Self::Omit => 0,
            Self::Pseudonymize => 1,
            Self::Generalize { .. } => 2,
            Self::Mask { .. } => 3,
            Self::Reveal | Self::Encrypt => 4,
        }
    }

    /// Whether the transform fits a field of this type.
    pub fn fits(self, ty: &FieldType) -> bool {
        use FieldType as T;
        match self {
            Self::Reveal | Self::Omit | Self::Encrypt => true,
            Self::Mask { .. } => matches!(ty, T::String | T::Phone),
            Self::Pseudonymize => matches!(ty, T::String | T::Phone | T::Integer),
            Self::Generalize { to } => match to {
                Generalization::Year | Generalization::Month => {
                    matches!(ty, T::Date | T::Datetime)
                }
                Generalization::AgeBand => matches!(ty, T::Age),
                Generalization::City | Generalization::Zip3 => matches!(ty, T::Address),
            },
        }
    }

    /// A short human form, e.g. `mask(last 4)`.
    pub fn describe(self) -> String {
        match self {
            Self::Reveal => "reveal".into(),
            Self::Omit => "omit".into(),
            Self::Mask { keep, chars } => format!(
                "mask(keep {} {chars})",
                if keep == MaskKeep::First {
                    "first"
                } else {
                    "last"
                }
            ),
            Self::Generalize { to } => format!("generalize({})", to.as_str()),
            Self::Pseudonymize => "pseudonymize".into(),
            Self::Encrypt => "encrypt".into(),
        }
    }

    /// The transform's name in policy files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Reveal => "reveal",
            Self::Omit => "omit",
            Self::Mask { .. } => "mask",
            Self::Generalize { .. } => "generalize",
            Self::Pseudonymize => "pseudonymize",
            Self::Encrypt => "encrypt",
        }
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
}

impl LegalBasis {
    /// A short form for reasons, e.g. `law: 45 CFR 164.506(c)`.
    pub fn describe(&self) -> String {
        match self {
            Self::Consent => "consent".into(),
            Self::Law { citation } => format!("law: {citation}"),
            Self::Emergency { citation } => format!("emergency: {citation}"),
        }
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
