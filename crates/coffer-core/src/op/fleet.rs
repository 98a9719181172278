//! The fleet's operations: managing it (`coffer fleet ...`, `sudo` on `sys/fleet`) and a
//! node's enrollment (its join token or pre-authorized key is its credential).

use coffer_crypto::SecretBytes;
use coffer_types::Action;

/// Something done to the fleet.
#[derive(Debug)]
#[non_exhaustive]
pub enum FleetOp {
    /// Mint a join token (shown once, stored hashed).
    TokenCreate {
        /// The tags a node joining with it takes.
        tags: Vec<String>,
        /// How many nodes may join with it (at least 1).
        uses: u32,
        /// How long it lasts, in seconds.
        ttl_secs: u64,
    },
    /// The join tokens (never their secrets).
    TokenList,
    /// Revoke a join token by id.
    TokenRevoke {
        /// Its id.
        id: String,
    },
    /// Pre-authorize a node by its public key (it joins with no token).
    NodeAdd {
        /// Its X25519 public key (base64url, 43 characters).
        key: String,
        /// Its tags.
        tags: Vec<String>,
    },
    /// The nodes.
    NodeList,
    /// Add and remove a node's tags (`+t`, `-t`).
    NodeTag {
        /// Its id.
        node: String,
        /// Tags added.
        add: Vec<String>,
        /// Tags removed.
        remove: Vec<String>,
    },
    /// Disable or enable a node: a disabled node's stream is closed and it receives
    /// nothing until it is enabled again.
    NodeEnable {
        /// Its id.
        node: String,
        /// Enabled or not.
        enabled: bool,
    },
    /// Remove a node: its certificate is revoked and its stream closed at once.
    NodeRemove {
        /// Its id.
        node: String,
    },
    /// Add and remove a secret's fleet tags.
    SecretTag {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Tags added.
        add: Vec<String>,
        /// Tags removed.
        remove: Vec<String>,
    },
    /// Assign the secrets under a prefix of a namespace to the nodes with a tag.
    Assign {
        /// The nodes' tag.
        tag: String,
        /// The namespace.
        namespace: String,
        /// The prefix of names (empty: every secret of the namespace).
        prefix: String,
    },
    /// Remove an assignment rule.
    Unassign {
        /// The nodes' tag.
        tag: String,
        /// The namespace.
        namespace: String,
        /// The prefix.
        prefix: String,
    },
    /// The assignment rules.
    Rules,
    /// A provisioning bundle for nodes with `tags`: the secrets assigned to them and a
    /// one-use join token, under a one-time key; both answered once.
    BundleCreate {
        /// The tags.
        tags: Vec<String>,
        /// Hub addresses the bundled node tries (`host:port`).
        hubs: Vec<String>,
    },
    /// A node joins: a join token, or none for a pre-authorized key.
    Enroll {
        /// The join token.
        token: Option<SecretBytes>,
        /// Its X25519 public key (base64url).
        key: String,
        /// Its TLS public key to certify (an uncompressed P-256 point).
        tls_key: Vec<u8>,
        /// Its host name.
        hostname: Option<String>,
    },
}

impl FleetOp {
    /// What it does, as the audit log names it.
    pub fn action(&self) -> Action {
        match self {
            Self::Enroll { .. } => Action::FleetEnroll,
            _ => Action::Fleet,
        }
    }

    /// The verb, as the socket's `verb` field and the audit log's name field say it.
    pub fn verb(&self) -> &'static str {
        match self {
            Self::TokenCreate { .. } => "token_create",
            Self::TokenList => "token_list",
            Self::TokenRevoke { .. } => "token_revoke",
            Self::NodeAdd { .. } => "node_add",
            Self::NodeList => "node_list",
            Self::NodeTag { .. } => "node_tag",
            Self::NodeEnable { enabled: true, .. } => "node_enable",
            Self::NodeEnable { enabled: false, .. } => "node_disable",
            Self::NodeRemove { .. } => "node_remove",
            Self::SecretTag { .. } => "secret_tag",
            Self::Assign { .. } => "assign",
            Self::Unassign { .. } => "unassign",
            Self::Rules => "rules",
            Self::BundleCreate { .. } => "bundle_create",
            Self::Enroll { .. } => "enroll",
        }
    }
}
