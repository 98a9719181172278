//! The operation layer's inputs: one typed operation per thing a request can do, the same for
//! every listener.
//!
//! A listener reads its wire shape (a socket request's fields, an HTTP route and body) into an
//! [`Operation`] and hands it to [`Service::call`](crate::Service::call); nothing else. Names
//! and namespaces arrive parsed ([`Target`]; a part that did not parse waits for its gate),
//! values in `SecretBytes`, numbers as the wire gave them. Every rule about them (limits,
//! which capability each field needs, defaults, ranges) is decided here and in the service,
//! once: [`SecretOp::needs`] and [`SecretOp::check`] for secrets, [`ListInput`] for lists,
//! the admin operations' checks in the service's `admin` module.

pub mod approle;
pub mod fleet;
pub mod hook_path;
pub mod secret;
pub mod webhook;

use coffer_crypto::SecretBytes;
use coffer_types::reply::PolicyText;
use coffer_types::wire::UnsealWith;
use coffer_types::{Action, Namespace, Parsed, SlotKind, Target};

pub use approle::{AppRoleOp, RoleInput, SecretIdInput};
pub use fleet::FleetOp;
pub use secret::{MetadataChange, RotationInput, SecretOp, SpecInput, WriteOptions};
pub use webhook::WebhookOp;

