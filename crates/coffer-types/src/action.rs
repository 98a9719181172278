//! The one list of things a request can do: the socket's `action` words, the audit record's
//! `action`, the operation layer's dispatch and the metrics' labels all use [`Action`].

string_enum! {
    /// What a request does. The string is the socket's `action` and the audit log's.
    pub enum Action {
        /// Store a value (a new version when the name exists).
        Set = "set",
        /// Read the latest value, or `version`.
        Get = "get",
        /// Delete a secret and all its versions.
        Del = "del",
        /// Report seal state and store facts; never a value or a name.
        Status = "status",
        /// Flush the cache and forget the keys.
        Seal = "seal",
        /// Open the master key through a slot.
        Unseal = "unseal",
        /// Names in a namespace (prefix, paging), never values.
        List = "list",
        /// A secret's metadata, never its value.
        Meta = "meta",
        /// A secret's version history.
        Versions = "versions",
        /// Mint a value for a new secret; it is answered once.
        Generate = "generate",
        /// A new version of an existing secret (a given value, or a minted one).
        Rotate = "rotate",
        /// Change a secret's metadata (description, limits, custom metadata).
        Describe = "describe",
        /// Soft-delete a secret: kept for audit, unreadable, the name freed.
        Revoke = "revoke",
        /// Erase chosen versions' ciphertexts.
        Destroy = "destroy",
        /// HMAC of caller data under a secret key.
        Hmac = "hmac",
        /// The HTTP basic-auth header for a user and a password secret.
        BasicAuth = "basic_auth",
        /// A yescrypt password hash (crypt(3)'s `$y$`) of a password secret.
        Yescrypt = "yescrypt",
        /// The namespaces.
        NamespaceList = "namespace_list",
        /// Create a namespace.
        NamespaceCreate = "namespace_create",
        /// Replace the store's master key (every slot and namespace key re-wrapped).
        RotateMaster = "rotate_master",
        /// Start a rotation of a namespace's key (a new generation; re-encryption in the
        /// background).
        NamespaceRotateKey = "namespace_rotate_key",
        /// Lock a namespace: forget its key and flush its cached values until it is unlocked.
        NamespaceLock = "namespace_lock",
        /// Unlock a namespace with its passphrase.
        NamespaceUnlock = "namespace_unlock",
        /// Set or change a namespace's passphrase (the wrap that lets it be locked).
        NamespacePassphrase = "namespace_passphrase",
        /// The key slots (kind, PCR policy, creation time).
        SlotList = "slot_list",
        /// Add a key slot (the store must be unsealed).
        SlotAdd = "slot_add",
        /// Remove a key slot; never the last one.
        SlotRemove = "slot_remove",
        /// Seal TPM slots' node keys to the PCRs' current values.
        SlotReseal = "slot_reseal",
        /// Put a policy.
        PolicyPut = "policy_put",
        /// One policy's rules.
        PolicyGet = "policy_get",
        /// Every policy and binding.
        PolicyList = "policy_list",
        /// Delete a policy.
        PolicyDelete = "policy_delete",
        /// Bind a subject to policies.
        SubjectSet = "subject_set",
        /// Make a token (shown once).
        TokenCreate = "token_create",
        /// Every live token's record.
        TokenList = "token_list",
        /// Revoke a token by accessor.
        TokenRevoke = "token_revoke",
        /// A token's record: by accessor, or the caller's own.
        TokenLookup = "token_lookup",
        /// The audit log's hash of a name or namespace.
        AuditHash = "audit_hash",
        /// Verify the audit log's chain and checkpoint.
        AuditVerify = "audit_verify",
        /// Acknowledge a gap the audit log's check at unseal found (writes a gap record).
        AuditAcknowledge = "audit_acknowledge",
        /// The audit devices (the built-in log), as Vault's `sys/audit` lists them.
        AuditList = "audit_list",
        /// A stream of the change events the caller may see (NDJSON), until it closes.
        Watch = "watch",
        /// A new version of a KV secret: a JSON merge patch of its newest value.
        Patch = "patch",
        /// Soft-delete versions (KV v2's `delete`): unreadable until undeleted.
        Delete = "delete",
        /// Make soft-deleted versions readable again.
        Undelete = "undelete",
        /// Revoke the token the request carries.
        TokenRevokeSelf = "token_revoke_self",
        /// Renew the token the request carries.
        TokenRenew = "token_renew",
        /// Read the daemon's metrics.
        Metrics = "metrics",
        /// Which mount serves a path (the Vault CLIs ask before each `kv` command).
        Mount = "mount",
        /// Add a webhook (its signing secret is shown once).
        WebhookAdd = "webhook_add",
        /// The webhooks (never their secrets).
        WebhookList = "webhook_list",
        /// Remove a webhook.
        WebhookRemove = "webhook_remove",
        /// Send a webhook a test delivery now.
        WebhookTest = "webhook_test",
        /// How each webhook's deliveries stand.
        WebhookStatus = "webhook_status",
        /// The daemon's own work: one attempt to deliver an event to a webhook (recorded,
        /// never asked for).
        WebhookDeliver = "webhook_deliver",
        /// An encrypted backup of the whole store, streamed (age v1 to the caller's
        /// recipients).
        Backup = "backup",
        /// Manage AppRole roles and their secret-ids (HTTP `auth/approle/role/...`; the
        /// socket's `verb` field says what is done).
        Approle = "approle",
        /// Log in with an AppRole role-id and secret-id: a token for the role's policies.
        ApproleLogin = "approle_login",
        /// Wrap a response under a single-use wrapping token (`X-Vault-Wrap-TTL`,
        /// `sys/wrapping/wrap`).
        Wrap = "wrap",
        /// Unwrap a wrapped response: its wrapping token is spent.
        Unwrap = "unwrap",
        /// A wrapping token's record (never its response).
        WrapLookup = "wrap_lookup",
        /// Move a wrapped response under a new wrapping token (the old one is spent).
        Rewrap = "rewrap",
        /// Vault's capabilities of a token on paths (`sys/capabilities*`).
        Capabilities = "capabilities",
        /// Manage token roles (HTTP `auth/token/roles/...`).
        TokenRole = "token_role",
        /// Manage the fleet: join tokens, nodes, tags, assignment rules, bundles (the
        /// socket's `verb` field says what is done).
        Fleet = "fleet",
        /// A node joins the fleet with a join token or a pre-authorized key (its own
        /// credential; the fleet listener's, never the socket's).
        FleetEnroll = "fleet_enroll",
        /// The daemon's own work on a hub: secrets sent to a node (recorded, never asked for).
        FleetSync = "fleet_sync",
        /// The daemon's own work on a node: a secret the hub sent written or removed
        /// (recorded, never asked for).
        FleetApply = "fleet_apply",
    }
    /// An `action` string that is not one of ours.
    error UnknownAction = "unknown action; expected one of set, get, del, list, meta, versions, \
        generate, rotate, describe, revoke, destroy, hmac, basic_auth, yescrypt, namespace_list, \
        namespace_create, namespace_lock, namespace_unlock, namespace_passphrase, status, seal, \
        unseal, slot_list, slot_add, slot_remove, slot_reseal, \
        policy_put, policy_get, policy_list, policy_delete, subject_set, token_create, \
        token_list, token_revoke, token_lookup, token_renew, token_revoke_self, audit_hash, \
        audit_verify, audit_acknowledge, patch, webhook_add, webhook_list, webhook_remove, \
        webhook_test, webhook_status, backup, approle, approle_login, fleet";
}

