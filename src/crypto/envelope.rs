//! Data keys, field sealing with bound associated data, and blind indexes.

use std::fmt;

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use hmac::{Hmac, Mac};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;

use super::CryptoError;

/// `purpose` of a record's data key in the `data_keys` table.
pub const KEY_PURPOSE_RECORD: &str = "record";
/// `purpose` of a consent directive's data key in the `data_keys` table.
pub const KEY_PURPOSE_CONSENT: &str = "consent";
/// `purpose` of the blind-index key in the `data_keys` table.
pub const KEY_PURPOSE_BLIND_INDEX: &str = "blind-index";
/// Purpose of the disclosure log's subject-pseudonym key (a stable key, like the blind-index key).
pub const KEY_PURPOSE_SUBJECT_PSEUDONYM: &str = "subject-pseudonym";
/// `purpose` of a restriction's or court order's data key in the `data_keys` table.
pub const KEY_PURPOSE_DIRECTIVE: &str = "directive";
/// Purpose of the disclosure log's free-text key (a stable key): it seals the free text of log
/// entries (threat descriptions, stated bases, statements, notes, details).
pub const KEY_PURPOSE_LOG_TEXT: &str = "log-text";

const FORMAT_V1: u8 = 0x01;
const ID_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const FIELD_LABEL: &[u8] = b"coresponse-gateway/field/v1";
const SUBJECT_LABEL: &[u8] = b"coresponse-gateway/subject-identifier/v1";
const MANIFEST_LABEL: &[u8] = b"coresponse-gateway/version-manifest/v1";
const INDEX_LABEL: &[u8] = b"coresponse-gateway/blind-index/v1";
const CONSENT_DIRECTIVE_LABEL: &[u8] = b"coresponse-gateway/consent-directive/v1";
const CONSENT_EVENT_LABEL: &[u8] = b"coresponse-gateway/consent-event/v1";
const CONSENT_SUBJECT_LABEL: &[u8] = b"coresponse-gateway/consent-subject/v1";
const DIRECTIVE_LABEL: &[u8] = b"coresponse-gateway/subject-directive/v1";
const DIRECTIVE_SUBJECT_LABEL: &[u8] = b"coresponse-gateway/subject-directive-subject/v1";
const DIRECTIVE_END_LABEL: &[u8] = b"coresponse-gateway/subject-directive-end/v1";

/// Appends `bytes` with a 4-byte big-endian length prefix (canonical, unambiguous encoding).
pub(crate) fn lp(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The id of a data key: 16 random bytes, shown as a UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DataKeyId(uuid::Uuid);

impl DataKeyId {
    /// A fresh random id.
    pub fn random() -> Result<Self, CryptoError> {
        let mut b = [0u8; ID_LEN];
        getrandom_bytes(&mut b)?;
        Ok(Self(uuid::Builder::from_random_bytes(b).into_uuid()))
    }

    /// The id's 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// Parses the text form stored in the database.
    pub fn parse(s: &str) -> Option<Self> {
        uuid::Uuid::parse_str(s).ok().map(Self)
    }

    fn from_bytes(b: &[u8]) -> Option<Self> {
        uuid::Uuid::from_slice(b).ok().map(Self)
    }
}

impl fmt::Display for DataKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

fn getrandom_bytes(out: &mut [u8]) -> Result<(), CryptoError> {
    // An AES key is 32 uniformly random bytes from the OS generator.
    let k = Key::<Aes256Gcm>::try_generate().map_err(|_| CryptoError::Random)?;
    for (o, b) in out.iter_mut().zip(k.iter()) {
        *o = *b;
    }
    Ok(())
}

/// What a ciphertext belongs to. Its canonical encoding is the AES-GCM associated data, so a
/// ciphertext only opens in the exact place it was sealed for.
#[derive(Debug, Clone, Copy)]
pub enum Binding<'a> {
    /// A field value of one version of a record.
    Field {
        /// Record kind.
        kind: &'a str,
        /// Record id.
        id: &'a str,
        /// Owner partner.
        owner: &'a str,
        /// Record version.
        version: i64,
        /// Field name.
        field: &'a str,
    },
    /// The list of field names of one version of a record (detects deleted or added rows).
    Manifest {
        /// Record kind.
        kind: &'a str,
        /// Record id.
        id: &'a str,
        /// Owner partner.
        owner: &'a str,
        /// Record version.
        version: i64,
    },
    /// A subject identifier of a record, at its position in the record's list.
    Subject {
        /// Record kind.
        kind: &'a str,
        /// Record id.
        id: &'a str,
        /// Owner partner.
        owner: &'a str,
        /// Position in the list.
        position: i64,
    },
    /// The body of a consent directive (what the person agreed to), at one version.
    ConsentDirective {
        /// Consent id.
        consent_id: &'a str,
        /// The partner that collected the consent.
        collected_by: &'a str,
        /// Directive version (1 for the directive as given).
        version: i64,
    },
    /// One event of a consent's history (creation, revocation), at its place in the history.
    ConsentEvent {
        /// Consent id.
        consent_id: &'a str,
        /// Event number, from 1.
        seq: i64,
    },
    /// A subject identifier named by a consent, at its position in the consent's list.
    ConsentSubject {
        /// Consent id.
        consent_id: &'a str,
        /// Position in the list.
        position: i64,
    },
    /// The body of a restriction or court order (`what`: `restriction`, `court_order`).
    Directive {
        /// Which kind of directive.
        what: &'a str,
        /// Its id.
        id: &'a str,
        /// The partner that recorded it.
        recorded_by: &'a str,
    },
    /// A subject identifier named by a restriction or court order, at its position.
    DirectiveSubject {
        /// Which kind of directive.
        what: &'a str,
        /// Its id.
        id: &'a str,
        /// Position in the list.
        position: i64,
    },
    /// The end (termination, vacating) of a restriction or court order.
    DirectiveEnd {
        /// Which kind of directive.
        what: &'a str,
        /// Its id.
        id: &'a str,
    },
}