/// What a request asks of the core.
#[derive(Debug)]
#[non_exhaustive]
pub enum Operation {
    /// Something done to one secret.
    Secret {
        /// Its namespace and name.
        target: Target,
        /// What to do.
        op: SecretOp,
    },
    /// Names in a namespace.
    List {
        /// The namespace.
        namespace: Parsed<Namespace>,
        /// Which names.
        input: ListInput,
    },
    /// Create a namespace.
    NamespaceCreate {
        /// Its path.
        namespace: Parsed<Namespace>,
        /// A passphrase its key is also wrapped under, so it can be locked.
        passphrase: Option<SecretBytes>,
    },
    /// Replace the master key.
    RotateMaster {
        /// Passphrases opening the passphrase slots, one a line.
        passphrases: Option<SecretBytes>,
        /// Drop the passphrase slots none of them opens.
        drop_passphrase_slots: bool,
    },
    /// Start a rotation of a namespace's key.
    NamespaceRotateKey {
        /// Its path.
        namespace: Parsed<Namespace>,
    },
    /// Lock a namespace: forget its key and flush its cached values until it is unlocked.
    NamespaceLock {
        /// Its path.
        namespace: Parsed<Namespace>,
    },
    /// Unlock a namespace with its passphrase.
    NamespaceUnlock {
        /// Its path.
        namespace: Parsed<Namespace>,
        /// The passphrase.
        passphrase: SecretBytes,
    },
    /// Set or change the passphrase of an open namespace.
    NamespacePassphrase {
        /// Its path.
        namespace: Parsed<Namespace>,
        /// The new passphrase.
        passphrase: SecretBytes,
    },
    /// The namespaces (and which are locked).
    NamespaceList,
    /// Which of these namespaces, tried in order, exists: the mount serving a path.
    Mount {
        /// The candidates, longest first.
        candidates: Vec<Namespace>,
    },
    /// Seal state and store facts.
    Status,
    /// Flush the cache, forget the keys.
    Seal,
    /// Open the store through a slot.
    Unseal {
        /// Which kind of slot.
        with: UnsealWith,
        /// The passphrase or recovery key; none for a key file or the TPM.
        key: Option<SecretBytes>,
        /// The key is the caller's only authority (HTTP, as in Vault: no token can be checked
        /// while the store is sealed). Such a request needs a key.
        by_key: bool,
    },
    /// The key slots.
    SlotList,
    /// Add a key slot (the store must be unsealed).
    SlotAdd {
        /// The kind.
        kind: SlotKind,
        /// PCR policy of a TPM slot (default `sha256:7`).
        pcrs: Option<String>,
        /// The passphrase of a passphrase slot.
        key: Option<SecretBytes>,
        /// The key file of a file slot.
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
    /// Put a policy.
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
        /// `uid:N`, `gid:N`, `user:NAME`, `token:ACCESSOR`, `unit:NAME`.
        subject: String,
        /// The policies.
        policies: Vec<String>,
    },
    /// Make a token.
    TokenCreate(TokenInput),
    /// Every live token (never the tokens themselves).
    TokenList,
    /// Revoke a token by accessor.
    TokenRevoke {
        /// Its accessor.
        accessor: String,
    },
    /// Revoke a token by accessor and make its children orphans (Vault's `revoke-orphan`):
    /// its descendants live on.
    TokenRevokeOrphan {
        /// Its accessor.
        accessor: String,
    },
    /// Renew a token by accessor.
    TokenRenew {
        /// Its accessor.
        accessor: String,
    },
    /// Revoke the caller's own token.
    TokenRevokeSelf,
    /// Renew the caller's own token.
    TokenRenewSelf,
    /// A token's record: by accessor, or the caller's own.
    TokenLookup {
        /// The accessor; `None` for the token the request carries.
        accessor: Option<String>,
    },
    /// The audit devices: the built-in log and where it is written.
    AuditList,
    /// The audit log's hash of a name and/or a namespace.
    AuditHash {
        /// A secret name.
        name: Option<String>,
        /// A namespace.
        namespace: Option<String>,
    },
    /// Verify the audit log.
    AuditVerify,
    /// Acknowledge the gap the audit log's check at unseal found: write a MAC'd gap record
    /// naming what is missing, then serve again.
    AuditAcknowledge,
    /// May the caller read the daemon's metrics (`read` on `sys/metrics`)? The listener
    /// that serves them renders them after this passes.
    Metrics,
    /// Something done to the webhooks (`sudo` on `sys/webhooks`).
    Webhook(WebhookOp),
    /// Follow the change events the caller may see.
    Watch(WatchInput),
    /// An encrypted backup of the whole store (`sudo` on `sys/backup`), streamed.
    Backup {
        /// age X25519 recipients (`age1...`).
        recipients: Vec<String>,
        /// A passphrase (age's scrypt recipient) instead: then the only recipient.
        passphrase: Option<SecretBytes>,
    },
    /// AppRole: roles, secret-ids and the login (`sudo` on `sys/approle` but for the login).
    AppRole(AppRoleOp),
    /// Response wrapping: wrap (any caller with a valid token), and unwrap, look up or
    /// rewrap, whose wrapping token is their credential.
    Wrapping(WrapOp),
    /// Token roles (`auth/token/roles/:name`; `sudo` on `sys/token`).
    TokenRole(TokenRoleOp),
    /// The fleet: managing it (`sudo` on `sys/fleet`), and a node's enrollment (its own
    /// credential).
    Fleet(FleetOp),
    /// Vault's capabilities of a token on paths: the caller's own (its identity is enough),
    /// or another token's (`sudo` on `sys/token`).
    Capabilities {
        /// Whose.
        of: CapabilitiesOf,
        /// The Vault paths (1 to [`MAX_CAPABILITY_PATHS`]).
        paths: Vec<String>,
    },
}

/// Most paths one `sys/capabilities` request asks about.
pub const MAX_CAPABILITY_PATHS: usize = 64;

/// Whose capabilities `sys/capabilities*` answers.
#[derive(Debug)]
pub enum CapabilitiesOf {
    /// The caller's (`sys/capabilities-self`).
    Caller,
    /// The token given (`sys/capabilities`).
    Token(SecretBytes),
    /// The token with this accessor (`sys/capabilities-accessor`).
    Accessor(String),
}

