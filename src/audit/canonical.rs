//! The canonical encoding of an entry and the chain hash (specified in the module
//! documentation of [`crate::audit`]).

use std::fmt;

use sha2::{Digest, Sha256};

use super::entry::{EntryFormat, FieldDisclosure, LegalBasis, NewEntry, Outcome};

/// Domain-separation prefix of an entry's encoding (format 1).
pub const ENTRY_DOMAIN: &[u8] = b"coresponse-gateway/audit-entry/v1";

/// Domain-separation prefix of an entry's encoding (format 2: sealed free text, Merkle leaf).
pub const ENTRY_DOMAIN_V2: &[u8] = b"coresponse-gateway/audit-entry/v2";

/// A SHA-256 chain hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// The previous hash of the first entry: 32 zero bytes.
    pub const GENESIS: ChainHash = ChainHash([0; 32]);

    /// Lower-case hex, the stored and shown form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 lower-case hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }
}

impl serde::Serialize for ChainHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for ChainHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::from_hex(&s)
            .ok_or_else(|| serde::de::Error::custom("expected 64 lower-case hex digits"))
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({})", self.to_hex())
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    // Lengths are bounded by validation (MAX_TEXT); saturate rather than wrap regardless.
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn put_opt(buf: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => buf.push(0),
        Some(s) => {
            buf.push(1);
            put_str(buf, s);
        }
    }
}

/// One disclosed field as the encodings read it.
pub(super) trait FieldPair {
    /// The field path.
    fn field(&self) -> &str;
    /// The transform name.
    fn transform(&self) -> &str;
}

impl FieldPair for FieldDisclosure {
    fn field(&self) -> &str {
        &self.field
    }
    fn transform(&self) -> &str {
        &self.transform
    }
}