impl Binding<'_> {
    fn aad(&self, key: DataKeyId) -> Vec<u8> {
        let mut aad = Vec::with_capacity(160);
        match *self {
            Binding::Field {
                kind,
                id,
                owner,
                version,
                field,
            } => {
                lp(&mut aad, FIELD_LABEL);
                lp(&mut aad, kind.as_bytes());
                lp(&mut aad, id.as_bytes());
                lp(&mut aad, owner.as_bytes());
                lp(&mut aad, &version.to_be_bytes());
                lp(&mut aad, field.as_bytes());
            }
            Binding::Manifest {
                kind,
                id,
                owner,
                version,
            } => {
                lp(&mut aad, MANIFEST_LABEL);
                lp(&mut aad, kind.as_bytes());
                lp(&mut aad, id.as_bytes());
                lp(&mut aad, owner.as_bytes());
                lp(&mut aad, &version.to_be_bytes());
            }
            Binding::Subject {
                kind,
                id,
                owner,
                position,
            } => {
                lp(&mut aad, SUBJECT_LABEL);
                lp(&mut aad, kind.as_bytes());
                lp(&mut aad, id.as_bytes());
                lp(&mut aad, owner.as_bytes());
                lp(&mut aad, &position.to_be_bytes());
            }
            Binding::ConsentDirective {
                consent_id,
                collected_by,
                version,
            } => {
                lp(&mut aad, CONSENT_DIRECTIVE_LABEL);
                lp(&mut aad, consent_id.as_bytes());
                lp(&mut aad, collected_by.as_bytes());
                lp(&mut aad, &version.to_be_bytes());
            }
            Binding::ConsentEvent { consent_id, seq } => {
                lp(&mut aad, CONSENT_EVENT_LABEL);
                lp(&mut aad, consent_id.as_bytes());
                lp(&mut aad, &seq.to_be_bytes());
            }
            Binding::ConsentSubject {
                consent_id,
                position,
            } => {
                lp(&mut aad, CONSENT_SUBJECT_LABEL);
                lp(&mut aad, consent_id.as_bytes());
                lp(&mut aad, &position.to_be_bytes());
            }
            Binding::Directive {
                what,
                id,
                recorded_by,
            } => {
                lp(&mut aad, DIRECTIVE_LABEL);
                lp(&mut aad, what.as_bytes());
                lp(&mut aad, id.as_bytes());
                lp(&mut aad, recorded_by.as_bytes());
            }
            Binding::DirectiveSubject { what, id, position } => {
                lp(&mut aad, DIRECTIVE_SUBJECT_LABEL);
                lp(&mut aad, what.as_bytes());
                lp(&mut aad, id.as_bytes());
                lp(&mut aad, &position.to_be_bytes());
            }
            Binding::DirectiveEnd { what, id } => {
                lp(&mut aad, DIRECTIVE_END_LABEL);
                lp(&mut aad, what.as_bytes());
                lp(&mut aad, id.as_bytes());
            }
        }
        lp(&mut aad, key.as_bytes());
        aad
    }
}