/// Something done with response wrapping.
#[derive(Debug)]
pub enum WrapOp {
    /// Keep `response` under a new wrapping token for `ttl` seconds.
    Wrap {
        /// The response (the JSON body the wrapped request answered).
        response: SecretBytes,
        /// Its time to live in seconds.
        ttl: u64,
        /// The path whose response it is (`creation_path`).
        path: String,
    },
    /// The wrapped response; the wrapping token is spent.
    Unwrap {
        /// The wrapping token.
        token: SecretBytes,
    },
    /// The wrapping token's record.
    Lookup {
        /// The wrapping token.
        token: SecretBytes,
    },
    /// The response under a new wrapping token with the same TTL; the old one is spent.
    Rewrap {
        /// The wrapping token.
        token: SecretBytes,
    },
}

impl WrapOp {
    /// What it is recorded as.
    pub fn action(&self) -> Action {
        match self {
            Self::Wrap { .. } => Action::Wrap,
            Self::Unwrap { .. } => Action::Unwrap,
            Self::Lookup { .. } => Action::WrapLookup,
            Self::Rewrap { .. } => Action::Rewrap,
        }
    }
}

/// Which change events a watch follows, and from where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchInput {
    /// One namespace (the socket's `watch`: `list` or `meta` on the prefix needed); `None`:
    /// every namespace (HTTP's event subscription: `read` on
    /// `sys/events/subscribe/<subscription>` needed).
    pub namespace: Option<Parsed<Namespace>>,
    /// Only names starting with this.
    pub prefix: Option<String>,
    /// Events after this revision; `None`: from now.
    pub since: Option<u64>,
    /// The event type an HTTP subscription names (`kv-v2/data-*`), for its grant's path.
    pub subscription: Option<String>,
}

/// Which names a `list` wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListInput {
    /// Only names starting with this.
    pub prefix: Option<String>,
    /// Only names after this one (the previous page's cursor).
    pub after: Option<String>,
    /// Most names (default 1000, at most [`MAX_LIST_LIMIT`]).
    pub limit: Option<u64>,
    /// With each secret's metadata (needs `meta` too).
    pub detail: bool,
    /// The revoked secrets instead, with their history (needs `meta` too).
    pub revoked: bool,
    /// Vault's LIST: the keys one level below `prefix` (folders end in `/`), all of them.
    pub folders: bool,
}

/// Most names one `list` page returns.
pub const MAX_LIST_LIMIT: u64 = 10_000;
/// Names a page returns when the request does not say.
pub const DEFAULT_LIST_LIMIT: u64 = 1_000;

/// A token to make.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenInput {
    /// Its policies; none means Vault's `default`.
    pub policies: Vec<String>,
    /// Its time to live in seconds; `None`: 32 days, Vault's default.
    pub ttl: Option<u64>,
    /// A namespace it is confined to (a confined creator's own when not given).
    pub namespace: Option<String>,
    /// A label.
    pub display_name: Option<String>,
    /// Its explicit max TTL in seconds, fixed now: no renewal goes past it (`None` or 0:
    /// the creator's max, or ten years).
    pub max_ttl: Option<u64>,
    /// Made without a parent: revoking its creator leaves it alone. Needs `sudo` on
    /// `sys/token`, and must be asked for.
    pub orphan: bool,
    /// Add the built-in `default` policy (which grants nothing by itself) to those named,
    /// as Vault does unless `no_default_policy` (HTTP); the socket names every policy.
    pub default_policy: bool,
    /// Made through this token role (`auth/token/create/:role`): needs `create` on
    /// `sys/token/roles/<role>` instead of holding the policies, which the role allows.
    pub role: Option<String>,
}

/// Something done to the token roles (`sudo` on `sys/token`).
#[derive(Debug)]
pub enum TokenRoleOp {
    /// Make or change a role (fields not given keep their value, or their default).
    Put {
        /// Its name.
        name: String,
        /// Its settings.
        input: TokenRoleInput,
    },
    /// A role.
    Get {
        /// Its name.
        name: String,
    },
    /// Every role's name.
    List,
    /// Delete a role.
    Delete {
        /// Its name.
        name: String,
    },
}

