//! Requests as the core receives them and replies as it answers.
//!
//! The listener has parsed the wire format (shape and types); names and namespaces are still
//! raw text here, because the gates decide when they are checked (namespace at gate 2, name at
//! gate 6).

use std::sync::Arc;
use std::time::Duration;

use coffer_crypto::SecretBytes;
use coffer_store::{Describe, Mark, Page, SecretMeta, SecretSummary, VersionInfo};
use coffer_types::wire::UnsealWith;
use coffer_types::{
    Capability, DigestEncoding, GeneratorSpec, HmacAlgorithm, Kind, Namespace, NvIndex, SecretName,
    Version,
};

use crate::access::{PolicyText, TokenRecord};
use crate::cache::Facts;
use crate::status::StatusReport;

/// A request to the core.
#[derive(Debug)]
#[non_exhaustive]
pub enum Request {
    /// Something done to one secret.
    Secret {
        /// Namespace (`default` when absent).
        namespace: Option<String>,
        /// Name.
        name: String,
        /// What to do.
        op: SecretOp,
    },
    /// Names in a namespace.
    List {
        /// Namespace (`default` when absent).
        namespace: Option<String>,
        /// Which names.
        query: ListRequest,
    },
    /// Create a namespace.
    CreateNamespace {
        /// Its path.
        namespace: String,
    },
    /// The namespaces.
    ListNamespaces,
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
    /// Open the store through a slot whose key the request carries, with no other
    /// credential: over HTTP, as in Vault, the key itself is the caller's authority (a token
    /// cannot be checked while the store is sealed).
    UnsealByKey {
        /// Which kind of slot.
        with: UnsealWith,
        /// The passphrase or recovery key.
        key: SecretBytes,
    },
    /// The key slots.
    SlotList,
    /// Add a key slot (the store must be unsealed).
    SlotAdd {
        /// `file`, `passphrase`, `recovery`, `tpm`, `tpm+passphrase`.
        kind: String,
        /// PCR policy of a TPM slot (default `sha256:7`).
        pcrs: Option<String>,
        /// The passphrase of a passphrase slot.
        key: Option<SecretBytes>,
        /// The key file of a file slot (default: beside the database).
        path: Option<String>,
    },
    /// Remove a key slot (never the last).
    SlotRemove {
        /// Its id.
        id: u32,
    },
    /// Seal TPM slots' node keys to the PCRs' current values.
    SlotReseal {
        /// One slot, or every TPM slot.
        id: Option<u32>,
        /// The passphrase, for a `tpm+passphrase` slot.
        key: Option<SecretBytes>,
    },
    /// Put a policy (run-time policies live in the store).
    PolicyPut {
        /// Its name.
        name: String,
        /// Its rules.
        rules: PolicyText,
    },
    /// One policy.
    PolicyGet {
        /// Its name.
        name: String,
    },
    /// Every policy and binding.
    PolicyList,
    /// Delete a run-time policy.
    PolicyDelete {
        /// Its name.
        name: String,
    },
    /// Bind a subject to policies (none: unbind).
    SubjectSet {
        /// `uid:N`, `gid:N`, `user:NAME`, `token:ACCESSOR`.
        subject: String,
        /// The policies.
        policies: Vec<String>,
    },
    /// Make a token.
    TokenCreate {
        /// Its policies.
        policies: Vec<String>,
        /// Its time to live.
        ttl: Duration,
        /// A namespace it is confined to.
        namespace: Option<String>,
        /// A label.
        display_name: Option<String>,
    },
    /// Every live token (never the tokens themselves).
    TokenList,
    /// Revoke a token.
    TokenRevoke {
        /// Its accessor.
        accessor: String,
    },
    /// Revoke the caller's own token.
    TokenRevokeSelf,
    /// Renew the caller's own token: its expiry moves to now plus its original time to live.
    TokenRenewSelf,
    /// A token's record: by accessor, or the caller's own.
    TokenLookup {
        /// The accessor; `None` for the token the request carries.
        accessor: Option<String>,
    },
    /// The audit log's hash of a name and/or a namespace.
    AuditHash {
        /// A secret name.
        name: Option<String>,
        /// A namespace.
        namespace: Option<String>,
    },
    /// Verify the audit log.
    AuditVerify,
    /// May the caller read the daemon's metrics (`read` on `sys/metrics`)? The listener
    /// that serves them renders them after this passes.
    Metrics,
}