/// An unwrapped data key. Zeroized on drop; never leaves the process in clear.
pub struct DataKey {
    id: DataKeyId,
    cipher: Aes256Gcm,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl DataKey {
    /// A fresh random key with a fresh id, and its raw bytes (for wrapping).
    pub(crate) fn generate() -> Result<(Self, SecretBox<[u8; 32]>), CryptoError> {
        let id = DataKeyId::random()?;
        let raw = SecretBox::try_init_with(|| {
            let mut b = [0u8; 32];
            getrandom_bytes(&mut b).map(|()| b)
        })?;
        Ok((Self::from_raw(id, &raw), raw))
    }

    pub(crate) fn from_raw(id: DataKeyId, raw: &SecretBox<[u8; 32]>) -> Self {
        let key: &Key<Aes256Gcm> = raw.expose_secret().into();
        Self {
            id,
            cipher: Aes256Gcm::new(key),
        }
    }

    /// The key's id.
    pub fn id(&self) -> DataKeyId {
        self.id
    }

    /// Seals `plaintext` for `binding`: `0x01 || key id || nonce || ciphertext || tag`.
    pub fn seal(&self, binding: &Binding<'_>, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let nonce = Nonce::try_generate().map_err(|_| CryptoError::Random)?;
        let aad = binding.aad(self.id);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Authentication)?;
        let mut out = Vec::with_capacity(1 + ID_LEN + NONCE_LEN + sealed.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a ciphertext sealed by [`DataKey::seal`] for exactly `binding`.
    pub fn open(
        &self,
        binding: &Binding<'_>,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let (format, rest) = ciphertext
            .split_first()
            .ok_or(CryptoError::Malformed("empty ciphertext"))?;
        if *format != FORMAT_V1 {
            return Err(CryptoError::Malformed("unknown ciphertext format"));
        }
        let (id, rest) = rest
            .split_at_checked(ID_LEN)
            .ok_or(CryptoError::Malformed("ciphertext too short"))?;
        let found = DataKeyId::from_bytes(id).ok_or(CryptoError::Malformed("key id"))?;
        if found != self.id {
            return Err(CryptoError::WrongDataKey {
                expected: self.id,
                found,
            });
        }
        let (nonce, sealed) = rest
            .split_at_checked(NONCE_LEN)
            .ok_or(CryptoError::Malformed("ciphertext too short"))?;
        let nonce = Nonce::try_from(nonce).map_err(|_| CryptoError::Malformed("nonce"))?;
        let aad = binding.aad(self.id);
        self.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Authentication)
    }

    /// The key id carried by a ciphertext, without opening it.
    pub fn key_id_of(ciphertext: &[u8]) -> Option<DataKeyId> {
        match ciphertext.split_first() {
            Some((&FORMAT_V1, rest)) => rest.get(..ID_LEN).and_then(DataKeyId::from_bytes),
            _ => None,
        }
    }
}

/// A keyed blind index of a subject identifier: HMAC-SHA256 under the blind-index key over
/// the length-prefixed `(system, value)`. Equal identifiers give equal indexes; without the
/// key an index reveals nothing and cannot be computed from a guess.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlindIndex([u8; 32]);

impl fmt::Debug for BlindIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlindIndex(..)")
    }
}

