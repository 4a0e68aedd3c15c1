//! Identifier newtypes with their syntax rules.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Why a string was refused as an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} `{value}`: {rule}")]
pub struct IdError {
    /// The kind of identifier ("partner id", "role", ...).
    pub what: &'static str,
    /// The refused value, truncated to 64 characters.
    pub value: String,
    /// The rule it breaks.
    pub rule: &'static str,
}

impl IdError {
    fn new(what: &'static str, value: &str, rule: &'static str) -> Self {
        let value: String = value.chars().take(64).collect();
        Self { what, value, rule }
    }
}

/// Checks the "slug" syntax shared by partner ids, roles and purposes: 1 to `max` characters
/// from `a-z`, `0-9`, `-` and `_`, starting with a letter.
fn check_slug(what: &'static str, s: &str, max: usize) -> Result<(), IdError> {
    const RULE: &str =
        "use 1 to 64 characters from a-z, 0-9, `-` and `_`, starting with a lowercase letter";
    let mut chars = s.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !first_ok || !rest_ok || s.len() > max {
        return Err(IdError::new(what, s, RULE));
    }
    Ok(())
}

macro_rules! slug_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                check_slug($what, s, 64)?;
                Ok(Self(s.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                check_slug($what, &s, 64)?;
                Ok(Self(s))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::try_from(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

slug_type!(
    /// A partner agency's id, e.g. `metro-pd`. It is the last path segment of the partner's
    /// certificate URI SAN (`spiffe://<trust-domain>/partner/<id>`).
    PartnerId,
    "partner id"
);
slug_type!(
    /// A role claimed in a user token, e.g. `officer`, `clinician`, `compliance`.
    Role,
    "role"
);
slug_type!(
    /// A purpose of use stated by a request, e.g. `crisis-response`, `referral-followup`,
    /// `treatment`, `audit`, `emergency`. Which purposes exist is policy (`policies/`).
    Purpose,
    "purpose of use"
);

/// The kind of a partner agency. It decides which record kinds a partner may own and which
/// hard legal limits apply to what it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartnerKind {
    /// A law-enforcement agency (a criminal-justice agency, not a HIPAA covered entity).
    Police,
    /// A mental-health agency (a HIPAA covered entity; may hold 42 CFR Part 2 records).
    MentalHealth,
    /// A compliance or oversight office that audits disclosures.
    Compliance,
}

impl PartnerKind {
    /// The kebab-case name used in policy files and API answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Police => "police",
            Self::MentalHealth => "mental-health",
            Self::Compliance => "compliance",
        }
    }
}

impl fmt::Display for PartnerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PartnerKind {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "police" => Ok(Self::Police),
            "mental-health" => Ok(Self::MentalHealth),
            "compliance" => Ok(Self::Compliance),
            _ => Err(IdError::new(
                "partner kind",
                s,
                "use `police`, `mental-health` or `compliance`",
            )),
        }
    }
}

/// A user id as asserted by a partner's identity provider (the token's `sub`): 1 to 128
/// visible ASCII characters, no whitespace. It is unique only within its partner.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct UserId(String);

impl UserId {
    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for UserId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(IdError::new(
                "user id",
                s,
                "use 1 to 128 visible ASCII characters without spaces",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SHA-256 digest of a DER-encoded certificate.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertFingerprint([u8; 32]);

impl CertFingerprint {
    /// Fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    /// Lower-case hex, the form shown to people and written to logs.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Base64url without padding: the RFC 8705 `x5t#S256` confirmation form.
    pub fn to_x5t_s256(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0)
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertFingerprint({})", self.to_hex())
    }
}

impl fmt::Display for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_accept_the_documented_syntax() {
        for ok in ["metro-pd", "county-mh", "a", "crisis_response", "x9"] {
            assert!(ok.parse::<PartnerId>().is_ok(), "{ok}");
        }
        for bad in ["", "Metro", "9lives", "-x", "a b", "a/b", &"a".repeat(65)] {
            assert!(bad.parse::<PartnerId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn partner_kind_round_trips() {
        for k in [
            PartnerKind::Police,
            PartnerKind::MentalHealth,
            PartnerKind::Compliance,
        ] {
            assert_eq!(k.as_str().parse::<PartnerKind>(), Ok(k));
        }
        assert!("fire".parse::<PartnerKind>().is_err());
    }

    #[test]
    fn user_ids_refuse_whitespace_and_control_characters() {
        assert!("officer-17".parse::<UserId>().is_ok());
        assert!("a b".parse::<UserId>().is_err());
        assert!("a\nb".parse::<UserId>().is_err());
        assert!("".parse::<UserId>().is_err());
    }

    #[test]
    fn fingerprint_forms() {
        let fp = CertFingerprint::of_der(b"abc");
        assert_eq!(
            fp.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            fp.to_x5t_s256(),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
    }
}
