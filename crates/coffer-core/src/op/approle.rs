//! AppRole, Vault's machine login: roles (the policies a login gets), their role-ids and
//! secret-ids, and the login itself. Managing roles and secret-ids needs `sudo` on
//! `sys/approle`; a login needs no token (its role-id and secret-id are the credential).

use std::collections::BTreeMap;

use coffer_crypto::SecretBytes;
use coffer_types::Action;

/// Something done with AppRole.
#[derive(Debug)]
#[non_exhaustive]
pub enum AppRoleOp {
    /// Make or change a role.
    RolePut {
        /// Its name.
        name: String,
        /// Its settings (fields not given keep their value, or their default).
        input: RoleInput,
    },
    /// A role's settings.
    RoleGet {
        /// Its name.
        name: String,
    },
    /// Every role's name.
    RoleList,
    /// Delete a role and its secret-ids.
    RoleDelete {
        /// Its name.
        name: String,
    },
    /// A role's role-id.
    RoleIdGet {
        /// Its name.
        name: String,
    },
    /// Set a role's role-id.
    RoleIdSet {
        /// Its name.
        name: String,
        /// The new role-id.
        role_id: String,
    },
    /// Make a secret-id for a role (shown once).
    SecretIdCreate {
        /// The role.
        name: String,
        /// Its settings.
        input: SecretIdInput,
    },
    /// A secret-id's record, by the secret-id.
    SecretIdLookup {
        /// The role.
        name: String,
        /// The secret-id.
        secret_id: SecretBytes,
    },
    /// Destroy a secret-id.
    SecretIdDestroy {
        /// The role.
        name: String,
        /// The secret-id.
        secret_id: SecretBytes,
    },
    /// A secret-id's record, by its accessor.
    AccessorLookup {
        /// The role.
        name: String,
        /// The accessor.
        accessor: String,
    },
    /// Destroy a secret-id by its accessor.
    AccessorDestroy {
        /// The role.
        name: String,
        /// The accessor.
        accessor: String,
    },
    /// The accessors of a role's live secret-ids.
    SecretIdList {
        /// The role.
        name: String,
    },
    /// Log in: a token carrying the role's policies.
    Login {
        /// The role-id.
        role_id: String,
        /// The secret-id.
        secret_id: SecretBytes,
    },
}

impl AppRoleOp {
    /// What it is recorded as.
    pub fn action(&self) -> Action {
        match self {
            Self::Login { .. } => Action::ApproleLogin,
            _ => Action::Approle,
        }
    }

    /// The role it acts on, when it names one.
    pub fn role(&self) -> Option<&str> {
        match self {
            Self::RolePut { name, .. }
            | Self::RoleGet { name }
            | Self::RoleDelete { name }
            | Self::RoleIdGet { name }
            | Self::RoleIdSet { name, .. }
            | Self::SecretIdCreate { name, .. }
            | Self::SecretIdLookup { name, .. }
            | Self::SecretIdDestroy { name, .. }
            | Self::AccessorLookup { name, .. }
            | Self::AccessorDestroy { name, .. }
            | Self::SecretIdList { name } => Some(name),
            Self::RoleList | Self::Login { .. } => None,
        }
    }
}

/// A role's settings as a write gives them (durations in seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleInput {
    /// The policies its tokens carry.
    pub token_policies: Option<Vec<String>>,
    /// How long a secret-id lives (0: until destroyed).
    pub secret_id_ttl: Option<u64>,
    /// How many logins a secret-id allows (0: any number).
    pub secret_id_num_uses: Option<u64>,
    /// Its tokens' time to live (0: the default).
    pub token_ttl: Option<u64>,
    /// Its tokens' max time to live (0: the default).
    pub token_max_ttl: Option<u64>,
    /// Leave `default` out of its tokens' policies.
    pub token_no_default_policy: Option<bool>,
}

/// A secret-id's settings as its creation gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretIdInput {
    /// Metadata kept with it (shown on lookup).
    pub metadata: BTreeMap<String, String>,
    /// Its time to live in seconds (`None`: the role's).
    pub ttl: Option<u64>,
    /// How many logins it allows (`None`: the role's).
    pub num_uses: Option<u64>,
}
