//! The cap on connections open at once per partner (`server.max_connections_per_partner`).
//!
//! Security role: one partner with a valid certificate must not be able to hold so many
//! connections that the gateway runs out of file descriptors and every other partner's
//! requests fail. A connection takes a slot for its partner when its handshake completes and
//! gives it back when it closes (the [`ConnectionSlot`] travels with the connection). Past the
//! cap the connection is marked refused: its first request is answered 429
//! `too_many_connections` and the connection is closed, without running any handler.
//!
//! Each refusal is counted. It is recorded as a `connection_refused` security event, but at
//! most one event per partner per report interval: the first refusal is reported at once, the
//! ones after it within the interval are counted and reported together when it ends, so a flood
//! of refused connections costs a few log entries, not one each.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::domain::{CertFingerprint, Code, PartnerId};
use crate::security::{SecurityEvent, SecurityEventKind};

/// How often at most one partner's refused connections are reported (one event with the
/// count).
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

/// The stable code of the refusal (the error code of the 429 and of the security event).
pub const TOO_MANY_CONNECTIONS: &str = Code::TooManyConnections.as_str();

type Report = dyn Fn(SecurityEvent) + Send + Sync;

/// Counts the connections open per partner and refuses those past the cap.
#[derive(Clone)]
pub struct ConnectionLimiter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ConnectionLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionLimiter")
            .field("cap", &self.shared.cap)
            .finish_non_exhaustive()
    }
}

struct Shared {
    cap: usize,
    report_every: Duration,
    partners: Mutex<HashMap<PartnerId, Tally>>,
    report: Box<Report>,
}

/// One partner's connections.
#[derive(Debug, Default)]
struct Tally {
    open: usize,
    refused_total: u64,
    unreported: u64,
    last_report: Option<Instant>,
    flush_pending: bool,
    last_peer: Option<SocketAddr>,
    last_cert: Option<CertFingerprint>,
}

/// A connection's place under its partner's cap; dropping it frees the place.
#[derive(Debug)]
pub struct ConnectionSlot {
    shared: Arc<Shared>,
    partner: PartnerId,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("cap", &self.cap)
            .finish_non_exhaustive()
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Some(t) = self.shared.lock().get_mut(&self.partner) {
            t.open = t.open.saturating_sub(1);
        }
    }
}

/// The mark of a connection refused under the cap (kept in the connection's data, so that its
/// first request is answered with the refusal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRefused {
    /// The partner over its cap.
    pub partner: PartnerId,
    /// The cap.
    pub limit: usize,
}

/// Whether a connection may proceed.
#[derive(Debug)]
pub enum Admission {
    /// Under the cap: the connection holds this slot while it is open.
    Admitted(ConnectionSlot),
    /// Over the cap.
    Refused(ConnectionRefused),
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, HashMap<PartnerId, Tally>> {
        self.partners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The event reporting `t`'s unreported refusals; resets the count.
    fn take_report(&self, partner: &PartnerId, t: &mut Tally, now: Instant) -> SecurityEvent {
        let n = std::mem::take(&mut t.unreported);
        t.last_report = Some(now);
        SecurityEvent {
            at: Utc::now(),
            kind: SecurityEventKind::ConnectionRefused,
            code: TOO_MANY_CONNECTIONS.to_owned(),
            peer: t.last_peer,
            partner: Some(partner.clone()),
            cert_fingerprint: t.last_cert,
            detail: format!(
                "partner `{partner}` has {open} connections open, the most \
                 `server.max_connections_per_partner` allows ({cap}): {n} connection(s) refused \
                 since the last report, {total} since the gateway started",
                open = t.open,
                cap = self.cap,
                total = t.refused_total,
            ),
        }
    }

    /// Reports what was counted since the last report, if anything.
    fn flush(&self, partner: &PartnerId, now: Instant) {
        let event = {
            let mut map = self.lock();
            match map.get_mut(partner) {
                Some(t) => {
                    t.flush_pending = false;
                    (t.unreported > 0).then(|| self.take_report(partner, t, now))
                }
                None => None,
            }
        };
        if let Some(e) = event {
            (self.report)(e);
        }
    }
}

impl ConnectionLimiter {
    /// A limiter allowing `cap` connections per partner (at least 1) that hands refusal reports
    /// to `report` (the security sink).
    pub fn new(
        cap: usize,
        report: impl Fn(SecurityEvent) + Send + Sync + 'static,
    ) -> Result<Self, String> {
        Self::with_report_interval(cap, REPORT_EVERY, report)
    }

