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
    /// The process listening on the socket is not one the client trusts: it runs as
    /// neither root, nor the client's own user, nor a uid the caller allowed
    /// ([`Client::trust_server_uid`](crate::Client::trust_server_uid)). Nothing was sent.
    #[error(
        "refusing to talk to {}: the process listening there runs as uid {uid}{}, not as \
         root or as you (uid {me}), so it may be another user's impostor; nothing was sent. \
         If you trust that daemon, set COFFER_SERVER_UID={uid}; otherwise remove the socket \
         (or its directory) and start your own daemon, or choose another socket with --socket",
        .path.display(),
        .pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    UntrustedServer {
        /// The socket.
        path: PathBuf,
        /// The listening process's uid, as the kernel reports it (SO_PEERCRED).
        uid: u32,
        /// Its pid, when the kernel gave one.
        pid: Option<i32>,
        /// The client's own uid.
        me: u32,
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
            Self::UntrustedServer { .. } => ErrorCode::Unauthenticated,
            _ => ErrorCode::Internal,
        }
    }
}
