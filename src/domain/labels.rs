//! Sensitivity labels, field types and the transforms a field can get on its way out.
//!
//! These are the vocabulary shared by the policy files, the decision, the redaction step and
//! consents; they hold no policy themselves.

use std::fmt;

use serde::{Deserialize, Serialize};

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
