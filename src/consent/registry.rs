//! The consent registry at rest: consent directives sealed with their own data keys, their
//! subjects as blind indexes, and their history.
//!
//! ## What is stored, and how
//!
//! - One data key per consent (`consents.data_key_id`), wrapped under the master key in
//!   `data_keys` (purpose `consent`).
//! - `consents.body`: the directive as recorded (JSON), AES-256-GCM under that key, bound to the
//!   consent id, the collecting partner and the directive version
//!   ([`Binding::ConsentDirective`]). A consent's content can reveal that someone is in
//!   substance-use treatment: none of it is stored in clear.
//! - `consent_subjects`: per identifier, its keyed blind index (for lookup, indexed) and its
//!   sealed value ([`Binding::ConsentSubject`]).
//! - `consent_events`: every creation and revocation, with who (partner and user) and when in
//!   clear and the full event sealed ([`Binding::ConsentEvent`]); a revocation also holds when
//!   and how it was received and an optional note. A revoked consent is never deleted.
//! - Clear text: consent id, collecting partner, times, status, and the actor of each event.
//!
//! Reading a consent checks every clear column against its sealed copy, the event sequence and
//! the subject rows against the sealed directive; anything that does not authenticate or does
//! not match fails the read with [`ConsentStoreError::Integrity`] and nothing of that consent is
//! returned. Known limit (as for records): someone able to write to the database could delete
//! the last event and restore the earlier clear columns (a rollback); the hash-chained
//! `consent_changed` entry written with every change is the evidence against that.
//!
//! ## Transactions
//!
//! Writes take a connection inside the caller's transaction, so a change commits together with
//! its disclosure-log entry (a transaction the log began); reads take any connection.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::directive::{ConsentDirective, ValidConsent};
use super::{Consent, SubjectRef};
use crate::crypto::{Binding, CryptoError, DataKey, KEY_PURPOSE_CONSENT, Keyring};
use crate::domain::{Author, PartnerId, SubjectIdentifier};
use crate::store::consents::{self, ConsentRow, EventRow, SubjectRow};
use crate::store::{Conn, StoreError, data_keys, epochs};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The directive version sealed in `consents.body` (a directive is never edited: a changed
/// consent is a new consent).
const DIRECTIVE_VERSION: i64 = 1;
const STATUS_ACTIVE: &str = "active";
const STATUS_REVOKED: &str = "revoked";

/// A consent-registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsentStoreError {
    /// No consent has this id (404).
    #[error("no consent `{0}` is recorded")]
    NotFound(String),
    /// The consent was already revoked (409).
    #[error("consent `{id}` was already revoked at {at}")]
    AlreadyRevoked {
        /// Consent id.
        id: String,
        /// When it was revoked.
        at: DateTime<Utc>,
    },
    /// A concurrent change of the same consent won, or the id is taken: the write violated the
    /// consent's own key (`consents`) or its event's (`consent_events`) (409; retry). A
    /// violation of any other unique key is [`ConsentStoreError::Store`].
    #[error("consent `{0}` was changed concurrently; retry")]
    Conflict(String),
    /// Stored data failed its integrity check: tampered, moved or rolled back. Nothing of the
    /// consent was returned (500, opaque to the client; alert).
    #[error(
        "stored consent `{id}` failed its integrity check ({part}); it was not used. Restore \
         it from backup and investigate tampering"
    )]
    Integrity {
        /// Consent id.
        id: String,
        /// Which part (`body`, `event 2`, `subject identifier 0`, ...).
        part: String,
    },
    /// A key could not be used, e.g. a master-key version this gateway lacks (503).
    #[error("encryption key unavailable: {0}")]
    Key(CryptoError),
    /// Encryption itself failed (500).
    #[error("encryption failed: {0}")]
    Crypto(CryptoError),
    /// The database failed (503).
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn integrity(id: &str, part: impl Into<String>) -> ConsentStoreError {
    ConsentStoreError::Integrity {
        id: id.to_owned(),
        part: part.into(),
    }
}

/// How a revocation reached the collecting partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceivedHow {
    /// On paper.
    Written,
    /// Spoken (documented by the person who heard it).
    Oral,
    /// By an electronic message or form.
    Electronic,
}