/// An entry's legal basis, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BasisView<'a> {
    /// An MOU rule.
    Mou {
        /// The MOU.
        mou_id: &'a str,
        /// The rule.
        rule: &'a str,
    },
    /// A consent.
    Consent(&'a str),
    /// A 164.512(j) emergency and its stated basis (free text).
    Emergency(&'a str),
    /// A court order.
    CourtOrder(&'a str),
    /// A 42 CFR 2.51 medical emergency and its documentation (free text).
    MedicalEmergency(&'a str),
}

impl<'a> BasisView<'a> {
    /// The borrowed form of `basis`.
    pub(super) fn of(basis: &'a LegalBasis) -> Self {
        match basis {
            LegalBasis::Mou { mou_id, rule } => Self::Mou { mou_id, rule },
            LegalBasis::Consent { consent_id } => Self::Consent(consent_id),
            LegalBasis::Emergency { stated_basis } => Self::Emergency(stated_basis),
            LegalBasis::CourtOrder { order_id } => Self::CourtOrder(order_id),
            LegalBasis::MedicalEmergency { documentation } => Self::MedicalEmergency(documentation),
        }
    }

    /// The owned form.
    pub(super) fn to_owned(self) -> LegalBasis {
        match self {
            Self::Mou { mou_id, rule } => LegalBasis::Mou {
                mou_id: mou_id.to_owned(),
                rule: rule.to_owned(),
            },
            Self::Consent(id) => LegalBasis::Consent {
                consent_id: id.to_owned(),
            },
            Self::Emergency(text) => LegalBasis::Emergency {
                stated_basis: text.to_owned(),
            },
            Self::CourtOrder(id) => LegalBasis::CourtOrder {
                order_id: id.to_owned(),
            },
            Self::MedicalEmergency(text) => LegalBasis::MedicalEmergency {
                documentation: text.to_owned(),
            },
        }
    }
}

/// An entry's content, borrowed: what both encodings read, from an entry being appended or
/// straight from a stored row's column values (verification encodes without building an
/// entry).
pub(super) struct EntryContent<'a, F> {
    /// Time, microseconds since the epoch.
    pub(super) at_us: i64,
    /// The kind's stable name.
    pub(super) kind: &'a str,
    /// Request id.
    pub(super) request_id: Option<&'a str>,
    /// Decision id.
    pub(super) decision_id: Option<&'a str>,
    /// Policy-set hash.
    pub(super) policy_hash: Option<&'a str>,
    /// Recipient partner.
    pub(super) recipient_partner: Option<&'a str>,
    /// Recipient user.
    pub(super) recipient_user: Option<&'a str>,
    /// Recipient role.
    pub(super) recipient_role: Option<&'a str>,
    /// Purpose of use.
    pub(super) purpose: Option<&'a str>,
    /// Legal basis.
    pub(super) basis: Option<BasisView<'a>>,
    /// Justification (free text).
    pub(super) justification: Option<&'a str>,
    /// Subject pseudonym.
    pub(super) subject: Option<&'a [u8; 32]>,
    /// Record kind and id.
    pub(super) record: Option<(&'a str, &'a str)>,
    /// Disclosed fields.
    pub(super) fields: &'a [F],
    /// Number of withheld fields.
    pub(super) fields_withheld: u32,
    /// The reason of a denial (`None`: a permit).
    pub(super) deny_reason: Option<&'a str>,
    /// Source address.
    pub(super) source_addr: Option<&'a str>,
    /// Client certificate fingerprint.
    pub(super) cert_sha256: Option<&'a str>,
    /// Detail (free text).
    pub(super) detail: Option<&'a str>,
}

impl NewEntry {
    /// The borrowed view the encodings read.
    pub(super) fn view(&self) -> EntryContent<'_, FieldDisclosure> {
        EntryContent {
            at_us: self.at_us(),
            kind: self.kind.as_str(),
            request_id: self.request_id.as_deref(),
            decision_id: self.decision_id.as_deref(),
            policy_hash: self.policy_hash.as_deref(),
            recipient_partner: self.recipient_partner.as_deref(),
            recipient_user: self.recipient_user.as_deref(),
            recipient_role: self.recipient_role.as_deref(),
            purpose: self.purpose.as_deref(),
            basis: self.basis.as_ref().map(BasisView::of),
            justification: self.justification.as_deref(),
            subject: self.subject.as_ref().map(|s| s.as_bytes()),
            record: self
                .record
                .as_ref()
                .map(|r| (r.kind.as_str(), r.id.as_str())),
            fields: &self.fields_disclosed,
            fields_withheld: self.fields_withheld,
            deny_reason: match &self.outcome {
                Outcome::Permit => None,
                Outcome::Deny { reason } => Some(reason),
            },
            source_addr: self.source_addr.as_deref(),
            cert_sha256: self.cert_sha256.as_deref(),
            detail: self.detail.as_deref(),
        }
    }
}

/// Writes the start of an entry's encoding into `buf` (cleared first): the format's domain,
/// the previous hash and the sequence number.
pub(super) fn encode_head(buf: &mut Vec<u8>, format: EntryFormat, seq: u64, prev: &ChainHash) {
    buf.clear();
    buf.extend_from_slice(match format {
        EntryFormat::V1 => ENTRY_DOMAIN,
        EntryFormat::V2 => ENTRY_DOMAIN_V2,
    });
    buf.extend_from_slice(&prev.0);
    buf.extend_from_slice(&seq.to_be_bytes());
}

/// Appends the rest of an entry's encoding, from its time on, to `buf`.
///
/// Format 1 encodes the free text (justification, detail, an emergency's stated basis, a
/// medical emergency's documentation) in clear. Format 2 does not: it travels sealed, and the
/// sealed bytes (`sealed`, ignored by format 1) are encoded last.
pub(super) fn encode_body<F: FieldPair>(
    buf: &mut Vec<u8>,
    format: EntryFormat,
    v: &EntryContent<'_, F>,
    sealed: Option<&[u8]>,
) {
    let clear = format == EntryFormat::V1;
    buf.extend_from_slice(&v.at_us.to_be_bytes());
    put_str(buf, v.kind);
    put_opt(buf, v.request_id);
    put_opt(buf, v.decision_id);
    put_opt(buf, v.policy_hash);
    put_opt(buf, v.recipient_partner);
    put_opt(buf, v.recipient_user);
    put_opt(buf, v.recipient_role);
    put_opt(buf, v.purpose);
    match v.basis {
        None => buf.push(0),
        Some(BasisView::Mou { mou_id, rule }) => {
            buf.push(1);
            put_str(buf, mou_id);
            put_str(buf, rule);
        }
        Some(BasisView::Consent(id)) => {
            buf.push(2);
            put_str(buf, id);
        }
        Some(BasisView::Emergency(text)) => {
            buf.push(3);
            if clear {
                put_str(buf, text);
            }
        }
        Some(BasisView::CourtOrder(id)) => {
            buf.push(4);
            put_str(buf, id);
        }
        Some(BasisView::MedicalEmergency(text)) => {
            buf.push(5);
            if clear {
                put_str(buf, text);
            }
        }
    }
    if clear {
        put_opt(buf, v.justification);
    }
    match v.subject {
        None => buf.push(0),
        Some(s) => {
            buf.push(1);
            buf.extend_from_slice(s);
        }
    }
    match v.record {
        None => buf.push(0),
        Some((kind, id)) => {
            buf.push(1);
            put_str(buf, kind);
            put_str(buf, id);
        }
    }
    let n = u32::try_from(v.fields.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&n.to_be_bytes());
    for f in v.fields {
        put_str(buf, f.field());
        put_str(buf, f.transform());
    }
    buf.extend_from_slice(&v.fields_withheld.to_be_bytes());
    match v.deny_reason {
        None => buf.push(0),
        Some(reason) => {
            buf.push(1);
            put_str(buf, reason);
        }
    }
    put_opt(buf, v.source_addr);
    put_opt(buf, v.cert_sha256);
    if clear {
        put_opt(buf, v.detail);
    } else {
        match sealed {
            None => buf.push(0),
            Some(b) => {
                buf.push(1);
                let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
                buf.extend_from_slice(&len.to_be_bytes());
                buf.extend_from_slice(b);
            }
        }
    }
}

/// The hash of an encoded entry: `SHA-256(E1)` for format 1, the RFC 6962 leaf hash
/// `SHA-256(0x00 || E2)` for format 2. The encoding is given in two parts (its head, as
/// [`encode_head`] writes it, and its body), so that a verifier can hash a body encoded
/// elsewhere.
pub(super) fn hash_parts(format: EntryFormat, head: &[u8], body: &[u8]) -> ChainHash {
    let mut h = Sha256::new();
    if format == EntryFormat::V2 {
        h.update([0u8]);
    }
    h.update(head);
    h.update(body);
    ChainHash(h.finalize().into())
}

/// Writes the canonical encoding of the entry `(seq, prev, data)` into `buf` (cleared first).
pub fn encode_into(buf: &mut Vec<u8>, seq: u64, prev: &ChainHash, data: &NewEntry) {
    encode_head(buf, EntryFormat::V1, seq, prev);
    encode_body(buf, EntryFormat::V1, &data.view(), None);
}

/// Writes the format-2 encoding of the entry `(seq, prev, data, sealed)` into `buf` (cleared
/// first). The free text of `data` (justification, detail, an emergency's stated basis, a
/// medical emergency's documentation) is not encoded: it travels sealed, and the sealed bytes
/// are.
pub fn encode_v2_into(
    buf: &mut Vec<u8>,
    seq: u64,
    prev: &ChainHash,
    data: &NewEntry,
    sealed: Option<&[u8]>,
) {
    encode_head(buf, EntryFormat::V2, seq, prev);
    encode_body(buf, EntryFormat::V2, &data.view(), sealed);
}

/// The RFC 6962 leaf hash `SHA-256(0x00 || E2)` of a format-2 entry, which is also its chain
/// hash; `buf` is scratch space.
pub fn leaf_hash_with(
    buf: &mut Vec<u8>,
    seq: u64,
    prev: &ChainHash,
    data: &NewEntry,
    sealed: Option<&[u8]>,
) -> ChainHash {
    encode_v2_into(buf, seq, prev, data, sealed);
    hash_parts(EntryFormat::V2, buf, &[])
}

/// The hash of the entry `(seq, prev, data)`, using `buf` as scratch space.
pub fn entry_hash_with(
    buf: &mut Vec<u8>,
    seq: u64,
    prev: &ChainHash,
    data: &NewEntry,
) -> ChainHash {
    encode_into(buf, seq, prev, data);
    hash_parts(EntryFormat::V1, buf, &[])
}

/// The hash of the entry `(seq, prev, data)`.
pub fn entry_hash(seq: u64, prev: &ChainHash, data: &NewEntry) -> ChainHash {
    entry_hash_with(&mut Vec::with_capacity(512), seq, prev, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::entry::{EntryKind, FieldDisclosure, RecordRef};
    use chrono::TimeZone;

    fn sample() -> NewEntry {
        let mut e = NewEntry::new(
            EntryKind::Disclosure,
            chrono::Utc.timestamp_micros(1_700_000_000_123_456).unwrap(),
            Outcome::Permit,
        );
        e.recipient_partner = Some("county-mh".into());
        e.purpose = Some("treatment".into());
        e.basis = Some(LegalBasis::Mou {
            mou_id: "mou-1".into(),
            rule: "r1".into(),
        });
        e.record = Some(RecordRef {
            kind: "crisis-incident".into(),
            id: "inc-1".into(),
        });
        e.fields_disclosed = vec![FieldDisclosure::new("narrative", "reveal")];
        e
    }

    #[test]
    fn the_encoding_is_exactly_as_documented() {
        let mut e = NewEntry::new(
            EntryKind::LogRead,
            chrono::Utc.timestamp_micros(1).unwrap(),
            Outcome::deny("x"),
        );
        e.purpose = Some("ab".into());
        let mut buf = Vec::new();
        encode_into(&mut buf, 2, &ChainHash([7; 32]), &e);
        let mut want = Vec::new();
        want.extend_from_slice(b"coresponse-gateway/audit-entry/v1");
        want.extend_from_slice(&[7; 32]);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 2]);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
        want.extend_from_slice(&[0, 0, 0, 8]);
        want.extend_from_slice(b"log_read");
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // request .. recipient_role
        want.extend_from_slice(&[1, 0, 0, 0, 2, b'a', b'b']); // purpose
        want.extend_from_slice(&[0, 0, 0, 0]); // basis, justification, subject, record
        want.extend_from_slice(&[0, 0, 0, 0]); // no fields
        want.extend_from_slice(&[0, 0, 0, 0]); // withheld
        want.extend_from_slice(&[1, 0, 0, 0, 1, b'x']); // deny x
        want.extend_from_slice(&[0, 0, 0]); // source, cert, detail
        assert_eq!(buf, want);
    }

    #[test]
    fn court_order_and_medical_emergency_bases_have_their_own_tags() {
        let mut e = NewEntry::new(
            EntryKind::Disclosure,
            chrono::Utc.timestamp_micros(1).unwrap(),
            Outcome::Permit,
        );
        let basis_bytes = |e: &NewEntry| {
            let mut buf = Vec::new();
            encode_into(&mut buf, 1, &ChainHash::GENESIS, e);
            // domain, prev, seq, time, str "disclosure", 7 absent opt-strs: the basis follows.
            let at = ENTRY_DOMAIN.len() + 32 + 8 + 8 + 4 + "disclosure".len() + 7;
            buf[at..at + 8].to_vec()
        };
        e.basis = Some(LegalBasis::CourtOrder {
            order_id: "co".into(),
        });
        assert_eq!(basis_bytes(&e), [4, 0, 0, 0, 2, b'c', b'o', 0]);
        e.basis = Some(LegalBasis::MedicalEmergency {
            documentation: "dx".into(),
        });
        assert_eq!(basis_bytes(&e), [5, 0, 0, 0, 2, b'd', b'x', 0]);
        let consent = {
            let mut c = e.clone();
            c.basis = Some(LegalBasis::Consent {
                consent_id: "dx".into(),
            });
            c
        };
        assert_ne!(
            entry_hash(1, &ChainHash::GENESIS, &e),
            entry_hash(1, &ChainHash::GENESIS, &consent)
        );
    }

    #[test]
    fn format_2_keeps_a_court_order_id_and_seals_the_medical_emergency_documentation() {
        let mut e = NewEntry::new(
            EntryKind::Disclosure,
            chrono::Utc.timestamp_micros(1).unwrap(),
            Outcome::Permit,
        );
        let basis_bytes = |e: &NewEntry| {
            let mut buf = Vec::new();
            encode_v2_into(&mut buf, 1, &ChainHash::GENESIS, e, None);
            let at = ENTRY_DOMAIN_V2.len() + 32 + 8 + 8 + 4 + "disclosure".len() + 7;
            buf[at..at + 8].to_vec()
        };
        e.basis = Some(LegalBasis::CourtOrder {
            order_id: "co".into(),
        });
        assert_eq!(basis_bytes(&e), [4, 0, 0, 0, 2, b'c', b'o', 0]);
        // The documentation is not encoded in clear (it travels in the sealed text): the tag
        // alone, then the subject.
        e.basis = Some(LegalBasis::MedicalEmergency {
            documentation: "dx".into(),
        });
        assert_eq!(basis_bytes(&e)[..2], [5, 0]);
        let mut other = e.clone();
        other.basis = Some(LegalBasis::MedicalEmergency {
            documentation: "other".into(),
        });
        let (mut a, mut b) = (Vec::new(), Vec::new());
        encode_v2_into(&mut a, 1, &ChainHash::GENESIS, &e, None);
        encode_v2_into(&mut b, 1, &ChainHash::GENESIS, &other, None);
        assert_eq!(a, b);
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = sample();
        let h = entry_hash(1, &ChainHash::GENESIS, &base);
        assert_ne!(h, entry_hash(2, &ChainHash::GENESIS, &base));
        assert_ne!(h, entry_hash(1, &ChainHash([1; 32]), &base));
        let mut variants = Vec::new();
        let mut v = base.clone();
        v.purpose = Some("treatmenT".into());
        variants.push(v);
        let mut v = base.clone();
        v.fields_withheld = 1;
        variants.push(v);
        let mut v = base.clone();
        v.fields_disclosed[0].transform = "mask".into();
        variants.push(v);
        let mut v = base.clone();
        v.at += chrono::Duration::microseconds(1);
        variants.push(v);
        // Moving bytes between adjacent strings changes the hash (length prefixes).
        let mut v = base.clone();
        v.record = Some(RecordRef {
            kind: "crisis-incidentinc".into(),
            id: "-1".into(),
        });
        variants.push(v);
        let mut v = base.clone();
        v.detail = Some(String::new());
        variants.push(v);
        for v in variants {
            assert_ne!(h, entry_hash(1, &ChainHash::GENESIS, &v), "{v:?}");
        }
    }

    #[test]
    fn hex_round_trips_and_refuses_upper_case() {
        let h = ChainHash([0xab; 32]);
        assert_eq!(ChainHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(ChainHash::from_hex(&h.to_hex().to_uppercase()), None);
        assert_eq!(ChainHash::from_hex("abc"), None);
    }
}
