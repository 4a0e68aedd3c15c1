//! The one error type of the HTTP API.
//!
//! Every handler and extractor fails with an [`ApiError`]; its `status_code` maps each
//! variant to its status code with an exhaustive match, so a new variant cannot ship without a
//! status. Client errors (4xx) carry a stable machine-readable `code` and a message saying
//! what to fix. Server errors (5xx) are opaque to the client: the detail is logged under the
//! request id that the response carries in its `Request-Id` header.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::domain::Code;

/// The JSON body of every error response.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `token_expired`.
    #[schema(schema_with = answer_codes)]
    pub code: String,
    /// What was wrong and how to fix it.
    pub message: String,
    /// Extra machine-readable detail (e.g. the allowed next states of a referral).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

/// The OpenAPI schema of [`ErrorBody::code`]: a string, one of [`Code::ALL`], so that client
/// generators make an enum of them.
fn answer_codes() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .description(Some(
            "Stable machine-readable code (see the README's error table); never renamed, only \
             added to, so a client should treat one it does not know as its status class.",
        ))
        .enum_values(Some(Code::ALL.iter().map(|c| c.as_str())))
        .build()
}

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or fails validation.
    #[error("{message}")]
    BadRequest {
        /// Stable code.
        code: Code,
        /// What to fix.
        message: String,
        /// Optional structured detail (e.g. each failing field).
        details: Option<serde_json::Value>,
    },
    /// 401: the caller is not authenticated (missing or invalid token).
    #[error("{message}")]
    Unauthenticated {
        /// Stable code.
        code: Code,
        /// What to fix.
        message: String,
    },
    /// 403: the caller is authenticated but not allowed.
    #[error("{message}")]
    Forbidden {
        /// Stable code.
        code: Code,
        /// Why, without revealing what is withheld.
        message: String,
    },
    /// 403: a disclosure was decided and denied; the denial is in the disclosure log under
    /// `disclosure_id` (sent as the `Disclosure-Id` header). The details name the reasons
    /// (rules, consent, limits), never which fields exist.
    #[error("{message}")]
    Denied {
        /// Stable code.
        code: Code,
        /// Why.
        message: String,
        /// The reasons and the decision id.
        details: serde_json::Value,
        /// The log entry recording the denial.
        disclosure_id: Box<crate::audit::LogRef>,
    },
    /// 404: no such resource or route.
    #[error("{message}")]
    NotFound {
        /// Stable code.
        code: Code,
        /// What was not found.
        message: String,
    },
    /// 405: the route exists but not with this method; `Allow` names the methods it takes.
    #[error("method `{method}` is not allowed on `{path}`; this route takes {}", allowed.join(", "))]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The path asked for.
        path: String,
        /// The methods the route takes.
        allowed: Vec<String>,
    },
    /// 408: the request body did not arrive in time; nothing was changed, and the connection
    /// is closed (its unread rest cannot be skipped).
    #[error(
        "the request body did not arrive within {timeout_ms} ms of the request head; send the \
         whole body promptly (nothing was changed; this connection is closed)"
    )]
    BodyTimeout {
        /// `server.body_timeout_ms`.
        timeout_ms: u64,
    },
    /// 409: the request conflicts with the resource's state.
    #[error("{message}")]
    Conflict {
        /// Stable code.
        code: Code,
        /// What conflicts.
        message: String,
        /// Structured detail.
        details: Option<serde_json::Value>,
    },
    /// 413: the body exceeds the configured limit.
    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// 415: the body is not JSON.
    #[error("request body must be `application/json`")]
    UnsupportedMediaType,
    /// 429: the partner already has as many connections open as it may; the connection is
    /// closed without running the request.
    #[error(
        "your agency already has {limit} connections open to the gateway, the most it may; reuse \
         open connections (keep-alive) or close idle ones, then retry (this connection is closed)"
    )]
    TooManyConnections {
        /// `server.max_connections_per_partner`.
        limit: usize,
    },
    /// 503: a dependency (the database, the disclosure log) is unavailable; nothing was
    /// disclosed or changed. Opaque to the client.
    #[error("service unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    /// 503: the data is wrapped under a master-key version this gateway does not hold (its
    /// key file is older than another replica's); nothing was disclosed or changed. Opaque to
    /// the client; an operator alert.
    #[error("key unavailable: {0:#}")]
    KeyUnavailable(anyhow::Error),
    /// 500: a defect. Opaque to the client.
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