/// A revocation as the patient gave it. `Debug` hides the note.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// When the partner received it.
    pub received_at: DateTime<Utc>,
    /// How it was received.
    pub received_how: ReceivedHow,
    /// A free-text note (personal data possible: sealed, never logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl std::fmt::Debug for Revocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocation")
            .field("received_at", &self.received_at)
            .field("received_how", &self.received_how)
            .field("note", &self.note.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// What an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The consent was recorded.
    Created,
    /// The consent was revoked.
    Revoked,
}

impl EventKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Revoked => "revoked",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "created" => Some(Self::Created),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// One event of a consent's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsentEvent {
    /// Event number, from 1.
    pub seq: i64,
    /// What happened.
    pub event: EventKind,
    /// The acting partner.
    pub partner: String,
    /// The acting user.
    pub user: String,
    /// When the gateway recorded it (for a revocation: when it took effect).
    pub at: DateTime<Utc>,
    /// For a revocation: when and how it was received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation: Option<Revocation>,
}

/// Where a consent stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentStatus {
    /// Recorded, but `valid_from` is still ahead.
    Pending,
    /// In force.
    Active,
    /// Past its expiration date.
    Expired,
    /// Revoked.
    Revoked,
}

impl ConsentStatus {
    /// The name shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }
}

/// A consent read back and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredConsent {
    /// Its id.
    pub id: String,
    /// The partner that collected (recorded) it.
    pub collected_by: PartnerId,
    /// The directive as recorded (validated and normalized when it was recorded).
    pub directive: ConsentDirective,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Every event, oldest first.
    pub history: Vec<ConsentEvent>,
}

impl StoredConsent {
    /// Its status at `now`.
    pub fn status(&self, now: DateTime<Utc>) -> ConsentStatus {
        if self.revoked_at.is_some_and(|r| r <= now) {
            ConsentStatus::Revoked
        } else if self.directive.expires.is_some_and(|e| e <= now) {
            ConsentStatus::Expired
        } else if self.directive.valid_from_or_epoch() > now {
            ConsentStatus::Pending
        } else {
            ConsentStatus::Active
        }
    }

    /// The decision input, with `subject` standing for the person.
    pub fn to_consent(&self, subject: &SubjectRef) -> Consent {
        self.directive
            .to_consent(&self.id, subject, self.revoked_at)
    }
}

/// The sealed body of a consent.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedBody {
    collected_by: String,
    created_at_us: i64,
    directive: ConsentDirective,
}

/// The sealed copy of an event.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedEvent {
    event: EventKind,
    actor_partner: String,
    actor_user: String,
    at_us: i64,
    revocation: Option<Revocation>,
}

fn micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

fn to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    micros(t.timestamp_micros())
}

fn seal_json<T: Serialize>(
    key: &DataKey,
    binding: &Binding<'_>,
    value: &T,
) -> Result<Vec<u8>, ConsentStoreError> {
    let plain =
        secrecy::zeroize::Zeroizing::new(serde_json::to_vec(value).map_err(|_| {
            ConsentStoreError::Crypto(CryptoError::Malformed("value not encodable"))
        })?);
    key.seal(binding, &plain).map_err(ConsentStoreError::Crypto)
}

fn open_json<T: serde::de::DeserializeOwned>(
    key: &DataKey,
    binding: &Binding<'_>,
    ciphertext: &[u8],
    id: &str,
    part: impl Fn() -> String,
) -> Result<T, ConsentStoreError> {
    let plain = key
        .open(binding, ciphertext)
        .map_err(|_| integrity(id, part()))?;
    serde_json::from_slice(&plain).map_err(|_| integrity(id, part()))
}

fn blind_index(keyring: &Keyring, s: &SubjectIdentifier) -> Vec<u8> {
    keyring
        .blind_index(s.system(), s.value())
        .as_bytes()
        .to_vec()
}

