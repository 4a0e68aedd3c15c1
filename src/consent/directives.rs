//! The registry of agreed restrictions and court orders at rest: each sealed with its own data
//! key, its subjects as blind indexes, its end (termination, vacating) sealed too.
//!
//! ## What is stored, and how
//!
//! - One data key per directive (purpose `directive`), wrapped under the master key.
//! - `subject_directives.body`: the directive as recorded (JSON: a [`RestrictionRecord`] or a
//!   [`CourtOrderRecord`], with who recorded it and when), AES-256-GCM bound to the kind, the id
//!   and the recording partner ([`Binding::Directive`]). A restriction or a court order about
//!   Part 2 records tells that a person is in substance-use treatment: none of it is in clear.
//! - `subject_directive_subjects`: per identifier, its keyed blind index (lookup) and its sealed
//!   value ([`Binding::DirectiveSubject`]).
//! - `end_sealed`: who ended it, when and why ([`Binding::DirectiveEnd`]); the end columns are
//!   checked against it.
//! - Clear text: id, kind, the recording partner and user, the times.
//!
//! Reading one checks the clear columns against the sealed body, and the subject rows against
//! it; anything that does not authenticate fails the read ([`DirectiveStoreError::Integrity`])
//! and nothing of that directive is used: a decision is never taken on a partial view of the
//! person's directives. Known limit (as for consents): someone able to write to the database
//! could delete an end (both columns) and so revive an ended directive; the hash-chained log
//! entry written with every end is the evidence against that.
//!
//! Every creation and end moves the consent epoch (`cache_epochs.consents`, which stands for all
//! of a subject's directives) in the changing transaction, so cached decision inputs are never
//! used after a change (see `consent::cache`).

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::orders::CourtOrderRecord;
use super::restrictions::RestrictionRecord;
use crate::crypto::{Binding, CryptoError, DataKey, KEY_PURPOSE_DIRECTIVE, Keyring};
use crate::domain::{Author, PartnerId, SubjectIdentifier};
use crate::store::directives::{self, DirectiveRow, DirectiveSubjectRow};
use crate::store::{Conn, StoreError, data_keys, epochs};

/// A kind of directive the registry keeps.
pub trait DirectiveBody: Serialize + DeserializeOwned + Clone {
    /// The stored kind, `restriction` or `court_order`.
    const WHAT: &'static str;
    /// The person's identifiers.
    fn subjects(&self) -> &[SubjectIdentifier];
    /// From when it holds.
    fn valid_from(&self) -> DateTime<Utc>;
    /// When it ends on its own, if it does.
    fn ends_at(&self) -> Option<DateTime<Utc>>;
}

impl DirectiveBody for RestrictionRecord {
    const WHAT: &'static str = "restriction";
    fn subjects(&self) -> &[SubjectIdentifier] {
        &self.subjects
    }
    fn valid_from(&self) -> DateTime<Utc> {
        self.valid_from
    }
    fn ends_at(&self) -> Option<DateTime<Utc>> {
        self.until
    }
}

impl DirectiveBody for CourtOrderRecord {
    const WHAT: &'static str = "court_order";
    fn subjects(&self) -> &[SubjectIdentifier] {
        &self.subjects
    }
    fn valid_from(&self) -> DateTime<Utc> {
        self.valid_from
    }
    fn ends_at(&self) -> Option<DateTime<Utc>> {
        Some(self.until)
    }
}

/// A registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DirectiveStoreError {
    /// No such directive (404).
    #[error("no {what} `{id}` is recorded")]
    NotFound {
        /// `restriction` or `court order`.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// It was ended already (409).
    #[error("{what} `{id}` already ended at {at}")]
    AlreadyEnded {
        /// `restriction` or `court order`.
        what: &'static str,
        /// Its id.
        id: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// A concurrent change won, or the id is taken: the recording violated the directive's own
    /// key (`subject_directives`) (409; retry). A violation of any other unique key is
    /// [`DirectiveStoreError::Store`].
    #[error("`{0}` was changed concurrently; retry")]
    Conflict(String),
    /// Stored data failed its integrity check (500, opaque to the client; alert).
    #[error(
        "stored {what} `{id}` failed its integrity check ({part}); it was not used. Restore it \
         from backup and investigate tampering"
    )]
    Integrity {
        /// `restriction` or `court_order`.
        what: &'static str,
        /// Its id.
        id: String,
        /// Which part.
        part: String,
    },
    /// A key could not be used (503).
    #[error("encryption key unavailable: {0}")]
    Key(CryptoError),
    /// Encryption itself failed (500).
    #[error("encryption failed: {0}")]
    Crypto(CryptoError),
    /// The database failed (503).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a directive ended. `Debug` hides the reason.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectiveEnd {
    /// When it took effect.
    pub at: DateTime<Utc>,
    /// Who ended it (partner).
    pub partner: String,
    /// Who ended it (user).
    pub user: String,
    /// Why (free text; may hold personal data: sealed, never logged).
    pub reason: String,
}

