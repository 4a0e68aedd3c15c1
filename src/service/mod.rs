//! The services: everything the gateway does, free of HTTP.
//!
//! One read service (the disclosure path, [`read`]) and the write services (record writes,
//! referral moves, consent changes, restrictions and court orders, accounting suspensions,
//! review closing, policy loads) and compliance queries (the log, the accounting, the 42 CFR
//! 2.24 list of Part 2 disclosures, policy changes). Each service function owns its transaction and its disclosure-log entry, takes the
//! [`Services`] handle (repositories, keyring, policy set, log, clock, caches) and the caller,
//! and returns this module's [`Error`]. The API layer parses input into domain types, calls one
//! service function and maps its error to an HTTP answer; the command line calls the same
//! functions. Program outcome reports ([`reports`]) are computed here too, from what the vault
//! opens for a report's grant.
//!
//! ```text
//! api, cli, devinit ──► service ──► vault (records sealed at rest, the disclosure gate)
//!                          │     ──► consent (directives, registry, coverage)
//!                          │     ──► policy::decide, redaction, referral, emergency
//!                          │     ──► audit (the log: entries, receipts, queries)
//!                          └─────► store (repositories) ──► crypto ──► domain
//! ```
//!
//! Time enters through the [`Clock`](crate::domain::Clock) in [`Services`]: the server runs on the system clock,
//! tests set a manual one.

pub mod compliance;
pub mod consents;
pub mod directives;
mod error;
pub mod keys;
pub mod overview;
pub mod part2;
pub mod policy_changes;
pub mod read;
pub mod records;
pub mod referrals;
pub mod reports;
pub mod reviews;
pub mod transparency;

use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};

pub use error::{Error, key_unavailable, log_error, record_error};
pub use read::{Asker, Denial, DisclosedRecord, RecordAnswer, SubjectAnswer};

use crate::audit::{DisclosureLog, EntryKind, NewEntry, Outcome};
use crate::consent::cache::ConsentCache;
use crate::consent::directive_cache::DirectiveCache;
use crate::crypto::Keyring;
use crate::domain::{Principal, SharedClock};
use crate::policy::PolicySet;
use crate::store::Store;

/// The role a compliance officer's token carries.
pub const COMPLIANCE_ROLE: &str = "compliance";

/// Everything the services work with. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Services {
    /// The database.
    pub store: Store,
    /// Keys for data at rest (and the data-key cache).
    pub keyring: Arc<Keyring>,
    /// The current policy set; replaced whole on reload.
    pub policy: Arc<ArcSwap<PolicySet>>,
    /// The disclosure log.
    pub log: DisclosureLog,
    /// Where the time comes from.
    pub clock: SharedClock,
    /// Subjects' consents, as read for decisions (coherent across replicas).
    pub consents: ConsentCache,
    /// Subjects' restrictions and court orders, as read for decisions (coherent across
    /// replicas, like consents).
    pub directives: DirectiveCache,
    /// How long one emergency assertion lasts (at most a year).
    pub emergency_window: chrono::Duration,
    /// Serializes policy loads, so each is compared with the set it replaces.
    pub policy_lock: tokio::sync::Mutex<()>,
}

impl Services {
    /// The services over these parts. `emergency_window_secs` is capped at a year.
    pub fn new(
        store: Store,
        keyring: Arc<Keyring>,
        policy: Arc<ArcSwap<PolicySet>>,
        log: DisclosureLog,
        clock: SharedClock,
        emergency_window_secs: u64,
    ) -> Self {
        let secs = emergency_window_secs.min(366 * 24 * 3600);
        Self {
            store,
            keyring,
            policy,
            log,
            clock,
            consents: ConsentCache::default(),
            directives: DirectiveCache::default(),
            emergency_window: chrono::Duration::seconds(i64::try_from(secs).unwrap_or(3600)),
            policy_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The policy set in force.
    pub fn policy(&self) -> Arc<PolicySet> {
        self.policy.load_full()
    }
}

/// Who acts, and from where: the authenticated caller plus what the log records of the
/// request.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The authenticated caller.
    pub principal: &'a Principal,
    /// The request id (for the log).
    pub request_id: Option<&'a str>,
    /// The peer address (for the log).
    pub source_addr: Option<&'a str>,
}

impl Caller<'_> {
    /// A log entry of `kind` recording an act by this caller at `at`: request id, the caller's
    /// partner, user and roles (as the entry's recipient), source address and certificate.
    pub fn entry(&self, kind: EntryKind, at: DateTime<Utc>, outcome: Outcome) -> NewEntry {
        let who = self.principal;
        let mut e = NewEntry::new(kind, at, outcome);
        e.request_id = self.request_id.map(str::to_owned);
        e.recipient_partner = Some(who.partner.to_string());
        e.recipient_user = Some(who.user.to_string());
        e.recipient_role = Some(
            who.roles
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        );
        e.source_addr = self.source_addr.map(str::to_owned);
        e.cert_sha256 = Some(who.cert_fingerprint.to_hex());
        e
    }

    /// Whether the caller is a compliance officer of a compliance partner.
    pub fn is_compliance_officer(&self) -> bool {
        self.principal.partner_kind == crate::domain::PartnerKind::Compliance
            && self.principal.has_role(COMPLIANCE_ROLE)
    }
}

/// A clock for the services (the system's, in the server).
pub fn system_clock() -> SharedClock {
    Arc::new(crate::domain::SystemClock)
}
