//! `BoundedJson<T>`: the JSON body extractor every route uses.
//!
//! Bounds before parsing: the time the body takes to arrive (`server.body_timeout_ms` after the
//! head, enforced on the body stream by [`super::middleware::body_guard`]; 408 `body_timeout`
//! past it, and the connection is closed), the body size (`server.body_limit_bytes`, 413 beyond
//! it, checked against `Content-Length` first and while streaming) and the nesting depth
//! (`server.max_json_depth`, 400 beyond it, checked by a linear scan before serde sees the
//! bytes). A body that is not `application/json` gets 415; malformed JSON or a shape that does
//! not fit gets 400 with serde's description (it names the field). A route's handler runs only
//! with the whole body, so a refused body changes nothing.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::web::BytesMut;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;

use super::AppState;
use crate::domain::Code;
use crate::error::ApiError;

/// A JSON request body, size- and depth-bounded.
#[derive(Debug)]
pub struct BoundedJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for BoundedJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let read = read_bounded(req, payload, &["application/json"]);
        Box::pin(async move {
            let body = read.await?;
            serde_json::from_slice(&body).map(BoundedJson).map_err(|e| {
                ApiError::bad_request(Code::InvalidJson, format!("invalid JSON body: {e}"))
            })
        })
    }
}

/// Reads a request body of one of `media_types` (else 415), bounded in arrival time
/// (`server.body_timeout_ms`, 408 `body_timeout`), in size
/// (`server.body_limit_bytes`, 413) and in JSON nesting depth (`server.max_json_depth`, 400
/// `json_too_deep`), without parsing it.
pub(super) fn read_bounded(
    req: &HttpRequest,
    payload: &mut Payload,
    media_types: &'static [&'static str],
) -> Pin<Box<dyn Future<Output = Result<BytesMut, ApiError>>>> {
    let (limit, depth, timeout_ms) = req
        .app_data::<web::Data<AppState>>()
        .map(|s| {
            (
                s.settings.server.body_limit_bytes,
                s.settings.server.max_json_depth,
                s.settings.server.body_timeout_ms,
            )
        })
        .unwrap_or((64 * 1024, 16, 10_000));
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| media_types.iter().any(|m| v.trim().eq_ignore_ascii_case(m)));
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut payload = payload.take();
    Box::pin(async move {
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        if declared.is_some_and(|n| n > limit) {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| match e {
                PayloadError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    ApiError::BodyTimeout { timeout_ms }
                }
                _ => ApiError::bad_request(
                    Code::BodyUnreadable,
                    "the request body could not be read",
                ),
            })?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        check_depth(&body, depth)?;
        Ok(body)
    })
}

/// Refuses JSON nested deeper than `max` arrays/objects. Linear, allocation-free.
pub fn check_depth(bytes: &[u8], max: usize) -> Result<(), ApiError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(ApiError::bad_request(
                        Code::JsonTooDeep,
                        format!("the JSON body nests deeper than {max} levels"),
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_is_counted_outside_strings_only() {
        assert!(check_depth(br#"{"a":[1,{"b":2}]}"#, 3).is_ok());
        assert!(check_depth(br#"{"a":[1,{"b":2}]}"#, 2).is_err());
        assert!(check_depth(br#"{"a":"[[[[[[[[{{{{\"[[["}"#, 1).is_ok());
        let deep = "[".repeat(10_000);
        assert!(check_depth(deep.as_bytes(), 16).is_err());
    }

    async fn extract(content_type: &str, body: Vec<u8>) -> Result<serde_json::Value, ApiError> {
        let (req, mut payload) = actix_web::test::TestRequest::post()
            .insert_header((header::CONTENT_TYPE, content_type))
            .set_payload(body)
            .to_http_parts();
        BoundedJson::<serde_json::Value>::from_request(&req, &mut payload)
            .await
            .map(|j| j.0)
    }

    #[actix_web::test]
    async fn the_extractor_enforces_type_size_depth_and_syntax() {
        let ok = extract("application/json; charset=utf-8", br#"{"a":[1]}"#.to_vec()).await;
        assert_eq!(ok.unwrap(), serde_json::json!({"a": [1]}));
        let status = |r: Result<serde_json::Value, ApiError>| {
            use actix_web::ResponseError as _;
            r.unwrap_err().status_code().as_u16()
        };
        // Without application state the defaults apply: 64 KiB and depth 16.
        let big = format!("\"{}\"", "a".repeat(70 * 1024)).into_bytes();
        assert_eq!(status(extract("application/json", big).await), 413);
        assert_eq!(status(extract("text/plain", b"{}".to_vec()).await), 415);
        let deep = format!("{}{}", "[".repeat(17), "]".repeat(17)).into_bytes();
        let err = extract("application/json", deep).await.unwrap_err();
        assert_eq!(err.code(), Code::JsonTooDeep);
        let err = extract("application/json", b"{\"a\":".to_vec())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidJson);
    }
}
