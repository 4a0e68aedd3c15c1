//! The field transforms, each a small pure function over a JSON value.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Datelike as _, NaiveDate};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::domain::PartnerId;
use crate::domain::{Generalization, MaskKeep};

/// ZIP3 areas with 20,000 or fewer people (2000 census), which HIPAA safe harbor
/// (45 CFR 164.514(b)(2)(i)(B)) requires to be reported as `000`.
pub const RESTRICTED_ZIP3: [&str; 17] = [
    "036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878",
    "879", "884", "890", "893",
];

/// A value does not fit its transform.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("value is not {expected}")]
pub struct ValueError {
    /// What the transform expected.
    pub expected: &'static str,
}

fn bad(expected: &'static str) -> ValueError {
    ValueError { expected }
}

/// Keeps the first or last `chars` characters and replaces the others with `*`. A value no
/// longer than `chars` is masked entirely (keeping it would reveal all of it).
pub fn mask(s: &str, keep: MaskKeep, chars: u8) -> String {
    let n = s.chars().count();
    let keep_n = usize::from(chars);
    if n <= keep_n {
        return "*".repeat(n);
    }
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            let kept = match keep {
                MaskKeep::First => i < keep_n,
                MaskKeep::Last => i >= n - keep_n,
            };
            if kept { c } else { '*' }
        })
        .collect()
}

/// A date (`YYYY-MM-DD`) or RFC 3339 timestamp reduced to `YYYY` or `YYYY-MM` (timestamps in
/// their own offset, as recorded).
pub fn generalize_date(s: &str, to: Generalization) -> Result<String, ValueError> {
    let (y, m) = if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        (d.year(), d.month())
    } else if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        (t.year(), t.month())
    } else {
        return Err(bad("a date or an RFC 3339 timestamp"));
    };
    match to {
        Generalization::Year => Ok(format!("{y:04}")),
        Generalization::Month => Ok(format!("{y:04}-{m:02}")),
        _ => Err(bad("generalizable to year or month")),
    }
}

/// An age to a ten-year band (`30-39`); 90 and over become `90+` (HIPAA safe harbor).
pub fn age_band(age: i64) -> Result<String, ValueError> {
    if !(0..=150).contains(&age) {
        return Err(bad("an age between 0 and 150"));
    }
    if age >= 90 {
        return Ok("90+".into());
    }
    let lo = age / 10 * 10;
    Ok(format!("{lo}-{}", lo + 9))
}

/// The HIPAA safe-harbor ZIP3 of a ZIP code: its first three digits, or `000` when that area
/// is in [`RESTRICTED_ZIP3`].
pub fn zip3(zip: &str) -> Result<String, ValueError> {
    let digits: String = zip.chars().take(5).collect();
    if digits.len() != 5 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad("a ZIP code"));
    }
    let three = digits.get(..3).ok_or_else(|| bad("a ZIP code"))?;
    if RESTRICTED_ZIP3.contains(&three) {
        Ok("000".into())
    } else {
        Ok(three.to_owned())
    }
}

/// An address object reduced to `{city, state}` or to its safe-harbor ZIP3.
pub fn generalize_address(v: &Value, to: Generalization) -> Result<Value, ValueError> {
    let obj = v.as_object().ok_or_else(|| bad("an address object"))?;
    match to {
        Generalization::City => {
            let mut out = serde_json::Map::new();
            for k in ["city", "state"] {
                if let Some(x) = obj.get(k) {
                    out.insert(k.to_owned(), x.clone());
                }
            }
            Ok(Value::Object(out))
        }
        Generalization::Zip3 => {
            let zip = obj
                .get("zip")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("an address with a `zip`"))?;
            Ok(Value::String(zip3(zip)?))
        }
        _ => Err(bad("generalizable to city or zip3")),
    }
}

type HmacSha256 = Hmac<Sha256>;

