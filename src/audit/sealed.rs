//! Sealed free text: the words people type that reach a log entry (an emergency's threat
//! description and stated basis, with the source of a credible representation; a 42 CFR 2.51
//! medical emergency's nature and documentation, with the medical personnel's name; accounting
//! suspension statements; review notes; every entry's detail) are stored only encrypted.
//!
//! Security role: DESIGN guarantee 7, the log holds no clear-text personal data. A threat
//! description names people and what they did; a stated basis names who made the
//! representation. Sealed, they leave the database only through the compliance services and
//! the `audit entries` command, which hold the log's free-text key. The entry hash (and so the
//! Merkle leaf) covers the ciphertext, so anyone can verify the log, and witnesses check it,
//! without the key and without seeing the text.
//!
//! # Format
//!
//! The plaintext is the canonical encoding of three optional strings, in this order: the
//! basis text (an emergency's stated basis, or a 42 CFR 2.51 medical emergency's
//! documentation, which names the medical personnel), the justification, the detail (each
//! `opt-str` as in the entry encoding). The sealed value is `0x01 || nonce (12 bytes) || AES-256-GCM ciphertext and tag`
//! under the log's free-text key, with associated data
//! `"coresponse-gateway/audit-text/v1" || at_us (i64 BE) || str(kind)`, so a sealed text moved
//! to an entry of another time or kind fails to open. The key is a random 256-bit key stored
//! wrapped in `data_keys` (purpose `log-text`) like the subject-pseudonym key: it never changes,
//! only its wrapping does, so sealed text survives master-key rotation.
//!
//! The free text kept beside the log (an accounting suspension's statement, an emergency
//! review's note) is sealed under the same key in its own column, as `sealed1:` followed by
//! the base64 of `nonce || ciphertext || tag`, bound to the table and row
//! ([`LogTextKey::seal_field`]).

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use secrecy::zeroize::Zeroizing;

use super::LogError;
use super::entry::{Entry, EntryFormat, LegalBasis, NewEntry};

/// Format byte of a sealed text.
const SEALED_V1: u8 = 0x01;
const NONCE_LEN: usize = 12;
/// Domain of the associated data.
pub const TEXT_DOMAIN: &[u8] = b"coresponse-gateway/audit-text/v1";

/// The log's free-text key.
#[derive(Clone)]
pub struct LogTextKey {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for LogTextKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogTextKey(..)")
    }
}

/// An entry ready to be chained: its free text sealed and removed from the clear fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedEntry {
    /// The entry without clear free text (justification and detail empty; an emergency basis
    /// with an empty stated basis, a medical-emergency basis with empty documentation).
    pub data: NewEntry,
    /// The sealed free text, if the entry had any.
    pub sealed: Option<Vec<u8>>,
}

fn put_opt(buf: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => buf.push(0),
        Some(s) => {
            buf.push(1);
            let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(s.as_bytes());
        }
    }
}

fn take_opt(rest: &mut &[u8]) -> Option<Option<String>> {
    let (tag, tail) = rest.split_first()?;
    *rest = tail;
    match tag {
        0 => Some(None),
        1 => {
            let (len, tail) = rest.split_at_checked(4)?;
            let len = usize::try_from(u32::from_be_bytes(len.try_into().ok()?)).ok()?;
            let (text, tail) = tail.split_at_checked(len)?;
            *rest = tail;
            Some(Some(String::from_utf8(text.to_vec()).ok()?))
        }
        _ => None,
    }
}

/// How a sealed side-table value starts.
const FIELD_PREFIX: &str = "sealed1:";
/// Domain of a side-table value's associated data.
const FIELD_DOMAIN: &[u8] = b"coresponse-gateway/audit-field/v1";

fn field_aad(label: &str, id: &str) -> Vec<u8> {
    let mut a = FIELD_DOMAIN.to_vec();
    for part in [label, id] {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        a.extend_from_slice(&len.to_be_bytes());
        a.extend_from_slice(part.as_bytes());
    }
    a
}

fn aad(at_us: i64, kind: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(TEXT_DOMAIN.len() + 12 + kind.len());
    a.extend_from_slice(TEXT_DOMAIN);
    a.extend_from_slice(&at_us.to_be_bytes());
    let len = u32::try_from(kind.len()).unwrap_or(u32::MAX);
    a.extend_from_slice(&len.to_be_bytes());
    a.extend_from_slice(kind.as_bytes());
    a
}

impl LogTextKey {
    /// A key from its 32 bytes.
    pub fn new(raw: &[u8; 32]) -> Self {
        let key: &Key<Aes256Gcm> = raw.into();
        Self {
            cipher: Aes256Gcm::new(key),
        }
    }

