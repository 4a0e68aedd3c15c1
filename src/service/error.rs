//! The services' error: what went wrong, in terms of the request, without HTTP.
//!
//! Each variant says what kind of failure it is (the caller's mistake, a refusal, a conflict,
//! an unavailable dependency, a defect); the API layer maps each to one status. Client-facing
//! variants carry a stable machine-readable code and a message saying what to fix; server-side
//! variants carry the detail for the operator's log only.

use serde_json::{Value, json};

use crate::audit::LogError;
use crate::crypto::{CryptoError, MasterVersion};
use crate::domain::Code;
use crate::vault::RecordError;

/// A service failure. Whatever the variant, nothing was disclosed beyond what the log records.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or fails validation; nothing changed.
    #[error("{message}")]
    Invalid {
        /// Stable code.
        code: Code,
        /// What to fix.
        message: String,
        /// Structured detail (e.g. each failing field).
        details: Option<Value>,
    },
    /// The caller is authenticated but not allowed.
    #[error("{message}")]
    Forbidden {
        /// Stable code.
        code: Code,
        /// Why, without revealing what is withheld.
        message: String,
    },
    /// A disclosure was decided and denied; the denial is in the log under `disclosure_id`.
    /// The details name the reasons (rules, consent, limits), never which fields exist.
    #[error("{message}")]
    Denied {
        /// Stable code.
        code: Code,
        /// Why.
        message: String,
        /// The reasons and the decision id.
        details: Value,
        /// The log entry recording the denial.
        disclosure_id: Box<crate::audit::LogRef>,
    },
    /// No such thing (as far as the caller may know).
    #[error("{message}")]
    NotFound {
        /// Stable code.
        code: Code,
        /// What was not found.
        message: String,
    },
    /// The request conflicts with the current state (retry or change the request).
    #[error("{message}")]
    Conflict {
        /// Stable code.
        code: Code,
        /// What conflicts.
        message: String,
        /// Structured detail.
        details: Option<Value>,
    },
    /// A dependency (the database, the disclosure log) is unavailable; nothing was disclosed
    /// or changed.
    #[error("service unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    /// The data is wrapped under a master-key version this gateway does not hold (another
    /// replica holds a newer key file); nothing was disclosed or changed. An operator alert.
    #[error("key unavailable: {0:#}")]
    KeyUnavailable(anyhow::Error),
    /// A defect, or stored data that failed its integrity check.
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

impl Error {
    /// Invalid input with a code and message.
    pub fn invalid(code: Code, message: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
            details: None,
        }
    }

    /// Invalid input naming the field at fault.
    pub fn invalid_field(code: Code, field: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
            details: Some(json!({ "field": field })),
        }
    }

    /// A refused query parameter: `invalid_parameter` naming it in `details.parameter`, as the
    /// API's own parameter checks do.
    pub fn invalid_parameter(name: &str, why: impl std::fmt::Display) -> Self {
        Self::Invalid {
            code: Code::InvalidParameter,
            message: format!("query parameter `{name}`: {why}"),
            details: Some(json!({ "parameter": name })),
        }
    }

    /// A refusal with a code and message.
    pub fn forbidden(code: Code, message: impl Into<String>) -> Self {
        Self::Forbidden {
            code,
            message: message.into(),
        }
    }

    /// Not found, with a code and message.
    pub fn not_found(code: Code, message: impl Into<String>) -> Self {
        Self::NotFound {
            code,
            message: message.into(),
        }
    }

    /// A conflict with a code and message.
    pub fn conflict(code: Code, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
            details: None,
        }
    }

    /// A defect.
    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::Internal(anyhow::anyhow!("{message}"))
    }

    /// The stable code of a client-facing failure (`service_unavailable`, `key_unavailable`,
    /// `internal_error` for the others).
    pub fn code(&self) -> Code {
        match self {
            Self::Invalid { code, .. }
            | Self::Forbidden { code, .. }
            | Self::Denied { code, .. }
            | Self::NotFound { code, .. }
            | Self::Conflict { code, .. } => *code,
            Self::Unavailable(_) => Code::ServiceUnavailable,
            Self::KeyUnavailable(_) => Code::KeyUnavailable,
            Self::Internal(_) => Code::InternalError,
        }
    }
}

impl From<crate::store::StoreError> for Error {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Unavailable(e.into())
    }
}

/// The disclosure log could not be written: nothing is disclosed or changed.
pub fn log_error(e: LogError) -> Error {
    Error::Unavailable(anyhow::anyhow!("disclosure log: {e}"))
}

impl From<LogError> for Error {
    fn from(e: LogError) -> Self {
        log_error(e)
    }
}

/// Maps a record-vault error to the answer (an integrity failure is also an operator alert).
pub fn record_error(e: RecordError) -> Error {
    match e {
        RecordError::Invalid(e) => Error::invalid(Code::InvalidRecord, e.to_string()),
        RecordError::OwnerMismatch { .. } => Error::forbidden(Code::NotRecordOwner, e.to_string()),
        RecordError::Conflict { .. } => Error::conflict(Code::WriteConflict, e.to_string()),
        RecordError::Integrity { .. } => {
            // Operators alert on this line: stored data was tampered with, moved or rolled
            // back. It names the record and the part, never a value.
            tracing::error!(alert = "record_integrity", error = %e, "stored record not served");
            Error::Internal(e.into())
        }
        RecordError::Key(CryptoError::UnknownMasterVersion(v)) => key_unavailable(v),
        RecordError::Key(_) | RecordError::Store(_) => Error::Unavailable(e.into()),
        RecordError::Crypto(_) => Error::Internal(e.into()),
    }
}

/// Data wrapped under master-key version `v`, which this gateway's key file lacks: fail
/// closed (503 `key_unavailable`) and alert the operator. The readiness probe sees the same
/// failure through the keyring and takes the gateway out of service.
pub fn key_unavailable(v: MasterVersion) -> Error {
    // Operators alert on this line: this replica runs with an out-of-date master key file.
    tracing::error!(
        alert = "master_key_version_missing",
        version = %v,
        "a data key is wrapped under master key version {v}, which this gateway's key file \
         lacks; nothing was disclosed. Install the current key file on this gateway and \
         restart it"
    );
    Error::KeyUnavailable(anyhow::anyhow!(
        "master key version {v} is not in this gateway's key file"
    ))
}

impl From<RecordError> for Error {
    fn from(e: RecordError) -> Self {
        record_error(e)
    }
}
