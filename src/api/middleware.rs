//! Request ids and response hardening.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use tracing::Instrument;

/// The response header that carries the request id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");

/// The id of the current request, in request extensions.
#[derive(Debug, Clone, Copy)]
pub struct RequestId(pub uuid::Uuid);

/// Gives every request an id, runs it inside a span carrying that id, logs server errors with
/// their detail under it, and returns it in `Request-Id`.
pub async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
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
    let mut res = next.call(req).instrument(span.clone()).await?;
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