/// Records a validated consent with id `id`, collected by `actor.partner`, inside the caller's
/// transaction: its data key, sealed body, subjects and the `created` event, and moves the
/// consent cache epoch. The caller commits (together with the disclosure-log entry).
pub async fn create(
    c: &mut Conn<'_>,
    keyring: &Keyring,
    id: &str,
    consent: &ValidConsent,
    actor: &Author,
    at: DateTime<Utc>,
) -> Result<StoredConsent, ConsentStoreError> {
    let at = to_micros(at);
    let at_us = at.timestamp_micros();
    let mut directive = consent.directive.clone();
    // Times are kept to the microsecond, like every time in the database.
    directive.valid_from = Some(to_micros(directive.valid_from.unwrap_or(at)));
    directive.expires = directive.expires.map(to_micros);
    let collected_by = actor.partner.as_str();
    let (key, wrapped) = keyring
        .new_data_key(KEY_PURPOSE_CONSENT)
        .map_err(ConsentStoreError::Key)?;
    data_keys::insert(c, &wrapped, at_us).await?;
    let body = seal_json(
        &key,
        &Binding::ConsentDirective {
            consent_id: id,
            collected_by,
            version: DIRECTIVE_VERSION,
        },
        &SealedBody {
            collected_by: collected_by.to_owned(),
            created_at_us: at_us,
            directive: directive.clone(),
        },
    )?;
    let inserted = consents::insert(
        c,
        &ConsentRow {
            id: id.to_owned(),
            collected_by: collected_by.to_owned(),
            data_key_id: wrapped.id.clone(),
            status: STATUS_ACTIVE.to_owned(),
            valid_from_us: directive.valid_from_or_epoch().timestamp_micros(),
            expires_us: directive.expires.map(|e| e.timestamp_micros()),
            created_at_us: at_us,
            revoked_at_us: None,
            event_count: 1,
            body,
        },
    )
    .await;
    match inserted {
        // Only the consent's own key: the id was taken by a concurrent creation.
        Err(e) if e.is_own_key_conflict(&["consents"], "consent", "consent") => {
            return Err(ConsentStoreError::Conflict(id.into()));
        }
        other => other?,
    };
    for (n, subject) in directive.subjects.iter().enumerate() {
        let position = i64::try_from(n).unwrap_or(i64::MAX);
        let ciphertext = seal_json(
            &key,
            &Binding::ConsentSubject {
                consent_id: id,
                position,
            },
            subject,
        )?;
        consents::insert_subject(
            c,
            id,
            &SubjectRow {
                position,
                blind_index: blind_index(keyring, subject),
                ciphertext,
            },
        )
        .await?;
    }
    let event = insert_event(c, &key, id, 1, EventKind::Created, actor, at, None).await?;
    epochs::bump_consents(c).await?;
    Ok(StoredConsent {
        id: id.to_owned(),
        collected_by: actor.partner.clone(),
        directive,
        created_at: at,
        revoked_at: None,
        history: vec![event],
    })
}

#[allow(clippy::too_many_arguments)]
async fn insert_event(
    c: &mut Conn<'_>,
    key: &DataKey,
    id: &str,
    seq: i64,
    event: EventKind,
    actor: &Author,
    at: DateTime<Utc>,
    revocation: Option<Revocation>,
) -> Result<ConsentEvent, ConsentStoreError> {
    let at_us = at.timestamp_micros();
    let sealed = seal_json(
        key,
        &Binding::ConsentEvent {
            consent_id: id,
            seq,
        },
        &SealedEvent {
            event,
            actor_partner: actor.partner.to_string(),
            actor_user: actor.user.to_string(),
            at_us,
            revocation: revocation.clone(),
        },
    )?;
    let inserted = consents::insert_event(
        c,
        id,
        &EventRow {
            seq,
            event: event.as_str().to_owned(),
            actor_partner: actor.partner.to_string(),
            actor_user: actor.user.to_string(),
            at_us,
            sealed,
        },
    )
    .await;
    match inserted {
        // Only the event's own key: a concurrent change of the consent took its number.
        Err(e) if e.is_own_key_conflict(&["consent_events"], "consent", event.as_str()) => {
            return Err(ConsentStoreError::Conflict(id.into()));
        }
        other => other?,
    };
    Ok(ConsentEvent {
        seq,
        event,
        partner: actor.partner.to_string(),
        user: actor.user.to_string(),
        at,
        revocation,
    })
}