impl Request {
    /// The action's wire name, as the audit log records it.
    pub fn action(&self) -> &'static str {
        match self {
            Self::Secret { op, .. } => op.action(),
            Self::List { .. } => "list",
            Self::CreateNamespace { .. } => "namespace_create",
            Self::ListNamespaces => "namespace_list",
            Self::Status => "status",
            Self::Seal => "seal",
            Self::Unseal { .. } | Self::UnsealByKey { .. } => "unseal",
            Self::SlotList => "slot_list",
            Self::SlotAdd { .. } => "slot_add",
            Self::SlotRemove { .. } => "slot_remove",
            Self::SlotReseal { .. } => "slot_reseal",
            Self::PolicyPut { .. } => "policy_put",
            Self::PolicyGet { .. } => "policy_get",
            Self::PolicyList => "policy_list",
            Self::PolicyDelete { .. } => "policy_delete",
            Self::SubjectSet { .. } => "subject_set",
            Self::TokenCreate { .. } => "token_create",
            Self::TokenList => "token_list",
            Self::TokenRevoke { .. } => "token_revoke",
            Self::TokenLookup { .. } => "token_lookup",
            Self::TokenRenewSelf => "token_renew",
            Self::TokenRevokeSelf => "token_revoke",
            Self::AuditHash { .. } => "audit_hash",
            Self::AuditVerify => "audit_verify",
            Self::Metrics => "metrics",
        }
    }

    /// The namespace and secret name the request is about, as the audit log records them.
    pub fn target(&self) -> (Option<&str>, Option<&str>) {
        fn ns(n: &Option<String>) -> Option<&str> {
            Some(n.as_deref().unwrap_or(Namespace::DEFAULT))
        }
        match self {
            Self::Secret {
                namespace, name, ..
            } => (ns(namespace), Some(name)),
            Self::List { namespace, .. } => (ns(namespace), None),
            Self::CreateNamespace { namespace } => (Some(namespace), None),
            Self::TokenCreate { namespace, .. } => (namespace.as_deref(), None),
            _ => (None, None),
        }
    }
}

/// How a written value is described.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// The kind; `None` keeps the secret's kind (text, or file for a value sent as base64,
    /// when new).
    pub kind: Option<Kind>,
    /// The value came as base64 (binary).
    pub binary: bool,
    /// A new description.
    pub description: Option<String>,
    /// A new version limit (0: unlimited).
    pub max_versions: Option<u32>,
    /// Check-and-set: write only when the newest version is this one (0: only a new secret).
    pub cas: Option<u32>,
}

/// What to do to one secret.
#[derive(Debug)]
#[non_exhaustive]
pub enum SecretOp {
    /// Read the newest value, or `version`.
    Get {
        /// A version, or the newest.
        version: Option<Version>,
    },
    /// Store a value: a new secret, or a new version.
    Set {
        /// The value.
        value: SecretBytes,
        /// Kind and metadata.
        options: WriteOptions,
    },
    /// Mint a value for a new secret and answer it once.
    Generate {
        /// What to mint.
        spec: GeneratorSpec,
        /// Kind and metadata.
        options: WriteOptions,
    },
    /// A new version of an existing secret: the operator's value, or a minted one.
    Rotate {
        /// The new value; `None` mints one.
        value: Option<SecretBytes>,
        /// What to mint; `None` reuses the secret's generator, or the default.
        spec: Option<GeneratorSpec>,
        /// Kind and metadata.
        options: WriteOptions,
    },
    /// Change metadata, or soft-delete and undelete versions; no new version.
    Describe {
        /// The change.
        change: Describe,
    },
    /// A new version of a KV secret: its newest value (a JSON object) with a JSON merge
    /// patch (RFC 7396) applied. The newest version must be readable.
    Patch {
        /// The merge patch, a JSON object.
        patch: SecretBytes,
        /// Check-and-set, as for a write.
        cas: Option<u32>,
    },
    /// Soft delete: unreadable, kept for audit, the name freed.
    Revoke,
    /// Erase these versions' ciphertexts.
    Destroy {
        /// Which versions.
        versions: Vec<Version>,
    },
    /// Delete the secret with every version.
    Del,
    /// Metadata, never the value.
    Meta,
    /// The version history.
    Versions,
    /// HMAC of caller data under the secret; the caller gets the digest only.
    Hmac {
        /// The hash.
        algorithm: HmacAlgorithm,
        /// The data to authenticate.
        data: Vec<u8>,
        /// How the digest is written.
        encoding: DigestEncoding,
    },
    /// The HTTP basic-auth header for `user` and the secret as password.
    BasicAuth {
        /// The user-id.
        user: String,
    },
}

impl SecretOp {
    /// The action's wire name.
    pub fn action(&self) -> &'static str {
        match self {
            Self::Get { .. } => "get",
            Self::Set { .. } => "set",
            Self::Generate { .. } => "generate",
            Self::Rotate { .. } => "rotate",
            Self::Describe { change } => match change.mark {
                Some(Mark::Undelete(_)) => "undelete",
                Some(_) => "delete",
                None => "describe",
            },
            Self::Patch { .. } => "patch",
            Self::Revoke => "revoke",
            Self::Destroy { .. } => "destroy",
            Self::Del => "del",
            Self::Meta => "meta",
            Self::Versions => "versions",
            Self::Hmac { .. } => "hmac",
            Self::BasicAuth { .. } => "basic_auth",
        }
    }

    /// The capability the policy gate asks for.
    pub fn capability(&self) -> Capability {
        match self {
            Self::Get { .. } | Self::Hmac { .. } | Self::BasicAuth { .. } => Capability::Read,
            // Creating and updating are told apart by the policy engine; until it exists
            // both need the same grant.
            Self::Set { .. } | Self::Patch { .. } => Capability::Update,
            // Soft deletion and its undoing are KV v2's `delete`: coffer's `revoke`, which
            // also makes a value unreadable without erasing it.
            Self::Describe { change } if change.mark.is_some() => Capability::Revoke,
            Self::Describe { .. } => Capability::Update,
            Self::Generate { .. } => Capability::Generate,
            Self::Rotate { .. } => Capability::Rotate,
            Self::Revoke => Capability::Revoke,
            Self::Destroy { .. } | Self::Del => Capability::Destroy,
            Self::Meta | Self::Versions => Capability::Meta,
        }
    }

    /// Whether the operation can change the newest value (and so must drop it from the cache).
    pub(crate) fn changes_value(&self) -> bool {
        matches!(
            self,
            Self::Set { .. }
                | Self::Patch { .. }
                | Self::Describe { .. }
                | Self::Generate { .. }
                | Self::Rotate { .. }
                | Self::Revoke
                | Self::Destroy { .. }
                | Self::Del
        )
    }
}

