//! [`ApiError`]: every way an HTTP request ends in an error, mapped to Vault's status and
//! message here and nowhere else. A refusal from the core keeps its code's status; internal
//! detail goes to the daemon's log, never to the client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use coffer_core::{CoreError, Refusal};
use coffer_types::ErrorCode;

use super::envelope;

/// Vault's message when the store is sealed (clients match on it).
pub(crate) const SEALED: &str = "Vault is sealed";

/// Why an HTTP request failed.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// The core refused the request at one of its gates.
    Refused(Refusal),
    /// `{"errors":[]}` with 404: Vault's answer for a missing secret or an empty list.
    Missing,
    /// The request did not reach the core: its path, method or body is wrong (400, 404,
    /// 405, 408, 413, 415).
    Edge(StatusCode, String),
    /// A refusal some route shows in a shape of its own (KV v2's gone version, a delete of
    /// what was not there), already made.
    Answer(Box<Response>),
}

impl ApiError {
    /// A malformed request (400).
    pub fn bad(message: impl Into<String>) -> Self {
        Self::Edge(StatusCode::BAD_REQUEST, message.into())
    }

    /// Vault's answer for a path nothing serves (404).
    pub fn no_route(path: &str) -> Self {
        Self::Edge(
            StatusCode::NOT_FOUND,
            format!("no handler for route {path:?}. route entry not found."),
        )
    }

    /// A fault inside coffer (500): the detail is logged, the client told no more than that.
    pub fn internal(detail: &str) -> Self {
        tracing::error!(detail, "an HTTP answer could not be made");
        Self::Edge(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error in the secret store; the daemon's log has details".to_owned(),
        )
    }

    /// An answer the core should not give for the request it was sent (500).
    pub fn unexpected() -> Self {
        Self::internal("the core answered with a reply of another operation")
    }

    /// A method the path does not take (405).
    pub fn unsupported() -> Self {
        Self::Edge(
            StatusCode::METHOD_NOT_ALLOWED,
            "unsupported operation".to_owned(),
        )
    }
}

impl ApiError {
    /// The error as the core records it when it ends a request the core chose to carry out.
    pub fn rejection(&self) -> coffer_core::Rejection {
        let (code, message) = match self {
            Self::Refused(r) => (r.error.code(), r.error.client_message()),
            Self::Missing => (ErrorCode::NotFound, String::new()),
            Self::Edge(status, message) => (edge_code(*status), message.clone()),
            Self::Answer(response) => (edge_code(response.status()), String::new()),
        };
        coffer_core::Rejection { code, message }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        Self::Refused(r)
    }
}

/// The status a refusal's code answers with.
pub(crate) fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Sealed
        | ErrorCode::StoreUnavailable
        | ErrorCode::PolicyUnavailable
        | ErrorCode::Locked => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unauthenticated | ErrorCode::Denied => StatusCode::FORBIDDEN,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::InvalidName | ErrorCode::InvalidRequest | ErrorCode::Conflict => {
            StatusCode::BAD_REQUEST
        }
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        // The feed no longer holds the revision asked for.
        ErrorCode::Resync => StatusCode::GONE,
        ErrorCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
        // audit_unavailable, tpm, nv_full, internal, and codes added later.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A core refusal as Vault would answer it: the core's client message (it names the
/// principal and the path, never a value; internal faults say only that there was one)
/// prefixed the way Vault's clients expect.
fn refusal(r: &Refusal) -> Response {
    let code = r.error.code();
    let status = status_of(code);
    // What the store, the TPM or the audit log said names files and devices: an operator's
    // business, in the daemon's log, not a remote client's.
    let message = match code {
        // Nothing of the operator's in this one.
        _ if matches!(r.error, CoreError::Stopping) => r.error.to_string(),
        ErrorCode::StoreUnavailable
        | ErrorCode::AuditUnavailable
        | ErrorCode::AuditTampered
        | ErrorCode::Tpm
        | ErrorCode::NvFull
        | ErrorCode::Internal
        | ErrorCode::Integrity => {
            tracing::warn!(gate = %r.gate, %code, error = %r.error, "an HTTP request was refused");
            match code {
                ErrorCode::StoreUnavailable => {
                    "the secret store is unavailable; the daemon's log says why".to_owned()
                }
                ErrorCode::AuditUnavailable => {
                    "the audit log cannot be written, so the request was refused; the \
                     daemon's log says why"
                        .to_owned()
                }
                ErrorCode::AuditTampered => {
                    "the audit log does not match its checkpoint, so the request was refused \
                     until an operator acknowledges it; the daemon's log says why"
                        .to_owned()
                }
                ErrorCode::Tpm => "the TPM refused; the daemon's log has details".to_owned(),
                ErrorCode::NvFull => "the store is full".to_owned(),
                ErrorCode::Integrity => r.error.client_message(),
                _ => "internal error in the secret store; the daemon's log has details".to_owned(),
            }
        }
        _ => r.error.client_message(),
    };
    let message = match code {
        ErrorCode::Sealed => format!("{SEALED}: {message}"),
        ErrorCode::Unauthenticated => format!("permission denied: {message}"),
        ErrorCode::Denied => format!("1 error occurred:\n\t* permission denied: {message}\n\n"),
        _ => message,
    };
    envelope::errors(status, &[&message])
}

/// The header every error answer carries: coffer's stable error code (`not_found`,
/// `denied`, ...), the same the socket protocol and the CLI give. Vault's clients ignore it.
pub const CODE_HEADER: &str = "x-coffer-code";

fn edge_code(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::Unsupported,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::TooLarge,
        StatusCode::FORBIDDEN => ErrorCode::Denied,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::InvalidRequest,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, mut response) = match self {
            Self::Refused(r) => (r.error.code(), refusal(&r)),
            Self::Missing => (
                ErrorCode::NotFound,
                envelope::errors(StatusCode::NOT_FOUND, &[]),
            ),
            Self::Edge(status, message) => {
                (edge_code(status), envelope::errors(status, &[&message]))
            }
            Self::Answer(response) => (edge_code(response.status()), *response),
        };
        if !response.status().is_success() {
            response.headers_mut().insert(
                CODE_HEADER,
                axum::http::HeaderValue::from_static(code.as_str()),
            );
        }
        response
    }
}

/// Whether a refusal is the core saying the secret (or version) is not there.
pub(crate) fn is_missing(r: &Refusal) -> bool {
    r.error.code() == ErrorCode::NotFound && !matches!(r.error, CoreError::NoNamespace(_))
}

/// The result of a handler: a response, or an error that becomes one.
pub(crate) type ApiResult = Result<Response, ApiError>;
