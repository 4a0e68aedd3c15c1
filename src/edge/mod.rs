//! The connection edge: what happens to a connection between its TLS handshake and the HTTP
//! dispatcher, and to what the HTTP parser refuses before any route sees it.
//!
//! Security role: availability against partners that hold connections open or flood the
//! gateway with requests it cannot parse.
//!
//! - [`limiter`]: at most `server.max_connections_per_partner` connections open per partner;
//!   the rest are refused with 429, counted, and reported as security events at a bounded rate.
//! - [`io`]: the connection's byte stream ([`EdgeIo`]), which holds the connection's cap slot
//!   and gives the answers actix's HTTP/1 parser writes by itself (400, 408, 431) the JSON
//!   error body and a `Request-Id`.
//! - [`report_connection_end`]: connections that end with an HTTP error are logged at WARN (a
//!   client's fault) or ERROR (the gateway's), both through a [`Throttle`], instead of actix's
//!   one ERROR line per refused request, which any client could use to flood the log.
//! - [`nofile`]: the open-file limit raised at start-up and checked against the caps.
//!
//! The request body's deadline (`server.body_timeout_ms`) is enforced one level up, on the body
//! stream every route reads (the API layer's body guard), which also has actix close a connection
//! whose body a route left unread instead of draining it at the client's pace.

pub mod io;
pub mod limiter;
pub mod nofile;
pub mod throttle;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix_http::error::DispatchError;

pub use io::EdgeIo;
pub use limiter::{Admission, ConnectionLimiter, ConnectionRefused, ConnectionSlot};
pub use throttle::Throttle;

use crate::domain::{Code, PartnerId};

/// A request the HTTP parser refused and the gateway answered in its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusedRequest {
    /// The `Request-Id` of the answer.
    pub request_id: uuid::Uuid,
    /// Its status (400, 408 or 431).
    pub status: u16,
    /// Its error code.
    pub code: Code,
}

/// What the edge learnt about one connection while it ran.
#[derive(Debug, Clone, Default)]
pub struct ConnectionNotes {
    /// The last request the parser refused on the connection, if any.
    pub refused_request: Option<RefusedRequest>,
}

tokio::task_local! {
    static NOTES: RefCell<ConnectionNotes>;
}

/// The scope in which one connection runs, so that [`EdgeIo`] can leave notes for the code that
/// logs how the connection ended.
#[derive(Debug)]
pub struct ConnectionScope;

impl ConnectionScope {
    /// Runs `fut` (the connection) with fresh notes; returns its output and the notes.
    pub async fn run<F: Future>(fut: F) -> (F::Output, ConnectionNotes) {
        NOTES
            .scope(RefCell::new(ConnectionNotes::default()), async move {
                let out = fut.await;
                let notes = NOTES.with(|n| n.borrow().clone());
                (out, notes)
            })
            .await
    }

    pub(crate) fn note_refused_request(r: RefusedRequest) {
        let _ = NOTES.try_with(|n| n.borrow_mut().refused_request = Some(r));
    }
}

/// Lines about requests refused by the HTTP parser or clients too slow to send a head: the
/// client's doing, logged at WARN, at most 20 a minute.
static CLIENT_ERRORS: Throttle = Throttle::new(Duration::from_secs(60), 20);
/// Lines about connections that failed on the gateway's side, at most 20 a minute.
static SERVER_ERRORS: Throttle = Throttle::new(Duration::from_secs(60), 20);

/// Logs how an HTTP connection ended when it ended with an error (see the module
/// documentation): a refused or too slow request at WARN, a connection the client dropped at
/// DEBUG, anything else (the gateway's fault) at ERROR; WARN and ERROR lines are throttled, and
/// the next line that gets through says how many were held back. Never logs request content.
pub fn report_connection_end(
    error: &DispatchError,
    peer: Option<SocketAddr>,
    partner: Option<&PartnerId>,
    notes: &ConnectionNotes,
) {
    let partner = partner.map(PartnerId::as_str);
    let request_id = notes.refused_request.map(|r| r.request_id.to_string());
    let code = notes.refused_request.map(|r| r.code.as_str());
    match error {
        DispatchError::Parse(_) | DispatchError::SlowRequestTimeout => {
            if let Some(held_back) = CLIENT_ERRORS.allow(Instant::now()) {
                tracing::warn!(
                    target: "http",
                    ?peer,
                    partner,
                    request_id = request_id.as_deref(),
                    code,
                    held_back,
                    "request refused before routing: {error}"
                );
            }
        }
        DispatchError::Io(_)
        | DispatchError::DisconnectTimeout
        | DispatchError::HandlerDroppedPayload => {
            tracing::debug!(target: "http", ?peer, partner, "connection ended: {error}");
        }
        _ => {
            if let Some(held_back) = SERVER_ERRORS.allow(Instant::now()) {
                tracing::error!(
                    target: "http",
                    ?peer,
                    partner,
                    held_back,
                    "connection failed: {error}"
                );
            }
        }
    }
}

/// The tracing directive that silences actix's own per-connection error lines (which
/// [`report_connection_end`] replaces), unless `filter` already says something about actix.
pub fn quiet_dispatcher_directive(filter: &str) -> Option<&'static str> {
    (!filter.contains("actix_http")).then_some("actix_http::h1::dispatcher=off")
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use actix_http::error::ParseError;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_flood_of_refused_requests_writes_a_bounded_number_of_warnings_and_no_error() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let notes = ConnectionNotes {
            refused_request: Some(RefusedRequest {
                request_id: uuid::Uuid::now_v7(),
                status: 400,
                code: Code::MalformedRequest,
            }),
        };
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..500 {
                report_connection_end(
                    &DispatchError::Parse(ParseError::Header),
                    None,
                    None,
                    &notes,
                );
            }
            report_connection_end(
                &DispatchError::Io(std::io::ErrorKind::ConnectionReset.into()),
                None,
                None,
                &ConnectionNotes::default(),
            );
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let warnings = text.lines().filter(|l| l.contains(" WARN ")).count();
        assert_eq!(warnings, 20, "{text}");
        assert!(!text.contains("ERROR"), "{text}");
        assert!(text.contains("malformed_request"), "{text}");
        assert!(
            text.contains(" DEBUG "),
            "a dropped connection is a debug line: {text}"
        );
    }

    #[test]
    fn actix_own_error_lines_are_silenced_unless_the_filter_asks_for_them() {
        assert_eq!(
            quiet_dispatcher_directive("info"),
            Some("actix_http::h1::dispatcher=off")
        );
        assert_eq!(quiet_dispatcher_directive("info,actix_http=trace"), None);
    }
}