/// Which names a `list` wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListRequest {
    /// Only names starting with this.
    pub prefix: Option<String>,
    /// Only names after this one.
    pub after: Option<String>,
    /// Most names (default 1000, at most 10000).
    pub limit: Option<usize>,
    /// With each secret's metadata (needs `meta` too).
    pub detail: bool,
    /// The revoked secrets instead, with their history (needs `meta` too).
    pub revoked: bool,
}

/// A successful answer.
#[derive(Debug)]
#[non_exhaustive]
pub enum Reply {
    /// A version was written.
    Written {
        /// The secret's index.
        index: NvIndex,
        /// The version written.
        version: Version,
    },
    /// A value was minted and written; this is the only time it is shown.
    Minted {
        /// The secret's index.
        index: NvIndex,
        /// The version written.
        version: Version,
        /// The value.
        value: SecretBytes,
    },
    /// A value was read.
    Value {
        /// The value (shared with the cache; zeroized when the last holder drops it).
        value: Arc<SecretBytes>,
        /// Its version.
        version: Version,
        /// Its kind.
        kind: Kind,
        /// What KV v2 shows beside it.
        facts: Arc<Facts>,
    },
    /// Done; nothing to report.
    Done,
    /// These versions are destroyed.
    Destroyed(Vec<Version>),
    /// A secret's metadata.
    Meta(Box<SecretMeta>),
    /// A version history.
    Versions(Vec<VersionInfo>),
    /// A page of names.
    Names(Page<SecretName>),
    /// A page of names with metadata.
    Summaries(Page<SecretSummary>),
    /// Revoked secrets with their history.
    Revoked(Vec<SecretMeta>),
    /// An HMAC digest.
    Digest(String),
    /// A header value (basic auth).
    Header(SecretBytes),
    /// The namespaces.
    Namespaces(Vec<Namespace>),
    /// Status.
    Status(Box<StatusReport>),
    /// The key slots.
    Slots(Vec<crate::SlotSummary>),
    /// A slot was added.
    SlotAdded {
        /// Its id.
        id: u32,
        /// The recovery key of a recovery slot, shown this once.
        recovery: Option<SecretBytes>,
    },
    /// These slots were resealed.
    Resealed(Vec<u32>),
    /// One policy.
    Policy(Box<PolicyView>),
    /// Every policy and binding.
    Policies(Box<PolicyListing>),
    /// A token was made: the token, shown this once, and its record.
    TokenCreated {
        /// The token.
        token: SecretBytes,
        /// Its record.
        record: Box<TokenRecord>,
    },
    /// Token records.
    Tokens(Vec<TokenRecord>),
    /// One token's record.
    TokenInfo(Box<TokenRecord>),
    /// Audit hashes.
    AuditHash {
        /// Of the name.
        name: Option<String>,
        /// Of the namespace.
        namespace: Option<String>,
    },
    /// The audit log's verification.
    AuditVerified(Box<AuditReport>),
}

/// Where a policy or binding comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicySource {
    /// Built in (`root`, and its bindings to root and the daemon's user).
    Builtin,
    /// The policy file.
    File,
    /// Put at run time, kept in the store.
    Store,
}

/// One policy as shown.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PolicyView {
    /// Its name.
    pub name: String,
    /// Where it comes from.
    pub source: PolicySource,
    /// Its rules.
    pub rules: PolicyText,
}

/// One binding as shown.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BindingView {
    /// The subject.
    pub subject: String,
    /// Its policies.
    pub policies: Vec<String>,
    /// Where the binding comes from.
    pub source: PolicySource,
}

/// Every policy and binding.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PolicyListing {
    /// The policies.
    pub policies: Vec<PolicyView>,
    /// The bindings.
    pub subjects: Vec<BindingView>,
}

/// The audit log's verification, as answered.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AuditReport {
    /// Whether the chain and the checkpoint hold.
    pub ok: bool,
    /// Records read.
    pub records: u64,
    /// Files read.
    pub files: usize,
    /// The last record's sequence number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
    /// The sequence number the newest valid checkpoint anchors (`None`: not checked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<u64>,
    /// Records written after that checkpoint.
    pub unanchored: u64,
    /// The first problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}
