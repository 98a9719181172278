//! Requests as the core receives them and replies as it answers.
//!
//! The listener has parsed the wire format (shape and types); names and namespaces are still
//! raw text here, because the gates decide when they are checked (namespace at gate 2, name at
//! gate 6).

use std::sync::Arc;

use coffer_crypto::SecretBytes;
use coffer_types::wire::{Action, UnsealWith};
use coffer_types::{Kind, NvIndex, Version};

use crate::status::StatusReport;

/// A request to the core.
#[derive(Debug)]
#[non_exhaustive]
pub enum Request {
    /// Store a value.
    Set {
        /// Namespace (`default` when absent).
        namespace: Option<String>,
        /// Name.
        name: String,
        /// Value.
        value: SecretBytes,
        /// Kind (`text`, or `file` for a value sent as base64, when absent).
        kind: Option<Kind>,
    },
    /// Read a value.
    Get {
        /// Namespace.
        namespace: Option<String>,
        /// Name.
        name: String,
        /// A version, or the newest.
        version: Option<Version>,
    },
    /// Delete a secret with every version.
    Del {
        /// Namespace.
        namespace: Option<String>,
        /// Name.
        name: String,
    },
    /// Seal state and store facts.
    Status,
    /// Flush the cache, forget the keys.
    Seal,
    /// Open the store through a slot.
    Unseal {
        /// Which kind of slot.
        with: UnsealWith,
        /// The passphrase or recovery key; none for a key file.
        key: Option<SecretBytes>,
    },
}

impl Request {
    /// The wire action.
    pub fn action(&self) -> Action {
        match self {
            Self::Set { .. } => Action::Set,
            Self::Get { .. } => Action::Get,
            Self::Del { .. } => Action::Del,
            Self::Status => Action::Status,
            Self::Seal => Action::Seal,
            Self::Unseal { .. } => Action::Unseal,
        }
    }
}

/// A successful answer.
#[derive(Debug)]
#[non_exhaustive]
pub enum Reply {
    /// Written.
    Set {
        /// The secret's index.
        index: NvIndex,
        /// The version written.
        version: Version,
    },
    /// Read.
    Get {
        /// The value (shared with the cache; zeroized when the last holder drops it).
        value: Arc<SecretBytes>,
        /// Its version.
        version: Version,
        /// Its kind.
        kind: Kind,
    },
    /// Deleted.
    Deleted,
    /// Status.
    Status(Box<StatusReport>),
    /// Sealed now.
    Sealed,
    /// Unsealed now (or already was).
    Unsealed,
}
