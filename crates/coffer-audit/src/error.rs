//! [`AuditError`]: the one error type of coffer-audit.
//!
//! Writing failures carry the path and the operating system's reason as text, because one
//! failed batch answers every request in it and each answer needs its own copy.

use std::io;
use std::path::PathBuf;

use coffer_types::ErrorCode;

/// What went wrong in the audit log, its verifier or its tail reader.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A record could not be written, or the last write failed and the log is still not
    /// writable. The request must be refused (`audit_unavailable`).
    #[error("cannot write the audit log {}: {reason}", path.display())]
    Unavailable {
        /// The audit file that could not be written.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },

    /// The log has been shut down; no more records are accepted.
    #[error("the audit log is shut down")]
    Closed,

    /// Another process (a second daemon) holds the audit directory's lock.
    #[error(
        "the audit directory {} is in use by another process (is another coffer daemon \
         running?)",
        path.display()
    )]
    Locked {
        /// The directory.
        path: PathBuf,
    },

    /// The audit directory could not be created or listed.
    #[error("cannot use the audit directory {}: {source}", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },

    /// An audit or checkpoint file could not be read (or its damaged tail not repaired).
    #[error("cannot read the audit file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },

    /// The newest audit file ends in a way the chain cannot be continued from.
    #[error(
        "cannot continue the audit chain from {}: {reason}; run `coffer audit verify` and move \
         the damaged file aside",
        path.display()
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A checkpoint of a lower seq than the one stored was about to be written.
    #[error(
        "refusing to lower the audit checkpoint in {} from record {stored} to record {new}",
        path.display()
    )]
    Lower {
        /// The checkpoint file.
        path: PathBuf,
        /// The seq it holds.
        stored: u64,
        /// The seq that was to be written.
        new: u64,
    },

    /// At open the log did not match its newest checkpoint (records, files or the whole
    /// directory missing, or the chain broken) and no operator has acknowledged it yet
    /// (`coffer audit acknowledge`). Requests are refused (`audit_tampered`).
    #[error(
        "the audit log does not match its checkpoint: {missing}; requests are refused until \
         an operator runs `coffer audit acknowledge`"
    )]
    Tampered {
        /// What is missing or broken.
        missing: String,
    },

    /// The audit directory's file system has less free space than the configured reserve.
    #[error(
        "the audit directory {} has {free} bytes free, below its reserve of {reserve} bytes",
        path.display()
    )]
    Full {
        /// The directory.
        path: PathBuf,
        /// Bytes free (for unprivileged users).
        free: u64,
        /// The reserve.
        reserve: u64,
    },

    /// The TPM counter the checkpoint is anchored in could not be read or advanced; the
    /// checkpoint is not written (the syncer tries again at its next tick).
    #[error("cannot use the audit log's TPM counter: {reason}")]
    Counter {
        /// What the TPM (or coffer) answered.
        reason: String,
    },

    /// The writer thread could not be started.
    #[error("cannot start the audit writer thread: {source}")]
    Thread {
        /// The operating system's error.
        source: io::Error,
    },

    /// A record could not be encoded as JSON (a bug: every field is a string or a number).
    #[error("cannot encode an audit record: {reason}")]
    Encode {
        /// The encoder's message.
        reason: String,
    },

    /// The tail reader could not write to its output.
    #[error("cannot write the audit tail output: {source}")]
    Output {
        /// The operating system's error.
        source: io::Error,
    },
}

impl AuditError {
    /// The wire code a request refused for this error carries.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unavailable { .. }
            | Self::Closed
            | Self::Full { .. }
            | Self::Lower { .. }
            | Self::Counter { .. } => ErrorCode::AuditUnavailable,
            Self::Tampered { .. } => ErrorCode::AuditTampered,
            _ => ErrorCode::Internal,
        }
    }

    /// The same error for another request of a failed batch: write failures and a closed
    /// log as they are, anything else as its message.
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Self::Unavailable { path, reason } => Self::Unavailable {
                path: path.clone(),
                reason: reason.clone(),
            },
            Self::Closed => Self::Closed,
            Self::Counter { reason } => Self::Counter {
                reason: reason.clone(),
            },
            Self::Tampered { missing } => Self::Tampered {
                missing: missing.clone(),
            },
            Self::Full {
                path,
                free,
                reserve,
            } => Self::Full {
                path: path.clone(),
                free: *free,
                reserve: *reserve,
            },
            other => Self::Encode {
                reason: other.to_string(),
            },
        }
    }

    /// A write failure of `path`.
    pub(crate) fn unavailable(path: &std::path::Path, err: &io::Error) -> Self {
        Self::Unavailable {
            path: path.to_path_buf(),
            reason: err.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_names_the_path_and_the_os_reason() {
        let err = AuditError::unavailable(
            std::path::Path::new("/x/audit-1.jsonl"),
            &io::Error::from_raw_os_error(13),
        );
        assert_eq!(
            err.to_string(),
            "cannot write the audit log /x/audit-1.jsonl: Permission denied (os error 13)"
        );
        assert_eq!(err.code(), ErrorCode::AuditUnavailable);
        assert_eq!(AuditError::Closed.code(), ErrorCode::AuditUnavailable);
    }
}
