//! The client's one error type: we could not reach the daemon, the conversation broke, the
//! reply was not what the protocol promises, or the daemon refused (with its stable code).

use std::io;
use std::path::PathBuf;

use coffer_types::ErrorCode;

/// What went wrong talking to the daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot reach coffer at {} (is `coffer serve` running? set --socket or COFFER_SOCKET)", .path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The connection failed midway.
    #[error("talking to coffer failed")]
    Io(#[from] io::Error),
    /// The reply was not what the protocol promises.
    #[error("coffer's reply was not understood: {0}")]
    Protocol(&'static str),
    /// A reply (or one line of a stream) passed the client's size limit
    /// (`Client::with_max_reply`).
    #[error("coffer's reply is longer than the {limit} bytes this client accepts")]
    ReplyTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The daemon refused the request.
    #[error("{message}")]
    Refused {
        /// The stable code.
        code: ErrorCode,
        /// The daemon's message.
        message: String,
        /// A TPM return code, where one applies.
        rc: Option<String>,
    },
}

impl ClientError {
    /// The stable code, for exit statuses.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Refused { code, .. } => *code,
            Self::Connect { .. } => ErrorCode::StoreUnavailable,
            _ => ErrorCode::Internal,
        }
    }
}