impl std::fmt::Debug for DirectiveEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectiveEnd")
            .field("at", &self.at)
            .field("partner", &self.partner)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A directive read back and checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredDirective<T> {
    /// Its id.
    pub id: String,
    /// The partner that recorded it.
    pub recorded_by: PartnerId,
    /// The user that recorded it.
    pub recorded_by_user: String,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    /// The directive.
    pub record: T,
    /// How it ended, if it was ended before its time.
    pub ended: Option<DirectiveEnd>,
}

impl<T: DirectiveBody> StoredDirective<T> {
    /// `pending`, `active`, `expired` or `ended`, at `now`.
    pub fn status(&self, now: DateTime<Utc>) -> &'static str {
        if self.ended.as_ref().is_some_and(|e| e.at <= now) {
            "ended"
        } else if self.record.ends_at().is_some_and(|e| e <= now) {
            "expired"
        } else if self.record.valid_from() > now {
            "pending"
        } else {
            "active"
        }
    }

    /// When it was ended, if it was.
    pub fn ended_at(&self) -> Option<DateTime<Utc>> {
        self.ended.as_ref().map(|e| e.at)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedBody<T> {
    recorded_by: String,
    recorded_by_user: String,
    recorded_at_us: i64,
    record: T,
}

fn integrity<T: DirectiveBody>(id: &str, part: impl Into<String>) -> DirectiveStoreError {
    DirectiveStoreError::Integrity {
        what: T::WHAT,
        id: id.to_owned(),
        part: part.into(),
    }
}

fn micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

fn to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    micros(t.timestamp_micros())
}

fn seal_json<V: Serialize>(
    key: &DataKey,
    binding: &Binding<'_>,
    value: &V,
) -> Result<Vec<u8>, DirectiveStoreError> {
    let plain =
        secrecy::zeroize::Zeroizing::new(serde_json::to_vec(value).map_err(|_| {
            DirectiveStoreError::Crypto(CryptoError::Malformed("value not encodable"))
        })?);
    key.seal(binding, &plain)
        .map_err(DirectiveStoreError::Crypto)
}

fn open_json<T: DirectiveBody, V: DeserializeOwned>(
    key: &DataKey,
    binding: &Binding<'_>,
    ciphertext: &[u8],
    id: &str,
    part: &str,
) -> Result<V, DirectiveStoreError> {
    let plain = key
        .open(binding, ciphertext)
        .map_err(|_| integrity::<T>(id, part))?;
    serde_json::from_slice(&plain).map_err(|_| integrity::<T>(id, part))
}

fn blind_index(keyring: &Keyring, s: &SubjectIdentifier) -> Vec<u8> {
    keyring
        .blind_index(s.system(), s.value())
        .as_bytes()
        .to_vec()
}

/// Records a validated directive with id `id`, recorded by `actor`, inside the caller's
/// transaction (which also appends its log entry), and moves the consent epoch.
pub async fn create<T: DirectiveBody>(
    c: &mut Conn<'_>,
    keyring: &Keyring,
    id: &str,
    record: &T,
    actor: &Author,
    at: DateTime<Utc>,
) -> Result<StoredDirective<T>, DirectiveStoreError> {
    let at = to_micros(at);
    let at_us = at.timestamp_micros();
    let recorded_by = actor.partner.as_str();
    let (key, wrapped) = keyring
        .new_data_key(KEY_PURPOSE_DIRECTIVE)
        .map_err(DirectiveStoreError::Key)?;
    data_keys::insert(c, &wrapped, at_us).await?;
    let body = seal_json(
        &key,
        &Binding::Directive {
            what: T::WHAT,
            id,
            recorded_by,
        },
        &SealedBody {
            recorded_by: recorded_by.to_owned(),
            recorded_by_user: actor.user.to_string(),
            recorded_at_us: at_us,
            record: record.clone(),
        },
    )?;
    let inserted = directives::insert(
        c,
        &DirectiveRow {
            id: id.to_owned(),
            directive: T::WHAT.to_owned(),
            recorded_by: recorded_by.to_owned(),
            recorded_by_user: actor.user.to_string(),
            recorded_at_us: at_us,
            data_key_id: wrapped.id.clone(),
            valid_from_us: record.valid_from().timestamp_micros(),
            ends_at_us: record.ends_at().map(|t| t.timestamp_micros()),
            ended_at_us: None,
            ended_by_partner: None,
            ended_by_user: None,
            body,
            end_sealed: None,
        },
    )
    .await;
    match inserted {
        // Only the directive's own key: the id was taken by a concurrent recording.
        Err(e) if e.is_own_key_conflict(&["subject_directives"], "directive", T::WHAT) => {
            return Err(DirectiveStoreError::Conflict(id.into()));
        }
        other => other?,
    };
    for (n, subject) in record.subjects().iter().enumerate() {
        let position = i64::try_from(n).unwrap_or(i64::MAX);
        let ciphertext = seal_json(
            &key,
            &Binding::DirectiveSubject {
                what: T::WHAT,
                id,
                position,
            },
            subject,
        )?;
        directives::insert_subject(
            c,
            id,
            &DirectiveSubjectRow {
                position,
                blind_index: blind_index(keyring, subject),
                ciphertext,
            },
        )
        .await?;
    }
    epochs::bump_consents(c).await?;
    Ok(StoredDirective {
        id: id.to_owned(),
        recorded_by: actor.partner.clone(),
        recorded_by_user: actor.user.to_string(),
        recorded_at: at,
        record: record.clone(),
        ended: None,
    })
}

