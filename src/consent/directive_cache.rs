//! The decision inputs of a subject's restrictions and court orders, cached between decisions,
//! exactly like consents (see [`super::cache`]).
//!
//! # Why a new restriction or an ended order governs the very next request, on every replica
//!
//! Every creation and end of a restriction or court order moves the consent epoch
//! (`cache_epochs.consents`, which stands for all of a subject's directives) in the transaction
//! that makes the change. Every record read returns that epoch in the same statement as the
//! record, and a cached entry is used only if it was loaded at exactly that epoch (epochs are
//! random and never reused, see `consent::cache`); an entry is tagged with the epoch read
//! *before* it was loaded. So a request that starts after a
//! change committed misses and reads the directives from the database, on every replica of one
//! PostgreSQL database.
//!
//! The cache holds only the decision inputs ([`Restriction`], [`CourtOrder`]: who, to whom, for
//! what, which fields, until when), never a name, court, docket or identifier.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::directives::{self, DirectiveStoreError};
use super::orders::CourtOrderRecord;
use super::restrictions::RestrictionRecord;
use crate::crypto::Keyring;
use crate::domain::{CourtOrder, Restriction, SubjectIdentifier, SubjectRef};
use crate::store::Conn;

/// Most subjects whose directives are kept at once.
pub const DIRECTIVE_CACHE: usize = 16_384;

/// A subject's restrictions and court orders, as decision inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectDirectives {
    /// Agreed restrictions (any status; `decide` keeps those in force).
    pub restrictions: Vec<Restriction>,
    /// Court orders (any status; `decide` keeps those in force).
    pub court_orders: Vec<CourtOrder>,
}

#[derive(Clone)]
struct Entry {
    epoch: i64,
    directives: Arc<SubjectDirectives>,
}

/// The cache. Cheap to share.
pub struct DirectiveCache {
    inner: quick_cache::sync::Cache<[u8; 32], Entry>,
}

impl std::fmt::Debug for DirectiveCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectiveCache")
            .field("entries", &self.inner.len())
            .finish()
    }
}

impl Default for DirectiveCache {
    fn default() -> Self {
        Self {
            inner: quick_cache::sync::Cache::new(DIRECTIVE_CACHE),
        }
    }
}

/// Reads a subject's restrictions and court orders from the database, as decision inputs whose
/// `subject` is `as_subject`. Any integrity failure fails the read.
pub async fn load(
    c: &mut Conn<'_>,
    keyring: &Keyring,
    subjects: &[SubjectIdentifier],
    as_subject: &SubjectRef,
) -> Result<SubjectDirectives, DirectiveStoreError> {
    let restrictions = directives::find::<RestrictionRecord>(c, keyring, subjects)
        .await?
        .iter()
        .map(|d| d.record.to_restriction(&d.id, as_subject, d.ended_at()))
        .collect();
    let court_orders = directives::find::<CourtOrderRecord>(c, keyring, subjects)
        .await?
        .iter()
        .map(|d| d.record.to_order(&d.id, as_subject, d.ended_at()))
        .collect();
    Ok(SubjectDirectives {
        restrictions,
        court_orders,
    })
}

impl DirectiveCache {
    /// The decision inputs for a record's subject, answered from the cache when it was filled
    /// at consent epoch `epoch` (the epoch read with the record) and no other.
    pub async fn for_subjects(
        &self,
        c: &mut Conn<'_>,
        keyring: &Keyring,
        subjects: &[SubjectIdentifier],
        as_subject: &SubjectRef,
        epoch: i64,
    ) -> Result<SubjectDirectives, DirectiveStoreError> {
        let key = cache_key(keyring, subjects);
        let cached = self.inner.get(&key).filter(|e| e.epoch == epoch);
        let found = match cached {
            Some(e) => e.directives,
            None => {
                let loaded = Arc::new(load(c, keyring, subjects, as_subject).await?);
                self.inner.insert(
                    key,
                    Entry {
                        epoch,
                        directives: Arc::clone(&loaded),
                    },
                );
                loaded
            }
        };
        Ok(SubjectDirectives {
            restrictions: found
                .restrictions
                .iter()
                .map(|r| Restriction {
                    subject: as_subject.clone(),
                    ..r.clone()
                })
                .collect(),
            court_orders: found
                .court_orders
                .iter()
                .map(|o| CourtOrder {
                    subject: as_subject.clone(),
                    ..o.clone()
                })
                .collect(),
        })
    }

    /// Drops every entry.
    pub fn clear(&self) {
        self.inner.clear();
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