/// A token role's settings as a write gives them (durations in seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRoleInput {
    /// The policies its tokens may carry.
    pub allowed_policies: Option<Vec<String>>,
    /// Policies its tokens never carry.
    pub disallowed_policies: Option<Vec<String>>,
    /// Its tokens are orphans.
    pub orphan: Option<bool>,
    /// Its tokens' time to live.
    pub token_ttl: Option<u64>,
    /// Its tokens' explicit max time to live.
    pub token_explicit_max_ttl: Option<u64>,
    /// Leave `default` out of its tokens' policies.
    pub token_no_default_policy: Option<bool>,
}

/// A request: one operation, or (for a path whose mount is not yet known) its readings, one
/// per candidate namespace, longest first. The namespace gate, after the caller's identity,
/// picks the first reading whose namespace exists, so a caller with a bad token learns
/// nothing about which namespaces exist; only that reading is then made into an operation.
#[derive(Debug)]
// One per request, moved a few times and never stored in bulk: boxing the operation would
// cost an allocation per request to save a few hundred bytes of stack.
#[allow(clippy::large_enum_variant)]
pub enum Request {
    /// One operation.
    One(Operation),
    /// Readings by namespace.
    FirstMounted(Vec<Candidate>),
}

/// One reading of a request whose mount is not known yet: the namespace it would be in, what
/// it would do (for the record, should it not become an operation), and how to make the
/// operation once this reading is the one chosen (only then is the body parsed).
pub struct Candidate {
    /// The namespace.
    pub namespace: Namespace,
    /// The text the reading's name is in (shared by every reading of one request), and
    /// where its name starts: the secret's name or the prefix the reading is about, as
    /// given (checked against policy, and recorded when valid, should the reading not
    /// become an operation). See [`Candidate::name`].
    pub text: std::sync::Arc<str>,
    /// Where the name starts in `text`.
    pub name_at: usize,
    /// What the reading asks, as recorded when it cannot be made into an operation.
    pub action: Action,
    /// Makes the operation.
    pub build: Box<dyn FnOnce() -> Result<Operation, Rejection> + Send>,
}

impl Candidate {
    /// The reading's name (or prefix) as given.
    pub fn name(&self) -> &str {
        self.text.get(self.name_at..).unwrap_or("")
    }
}

impl std::fmt::Debug for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidate")
            .field("namespace", &self.namespace)
            .field("action", &self.action)
            .field("name_len", &self.name().len())
            .finish_non_exhaustive()
    }
}

/// Why a listener could not make an operation of a request (its body or method does not fit
/// the reading chosen): refused at validation, with this code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The stable code.
    pub code: coffer_types::ErrorCode,
    /// What is wrong, never quoting the request.
    pub message: String,
}

impl From<Operation> for Request {
    fn from(op: Operation) -> Self {
        Self::One(op)
    }
}