    /// [`ConnectionLimiter::new`] reporting at most once per `report_every` per partner.
    pub fn with_report_interval(
        cap: usize,
        report_every: Duration,
        report: impl Fn(SecurityEvent) + Send + Sync + 'static,
    ) -> Result<Self, String> {
        if cap == 0 {
            return Err(
                "`server.max_connections_per_partner` must be at least 1 (0 would refuse every \
                 connection)"
                    .to_owned(),
            );
        }
        Ok(Self {
            shared: Arc::new(Shared {
                cap,
                report_every,
                partners: Mutex::new(HashMap::new()),
                report: Box::new(report),
            }),
        })
    }

    /// The cap.
    pub fn cap(&self) -> usize {
        self.shared.cap
    }

    /// Takes a slot for a connection of `partner` that has just completed its handshake, or
    /// refuses it (counted, and reported as described in the module documentation).
    pub fn admit(
        &self,
        partner: &PartnerId,
        peer: Option<SocketAddr>,
        cert: Option<CertFingerprint>,
    ) -> Admission {
        self.admit_at(partner, peer, cert, Instant::now())
    }

    fn admit_at(
        &self,
        partner: &PartnerId,
        peer: Option<SocketAddr>,
        cert: Option<CertFingerprint>,
        now: Instant,
    ) -> Admission {
        let shared = &self.shared;
        let (event, flush_after) = {
            let mut map = shared.lock();
            let t = map.entry(partner.clone()).or_default();
            if t.open < shared.cap {
                t.open += 1;
                return Admission::Admitted(ConnectionSlot {
                    shared: shared.clone(),
                    partner: partner.clone(),
                });
            }
            t.refused_total = t.refused_total.saturating_add(1);
            t.unreported = t.unreported.saturating_add(1);
            t.last_peer = peer;
            t.last_cert = cert;
            match t.last_report {
                Some(at) if now.saturating_duration_since(at) < shared.report_every => {
                    let wait = shared
                        .report_every
                        .saturating_sub(now.saturating_duration_since(at));
                    let schedule = !std::mem::replace(&mut t.flush_pending, true);
                    (None, schedule.then_some(wait))
                }
                _ => (Some(shared.take_report(partner, t, now)), None),
            }
        };
        if let Some(e) = event {
            (shared.report)(e);
        }
        if let Some(wait) = flush_after {
            self.flush_later(partner, wait);
        }
        Admission::Refused(ConnectionRefused {
            partner: partner.clone(),
            limit: shared.cap,
        })
    }