impl ApiError {
    /// 400 with a code and message.
    pub fn bad_request(code: Code, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
            details: None,
        }
    }

    /// 401 with a code and message.
    pub fn unauthenticated(code: Code, message: impl Into<String>) -> Self {
        Self::Unauthenticated {
            code,
            message: message.into(),
        }
    }

    /// 403 with a code and message.
    pub fn forbidden(code: Code, message: impl Into<String>) -> Self {
        Self::Forbidden {
            code,
            message: message.into(),
        }
    }

    /// 404 with a code and message.
    pub fn not_found(code: Code, message: impl Into<String>) -> Self {
        Self::NotFound {
            code,
            message: message.into(),
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> Code {
        match self {
            Self::BadRequest { code, .. }
            | Self::Unauthenticated { code, .. }
            | Self::Forbidden { code, .. }
            | Self::Denied { code, .. }
            | Self::NotFound { code, .. }
            | Self::Conflict { code, .. } => *code,
            Self::MethodNotAllowed { .. } => Code::MethodNotAllowed,
            Self::BodyTimeout { .. } => Code::BodyTimeout,
            Self::PayloadTooLarge { .. } => Code::PayloadTooLarge,
            Self::UnsupportedMediaType => Code::UnsupportedMediaType,
            Self::TooManyConnections { .. } => Code::TooManyConnections,
            Self::Unavailable(_) => Code::ServiceUnavailable,
            Self::KeyUnavailable(_) => Code::KeyUnavailable,
            Self::Internal(_) => Code::InternalError,
        }
    }

    fn body(&self) -> ErrorBody {
        let (message, details) = match self {
            Self::Unavailable(_) => (
                "the gateway cannot answer right now and disclosed nothing; retry later or quote \
                 the Request-Id to the operator"
                    .to_owned(),
                None,
            ),
            Self::KeyUnavailable(_) => (
                "this gateway cannot open the data with the keys it holds and disclosed nothing; \
                 retry later (another gateway may answer) or quote the Request-Id to the operator"
                    .to_owned(),
                None,
            ),
            Self::Internal(_) => (
                "the gateway failed to process the request; quote the Request-Id to the operator"
                    .to_owned(),
                None,
            ),
            Self::BadRequest { details, .. } | Self::Conflict { details, .. } => {
                (self.to_string(), details.clone())
            }
            Self::Denied { details, .. } => (self.to_string(), Some(details.clone())),
            Self::MethodNotAllowed { allowed, .. } => (
                self.to_string(),
                Some(serde_json::json!({ "allowed": allowed })),
            ),
            _ => (self.to_string(), None),
        };
        ErrorBody {
            code: self.code().as_str().to_owned(),
            message,
            details,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } | Self::Denied { .. } => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyConnections { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) | Self::KeyUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if let Self::Unauthenticated { code, .. } = self {
            // RFC 6750 section 3: no error attributes when no token was sent at all.
            let value = if *code == Code::TokenMissing {
                "Bearer realm=\"coresponse-gateway\"".to_owned()
            } else {
                format!(
                    "Bearer realm=\"coresponse-gateway\", error=\"invalid_token\", error_description=\"{code}\""
                )
            };
            if let Ok(v) = HeaderValue::from_str(&value) {
                res.insert_header((header::WWW_AUTHENTICATE, v));
            }
        }
        if let Self::Denied { disclosure_id, .. } = self {
            res.insert_header((DISCLOSURE_ID, disclosure_id.to_string()));
            res.insert_header((LOG_LEAF_INDEX, disclosure_id.leaf_index.to_string()));
            res.insert_header((LOG_LEAF_HASH, disclosure_id.leaf_hash_b64()));
        }
        if let Self::MethodNotAllowed { allowed, .. } = self
            && let Ok(v) = HeaderValue::from_str(&allowed.join(", "))
        {
            res.insert_header((header::ALLOW, v));
        }
        // The rest of an unread body cannot be skipped, and a connection over its partner's
        // cap must not stay open: both end with this answer.
        if matches!(
            self,
            Self::BodyTimeout { .. } | Self::TooManyConnections { .. }
        ) {
            res.force_close();
        }
        res.insert_header((header::CACHE_CONTROL, "no-store"));
        res.json(self.body())
    }
}

/// The response header naming the disclosure-log entries of an answer (or of a denial).
pub const DISCLOSURE_ID: &str = "Disclosure-Id";

/// The response header giving the Merkle leaf index of each entry named by `Disclosure-Id`
/// (in the same order): what `GET /v1/audit/proof/inclusion?index=` takes.
pub const LOG_LEAF_INDEX: &str = "Log-Leaf-Index";

/// The response header giving the leaf hash (base64) of each entry named by `Disclosure-Id`.
pub const LOG_LEAF_HASH: &str = "Log-Leaf-Hash";

impl From<crate::service::Error> for ApiError {
    fn from(e: crate::service::Error) -> Self {
        use crate::service::Error as E;
        match e {
            E::Invalid {
                code,
                message,
                details,
            } => Self::BadRequest {
                code,
                message,
                details,
            },
            E::Forbidden { code, message } => Self::Forbidden { code, message },
            E::Denied {
                code,
                message,
                details,
                disclosure_id,
            } => Self::Denied {
                code,
                message,
                details,
                disclosure_id,
            },
            E::NotFound { code, message } => Self::NotFound { code, message },
            E::Conflict {
                code,
                message,
                details,
            } => Self::Conflict {
                code,
                message,
                details,
            },
            E::Unavailable(e) => Self::Unavailable(e),
            E::KeyUnavailable(e) => Self::KeyUnavailable(e),
            E::Internal(e) => Self::Internal(e),
        }
    }
}

impl From<crate::auth::AuthFailure> for ApiError {
    fn from(f: crate::auth::AuthFailure) -> Self {
        if f.forbidden {
            Self::forbidden(f.code, f.message)
        } else {
            Self::unauthenticated(f.code, f.message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    fn all() -> Vec<(ApiError, u16)> {
        vec![
            (ApiError::bad_request(Code::InvalidJson, "m"), 400),
            (ApiError::unauthenticated(Code::TokenExpired, "m"), 401),
            (ApiError::forbidden(Code::NotOwnerKind, "m"), 403),
            (
                ApiError::Denied {
                    code: Code::DisclosureDenied,
                    message: "m".into(),
                    details: serde_json::json!({}),
                    disclosure_id: Box::new(crate::audit::LogRef {
                        seq: 7,
                        leaf_index: 6,
                        leaf_hash: crate::audit::ChainHash([1; 32]),
                    }),
                },
                403,
            ),
            (ApiError::not_found(Code::RecordNotFound, "m"), 404),
            (
                ApiError::MethodNotAllowed {
                    method: "PUT".into(),
                    path: "/x".into(),
                    allowed: vec!["GET".into()],
                },
                405,
            ),
            (ApiError::BodyTimeout { timeout_ms: 1 }, 408),
            (
                ApiError::Conflict {
                    code: Code::WriteConflict,
                    message: "m".into(),
                    details: None,
                },
                409,
            ),
            (ApiError::PayloadTooLarge { limit: 1 }, 413),
            (ApiError::UnsupportedMediaType, 415),
            (ApiError::TooManyConnections { limit: 1 }, 429),
            (
                ApiError::Unavailable(anyhow::anyhow!("db down at /secret")),
                503,
            ),
            (
                ApiError::KeyUnavailable(anyhow::anyhow!("no version 2 in /secret")),
                503,
            ),
            (ApiError::Internal(anyhow::anyhow!("bug at /secret")), 500),
        ]
    }

    #[test]
    fn every_variant_maps_to_its_status() {
        for (e, status) in all() {
            assert_eq!(e.status_code().as_u16(), status, "{e:?}");
        }
    }

    #[test]
    fn server_error_bodies_are_opaque() {
        for (e, status) in all() {
            let body = e.error_response().into_body().try_into_bytes().unwrap();
            let body: ErrorBody = serde_json::from_slice(&body).unwrap();
            assert_eq!(body.code, e.code().as_str());
            if status >= 500 {
                assert!(!body.message.contains("/secret"), "{body:?}");
            }
        }
    }

    #[test]
    fn a_405_names_the_allowed_methods_and_timeouts_and_refusals_close_the_connection() {
        let e = ApiError::MethodNotAllowed {
            method: "POST".into(),
            path: "/v1/referrals/R-1".into(),
            allowed: vec!["GET".into()],
        };
        let res = e.error_response();
        assert_eq!(res.headers().get(header::ALLOW).unwrap(), "GET");
        let body = res.into_body().try_into_bytes().unwrap();
        let body: ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body.details,
            Some(serde_json::json!({ "allowed": ["GET"] }))
        );
        for e in [
            ApiError::BodyTimeout { timeout_ms: 10 },
            ApiError::TooManyConnections { limit: 2 },
        ] {
            let res = e.error_response();
            assert!(!res.head().keep_alive(), "{e:?}");
        }
    }

    #[test]
    fn unauthenticated_carries_www_authenticate() {
        let res = ApiError::unauthenticated(Code::TokenExpired, "m").error_response();
        let h = res.headers().get(header::WWW_AUTHENTICATE).unwrap();
        assert!(h.to_str().unwrap().contains("invalid_token"));
        let res = ApiError::unauthenticated(Code::TokenMissing, "m").error_response();
        let h = res.headers().get(header::WWW_AUTHENTICATE).unwrap();
        assert!(!h.to_str().unwrap().contains("error="));
    }

    /// The text of every source file of the crate, each cut before its test module.
    fn crate_source() -> Vec<String> {
        fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    out.push(
                        text.split("#[cfg(test)]")
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
            }
        }
        let mut out = Vec::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut out,
        );
        out
    }

    /// The codes the README's error table names (the code column, in backticks).
    fn documented_codes() -> std::collections::BTreeSet<String> {
        let readme = readme();
        let table = readme
            .split("\n| status | codes |\n")
            .nth(1)
            .expect("the README's error table");
        let mut codes = std::collections::BTreeSet::new();
        for line in table.lines().skip(1).take_while(|l| l.starts_with('|')) {
            codes.extend(code_words(line.split('|').nth(2).unwrap_or_default()));
        }
        codes
    }

    fn readme() -> String {
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap()
    }

    /// The words in backticks of `text` that can be codes (`snake_case`).
    fn code_words(text: &str) -> impl Iterator<Item = String> + '_ {
        text.split('`')
            .enumerate()
            .filter(|(i, part)| {
                i % 2 == 1
                    && !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            })
            .map(|(_, part)| part.to_owned())
    }

    #[test]
    fn the_readme_names_every_handshake_refusal_code_and_no_other() {
        let readme = readme();
        let paragraph = readme
            .split("Refused TLS handshakes never reach HTTP; their security-event codes are ")
            .nth(1)
            .and_then(|rest| rest.split("\n\n").next())
            .expect("the README's list of handshake refusal codes");
        let named: std::collections::BTreeSet<String> = code_words(paragraph).collect();
        let codes: std::collections::BTreeSet<String> = crate::domain::HandshakeRefusal::ALL
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect();
        assert_eq!(named, codes);
    }

    #[test]
    fn the_readme_error_table_names_every_code_and_no_other() {
        let documented = documented_codes();
        let undocumented: Vec<&str> = Code::ALL
            .iter()
            .map(|c| c.as_str())
            .filter(|c| !documented.contains(*c))
            .collect();
        assert!(
            undocumented.is_empty(),
            "codes the gateway answers with that the README's error table does not name: \
             {undocumented:?}"
        );
        // The table also names codes and keys inside `details` (a field's problem, a
        // parameter's name), which the checks that find them write as string literals.
        let source = crate_source().concat();
        let stale: Vec<&String> = documented
            .iter()
            .filter(|c| Code::parse(c).is_none() && !source.contains(&format!("\"{c}\"")))
            .collect();
        assert!(
            stale.is_empty(),
            "codes the README's error table names that the gateway never answers with: {stale:?}"
        );
    }
}