/// Ends `stored` (as read inside the same transaction) at `at`, for `reason`; moves the
/// consent epoch. Refused if it was ended already.
pub async fn end<T: DirectiveBody>(
    c: &mut Conn<'_>,
    keyring: &Keyring,
    stored: &StoredDirective<T>,
    reason: &str,
    actor: &Author,
    at: DateTime<Utc>,
) -> Result<StoredDirective<T>, DirectiveStoreError> {
    if let Some(e) = &stored.ended {
        return Err(DirectiveStoreError::AlreadyEnded {
            what: what_name(T::WHAT),
            id: stored.id.clone(),
            at: e.at,
        });
    }
    let at = to_micros(at);
    let row =
        directives::get(c, &stored.id)
            .await?
            .ok_or_else(|| DirectiveStoreError::NotFound {
                what: what_name(T::WHAT),
                id: stored.id.clone(),
            })?;
    let key = directive_key::<T>(c, keyring, &row).await?;
    let end = DirectiveEnd {
        at,
        partner: actor.partner.to_string(),
        user: actor.user.to_string(),
        reason: reason.to_owned(),
    };
    let sealed = seal_json(
        &key,
        &Binding::DirectiveEnd {
            what: T::WHAT,
            id: &stored.id,
        },
        &end,
    )?;
    let done = directives::mark_ended(
        c,
        &stored.id,
        at.timestamp_micros(),
        actor.partner.as_str(),
        actor.user.as_str(),
        &sealed,
    )
    .await?;
    if !done {
        return Err(DirectiveStoreError::Conflict(stored.id.clone()));
    }
    epochs::bump_consents(c).await?;
    let mut out = stored.clone();
    out.ended = Some(end);
    Ok(out)
}

/// `restriction` or `court order`, for messages.
pub fn what_name(what: &str) -> &'static str {
    if what == CourtOrderRecord::WHAT {
        "court order"
    } else {
        "restriction"
    }
}

async fn directive_key<T: DirectiveBody>(
    c: &mut Conn<'_>,
    keyring: &Keyring,
    row: &DirectiveRow,
) -> Result<Arc<DataKey>, DirectiveStoreError> {
    let wrapped = data_keys::get(c, &row.data_key_id)
        .await?
        .ok_or_else(|| integrity::<T>(&row.id, "data key missing"))?;
    keyring
        .open_data_key(&wrapped, KEY_PURPOSE_DIRECTIVE)
        .map_err(|e| match e {
            CryptoError::UnknownMasterVersion(_) | CryptoError::Random => {
                DirectiveStoreError::Key(e)
            }
            _ => integrity::<T>(&row.id, "data key"),
        })
}

