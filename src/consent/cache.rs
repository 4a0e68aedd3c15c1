//! The decision inputs of a subject's consents, cached between decisions.
//!
//! Reading a person's consents means finding them through the blind index, unwrapping each
//! consent's data key and opening and checking every sealed part: most of the work of a
//! decision, and the same answer for every read about the same person until a consent
//! changes. So the decision inputs ([`Consent`]: who, to whom, for what, what, until when;
//! no name, no identifier) are cached per set of subject identifiers, bounded
//! ([`CONSENT_CACHE`] entries, least recently used go first).
//!
//! # Why a revocation still stops the very next request, on every replica
//!
//! Every consent creation and revocation moves the consent epoch (`cache_epochs.consents`) in
//! the transaction that changes the consent. Every record read returns the epoch in the same
//! statement as the record, and a cached entry is used only if it was loaded at exactly that
//! epoch. A request that starts after a revocation committed reads the new epoch, misses, and
//! reads the consents from the database. Entries are tagged with the epoch read *before* they
//! were loaded, so an entry's data is never older than its tag. This holds across replicas on
//! one PostgreSQL, since the epoch lives in the database, not in a process.
//!
//! # Why a database that goes back in time does not bring back a lost consent
//!
//! After a failover to a standby that lacks the primary's last commits, or a restore from a
//! backup, the database can be older than what a replica cached: a consent granted in the lost
//! commits may sit in the cache. Epochs move to fresh random values (never reused; see
//! [`crate::store::epochs`]) and an entry answers only for the epoch it was loaded at, so the
//! older database's epoch never matches it, nor does the epoch of any later change: the
//! entry is never used again.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::registry::{self, ConsentStoreError};
use crate::crypto::Keyring;
use crate::domain::{Consent, SubjectIdentifier, SubjectRef};
use crate::store::Conn;

/// Most subjects whose consents are kept at once.
pub const CONSENT_CACHE: usize = 16_384;

#[derive(Clone)]
struct Entry {
    epoch: i64,
    consents: Arc<Vec<Consent>>,
}

/// The cache. Cheap to share.
pub struct ConsentCache {
    inner: quick_cache::sync::Cache<[u8; 32], Entry>,
    stats: crate::domain::stats::CacheStats,
}

impl std::fmt::Debug for ConsentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsentCache")
            .field("entries", &self.inner.len())
            .finish()
    }
}

impl Default for ConsentCache {
    fn default() -> Self {
        Self {
            inner: quick_cache::sync::Cache::new(CONSENT_CACHE),
            stats: Default::default(),
        }
    }
}

impl ConsentCache {
    /// The decision inputs for a record's subject, as [`registry::for_subjects`] reads them,
    /// answered from the cache when it was filled at consent epoch `epoch` (the epoch read with
    /// the record) and no other. Every input's `subject` is `as_subject`.
    pub async fn for_subjects(
        &self,
        c: &mut Conn<'_>,
        keyring: &Keyring,
        subjects: &[SubjectIdentifier],
        as_subject: &SubjectRef,
        epoch: i64,
    ) -> Result<Vec<Consent>, ConsentStoreError> {
        let key = cache_key(keyring, subjects);
        let cached = self.inner.get(&key).filter(|e| e.epoch == epoch);
        let consents = match cached {
            Some(e) => {
                self.stats.hit();
                e.consents
            }
            None => {
                self.stats.miss();
                let loaded =
                    Arc::new(registry::for_subjects(c, keyring, subjects, as_subject).await?);
                self.inner.insert(
                    key,
                    Entry {
                        epoch,
                        consents: Arc::clone(&loaded),
                    },
                );
                loaded
            }
        };
        Ok(consents
            .iter()
            .map(|c| Consent {
                subject: as_subject.clone(),
                ..c.clone()
            })
            .collect())
    }

    /// Drops every entry (after a change this process made, or on reload).
    pub fn clear(&self) {
        self.inner.clear();
    }

    /// `(hits, misses)` since start.
    pub fn stats(&self) -> (u64, u64) {
        self.stats.snapshot()
    }

    /// How many subjects are cached.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

/// The cache key: SHA-256 over the identifiers' blind indexes, in sorted order.
fn cache_key(keyring: &Keyring, subjects: &[SubjectIdentifier]) -> [u8; 32] {
    let mut indexes: Vec<[u8; 32]> = subjects
        .iter()
        .map(|s| *keyring.blind_index(s.system(), s.value()).as_bytes())
        .collect();
    indexes.sort_unstable();
    indexes.dedup();
    let mut h = Sha256::new();
    for i in &indexes {
        h.update(i);
    }
    h.finalize().into()
}
