//! Log entry types.
//!
//! Policy-related values (decision id, policy-set hash, MOU id and rule, consent id, field
//! names and transform names) are plain strings so that the log does not depend on the policy
//! engine's types; the read path maps its decision into a [`NewEntry`]. The subject is only
//! ever a [`SubjectPseudonym`]: the type has no constructor from a clear-text identifier other
//! than the keyed [`SubjectKey::pseudonym`](super::SubjectKey::pseudonym).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::LogError;
use super::canonical::ChainHash;

/// Longest accepted text of any single string field, in bytes.
pub const MAX_TEXT: usize = 4096;

/// Most fields one entry may list as disclosed.
pub const MAX_FIELDS: usize = 512;

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A request for a record: with outcome `permit` data was disclosed, with `deny` nothing was.
    Disclosure,
    /// A read of the disclosure log itself (queries, accounting, verification, checkpoints).
    LogRead,
    /// A TLS handshake was refused.
    HandshakeRefused,
    /// A request's certificate or token was refused.
    AuthenticationFailed,
    /// The policy set was reloaded.
    PolicyReloaded,
    /// A policy reload was refused; the running set was kept.
    PolicyReloadFailed,
    /// A key was rotated.
    KeyRotated,
    /// A consent directive was recorded, changed or revoked.
    ConsentChanged,
    /// Entries past retention were purged (covered by a verified checkpoint).
    LogPurged,
    /// A compliance officer closed the review of an emergency access.
    EmergencyReviewed,
    /// An accounting of disclosures was suspended for an agency (HIPAA 164.528(a)(2)).
    AccountingSuspended,
    /// Consent directives were read (one consent, a subject's list, or a coverage report).
    ConsentRead,
    /// A shared record was written (created, updated, a referral moved), or a write was refused
    /// for lack of authority.
    RecordChanged,
    /// An agreed restriction (HIPAA 164.522(a), 42 CFR 2.26) was recorded or terminated, or an
    /// attempt was refused.
    RestrictionChanged,
    /// A court order (42 CFR 2.64, 2.65) was recorded or ended, or an attempt was refused.
    CourtOrderChanged,
    /// Restrictions, court orders or policy changes were read.
    DirectiveRead,
    /// Connections were refused after the handshake (a partner over its connection cap).
    ConnectionRefused,
    /// A partner's witness posted a cosignature of a checkpoint (accepted, or refused).
    WitnessCosignature,
    /// A compliance officer verified the log over the API (a read of the log, kept apart from
    /// `log_read` so the newest verification is found by kind; its sealed detail holds the
    /// result).
    LogVerified,
    /// An aggregate report was computed and released (or refused): the definition's hash, the
    /// period and what disclosure control withheld, never a withheld value.
    ReportGenerated,
}

impl EntryKind {
    /// Every kind, in a stable order.
    pub const ALL: [EntryKind; 20] = [
        Self::Disclosure,
        Self::LogRead,
        Self::HandshakeRefused,
        Self::AuthenticationFailed,
        Self::PolicyReloaded,
        Self::PolicyReloadFailed,
        Self::KeyRotated,
        Self::ConsentChanged,
        Self::LogPurged,
        Self::EmergencyReviewed,
        Self::RecordChanged,
        Self::ConsentRead,
        Self::AccountingSuspended,
        Self::RestrictionChanged,
        Self::CourtOrderChanged,
        Self::DirectiveRead,
        Self::ConnectionRefused,
        Self::WitnessCosignature,
        Self::LogVerified,
        Self::ReportGenerated,
    ];

    /// The stable name stored, hashed and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disclosure => "disclosure",
            Self::LogRead => "log_read",
            Self::HandshakeRefused => "handshake_refused",
            Self::AuthenticationFailed => "authentication_failed",
            Self::PolicyReloaded => "policy_reloaded",
            Self::PolicyReloadFailed => "policy_reload_failed",
            Self::KeyRotated => "key_rotated",
            Self::ConsentChanged => "consent_changed",
            Self::LogPurged => "log_purged",
            Self::EmergencyReviewed => "emergency_reviewed",
            Self::RecordChanged => "record_changed",
            Self::ConsentRead => "consent_read",
            Self::AccountingSuspended => "accounting_suspended",
            Self::RestrictionChanged => "restriction_changed",
            Self::CourtOrderChanged => "court_order_changed",
            Self::DirectiveRead => "directive_read",
            Self::ConnectionRefused => "connection_refused",
            Self::WitnessCosignature => "witness_cosignature",
            Self::LogVerified => "log_verified",
            Self::ReportGenerated => "report_generated",
        }
    }
}