/// Opens and checks everything stored for one directive.
async fn open<T: DirectiveBody>(
    c: &mut Conn<'_>,
    keyring: &Keyring,
    row: DirectiveRow,
) -> Result<StoredDirective<T>, DirectiveStoreError> {
    let id = row.id.as_str();
    if row.directive != T::WHAT {
        return Err(integrity::<T>(id, "kind"));
    }
    let key = directive_key::<T>(c, keyring, &row).await?;
    let body: SealedBody<T> = open_json::<T, _>(
        &key,
        &Binding::Directive {
            what: T::WHAT,
            id,
            recorded_by: &row.recorded_by,
        },
        &row.body,
        id,
        "body",
    )?;
    let r = &body.record;
    if body.recorded_by != row.recorded_by
        || body.recorded_by_user != row.recorded_by_user
        || body.recorded_at_us != row.recorded_at_us
        || r.valid_from().timestamp_micros() != row.valid_from_us
        || r.ends_at().map(|t| t.timestamp_micros()) != row.ends_at_us
    {
        return Err(integrity::<T>(id, "clear columns"));
    }
    let ended = match (&row.end_sealed, row.ended_at_us) {
        (None, None) => None,
        (Some(sealed), Some(at_us)) => {
            let e: DirectiveEnd = open_json::<T, _>(
                &key,
                &Binding::DirectiveEnd { what: T::WHAT, id },
                sealed,
                id,
                "end",
            )?;
            if e.at.timestamp_micros() != at_us
                || Some(&e.partner) != row.ended_by_partner.as_ref()
                || Some(&e.user) != row.ended_by_user.as_ref()
            {
                return Err(integrity::<T>(id, "end"));
            }
            Some(e)
        }
        _ => return Err(integrity::<T>(id, "end")),
    };
    let rows = directives::subjects(c, id).await?;
    if rows.len() != r.subjects().len() {
        return Err(integrity::<T>(id, "subject identifier list"));
    }
    for (n, s) in rows.into_iter().enumerate() {
        let part = format!("subject identifier {}", s.position);
        if i64::try_from(n).ok() != Some(s.position) {
            return Err(integrity::<T>(id, "subject identifier list"));
        }
        let ident: SubjectIdentifier = open_json::<T, _>(
            &key,
            &Binding::DirectiveSubject {
                what: T::WHAT,
                id,
                position: s.position,
            },
            &s.ciphertext,
            id,
            &part,
        )?;
        if r.subjects().get(n) != Some(&ident) || blind_index(keyring, &ident) != s.blind_index {
            return Err(integrity::<T>(id, part));
        }
    }
    let recorded_by: PartnerId = row
        .recorded_by
        .parse()
        .map_err(|_| integrity::<T>(id, "recording partner"))?;
    Ok(StoredDirective {
        id: row.id.clone(),
        recorded_by,
        recorded_by_user: row.recorded_by_user.clone(),
        recorded_at: micros(row.recorded_at_us),
        record: body.record,
        ended,
    })
}

/// Reads one directive of kind `T` by id, checked. `None` if there is none of that kind.
pub async fn get<T: DirectiveBody>(
    c: &mut Conn<'_>,
    keyring: &Keyring,
    id: &str,
) -> Result<Option<StoredDirective<T>>, DirectiveStoreError> {
    match directives::get(c, id).await? {
        Some(row) if row.directive == T::WHAT => open(c, keyring, row).await.map(Some),
        _ => Ok(None),
    }
}

/// Every directive of kind `T`, oldest first, each checked.
pub async fn list<T: DirectiveBody>(
    c: &mut Conn<'_>,
    keyring: &Keyring,
) -> Result<Vec<StoredDirective<T>>, DirectiveStoreError> {
    let mut out = Vec::new();
    for row in directives::list(c, T::WHAT).await? {
        out.push(open(c, keyring, row).await?);
    }
    Ok(out)
}

/// Every directive of kind `T` naming any of `subjects`, found through the blind index, oldest
/// first. Each is read in full and checked, and must name the identifier that found it; any
/// integrity failure fails the whole lookup.
pub async fn find<T: DirectiveBody>(
    c: &mut Conn<'_>,
    keyring: &Keyring,
    subjects: &[SubjectIdentifier],
) -> Result<Vec<StoredDirective<T>>, DirectiveStoreError> {
    let mut hits: BTreeSet<(String, i64, usize)> = BTreeSet::new();
    for (n, subject) in subjects.iter().enumerate() {
        let rows = directives::find_by_blind_index(c, &blind_index(keyring, subject)).await?;
        hits.extend(rows.into_iter().map(|(id, pos)| (id, pos, n)));
    }
    let mut out: Vec<StoredDirective<T>> = Vec::new();
    for (id, position, n) in hits {
        if !out.iter().any(|s| s.id == id) {
            let row = directives::get(c, &id)
                .await?
                .ok_or_else(|| integrity::<T>(&id, "subject identifier without its directive"))?;
            if row.directive != T::WHAT {
                continue;
            }
            out.push(open(c, keyring, row).await?);
        }
        let Some(found) = out.iter().find(|s| s.id == id) else {
            continue;
        };
        let named = usize::try_from(position)
            .ok()
            .and_then(|p| found.record.subjects().get(p));
        if named != subjects.get(n) {
            return Err(integrity::<T>(
                &id,
                format!("blind index of subject identifier {position}"),
            ));
        }
    }
    out.sort_by(|a, b| (a.recorded_at, &a.id).cmp(&(b.recorded_at, &b.id)));
    Ok(out)
}