    /// Reports the refusals counted in the current interval once it ends.
    fn flush_later(&self, partner: &PartnerId, wait: Duration) {
        let shared = self.shared.clone();
        let partner = partner.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    tokio::time::sleep(wait).await;
                    shared.flush(&partner, Instant::now());
                });
            }
            // Without a runtime (never in the server) the count goes out with the next report.
            Err(_) => {
                if let Some(t) = shared.lock().get_mut(&partner) {
                    t.flush_pending = false;
                }
            }
        }
    }

    /// Connections of `partner` open now.
    pub fn open(&self, partner: &PartnerId) -> usize {
        self.shared.lock().get(partner).map_or(0, |t| t.open)
    }

    /// Connections of `partner` refused since start.
    pub fn refused_total(&self, partner: &PartnerId) -> u64 {
        self.shared
            .lock()
            .get(partner)
            .map_or(0, |t| t.refused_total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder() -> (
        Arc<Mutex<Vec<SecurityEvent>>>,
        impl Fn(SecurityEvent) + Send + Sync + 'static,
    ) {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        (events, move |e| sink.lock().unwrap().push(e))
    }

    fn partner(id: &str) -> PartnerId {
        id.parse().unwrap()
    }

    #[test]
    fn a_cap_of_zero_is_refused() {
        assert!(ConnectionLimiter::new(0, |_| {}).is_err());
    }

    #[test]
    fn each_partner_has_its_own_cap_and_a_closed_connection_frees_its_slot() {
        let (events, report) = recorder();
        let l = ConnectionLimiter::new(2, report).unwrap();
        let (metro, county) = (partner("metro-pd"), partner("county-mh"));
        let a = l.admit(&metro, None, None);
        let b = l.admit(&metro, None, None);
        assert!(matches!(a, Admission::Admitted(_)));
        assert!(matches!(b, Admission::Admitted(_)));
        let refused = l.admit(&metro, None, None);
        assert_eq!(
            match refused {
                Admission::Refused(r) => r,
                Admission::Admitted(_) => panic!("over the cap"),
            },
            ConnectionRefused {
                partner: metro.clone(),
                limit: 2
            }
        );
        // Another partner is not affected.
        assert!(matches!(
            l.admit(&county, None, None),
            Admission::Admitted(_)
        ));
        assert_eq!(l.open(&metro), 2);
        drop(a);
        assert_eq!(l.open(&metro), 1);
        assert!(matches!(
            l.admit(&metro, None, None),
            Admission::Admitted(_)
        ));
        assert_eq!(l.refused_total(&metro), 1);
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].code, TOO_MANY_CONNECTIONS);
        assert_eq!(events[0].kind, SecurityEventKind::ConnectionRefused);
        assert_eq!(events[0].partner, Some(metro));
        drop(b);
    }

    #[test]
    fn a_flood_of_refusals_is_reported_once_per_interval_with_the_count() {
        let (events, report) = recorder();
        let l =
            ConnectionLimiter::with_report_interval(1, Duration::from_secs(10), report).unwrap();
        let metro = partner("metro-pd");
        let t0 = Instant::now();
        let _held = l.admit_at(&metro, None, None, t0);
        for i in 0..1000 {
            let at = t0 + Duration::from_millis(i);
            assert!(matches!(
                l.admit_at(&metro, None, None, at),
                Admission::Refused(_)
            ));
        }
        assert_eq!(events.lock().unwrap().len(), 1, "the first refusal at once");
        // The next interval's first refusal reports every refusal counted since.
        let _ = l.admit_at(&metro, None, None, t0 + Duration::from_secs(11));
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 2);
        assert!(
            events[1]
                .detail
                .contains("1000 connection(s) refused since the last report"),
            "{}",
            events[1].detail
        );
        assert!(
            events[1].detail.contains("1001 since"),
            "{}",
            events[1].detail
        );
        assert_eq!(l.refused_total(&metro), 1001);
    }

    #[tokio::test]
    async fn refusals_counted_within_an_interval_are_reported_when_it_ends() {
        let (events, report) = recorder();
        let l =
            ConnectionLimiter::with_report_interval(1, Duration::from_millis(50), report).unwrap();
        let metro = partner("metro-pd");
        let _held = l.admit(&metro, None, None);
        for _ in 0..5 {
            let _ = l.admit(&metro, None, None);
        }
        assert_eq!(events.lock().unwrap().len(), 1);
        // Bounded wait for the background report at the end of the interval.
        for _ in 0..200 {
            if events.lock().unwrap().len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 2, "the tail of the burst is reported");
        assert!(
            events[1]
                .detail
                .contains("4 connection(s) refused since the last report"),
            "{}",
            events[1].detail
        );
    }
}