impl FromStr for EntryKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown entry kind `{s}`"))
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of the event an entry records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Outcome {
    /// Allowed (for a disclosure: data left the gateway).
    Permit,
    /// Refused, with a stable reason code; nothing was disclosed.
    Deny {
        /// Stable reason code, e.g. `no_matching_rule`, `token_expired`.
        reason: String,
    },
}

impl Outcome {
    /// A denial with `reason`.
    pub fn deny(reason: impl Into<String>) -> Self {
        Self::Deny {
            reason: reason.into(),
        }
    }

    /// `permit` or `deny`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Permit => "permit",
            Self::Deny { .. } => "deny",
        }
    }
}

/// The legal basis of a disclosure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LegalBasis {
    /// A rule of a memorandum of understanding between the partners.
    Mou {
        /// The MOU's id.
        mou_id: String,
        /// The rule (clause) id within the MOU.
        rule: String,
    },
    /// The subject's consent or authorization.
    Consent {
        /// The consent directive's id.
        consent_id: String,
    },
    /// Emergency access (HIPAA 164.512(j), serious and imminent threat): requires a
    /// justification on the entry.
    Emergency {
        /// The stated good-faith basis (actual knowledge, or a credible representation and its
        /// source).
        stated_basis: String,
    },
    /// A court order authorizing the disclosure of Part 2 records (42 CFR 2.64, 2.65).
    CourtOrder {
        /// The recorded order's id.
        order_id: String,
    },
    /// A bona fide medical emergency, to medical personnel (42 CFR 2.51): requires the
    /// nature of the emergency as the justification on the entry.
    MedicalEmergency {
        /// What 42 CFR 2.51(c) asks to be documented besides the date, time and nature: the
        /// medical personnel's name and affiliation, and who disclosed.
        documentation: String,
    },
}

impl LegalBasis {
    /// `mou`, `consent`, `emergency`, `court_order` or `medical_emergency`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Mou { .. } => "mou",
            Self::Consent { .. } => "consent",
            Self::Emergency { .. } => "emergency",
            Self::CourtOrder { .. } => "court_order",
            Self::MedicalEmergency { .. } => "medical_emergency",
        }
    }

    /// Every kind, in the order of the canonical encoding's tags (1 to 5).
    pub const KINDS: [&'static str; 5] = [
        "mou",
        "consent",
        "emergency",
        "court_order",
        "medical_emergency",
    ];

    /// Whether this is one of the two emergency bases (break-glass, reviewed afterwards).
    pub fn is_emergency(&self) -> bool {
        matches!(self, Self::Emergency { .. } | Self::MedicalEmergency { .. })
    }

    /// A short statement of the basis, for people.
    pub fn statement(&self) -> String {
        match self {
            Self::Mou { mou_id, rule } => format!("MOU `{mou_id}` rule `{rule}`"),
            Self::Consent { consent_id } => format!("consent `{consent_id}`"),
            Self::Emergency { stated_basis } => format!(
                "emergency disclosure to avert a serious and imminent threat (HIPAA \
                 164.512(j)); stated basis: {stated_basis}"
            ),
            Self::CourtOrder { order_id } => {
                format!("court order `{order_id}` authorizing the disclosure (42 CFR 2.64, 2.65)")
            }
            Self::MedicalEmergency { documentation } => format!(
                "disclosure to medical personnel in a bona fide medical emergency (42 CFR \
                 2.51); {documentation}"
            ),
        }
    }
}

/// One disclosed field and how it was transformed (`reveal`, `mask`, `generalize`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDisclosure {
    /// Field path, e.g. `narrative` or `safety_flags.weapon`.
    pub field: String,
    /// Transform name.
    pub transform: String,
}

impl FieldDisclosure {
    /// A field and its transform.
    pub fn new(field: impl Into<String>, transform: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            transform: transform.into(),
        }
    }
}

/// A record reference (kind and id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordRef {
    /// Record kind, e.g. `crisis-incident`.
    pub kind: String,
    /// Record id.
    pub id: String,
}

/// A subject as a keyed pseudonym: HMAC-SHA256 of the canonical (system, value) pair under
/// the pseudonym key. A leaked log names nobody; the gateway can still find a subject's
/// entries by computing the pseudonym of a given identifier.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubjectPseudonym(pub(super) [u8; 32]);

impl SubjectPseudonym {
    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, the stored and shown form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses the hex form (as stored in the log).
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        (s.bytes().all(|b| !b.is_ascii_uppercase())).then_some(Self(out))
    }
}