    /// Seals the entry's free text; an entry without any is returned unchanged, unsealed.
    pub fn seal(&self, mut data: NewEntry) -> Result<SealedEntry, LogError> {
        let stated = match &mut data.basis {
            Some(LegalBasis::Emergency { stated_basis }) => Some(std::mem::take(stated_basis)),
            Some(LegalBasis::MedicalEmergency { documentation }) => {
                Some(std::mem::take(documentation))
            }
            _ => None,
        };
        let justification = data.justification.take();
        let detail = data.detail.take();
        if stated.is_none() && justification.is_none() && detail.is_none() {
            return Ok(SealedEntry { data, sealed: None });
        }
        let mut plain = Zeroizing::new(Vec::with_capacity(256));
        put_opt(&mut plain, stated.as_deref());
        put_opt(&mut plain, justification.as_deref());
        put_opt(&mut plain, detail.as_deref());
        let nonce = Nonce::try_generate()
            .map_err(|_| LogError::Key("no randomness for sealing log text".into()))?;
        let ct = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &plain,
                    aad: &aad(data.at_us(), data.kind.as_str()),
                },
            )
            .map_err(|_| LogError::Key("sealing log text failed".into()))?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        sealed.push(SEALED_V1);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ct);
        Ok(SealedEntry {
            data,
            sealed: Some(sealed),
        })
    }

    /// Seals a free-text value kept beside the log (an accounting-suspension statement, a
    /// review note) for the row `id` of `label`: `sealed1:` and the base64 of
    /// `nonce || ciphertext || tag`, with associated data
    /// `"coresponse-gateway/audit-field/v1" || str(label) || str(id)`.
    pub fn seal_field(&self, label: &str, id: &str, text: &str) -> Result<String, LogError> {
        use base64::Engine as _;
        let nonce = Nonce::try_generate()
            .map_err(|_| LogError::Key("no randomness for sealing log text".into()))?;
        let ct = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: text.as_bytes(),
                    aad: &field_aad(label, id),
                },
            )
            .map_err(|_| LogError::Key("sealing log text failed".into()))?;
        let mut raw = nonce.to_vec();
        raw.extend_from_slice(&ct);
        Ok(format!(
            "{FIELD_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ))
    }

    /// Opens a value sealed by [`LogTextKey::seal_field`] for the same `label` and `id`; a
    /// value stored in clear before sealing existed is returned as it is.
    pub fn open_field(&self, label: &str, id: &str, stored: &str) -> Result<String, LogError> {
        use base64::Engine as _;
        let Some(b64) = stored.strip_prefix(FIELD_PREFIX) else {
            return Ok(stored.to_owned());
        };
        let bad = || LogError::Corrupt {
            seq: 0,
            why: format!("the sealed {label} of `{id}` does not open with the log's key"),
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad())?;
        let (nonce, ct) = raw.split_at_checked(NONCE_LEN).ok_or_else(bad)?;
        let nonce = Nonce::try_from(nonce).map_err(|_| bad())?;
        let plain = self
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ct,
                    aad: &field_aad(label, id),
                },
            )
            .map_err(|_| bad())?;
        String::from_utf8(plain).map_err(|_| bad())
    }

    /// Opens a stored entry's sealed free text into its clear fields (nothing to do for an
    /// entry written in clear before sealing existed, or without free text). A sealed text
    /// that does not open under this key for this entry's time and kind is an error.
    pub fn open(&self, e: &mut Entry) -> Result<(), LogError> {
        if e.format == EntryFormat::V1 {
            return Ok(());
        }
        let Some(sealed) = e.sealed.as_deref() else {
            return Ok(());
        };
        let bad = |why: &str| LogError::Corrupt {
            seq: e.seq,
            why: format!("its sealed text {why}"),
        };
        let rest = match sealed.split_first() {
            Some((&SEALED_V1, rest)) => rest,
            _ => return Err(bad("has an unknown format")),
        };
        let (nonce, ct) = rest
            .split_at_checked(NONCE_LEN)
            .ok_or_else(|| bad("is truncated"))?;
        let nonce = Nonce::try_from(nonce).map_err(|_| bad("is truncated"))?;
        let plain = Zeroizing::new(
            self.cipher
                .decrypt(
                    &nonce,
                    Payload {
                        msg: ct,
                        aad: &aad(e.data.at_us(), e.data.kind.as_str()),
                    },
                )
                .map_err(|_| bad("does not open with the log's key"))?,
        );
        let mut rest: &[u8] = &plain;
        let stated = take_opt(&mut rest).ok_or_else(|| bad("is malformed"))?;
        let justification = take_opt(&mut rest).ok_or_else(|| bad("is malformed"))?;
        let detail = take_opt(&mut rest).ok_or_else(|| bad("is malformed"))?;
        if !rest.is_empty() {
            return Err(bad("is malformed"));
        }
        match (&mut e.data.basis, stated) {
            (Some(LegalBasis::Emergency { stated_basis }), Some(s)) => *stated_basis = s,
            (Some(LegalBasis::MedicalEmergency { documentation }), Some(s)) => *documentation = s,
            (_, None) => {}
            _ => {
                return Err(bad(
                    "holds a stated basis for an entry without emergency basis",
                ));
            }
        }
        e.data.justification = justification;
        e.data.detail = detail;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::canonical::ChainHash;
    use crate::audit::entry::{EntryKind, Outcome};
    use chrono::TimeZone;

    fn entry() -> NewEntry {
        let mut e = NewEntry::new(
            EntryKind::Disclosure,
            chrono::Utc.timestamp_micros(1_700_000_000_000_000).unwrap(),
            Outcome::Permit,
        );
        e.basis = Some(LegalBasis::Emergency {
            stated_basis: "credible-representation (source: Sgt. Alma Ruiz)".into(),
        });
        e.justification = Some("Jordan Example said he has a knife".into());
        e.detail = Some("a detail".into());
        e
    }

    fn stored(s: &SealedEntry) -> Entry {
        Entry {
            seq: 7,
            format: EntryFormat::V2,
            data: s.data.clone(),
            sealed: s.sealed.clone(),
            prev_hash: ChainHash::GENESIS,
            hash: ChainHash::GENESIS,
        }
    }

    #[test]
    fn free_text_is_sealed_and_opens_back() {
        let k = LogTextKey::new(&[5; 32]);
        let s = k.seal(entry()).unwrap();
        assert_eq!(s.data.justification, None);
        assert_eq!(s.data.detail, None);
        assert_eq!(
            s.data.basis,
            Some(LegalBasis::Emergency {
                stated_basis: String::new()
            })
        );
        let blob = s.sealed.clone().unwrap();
        for needle in ["Alma", "knife", "detail"] {
            assert!(!blob.windows(needle.len()).any(|w| w == needle.as_bytes()));
        }
        let mut e = stored(&s);
        k.open(&mut e).unwrap();
        assert_eq!(e.data, entry());
    }

    #[test]
    fn sealed_text_is_bound_to_key_time_and_kind() {
        let k = LogTextKey::new(&[5; 32]);
        let s = k.seal(entry()).unwrap();
        assert!(LogTextKey::new(&[6; 32]).open(&mut stored(&s)).is_err());
        let mut moved = stored(&s);
        moved.data.at += chrono::Duration::microseconds(1);
        assert!(k.open(&mut moved).is_err());
        let mut moved = stored(&s);
        moved.data.kind = EntryKind::LogRead;
        assert!(k.open(&mut moved).is_err());
        let mut flipped = stored(&s);
        if let Some(b) = flipped.sealed.as_mut().and_then(|b| b.last_mut()) {
            *b ^= 1;
        }
        assert!(k.open(&mut flipped).is_err());
    }

    #[test]
    fn side_table_text_is_sealed_per_row_and_legacy_text_passes() {
        let k = LogTextKey::new(&[5; 32]);
        let sealed = k
            .seal_field("review-note", "rev-1", "Officer Lee confirmed")
            .unwrap();
        assert!(!sealed.contains("Lee"));
        assert_eq!(
            k.open_field("review-note", "rev-1", &sealed).unwrap(),
            "Officer Lee confirmed"
        );
        assert!(k.open_field("review-note", "rev-2", &sealed).is_err());
        assert!(k.open_field("statement", "rev-1", &sealed).is_err());
        assert_eq!(
            k.open_field("review-note", "x", "old clear").unwrap(),
            "old clear"
        );
    }

    #[test]
    fn medical_emergency_documentation_is_sealed_and_opens_back() {
        let k = LogTextKey::new(&[5; 32]);
        let mut e = entry();
        e.basis = Some(LegalBasis::MedicalEmergency {
            documentation: "medical personnel: Dr. Rosa Quintero, St. Elsewhere ED".into(),
        });
        e.justification = Some("overdose, unresponsive".into());
        let s = k.seal(e.clone()).unwrap();
        assert_eq!(
            s.data.basis,
            Some(LegalBasis::MedicalEmergency {
                documentation: String::new()
            })
        );
        let blob = s.sealed.clone().unwrap();
        for needle in ["Quintero", "Elsewhere", "overdose"] {
            assert!(!blob.windows(needle.len()).any(|w| w == needle.as_bytes()));
        }
        let mut stored = stored(&s);
        k.open(&mut stored).unwrap();
        assert_eq!(stored.data, e);
    }

    #[test]
    fn a_court_order_id_stays_in_clear() {
        let k = LogTextKey::new(&[5; 32]);
        let mut e = NewEntry::new(EntryKind::Disclosure, chrono::Utc::now(), Outcome::Permit);
        e.basis = Some(LegalBasis::CourtOrder {
            order_id: "co-0190".into(),
        });
        let s = k.seal(e.clone()).unwrap();
        assert_eq!(s.sealed, None);
        assert_eq!(s.data, e);
    }

    #[test]
    fn an_entry_without_free_text_is_not_sealed() {
        let k = LogTextKey::new(&[5; 32]);
        let e = NewEntry::new(EntryKind::LogRead, chrono::Utc::now(), Outcome::Permit);
        let s = k.seal(e.clone()).unwrap();
        assert_eq!(s.sealed, None);
        assert_eq!(s.data, e);
    }
}
