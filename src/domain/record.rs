//! Identifiers of records and of the people they are about.
//!
//! A record is `(kind, id)`; its subject is named by one or more identifiers from partners'
//! systems ([`SubjectIdentifier`]), each in one canonical form used for storage, lookup,
//! consents and log pseudonyms alike.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A record kind, e.g. `crisis-incident`: 1 to 64 characters from `a-z`, `0-9`, `-`, `_`,
/// starting with a letter. Which kinds exist is policy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RecordKind(String);

/// A record id, e.g. `INC-2026-0042`: 1 to 128 characters from `A-Z`, `a-z`, `0-9`, `-`,
/// `_`, `.` (safe in a URL path segment).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RecordId(String);

/// A value refused by the input rules of a record or subject identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {rule}")]
pub struct InvalidInput {
    /// What was refused.
    pub what: &'static str,
    /// The rule it breaks.
    pub rule: &'static str,
}

impl InvalidInput {
    /// A refusal of `what` for breaking `rule`.
    pub fn new(what: &'static str, rule: &'static str) -> Self {
        Self { what, rule }
    }
}

fn invalid(what: &'static str, rule: &'static str) -> InvalidInput {
    InvalidInput::new(what, rule)
}

macro_rules! string_type {
    ($name:ident, $what:literal, $rule:literal, $check:expr) => {
        impl $name {
            /// The value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl FromStr for $name {
            type Err = InvalidInput;
            fn from_str(s: &str) -> Result<Self, InvalidInput> {
                Self::try_from(s.to_owned())
            }
        }
        impl TryFrom<String> for $name {
            type Error = InvalidInput;
            fn try_from(s: String) -> Result<Self, InvalidInput> {
                let check: fn(&str) -> bool = $check;
                if check(&s) {
                    Ok(Self(s))
                } else {
                    Err(invalid($what, $rule))
                }
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_type!(
    RecordKind,
    "record kind",
    "use 1 to 64 characters from a-z, 0-9, `-` and `_`, starting with a lowercase letter",
    |s| {
        s.len() <= 64
            && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    }
);
string_type!(
    RecordId,
    "record id",
    "use 1 to 128 characters from A-Z, a-z, 0-9, `-`, `_` and `.`",
    |s| {
        !s.is_empty()
            && s.len() <= 128
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    }
);

/// An identifier of a record's subject in some partner's system, e.g.
/// `{"system": "metro-pd", "value": "P-2231"}`. `Debug` hides the value.
///
/// Canonical form (the one every blind index, pseudonym and consent match uses): the value is
/// trimmed and every run of white space inside it becomes one space; case is kept, because
/// identifier systems differ on whether `p-2231` and `P-2231` are one person, and merging two
/// people would disclose one person's records as another's. After that, identifiers are
/// compared byte for byte.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawSubject", deny_unknown_fields)]
pub struct SubjectIdentifier {
    system: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubject {
    system: String,
    value: String,
}

impl TryFrom<RawSubject> for SubjectIdentifier {
    type Error = InvalidInput;
    fn try_from(r: RawSubject) -> Result<Self, InvalidInput> {
        Self::new(r.system, r.value)
    }
}

impl SubjectIdentifier {
    /// `system`: 1 to 64 characters from `a-z`, `0-9`, `-`, `_`, `.`, `:`; `value`: 1 to 256
    /// characters, no control characters.
    pub fn new(system: impl Into<String>, value: impl Into<String>) -> Result<Self, InvalidInput> {
        let (system, raw) = (system.into(), value.into());
        if raw.chars().any(char::is_control) {
            return Err(invalid(
                "subject identifier value",
                "use 1 to 256 characters without control characters",
            ));
        }
        let value = canonical_value(&raw);
        let system_ok = !system.is_empty()
            && system.len() <= 64
            && system
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.:".contains(c));
        if !system_ok {
            return Err(invalid(
                "subject identifier system",
                "use 1 to 64 characters from a-z, 0-9, `-`, `_`, `.` and `:`",
            ));
        }
        if value.is_empty() || value.chars().count() > 256 || value.chars().any(char::is_control) {
            return Err(invalid(
                "subject identifier value",
                "use 1 to 256 characters without control characters",
            ));
        }
        Ok(Self { system, value })
    }

    /// The issuing system, e.g. `metro-pd`.
    pub fn system(&self) -> &str {
        &self.system
    }

    /// The identifier within that system. Personal data: never log it.
    pub fn value(&self) -> &str {
        &self.value
    }
}

/// Most identifiers one record or consent may name for its person.
pub const MAX_SUBJECT_IDENTIFIERS: usize = 16;

/// Trims and collapses white space (see [`SubjectIdentifier`]).
fn canonical_value(raw: &str) -> String {
    raw.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl fmt::Debug for SubjectIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubjectIdentifier")
            .field("system", &self.system)
            .field("value", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_rules() {
        assert!("Crisis".parse::<RecordKind>().is_err());
        assert!("INC/1".parse::<RecordId>().is_err());
        assert!("".parse::<RecordId>().is_err());
        assert!(SubjectIdentifier::new("Metro PD", "x").is_err());
        assert!(SubjectIdentifier::new("metro-pd", "a\nb").is_err());
        assert!(SubjectIdentifier::new("metro-pd", "   ").is_err());
        assert_eq!(
            SubjectIdentifier::new("metro-pd", "  P  2231 ").unwrap(),
            SubjectIdentifier::new("metro-pd", "P 2231").unwrap(),
            "white space is canonical"
        );
        assert_ne!(
            SubjectIdentifier::new("metro-pd", "p-2231").unwrap(),
            SubjectIdentifier::new("metro-pd", "P-2231").unwrap(),
            "case is kept"
        );
        let s: Result<SubjectIdentifier, _> =
            serde_json::from_str(r#"{"system":"metro-pd","value":"P-1","extra":1}"#);
        assert!(s.is_err());
    }

    #[test]
    fn debug_never_shows_the_value() {
        let s = SubjectIdentifier::new("metro-pd", "P-SECRET-1").unwrap();
        let shown = format!("{s:?}");
        assert!(
            shown.contains("metro-pd") && !shown.contains("SECRET"),
            "{shown}"
        );
    }
}