impl Operation {
    /// What it does, as the audit log and the metrics name it.
    pub fn action(&self) -> Action {
        match self {
            Self::Secret { op, .. } => op.action(),
            Self::List { .. } => Action::List,
            Self::NamespaceCreate { .. } => Action::NamespaceCreate,
            Self::NamespaceRotateKey { .. } => Action::NamespaceRotateKey,
            Self::RotateMaster { .. } => Action::RotateMaster,
            Self::NamespaceLock { .. } => Action::NamespaceLock,
            Self::NamespaceUnlock { .. } => Action::NamespaceUnlock,
            Self::NamespacePassphrase { .. } => Action::NamespacePassphrase,
            Self::NamespaceList => Action::NamespaceList,
            Self::Mount { .. } => Action::Mount,
            Self::Status => Action::Status,
            Self::Seal => Action::Seal,
            Self::Unseal { .. } => Action::Unseal,
            Self::SlotList => Action::SlotList,
            Self::SlotAdd { .. } => Action::SlotAdd,
            Self::SlotRemove { .. } => Action::SlotRemove,
            Self::SlotReseal { .. } => Action::SlotReseal,
            Self::PolicyPut { .. } => Action::PolicyPut,
            Self::PolicyGet { .. } => Action::PolicyGet,
            Self::PolicyList => Action::PolicyList,
            Self::PolicyDelete { .. } => Action::PolicyDelete,
            Self::SubjectSet { .. } => Action::SubjectSet,
            Self::TokenCreate(_) => Action::TokenCreate,
            Self::TokenList => Action::TokenList,
            Self::TokenRevoke { .. } | Self::TokenRevokeOrphan { .. } => Action::TokenRevoke,
            Self::TokenRenew { .. } => Action::TokenRenew,
            Self::TokenRevokeSelf => Action::TokenRevokeSelf,
            Self::TokenRenewSelf => Action::TokenRenew,
            Self::TokenLookup { .. } => Action::TokenLookup,
            Self::AuditHash { .. } => Action::AuditHash,
            Self::AuditVerify => Action::AuditVerify,
            Self::AuditList => Action::AuditList,
            Self::AuditAcknowledge => Action::AuditAcknowledge,
            Self::Metrics => Action::Metrics,
            Self::Webhook(op) => op.action(),
            Self::Watch(_) => Action::Watch,
            Self::Backup { .. } => Action::Backup,
            Self::AppRole(op) => op.action(),
            Self::Wrapping(op) => op.action(),
            Self::Capabilities { .. } => Action::Capabilities,
            Self::TokenRole(_) => Action::TokenRole,
            Self::Fleet(op) => op.action(),
        }
    }

    /// Whether the operation can run while the store is sealed (gate 1 lets it through):
    /// reading the daemon's state, sealing, unsealing, and listing the slots to unseal with.
    pub(crate) fn runs_sealed(&self) -> bool {
        matches!(
            self,
            Self::Status | Self::Seal | Self::Unseal { .. } | Self::SlotList | Self::AuditVerify
        )
    }
}

/// The capabilities an action needs at least (any one of them), before its fields are
/// known: checked for a request that could not be made into an operation, so a caller the
/// policy refuses hears `denied` before it hears what is wrong with its input.
pub fn least_capabilities(action: Action) -> &'static [coffer_types::Capability] {
    use coffer_types::Capability::*;
    match action {
        Action::Get | Action::Hmac | Action::BasicAuth | Action::Yescrypt => &[Read],
        Action::Set => &[Create, Update],
        Action::Patch | Action::Describe => &[Update],
        Action::Generate => &[Generate],
        Action::Rotate => &[Rotate],
        Action::Delete | Action::Undelete | Action::Revoke => &[Revoke],
        Action::Destroy | Action::Del => &[Destroy],
        Action::Meta | Action::Versions => &[Meta],
        Action::List => &[List],
        _ => &[],
    }
}

impl Request {
    /// What the request does, as recorded before its mount is known (the first reading's).
    pub fn action(&self) -> Option<Action> {
        match self {
            Self::One(op) => Some(op.action()),
            Self::FirstMounted(readings) => readings.first().map(|c| c.action),
        }
    }

    /// Whether gate 1 lets the request through while the store is sealed.
    pub(crate) fn runs_sealed(&self) -> bool {
        matches!(self, Self::One(op) if op.runs_sealed())
    }

    /// Whether it is an unseal that carries its own key as its authority.
    pub(crate) fn unseals_by_key(&self) -> bool {
        matches!(self, Self::One(Operation::Unseal { by_key: true, .. }))
    }

    /// Whether it carries its own credential instead of a token: an AppRole login (its
    /// role-id and secret-id), or an unwrap, lookup or rewrap (its wrapping token).
    pub(crate) fn logs_in(&self) -> bool {
        matches!(
            self,
            Self::One(
                Operation::AppRole(AppRoleOp::Login { .. })
                    | Operation::Fleet(FleetOp::Enroll { .. })
                    | Operation::Wrapping(
                        WrapOp::Unwrap { .. } | WrapOp::Lookup { .. } | WrapOp::Rewrap { .. }
                    )
            )
        )
    }
}
