//! What every worker shares: the services and what the HTTP edge needs besides them.

use std::sync::Arc;

use crate::auth::{TokenCache, TokenRules};
use crate::config::Settings;
use crate::edge::ConnectionLimiter;
use crate::security::SecuritySink;
use crate::service::Services;
use crate::tls::PartnerCertVerifier;

use super::health::Readiness;

/// Shared state of every worker.
#[derive(Debug)]
pub struct AppState {
    /// The loaded settings.
    pub settings: Settings,
    /// The services (repositories, keys, policy, log, clock, caches).
    pub services: Arc<Services>,
    /// The client-certificate verifier (also used for per-request re-checks).
    pub verifier: Arc<PartnerCertVerifier>,
    /// Token rules from the settings.
    pub token_rules: TokenRules,
    /// Tokens that verified, until they expire.
    pub tokens: TokenCache,
    /// Security event sink.
    pub security: SecuritySink,
    /// Whether the database answers, as a background probe last found.
    pub readiness: Readiness,
    /// Requests and connections counted for the metrics endpoint.
    pub http: Arc<super::stats::HttpStats>,
    /// Connections open per partner, under `server.max_connections_per_partner`.
    pub connections: ConnectionLimiter,
}
