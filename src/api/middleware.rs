//! Request ids and response hardening; the refusal of connections over their partner's cap;
//! the JSON body of actix's own 405; the request body's deadline, and connections closed rather
//! than drained when a route leaves its body unread.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_http::BoxedPayloadStream;
use actix_web::body::{BodySize, BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{Error, HttpMessage, ResponseError as _};
use futures_util::Stream;
use tracing::Instrument;

use crate::edge::ConnectionRefused;
use crate::error::ApiError;

/// The response header that carries the request id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");

/// The id of the current request, in request extensions.
#[derive(Debug, Clone, Copy)]
pub struct RequestId(pub uuid::Uuid);

/// Gives every request an id, runs it inside a span carrying that id, logs server errors with
/// their detail under it, and returns it in `Request-Id`. actix answers a route asked with a
/// method it does not take with an empty 405 and `Allow`; that answer gets the JSON error body
/// here (keeping `Allow`).
pub async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = uuid::Uuid::now_v7();
    req.extensions_mut().insert(RequestId(id));
    let stats = req
        .app_data::<actix_web::web::Data<super::AppState>>()
        .map(|s| s.http.clone());
    let method = req.method().as_str().to_owned();
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), route = tracing::field::Empty);
    if let Some(pattern) = req.match_pattern() {
        span.record("route", pattern.as_str());
    }
    let res = next.call(req).instrument(span.clone()).await?;
    let mut res = method_not_allowed_as_json(res);
    let status = res.status();
    if let Some(stats) = stats {
        // The route pattern (never the path, which may hold identifiers).
        stats.request(
            res.request().match_pattern().as_deref(),
            &method,
            status.as_u16(),
        );
    }
    if status.is_server_error() {
        let detail = res
            .response()
            .error()
            .map(|e| format!("{e}"))
            .unwrap_or_default();
        span.in_scope(|| tracing::error!(status = status.as_u16(), %detail, "request failed"));
    } else {
        span.in_scope(|| tracing::debug!(status = status.as_u16(), "request served"));
    }
    let headers = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        headers.insert(REQUEST_ID, v);
    }
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        HeaderName::from_static("strict-transport-security"),
        HeaderValue::from_static("max-age=31536000"),
    );
    Ok(res)
}

/// Replaces actix's empty 405 (a route asked with a method it does not take) with the JSON
/// error, keeping the `Allow` header actix computed from the route's methods.
fn method_not_allowed_as_json<B: MessageBody>(
    res: ServiceResponse<B>,
) -> ServiceResponse<EitherBody<B>> {
    let Some(error) = method_not_allowed(&res) else {
        return res.map_into_left_body();
    };
    let (req, _) = res.into_parts();
    ServiceResponse::new(req, error.error_response()).map_into_right_body()
}

/// The error for actix's own empty 405 (a route asked with a method it does not take), naming
/// the methods of the `Allow` header actix computed from the route; `None` for any other
/// response (a 405 that already has a body, such as the FHIR scope's `OperationOutcome`, is
/// left as it is).
pub(crate) fn method_not_allowed<B: MessageBody>(res: &ServiceResponse<B>) -> Option<ApiError> {
    if res.status() != StatusCode::METHOD_NOT_ALLOWED
        || res.response().error().is_some()
        || !matches!(
            res.response().body().size(),
            BodySize::Sized(0) | BodySize::None
        )
    {
        return None;
    }
    let allowed: Vec<String> = res
        .headers()
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .map(|m| m.trim().to_owned())
                .filter(|m| !m.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Some(ApiError::MethodNotAllowed {
        method: res.request().method().to_string(),
        path: res.request().path().to_owned(),
        allowed,
    })
}

/// Answers every request on a connection refused under its partner's connection cap with 429
/// `too_many_connections` (and closes the connection), without running the route.
pub async fn connection_gate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    if let Some(refused) = req.conn_data::<ConnectionRefused>() {
        let error = ApiError::TooManyConnections {
            limit: refused.limit,
        };
        return Ok(req
            .into_response(error.error_response())
            .map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// A request body as the routes read it: the client's body, failing with a timed-out error
/// once `server.body_timeout_ms` have passed since the head, and shared with [`body_guard`] so
/// that a body the route leaves unread is still alive when the answer is written.
struct GuardedBody {
    shared: Rc<RefCell<Unread>>,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

/// The client's body and whether it was read to its end.
struct Unread {
    payload: Payload,
    finished: bool,
}

/// The body of an answer whose request body was not read to its end: it keeps that request
/// body alive until the answer's last byte is written (see [`body_guard`]).
struct HoldingBody {
    answer: BoxBody,
    _unread: Rc<RefCell<Unread>>,
}

impl MessageBody for HoldingBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.answer.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.answer).poll_next(cx)
    }
}

impl Stream for GuardedBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request body did not arrive in time",
            )))));
        }
        let mut unread = self.shared.borrow_mut();
        let next = Pin::new(&mut unread.payload).poll_next(cx);
        if let Poll::Ready(None) = next {
            unread.finished = true;
        }
        next
    }
}

/// Bounds how long a request body may take and how long an unread one may hold its
/// connection:
///
/// - the body a route reads fails with a timeout once `server.body_timeout_ms` have passed since
///   the head (the JSON extractor answers 408 `body_timeout`, and the route's handler never
///   runs);
/// - a body the route does not read to its end (a request refused before its body is read, a
///   body that timed out or was too large) is kept alive until the answer's last byte is
///   written (the answer's body holds it), so actix closes the connection after the answer
///   instead of reading and discarding the rest at whatever pace the client sends it, which
///   for a chunked body has no time limit.
pub async fn body_guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let payload = req.take_payload();
    if let Payload::None = payload {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let timeout = req
        .app_data::<actix_web::web::Data<super::AppState>>()
        .map_or(std::time::Duration::from_secs(10), |s| {
            s.settings.server.body_timeout()
        });
    let shared = Rc::new(RefCell::new(Unread {
        payload,
        finished: false,
    }));
    let body: BoxedPayloadStream = Box::pin(GuardedBody {
        shared: shared.clone(),
        deadline: Box::pin(tokio::time::sleep(timeout)),
    });
    req.set_payload(Payload::from(body));
    let res = next.call(req).await?;
    if shared.borrow().finished {
        return Ok(res.map_into_boxed_body());
    }
    // actix decides whether to close the connection or to read and discard the rest of the
    // request body when the answer is written: while the body is held here, it closes.
    let res = res.map_body(|_, answer| {
        BoxBody::new(HoldingBody {
            answer: BoxBody::new(answer),
            _unread: shared,
        })
    });
    Ok(res)
}