/// Revokes `consent` (as read inside the same transaction) at `at`: appends the `revoked`
/// event and marks the consent revoked. Refused with [`ConsentStoreError::AlreadyRevoked`] if it
/// is. Disclosures decided before `at` stand; every decision from `at` on sees it revoked. Moves
/// the consent cache epoch in the same transaction.
pub async fn revoke(
    c: &mut Conn<'_>,
    keyring: &Keyring,
    consent: &StoredConsent,
    revocation: &Revocation,
    actor: &Author,
    at: DateTime<Utc>,
) -> Result<StoredConsent, ConsentStoreError> {
    if let Some(at) = consent.revoked_at {
        return Err(ConsentStoreError::AlreadyRevoked {
            id: consent.id.clone(),
            at,
        });
    }
    let at = to_micros(at);
    let row = consents::get(c, &consent.id)
        .await?
        .ok_or_else(|| ConsentStoreError::NotFound(consent.id.clone()))?;
    let key = consent_key(c, keyring, &row).await?;
    let seq = i64::try_from(consent.history.len()).unwrap_or(i64::MAX) + 1;
    let event = insert_event(
        c,
        &key,
        &consent.id,
        seq,
        EventKind::Revoked,
        actor,
        at,
        Some(revocation.clone()),
    )
    .await?;
    if !consents::mark_revoked(c, &consent.id, at.timestamp_micros(), seq).await? {
        return Err(ConsentStoreError::Conflict(consent.id.clone()));
    }
    epochs::bump_consents(c).await?;
    let mut out = consent.clone();
    out.revoked_at = Some(at);
    out.history.push(event);
    Ok(out)
}

async fn consent_key(
    c: &mut Conn<'_>,
    keyring: &Keyring,
    row: &ConsentRow,
) -> Result<Arc<DataKey>, ConsentStoreError> {
    let wrapped = data_keys::get(c, &row.data_key_id)
        .await?
        .ok_or_else(|| integrity(&row.id, "data key missing"))?;
    keyring
        .open_data_key(&wrapped, KEY_PURPOSE_CONSENT)
        .map_err(|e| match e {
            CryptoError::UnknownMasterVersion(_) | CryptoError::Random => ConsentStoreError::Key(e),
            _ => integrity(&row.id, "data key"),
        })
}

/// Opens and checks everything stored for one consent.
async fn open_consent(
    c: &mut Conn<'_>,
    keyring: &Keyring,
    row: ConsentRow,
) -> Result<StoredConsent, ConsentStoreError> {
    let id = row.id.as_str();
    let key = consent_key(c, keyring, &row).await?;
    let body: SealedBody = open_json(
        &key,
        &Binding::ConsentDirective {
            consent_id: id,
            collected_by: &row.collected_by,
            version: DIRECTIVE_VERSION,
        },
        &row.body,
        id,
        || "body".into(),
    )?;
    let d = &body.directive;
    if body.collected_by != row.collected_by
        || body.created_at_us != row.created_at_us
        || d.valid_from.map(|t| t.timestamp_micros()) != Some(row.valid_from_us)
        || d.expires.map(|t| t.timestamp_micros()) != row.expires_us
    {
        return Err(integrity(id, "clear columns"));
    }
    let collected_by: PartnerId = row
        .collected_by
        .parse()
        .map_err(|_| integrity(id, "collecting partner"))?;

    // History: 1 = created, then at most one revocation.
    let rows = consents::events(c, id).await?;
    if i64::try_from(rows.len()).ok() != Some(row.event_count) {
        return Err(integrity(id, "event list"));
    }
    let mut history = Vec::with_capacity(rows.len());
    for (n, row) in rows.into_iter().enumerate() {
        let EventRow {
            seq,
            event,
            actor_partner: partner,
            actor_user: user,
            at_us,
            sealed,
        } = row;
        let part = || format!("event {seq}");
        if i64::try_from(n).ok().map(|n| n + 1) != Some(seq) {
            return Err(integrity(id, "event list"));
        }
        let e: SealedEvent = open_json(
            &key,
            &Binding::ConsentEvent {
                consent_id: id,
                seq,
            },
            &sealed,
            id,
            part,
        )?;
        let expected = if seq == 1 {
            EventKind::Created
        } else {
            EventKind::Revoked
        };
        if EventKind::parse(&event) != Some(e.event)
            || e.event != expected
            || e.actor_partner != partner
            || e.actor_user != user
            || e.at_us != at_us
            || (e.event == EventKind::Revoked) != e.revocation.is_some()
        {
            return Err(integrity(id, part()));
        }
        history.push(ConsentEvent {
            seq,
            event: e.event,
            partner,
            user,
            at: micros(at_us),
            revocation: e.revocation,
        });
    }
    let created = history.first();
    let revoked = history.iter().find(|e| e.event == EventKind::Revoked);
    let consistent = history.len() <= 2
        && created.is_some_and(|c| c.at.timestamp_micros() == row.created_at_us)
        && match (row.status.as_str(), revoked, row.revoked_at_us) {
            (STATUS_ACTIVE, None, None) => true,
            (STATUS_REVOKED, Some(r), Some(at)) => r.at.timestamp_micros() == at,
            _ => false,
        };
    if !consistent {
        return Err(integrity(id, "status"));
    }

    // Subjects: every row opens in its place, matches the directive and its blind index.
    let rows = consents::subjects(c, id).await?;
    if rows.len() != d.subjects.len() {
        return Err(integrity(id, "subject identifier list"));
    }
    for (n, row) in rows.into_iter().enumerate() {
        let SubjectRow {
            position,
            blind_index: index,
            ciphertext,
        } = row;
        let part = || format!("subject identifier {position}");
        if i64::try_from(n).ok() != Some(position) {
            return Err(integrity(id, "subject identifier list"));
        }
        let s: SubjectIdentifier = open_json(
            &key,
            &Binding::ConsentSubject {
                consent_id: id,
                position,
            },
            &ciphertext,
            id,
            part,
        )?;
        if d.subjects.get(n) != Some(&s) || blind_index(keyring, &s) != index {
            return Err(integrity(id, part()));
        }
    }

    let revoked_at = revoked.map(|e| e.at);
    Ok(StoredConsent {
        id: row.id.clone(),
        collected_by,
        directive: body.directive,
        created_at: micros(row.created_at_us),
        revoked_at,
        history,
    })
}