/// The per-recipient pseudonym key: HMAC-SHA256(secret, "coresponse-gateway/pseudonym/v1" ||
/// 0x00 || recipient id).
pub fn pseudonym_key(secret: &[u8], recipient: &PartnerId) -> [u8; 32] {
    let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
        return [0; 32]; // unreachable: HMAC accepts keys of any length
    };
    mac.update(b"coresponse-gateway/pseudonym/v1\0");
    mac.update(recipient.as_str().as_bytes());
    mac.finalize().into_bytes().into()
}

/// A keyed pseudonym of a value for one recipient: `ps_` + base64url(HMAC-SHA256(key_r, the
/// value's JSON)). Stable for that recipient; unlinkable across recipients without the secret.
pub fn pseudonymize(secret: &[u8], recipient: &PartnerId, v: &Value) -> String {
    let key = pseudonym_key(secret, recipient);
    let Ok(mut mac) = HmacSha256::new_from_slice(&key) else {
        return String::new();
    };
    mac.update(v.to_string().as_bytes());
    format!("ps_{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mask_keeps_the_requested_end() {
        assert_eq!(mask("555-867-5309", MaskKeep::Last, 4), "********5309");
        assert_eq!(mask("Jordan", MaskKeep::First, 1), "J*****");
        assert_eq!(mask("abc", MaskKeep::Last, 4), "***");
        assert_eq!(mask("", MaskKeep::Last, 4), "");
    }

    #[test]
    fn dates_generalize_to_year_or_month() {
        assert_eq!(
            generalize_date("2026-03-14", Generalization::Year).unwrap(),
            "2026"
        );
        assert_eq!(
            generalize_date("2026-03-14", Generalization::Month).unwrap(),
            "2026-03"
        );
        assert_eq!(
            generalize_date("2026-03-31T23:30:00-05:00", Generalization::Month).unwrap(),
            "2026-03"
        );
        assert!(generalize_date("March", Generalization::Year).is_err());
    }

    #[test]
    fn ages_band_by_ten_and_cap_at_90() {
        assert_eq!(age_band(0).unwrap(), "0-9");
        assert_eq!(age_band(34).unwrap(), "30-39");
        assert_eq!(age_band(89).unwrap(), "80-89");
        assert_eq!(age_band(90).unwrap(), "90+");
        assert_eq!(age_band(104).unwrap(), "90+");
        assert!(age_band(-1).is_err());
    }

    #[test]
    fn zip3_follows_safe_harbor() {
        assert_eq!(zip3("02139").unwrap(), "021");
        assert_eq!(zip3("03601").unwrap(), "000");
        assert_eq!(zip3("89301-1234").unwrap(), "000");
        for z in RESTRICTED_ZIP3 {
            assert_eq!(zip3(&format!("{z}00")).unwrap(), "000");
        }
        assert!(zip3("1234").is_err());
        let addr =
            json!({"street": "1 Main St", "city": "Metro City", "state": "ST", "zip": "55123"});
        assert_eq!(
            generalize_address(&addr, Generalization::City).unwrap(),
            json!({"city": "Metro City", "state": "ST"})
        );
        assert_eq!(
            generalize_address(&addr, Generalization::Zip3).unwrap(),
            json!("551")
        );
    }

    #[test]
    fn pseudonyms_are_stable_per_recipient_and_unlinkable_across() {
        let secret = [9u8; 32];
        let a: PartnerId = "county-mh".parse().unwrap();
        let b: PartnerId = "oversight".parse().unwrap();
        let v = json!("officer-4411");
        let pa1 = pseudonymize(&secret, &a, &v);
        let pa2 = pseudonymize(&secret, &a, &v);
        let pb = pseudonymize(&secret, &b, &v);
        assert_eq!(pa1, pa2);
        assert_ne!(pa1, pb);
        assert_ne!(pa1, pseudonymize(&secret, &a, &json!("officer-4412")));
        assert_ne!(pa1, pseudonymize(&[8u8; 32], &a, &v));
        assert!(pa1.starts_with("ps_") && !pa1.contains("officer"));
    }
}
