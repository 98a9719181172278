//! What the core answers: a [`Reply`] per operation. Listeners turn it into their wire shape.

use std::sync::Arc;

use coffer_crypto::SecretBytes;
use coffer_store::{Page, SecretMeta, SecretSummary, VersionInfo};
use coffer_types::reply::{AuditReport, PolicyListing, PolicyView, StatusReport, TokenRecord};
use coffer_types::{Kind, Namespace, NvIndex, SecretName, Version};

use crate::cache::Facts;

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
    /// A watch: the listener streams what the watcher yields until its client goes away.
    Watch(Box<crate::watch::Watcher>),
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
    /// A page of revoked secrets with their history.
    Revoked(Page<SecretMeta>),
    /// Keys one level below a folder (Vault's LIST); folders end in `/`.
    Keys(Vec<String>),
    /// The namespace that serves a path.
    Mount(Namespace),
    /// An HMAC digest.
    Digest(String),
    /// A header value (basic auth).
    Header(SecretBytes),
    /// A password hash in crypt(3)'s form (`yescrypt`); not secret.
    PasswordHash(String),
    /// The namespaces.
    Namespaces {
        /// Every namespace (but the daemon's own).
        all: Vec<Namespace>,
        /// Those locked.
        locked: Vec<Namespace>,
    },
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
    /// The master key was replaced.
    MasterRotated {
        /// The new recovery key, shown this once.
        recovery: Option<SecretBytes>,
        /// Passphrase slots dropped.
        dropped: Vec<u32>,
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
    /// Tokens revoked: the one asked for, then its descendants (each also has its own
    /// audit record).
    TokensRevoked(Vec<String>),
    /// Audit hashes.
    AuditHash {
        /// Of the name.
        name: Option<String>,
        /// Of the namespace.
        namespace: Option<String>,
    },
    /// The built-in audit log's directory (`None`: the daemon runs without one).
    AuditDevices(Option<String>),
    /// The audit log's verification.
    AuditVerified(Box<AuditReport>),
    /// A gap acknowledged: the seq of the gap record (`None`: there was no gap).
    AuditAcknowledged(Option<u64>),
    /// A webhook was added: its record, and its signing secret, shown this once.
    WebhookAdded {
        /// The webhook (without its secret).
        webhook: Box<coffer_types::webhook::WebhookView>,
        /// The signing secret (`whsec_...`).
        secret: SecretBytes,
    },
    /// The webhooks (never their secrets).
    Webhooks(Vec<coffer_types::webhook::WebhookView>),
    /// How each webhook's deliveries stand.
    WebhookStatus(Vec<coffer_types::webhook::WebhookStatus>),
    /// A backup being made: the listener streams its age bytes until it ends.
    Backup(Box<crate::backup::BackupStream>),
    /// What an AppRole operation answers.
    AppRole(Box<AppRoleReply>),
    /// What a fleet operation answers, as JSON (a join token or a bundle key once).
    Fleet(Box<serde_json::Value>),
    /// What a wrapping operation answers.
    Wrapped(Box<WrapReply>),
    /// A token role.
    TokenRole(Box<crate::access::token_role::TokenRole>),
    /// Vault's capabilities on each path asked about, in the order asked.
    Capabilities(Vec<(String, Vec<&'static str>)>),
}

/// What a wrapping operation answers.
#[derive(Debug)]
#[non_exhaustive]
pub enum WrapReply {
    /// A response was wrapped (or rewrapped): the wrapping token, shown this once, and its
    /// record.
    Token {
        /// The wrapping token.
        token: SecretBytes,
        /// Its record.
        record: crate::access::wrap::WrapRecord,
    },
    /// The wrapped response, unwrapped.
    Response {
        /// The response.
        response: SecretBytes,
        /// The spent wrapping token's accessor (for the record).
        accessor: String,
    },
    /// A wrapping token's record.
    Record(crate::access::wrap::WrapRecord),
}

/// What an AppRole operation answers.
#[derive(Debug)]
#[non_exhaustive]
pub enum AppRoleReply {
    /// Done, nothing to show.
    Done,
    /// A role's settings.
    Role(crate::access::approle::Role),
    /// Role names, or a role's secret-id accessors.
    Keys(Vec<String>),
    /// A role's role-id.
    RoleId(String),
    /// A secret-id just made: shown this once.
    SecretId {
        /// The secret-id.
        secret_id: SecretBytes,
        /// Its record.
        record: crate::access::approle::SecretIdRecord,
    },
    /// A secret-id's record.
    SecretIdInfo(crate::access::approle::SecretIdRecord),
    /// A login: the token, shown this once, its record and the role's name.
    Login {
        /// The token.
        token: SecretBytes,
        /// Its record.
        record: TokenRecord,
        /// The role logged in with.
        role: String,
    },
}