impl fmt::Debug for SubjectPseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectPseudonym({})", self.to_hex())
    }
}

impl fmt::Display for SubjectPseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The content of a log entry: what the caller gives to
/// [`DisclosureLog::append`](super::DisclosureLog::append). The log adds the sequence number
/// and the hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// When the event happened (UTC; stored with microsecond precision).
    pub at: DateTime<Utc>,
    /// What the entry records.
    pub kind: EntryKind,
    /// The request id (`Request-Id` header).
    pub request_id: Option<String>,
    /// The policy decision's id.
    pub decision_id: Option<String>,
    /// Hash of the policy set the decision was made under.
    pub policy_hash: Option<String>,
    /// Recipient (the requesting) partner.
    pub recipient_partner: Option<String>,
    /// Recipient user (the token's subject, unique within the partner).
    pub recipient_user: Option<String>,
    /// The role under which the recipient acted.
    pub recipient_role: Option<String>,
    /// Stated purpose of use.
    pub purpose: Option<String>,
    /// Legal basis of a disclosure.
    pub basis: Option<LegalBasis>,
    /// Free-text justification (required for emergency access; DPA 2018 s.62).
    pub justification: Option<String>,
    /// The data subject, pseudonymized.
    pub subject: Option<SubjectPseudonym>,
    /// The record read.
    pub record: Option<RecordRef>,
    /// Fields disclosed and their transforms, in the order of the decision.
    pub fields_disclosed: Vec<FieldDisclosure>,
    /// How many fields of the record were withheld.
    pub fields_withheld: u32,
    /// Permit, or deny with a reason code.
    pub outcome: Outcome,
    /// The client's socket address.
    pub source_addr: Option<String>,
    /// SHA-256 of the client certificate, lower-case hex.
    pub cert_sha256: Option<String>,
    /// Further detail, e.g. the refusal reason of a security event or the filters of a log
    /// read. Never a token, key or clear-text subject identifier.
    pub detail: Option<String>,
}

impl NewEntry {
    /// An entry of `kind` at `at` with `outcome` and every other field empty.
    pub fn new(kind: EntryKind, at: DateTime<Utc>, outcome: Outcome) -> Self {
        Self {
            at,
            kind,
            request_id: None,
            decision_id: None,
            policy_hash: None,
            recipient_partner: None,
            recipient_user: None,
            recipient_role: None,
            purpose: None,
            basis: None,
            justification: None,
            subject: None,
            record: None,
            fields_disclosed: Vec::new(),
            fields_withheld: 0,
            outcome,
            source_addr: None,
            cert_sha256: None,
            detail: None,
        }
    }

    /// The time in Unix microseconds, the precision the log keeps.
    pub fn at_us(&self) -> i64 {
        self.at.timestamp_micros()
    }

