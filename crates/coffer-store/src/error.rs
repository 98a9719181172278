//! The one error type of coffer-store.

use coffer_crypto::CryptoError;
use coffer_types::ErrorCode;

/// The conflict of a check-and-set write whose version is not the newest (KV v2's words,
/// which its clients show).
pub const CAS_MISMATCH: &str = "check-and-set parameter did not match the current version";

/// A version that exists but cannot be read, with what may be said about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gone {
    /// The version.
    pub version: coffer_types::Version,
    /// When it was written.
    pub created: coffer_types::Timestamp,
    /// When it was soft-deleted.
    pub deletion: Option<coffer_types::Timestamp>,
    /// Whether its ciphertext was erased.
    pub destroyed: bool,
    /// The secret's custom metadata (KV v2 shows it with a gone version).
    pub custom_metadata: std::collections::BTreeMap<String, String>,
}

/// What went wrong in the store. Messages name what failed, never a secret's name or value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No such secret, version or namespace.
    #[error("no such {0}")]
    NotFound(&'static str),
    /// The thing to create already exists, or a precondition did not hold.
    #[error("{0}")]
    Conflict(&'static str),
    /// The backend cannot be reached or refused the operation (disk, database).
    #[error("store backend failed while {doing}: {detail}")]
    Unavailable {
        /// What the store was doing.
        doing: &'static str,
        /// The backend's own message (never contains row contents: queries use parameters).
        detail: String,
    },
    /// A row that does not decrypt or parse: altered, moved, or from another store.
    #[error("stored data failed integrity checks ({what}): {source}")]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// Why.
        source: CryptoError,
    },
    /// A stored row whose state does not match what was sealed with it: edited, moved,
    /// swapped with another row or put back from a copy.
    #[error("stored data failed integrity checks: {0}")]
    Integrity(&'static str),
    /// A stored record that is not in the expected format.
    #[error("stored data is malformed ({0})")]
    Malformed(&'static str),
    /// The version cannot be read: its ciphertext was erased by `destroy`, or it was
    /// soft-deleted (KV v2's `delete`) and is unreadable until it is undeleted.
    #[error("that version was {}", if .0.destroyed { "destroyed" } else { "deleted" })]
    Gone(Gone),
    /// A value that does not fit its kind (the message says why, never quoting it).
    #[error("{0}")]
    Invalid(String),
    /// A value larger than a limit (a derived value, such as a merged KV document).
    #[error("the value is {len} bytes; the limit is {max} bytes")]
    TooLarge {
        /// The value's size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The backend has no room left (TPM NV).
    #[error("the store is full")]
    Full,
    /// The event feed no longer holds events after this revision (pruned by the retention
    /// window, or a revision this store never reached): the consumer must resync.
    #[error(
        "the event feed holds revisions {oldest} to {head}; revision {asked} is not among them: read the current state and watch from now"
    )]
    Resync {
        /// The revision asked for.
        asked: u64,
        /// The oldest revision a consumer may resume from.
        oldest: u64,
        /// The newest revision.
        head: u64,
    },
    /// The backend cannot do this (the message says what and why).
    #[error("{0}")]
    Unsupported(&'static str),
    /// The operation failed in the crypto layer (random source).
    #[error("crypto failure: {0}")]
    Crypto(#[source] CryptoError),
}

impl StoreError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound(_) | Self::Gone(_) => ErrorCode::NotFound,
            Self::Invalid(_) => ErrorCode::InvalidRequest,
            Self::TooLarge { .. } => ErrorCode::TooLarge,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::Unavailable { .. } => ErrorCode::StoreUnavailable,
            Self::Corrupt { .. } | Self::Integrity(_) => ErrorCode::Integrity,
            Self::Malformed(_) | Self::Crypto(_) => ErrorCode::Internal,
            Self::Full => ErrorCode::NvFull,
            Self::Unsupported(_) => ErrorCode::Unsupported,
            Self::Resync { .. } => ErrorCode::Resync,
        }
    }

    /// Wraps a backend failure.
    pub fn unavailable(doing: &'static str, err: impl std::fmt::Display) -> Self {
        Self::Unavailable {
            doing,
            detail: err.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_large_says_both_sizes_and_maps_to_its_code() {
        let e = StoreError::TooLarge {
            len: 70_000,
            max: 65_536,
        };
        assert_eq!(e.code(), ErrorCode::TooLarge);
        assert_eq!(
            e.to_string(),
            "the value is 70000 bytes; the limit is 65536 bytes"
        );
    }
}