impl BlindIndex {
    pub(crate) fn compute(key: &SecretBox<[u8; 32]>, system: &str, value: &str) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = match Hmac::<Sha256>::new_from_slice(key.expose_secret()) {
            Ok(mac) => mac,
            Err(_) => return Self([0u8; 32]),
        };
        let mut msg = Zeroizing::new(Vec::with_capacity(64 + system.len() + value.len()));
        lp(&mut msg, INDEX_LABEL);
        lp(&mut msg, system.as_bytes());
        lp(&mut msg, value.as_bytes());
        mac.update(&msg);
        Self(mac.finalize().into_bytes().into())
    }

    /// The 32 index bytes, as stored.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field<'a>(kind: &'a str, id: &'a str, owner: &'a str, field: &'a str) -> Binding<'a> {
        Binding::Field {
            kind,
            id,
            owner,
            version: 1,
            field,
        }
    }

    #[test]
    fn sealed_values_open_only_where_they_were_sealed() {
        let (key, _) = DataKey::generate().unwrap();
        let b = field("crisis-incident", "INC-1", "metro-pd", "narrative");
        let ct = key.seal(&b, b"\"sat on the bridge rail\"").unwrap();
        assert_eq!(DataKey::key_id_of(&ct), Some(key.id()));
        assert_eq!(
            key.open(&b, &ct).unwrap().as_slice(),
            b"\"sat on the bridge rail\""
        );

        let moved = [
            field("crisis-incident", "INC-1", "metro-pd", "disposition"),
            field("crisis-incident", "INC-2", "metro-pd", "narrative"),
            field("referral", "INC-1", "metro-pd", "narrative"),
            field("crisis-incident", "INC-1", "county-mh", "narrative"),
            Binding::Field {
                kind: "crisis-incident",
                id: "INC-1",
                owner: "metro-pd",
                version: 2,
                field: "narrative",
            },
        ];
        for other in moved {
            assert!(matches!(
                key.open(&other, &ct),
                Err(CryptoError::Authentication)
            ));
        }
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 0x01;
            assert!(key.open(&b, &bad).is_err(), "flipped byte {i} accepted");
        }
        assert!(key.open(&b, &ct[..ct.len() - 1]).is_err());
        let (other_key, _) = DataKey::generate().unwrap();
        assert!(matches!(
            other_key.open(&b, &ct),
            Err(CryptoError::WrongDataKey { .. })
        ));
    }

    #[test]
    fn consent_ciphertexts_open_only_in_their_place() {
        let (key, _) = DataKey::generate().unwrap();
        let body = Binding::ConsentDirective {
            consent_id: "c-1",
            collected_by: "county-mh",
            version: 1,
        };
        let ct = key.seal(&body, b"{}").unwrap();
        assert!(key.open(&body, &ct).is_ok());
        let elsewhere = [
            Binding::ConsentDirective {
                consent_id: "c-2",
                collected_by: "county-mh",
                version: 1,
            },
            Binding::ConsentDirective {
                consent_id: "c-1",
                collected_by: "metro-pd",
                version: 1,
            },
            Binding::ConsentDirective {
                consent_id: "c-1",
                collected_by: "county-mh",
                version: 2,
            },
            Binding::ConsentEvent {
                consent_id: "c-1",
                seq: 1,
            },
            Binding::ConsentSubject {
                consent_id: "c-1",
                position: 1,
            },
        ];
        for other in elsewhere {
            assert!(
                matches!(key.open(&other, &ct), Err(CryptoError::Authentication)),
                "{other:?}"
            );
        }
        let event = Binding::ConsentEvent {
            consent_id: "c-1",
            seq: 2,
        };
        let ct = key.seal(&event, b"{}").unwrap();
        assert!(key.open(&event, &ct).is_ok());
        let earlier = Binding::ConsentEvent {
            consent_id: "c-1",
            seq: 1,
        };
        assert!(key.open(&earlier, &ct).is_err());
        // The same numbers in a consent subject binding give another associated data.
        let k = key.id();
        assert_ne!(
            Binding::ConsentEvent {
                consent_id: "c-1",
                seq: 0
            }
            .aad(k),
            Binding::ConsentSubject {
                consent_id: "c-1",
                position: 0
            }
            .aad(k)
        );
    }

    #[test]
    fn nonces_are_fresh() {
        let (key, _) = DataKey::generate().unwrap();
        let b = field("k", "i", "o", "f");
        assert_ne!(key.seal(&b, b"x").unwrap(), key.seal(&b, b"x").unwrap());
    }

    #[test]
    fn length_prefixes_make_the_encoding_unambiguous() {
        let k = DataKeyId::random().unwrap();
        assert_ne!(
            field("ab", "c", "o", "f").aad(k),
            field("a", "bc", "o", "f").aad(k)
        );
        let key = SecretBox::new(Box::new([3u8; 32]));
        assert_ne!(
            BlindIndex::compute(&key, "metro-pd", "P-1"),
            BlindIndex::compute(&key, "metro-pdP", "-1")
        );
        assert_eq!(
            BlindIndex::compute(&key, "metro-pd", "P-1"),
            BlindIndex::compute(&key, "metro-pd", "P-1")
        );
        let other = SecretBox::new(Box::new([4u8; 32]));
        assert_ne!(
            BlindIndex::compute(&key, "metro-pd", "P-1"),
            BlindIndex::compute(&other, "metro-pd", "P-1")
        );
    }
}
