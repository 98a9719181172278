//! The one error type of coffer-core, and the gate a refusal came from.

use std::fmt;

use coffer_store::StoreError;
use coffer_types::{ErrorCode, NameError};

use coffer_tpm::TpmError;

use crate::datadir::DataDirError;
use crate::keyfile::KeyFileError;

/// The gates every request passes, in order, cheapest first (DESIGN.md). Both protocols
/// refuse in this order, because both go through [`Service::call`](crate::Service::call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gate {
    /// 0. The peer (a uid, a source address) is within its rate and not backed off after
    ///    too many refusals, before anything about the request is looked at.
    Peer,
    /// 1. The store is unsealed and available.
    Seal,
    /// 2. The caller's identity is established (a bad token is refused before anything
    ///    about the path is looked at).
    Identity,
    /// 3. The namespace exists.
    Namespace,
    /// 4. The caller is within its rate.
    RateLimit,
    /// 5. A policy grants the capability.
    Policy,
    /// 6. The name and request are valid.
    Validation,
    /// 7. The store did it.
    Store,
    /// Around them all: the audit log could not be written.
    Audit,
}

impl Gate {
    /// The stable string, as audit records carry it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Peer => "peer",
            Self::Seal => "seal",
            Self::Namespace => "namespace",
            Self::Identity => "identity",
            Self::RateLimit => "rate_limit",
            Self::Policy => "policy",
            Self::Validation => "validation",
            Self::Store => "store",
            Self::Audit => "audit",
        }
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request failed. Messages never hold a secret's value, name or namespace.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// No slot has opened the master key.
    #[error("the store is sealed; open it with `coffer unseal`")]
    Sealed,
    /// The store cannot be used until an operator fixes something.
    #[error("the secret store is unavailable: {0}")]
    Unavailable(String),
    /// The namespace does not exist (its name, which the caller gave).
    #[error("no such namespace \"{0}\": create it with `coffer namespaces create {0}`")]
    NoNamespace(String),
    /// The daemon is stopping: requests that arrive now are refused.
    #[error("the daemon is stopping; retry when it is back")]
    Stopping,
    /// The caller may not do this.
    #[error("{0}")]
    Denied(String),
    /// The caller could not be authenticated.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// Over the caller's rate.
    #[error("too many requests from this caller; retry later")]
    RateLimited,
    /// A name or namespace outside the grammar.
    #[error("invalid {0}")]
    InvalidName(#[from] NameError),
    /// A request that does not make sense.
    #[error("{0}")]
    InvalidRequest(String),
    /// A listener could not make an operation of the request (its shape does not fit).
    #[error("{message}")]
    Rejected {
        /// The stable code.
        code: ErrorCode,
        /// What is wrong.
        message: String,
    },
    /// A value above the limit.
    #[error("the value is {len} bytes; the limit is {max} bytes")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not offered (yet, or by this store).
    #[error("{0}")]
    Unsupported(&'static str),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A key file is missing or unfit.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// The data directory cannot be used.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// `init` found a store or key already there.
    #[error("{0}")]
    AlreadyInitialized(String),
    /// The stored access policies could not be loaded: only callers holding `root` are
    /// served (the daemon's log names the policy and why).
    #[error(
        "the access policies stored in coffer could not be loaded, so only root is served \
         until an operator fixes them (the daemon's log names the policy)"
    )]
    PolicyUnavailable,
    /// The audit log cannot be written, so the request was refused (or its reply withheld).
    #[error("the audit log cannot be written: {0}")]
    AuditUnavailable(String),
    /// The audit log does not match its checkpoint and no operator has acknowledged it: only
    /// `audit_acknowledge` is served.
    #[error(
        "the audit log does not match its checkpoint ({0}); requests are refused until an \
         operator runs `coffer audit acknowledge`"
    )]
    AuditTampered(String),
    /// Data that failed its integrity checks (a damaged, truncated or altered backup).
    #[error("{0}")]
    Integrity(String),
    /// The TPM refused, or could not be reached.
    #[error("{context}: {source}")]
    Tpm {
        /// What coffer was doing, e.g. `tpm slot 1 (PCRs sha256:7)`.
        context: String,
        /// What the TPM said.
        source: TpmError,
    },
}

impl CoreError {
    /// The wire code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Sealed => ErrorCode::Sealed,
            Self::Unavailable(_) => ErrorCode::StoreUnavailable,
            Self::NoNamespace(_) => ErrorCode::NotFound,
            Self::Stopping => ErrorCode::StoreUnavailable,
            Self::Denied(_) => ErrorCode::Denied,
            Self::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Self::RateLimited => ErrorCode::RateLimited,
            Self::InvalidName(_) => ErrorCode::InvalidName,
            Self::InvalidRequest(_) => ErrorCode::InvalidRequest,
            Self::Rejected { code, .. } => *code,
            Self::TooLarge { .. } => ErrorCode::TooLarge,
            Self::Unsupported(_) => ErrorCode::Unsupported,
            Self::Integrity(_) => ErrorCode::Integrity,
            Self::Store(e) => e.code(),
            Self::KeyFile(_) | Self::DataDir(_) => ErrorCode::StoreUnavailable,
            Self::AlreadyInitialized(_) => ErrorCode::Conflict,
            Self::Tpm { .. } => ErrorCode::Tpm,
            Self::AuditUnavailable(_) => ErrorCode::AuditUnavailable,
            Self::AuditTampered(_) => ErrorCode::AuditTampered,
            Self::PolicyUnavailable => ErrorCode::PolicyUnavailable,
        }
    }

    /// The TPM return code to report beside the code, where one applies.
    pub fn rc(&self) -> Option<String> {
        match self {
            Self::Tpm { source, .. } => source.rc().map(|rc| rc.to_string()),
            _ => self.code().implied_rc().map(str::to_owned),
        }
    }

    /// The message for the caller. Internal faults say only that there was one; the daemon
    /// logs the detail.
    pub fn client_message(&self) -> String {
        match self.code() {
            ErrorCode::Internal => {
                "internal error in the secret store; the daemon's log has details".to_owned()
            }
            ErrorCode::Integrity => "stored data failed its integrity check (a row was \
                 altered, swapped or put back from a copy); nothing of it is served, the \
                 daemon's log has details"
                .to_owned(),
            _ => self.to_string(),
        }
    }
}

/// A refused request: the gate that refused it and why.
#[derive(Debug)]
pub struct Refusal {
    /// Where the request stopped.
    pub gate: Gate,
    /// Why.
    pub error: CoreError,
}

impl Refusal {
    /// A refusal at `gate`.
    pub fn at(gate: Gate, error: impl Into<CoreError>) -> Self {
        Self {
            gate,
            error: error.into(),
        }
    }
}