    /// Checks the entry before it is queued: an entry the log would refuse is refused here,
    /// so that one bad entry never fails a group commit shared with others.
    pub fn validate(&self) -> Result<(), LogError> {
        let bad = |m: String| Err(LogError::Invalid(m));
        let texts = [
            ("request_id", self.request_id.as_deref()),
            ("decision_id", self.decision_id.as_deref()),
            ("policy_hash", self.policy_hash.as_deref()),
            ("recipient_partner", self.recipient_partner.as_deref()),
            ("recipient_user", self.recipient_user.as_deref()),
            ("recipient_role", self.recipient_role.as_deref()),
            ("purpose", self.purpose.as_deref()),
            ("justification", self.justification.as_deref()),
            ("source_addr", self.source_addr.as_deref()),
            ("cert_sha256", self.cert_sha256.as_deref()),
            ("detail", self.detail.as_deref()),
        ];
        for (name, value) in texts {
            if value.is_some_and(|v| v.len() > MAX_TEXT) {
                return bad(format!("`{name}` exceeds {MAX_TEXT} bytes"));
            }
        }
        if self.fields_disclosed.len() > MAX_FIELDS {
            return bad(format!("more than {MAX_FIELDS} disclosed fields"));
        }
        for f in &self.fields_disclosed {
            if f.field.is_empty() || f.field.len() > MAX_TEXT || f.transform.len() > MAX_TEXT {
                return bad("a disclosed field needs a name of 1 to 4096 bytes".into());
            }
        }
        if let Outcome::Deny { reason } = &self.outcome
            && (reason.is_empty() || reason.len() > MAX_TEXT)
        {
            return bad("a denial needs a reason code".into());
        }
        match &self.basis {
            Some(LegalBasis::Emergency { stated_basis }) => {
                if stated_basis.trim().is_empty() {
                    return bad("emergency access needs its stated basis".into());
                }
                if self
                    .justification
                    .as_deref()
                    .is_none_or(|j| j.trim().is_empty())
                {
                    return bad("emergency access needs a justification".into());
                }
            }
            Some(LegalBasis::Mou { mou_id, rule }) if mou_id.is_empty() || rule.is_empty() => {
                return bad("an MOU basis needs the MOU id and the rule".into());
            }
            Some(LegalBasis::Consent { consent_id }) if consent_id.is_empty() => {
                return bad("a consent basis needs the consent id".into());
            }
            Some(LegalBasis::CourtOrder { order_id })
                if order_id.is_empty() || order_id.len() > MAX_TEXT =>
            {
                return bad("a court-order basis needs the order id".into());
            }
            Some(LegalBasis::MedicalEmergency { documentation }) => {
                if documentation.trim().is_empty() || documentation.len() > MAX_TEXT {
                    return bad("a medical emergency needs its 42 CFR 2.51(c) documentation".into());
                }
                if self
                    .justification
                    .as_deref()
                    .is_none_or(|j| j.trim().is_empty())
                {
                    return bad("a medical emergency needs the nature of the emergency".into());
                }
            }
            _ => {}
        }
        if let Some(LegalBasis::Mou { mou_id, rule }) = &self.basis
            && (mou_id.len() > MAX_TEXT || rule.len() > MAX_TEXT)
        {
            return bad("the MOU id or rule is too long".into());
        }
        if self.kind == EntryKind::Disclosure && self.outcome == Outcome::Permit {
            if self.basis.is_none() {
                return bad("a permitted disclosure needs its legal basis".into());
            }
            if self.recipient_partner.is_none() || self.purpose.is_none() {
                return bad("a permitted disclosure needs its recipient and purpose".into());
            }
        }
        if !self.fields_disclosed.is_empty() && self.outcome != Outcome::Permit {
            return bad("a denial discloses no field".into());
        }
        Ok(())
    }
}

/// The encoding an entry was written with (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum EntryFormat {
    /// Written before free text was sealed and before the Merkle tree: free text in clear,
    /// hash `SHA-256(E1)`, covered by the hash chain only.
    #[serde(rename = "v1")]
    V1,
    /// Free text sealed; hash `SHA-256(0x00 || E2)`, which is also the entry's RFC 6962 leaf
    /// hash in the Merkle tree.
    #[serde(rename = "v2")]
    V2,
}

impl EntryFormat {
    /// The number stored in the `format` column.
    pub fn as_i32(self) -> i32 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
        }
    }

    /// The format stored as `n`.
    pub fn from_i32(n: i32) -> Option<Self> {
        match n {
            1 => Some(Self::V1),
            2 => Some(Self::V2),
            _ => None,
        }
    }
}

/// A stored, chained entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Sequence number, from 1, without gaps.
    pub seq: u64,
    /// The encoding it was written with.
    pub format: EntryFormat,
    /// The content. In a [`EntryFormat::V2`] entry read from the database the free text
    /// (justification, detail, an emergency's stated basis, a medical emergency's
    /// documentation) is empty until it is opened with the log's free-text key
    /// ([`super::LogTextKey::open`]).
    pub data: NewEntry,
    /// The sealed free text of a [`EntryFormat::V2`] entry, if it had any.
    pub sealed: Option<Vec<u8>>,
    /// Hash of the previous entry (32 zero bytes before the first).
    pub prev_hash: ChainHash,
    /// This entry's hash (see the module documentation for the encoding).
    pub hash: ChainHash,
}

impl Entry {
    /// Recomputes this entry's hash from its content, as it would be at sequence number
    /// `seq`, with `buf` as scratch space.
    pub fn compute_hash(&self, buf: &mut Vec<u8>, seq: u64) -> ChainHash {
        match self.format {
            EntryFormat::V1 => {
                super::canonical::entry_hash_with(buf, seq, &self.prev_hash, &self.data)
            }
            EntryFormat::V2 => super::canonical::leaf_hash_with(
                buf,
                seq,
                &self.prev_hash,
                &self.data,
                self.sealed.as_deref(),
            ),
        }
    }
}

/// What [`DisclosureLog::append`](super::DisclosureLog::append) returns once the entry is
/// durably committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendedEntry {
    /// The entry's sequence number.
    pub seq: u64,
    /// The entry's hash (for a format-2 entry, also its Merkle leaf hash).
    pub hash: ChainHash,
    /// Its leaf index in the Merkle tree.
    pub leaf_index: u64,
}