impl Action {
    /// Whether the action can change what the store or the daemon holds (so a failure to
    /// record it after it was carried out is worth saying).
    pub const fn changes_state(self) -> bool {
        !matches!(
            self,
            Self::Get
                | Self::Meta
                | Self::Versions
                | Self::List
                | Self::Hmac
                | Self::BasicAuth
                | Self::Yescrypt
                | Self::NamespaceList
                | Self::Status
                | Self::SlotList
                | Self::PolicyGet
                | Self::PolicyList
                | Self::TokenList
                | Self::TokenLookup
                | Self::AuditHash
                | Self::AuditVerify
                | Self::AuditList
                | Self::Metrics
                | Self::Mount
                | Self::WebhookList
                | Self::WebhookStatus
                | Self::WrapLookup
                | Self::Capabilities
        )
    }

    /// Whether the local socket protocol takes this action by name (the rest are reached
    /// through the HTTP API's routes).
    pub const fn on_socket(self) -> bool {
        !matches!(
            self,
            Self::Delete
                | Self::Undelete
                | Self::Metrics
                | Self::Mount
                | Self::WebhookDeliver
                | Self::AuditList
                | Self::Wrap
                | Self::Unwrap
                | Self::WrapLookup
                | Self::Rewrap
                | Self::Capabilities
                | Self::TokenRole
                | Self::FleetEnroll
                | Self::FleetSync
                | Self::FleetApply
        )
    }

    /// Whether an operator's action, logged at info (`secret_action`); data-plane reads and
    /// writes log at debug, as their frequency would drown the operators' actions.
    pub const fn is_operator_action(self) -> bool {
        self.changes_state() && !matches!(self, Self::Set | Self::Patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_and_index_their_table() {
        for (i, &a) in Action::ALL.iter().enumerate() {
            assert_eq!(a.as_str().parse::<Action>().unwrap(), a);
            assert_eq!(a.index(), i);
        }
        assert!("list_all".parse::<Action>().is_err());
        assert!(Action::Set.changes_state() && !Action::Get.changes_state());
        assert!(Action::Get.on_socket() && !Action::Mount.on_socket());
        assert!(Action::Rotate.is_operator_action() && !Action::Set.is_operator_action());
    }
}
