//! Verified tokens, cached until they expire.
//!
//! Verifying an ES256 signature costs far more than everything else in a request, and a user's
//! client sends the same token with every request until it expires. So a token that verified is
//! remembered, keyed by the SHA-256 of the token (the token itself is not kept), with what the
//! verification established: the partner, the user, the roles, `exp` and the certificate
//! binding. A cached token is accepted again only
//!
//! - for the same partner (the certificate presented now names the partner it was verified
//!   for),
//! - before its `exp` (with the configured leeway, as for a fresh verification),
//! - and, if it is bound (`cnf.x5t#S256`), over the certificate it is bound to.
//!
//! Anything else goes through the full verification, which gives the precise refusal. The
//! cache holds at most [`TOKEN_CACHE`] tokens (least recently used go first) and is emptied
//! whenever the partner registry is reloaded, so a removed key or partner takes effect at once.
//! A verification that raced with a reload cannot leave its answer behind: each entry carries
//! the cache's generation as read *before* the registry used to verify it was loaded
//! ([`TokenCache::generation`]), and a reload moves the generation after it installed the new
//! registry, so such an entry never matches again.

use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::{AuthFailure, TokenRules, verify_token};
use crate::domain::{PartnerId, Principal};
use crate::policy::PartnerRegistry;
use crate::tls::PeerCertificate;

/// Most verified tokens kept at once.
pub const TOKEN_CACHE: usize = 16_384;

#[derive(Clone)]
struct Verified {
    generation: u64,
    principal: Principal,
    exp: i64,
    x5t: Option<String>,
}

#[derive(serde::Deserialize)]
struct Lifetime {
    exp: i64,
    #[serde(default)]
    cnf: Option<Cnf>,
}

#[derive(serde::Deserialize)]
struct Cnf {
    #[serde(rename = "x5t#S256", default)]
    x5t_s256: Option<String>,
}

/// The cache. Cheap to share.
pub struct TokenCache {
    inner: quick_cache::sync::Cache<[u8; 32], Verified>,
    generation: AtomicU64,
    stats: crate::domain::stats::CacheStats,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.inner.len())
            .finish()
    }
}

impl Default for TokenCache {
    fn default() -> Self {
        Self {
            inner: quick_cache::sync::Cache::new(TOKEN_CACHE),
            generation: AtomicU64::new(0),
            stats: Default::default(),
        }
    }
}

impl TokenCache {
    /// The cache's generation: read it before loading the registry passed to
    /// [`TokenCache::verify`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// [`verify_token`], answered from the cache when this token verified before for this
    /// partner and is still valid at `now` (Unix seconds) over this certificate. `generation`
    /// is [`TokenCache::generation`] as read before `registry` was loaded.
    // `verify_token`'s inputs plus the generation: a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn verify(
        &self,
        generation: u64,
        registry: &PartnerRegistry,
        rules: &TokenRules,
        partner: &PartnerId,
        peer: &PeerCertificate,
        token: &str,
        now: i64,
    ) -> Result<Principal, AuthFailure> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let leeway = i64::try_from(rules.leeway_secs).unwrap_or(0);
        if let Some(v) = self.inner.get(&key)
            && v.generation == generation
            && &v.principal.partner == partner
            && now < v.exp.saturating_add(leeway)
            && v.x5t
                .as_deref()
                .is_none_or(|x| x == peer.fingerprint.to_x5t_s256())
        {
            self.stats.hit();
            return Ok(Principal {
                cert_fingerprint: peer.fingerprint,
                ..v.principal
            });
        }
        self.stats.miss();
        let principal = verify_token(registry, rules, partner, peer, token, now)?;
        // The token verified: its claims can be read without checking the signature again.
        if let Ok(claims) = jsonwebtoken::dangerous::insecure_decode::<Lifetime>(token) {
            self.inner.insert(
                key,
                Verified {
                    generation,
                    principal: principal.clone(),
                    exp: claims.claims.exp,
                    x5t: claims.claims.cnf.and_then(|c| c.x5t_s256),
                },
            );
        }
        Ok(principal)
    }

    /// Forgets every token (on a registry reload, after the new registry is installed).
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.inner.clear();
    }

    /// `(hits, misses)` since start.
    pub fn stats(&self) -> (u64, u64) {
        self.stats.snapshot()
    }

    /// How many tokens are cached.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}