/// Reads one consent by id, checked (see the module documentation). `None` if there is none.
pub async fn get(
    c: &mut Conn<'_>,
    keyring: &Keyring,
    id: &str,
) -> Result<Option<StoredConsent>, ConsentStoreError> {
    match consents::get(c, id).await? {
        None => Ok(None),
        Some(row) => open_consent(c, keyring, row).await.map(Some),
    }
}

/// Every stored consent (active, pending, expired or revoked) naming any of `subjects`, found
/// through the blind index, oldest first. Each is read in full and checked, and must name the
/// identifier that found it; any integrity failure fails the whole lookup.
pub async fn find(
    c: &mut Conn<'_>,
    keyring: &Keyring,
    subjects: &[SubjectIdentifier],
) -> Result<Vec<StoredConsent>, ConsentStoreError> {
    let mut hits: BTreeSet<(String, i64, usize)> = BTreeSet::new();
    for (n, subject) in subjects.iter().enumerate() {
        let rows = consents::find_by_blind_index(c, &blind_index(keyring, subject)).await?;
        hits.extend(rows.into_iter().map(|(id, pos)| (id, pos, n)));
    }
    let mut out: Vec<StoredConsent> = Vec::new();
    for (id, position, n) in hits {
        if !out.iter().any(|s| s.id == id) {
            let row = consents::get(c, &id)
                .await?
                .ok_or_else(|| integrity(&id, "subject identifier without its consent"))?;
            out.push(open_consent(c, keyring, row).await?);
        }
        let consent = out
            .iter()
            .find(|s| s.id == id)
            .ok_or_else(|| integrity(&id, "read"))?;
        let found = usize::try_from(position)
            .ok()
            .and_then(|p| consent.directive.subjects.get(p));
        if found != subjects.get(n) {
            return Err(integrity(
                &id,
                format!("blind index of subject identifier {position}"),
            ));
        }
    }
    out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(out)
}

/// The decision inputs for a record's subject: every stored consent (active, expired or
/// revoked; `decide` keeps only those in force) naming any of `subjects`, as [`Consent`]s whose
/// `subject` is `as_subject`, with the revocation time filled in. A consent whose stored data
/// does not authenticate fails the lookup ([`ConsentStoreError::Integrity`]); it is never
/// silently skipped.
pub async fn for_subjects(
    c: &mut Conn<'_>,
    keyring: &Keyring,
    subjects: &[SubjectIdentifier],
    as_subject: &SubjectRef,
) -> Result<Vec<Consent>, ConsentStoreError> {
    Ok(find(c, keyring, subjects)
        .await?
        .iter()
        .map(|c| c.to_consent(as_subject))
        .collect())
}
