//! Token roles (Vault's `auth/token/roles/:name`): what a token made through a role
//! (`auth/token/create/:name`) may carry, kept in the store's own namespace at
//! `token-roles/<name>` (kind `kv`). A role lets a caller make tokens with policies it does
//! not hold itself, within the role's `allowed_policies`; managing roles needs `sudo` on
//! `sys/token`, and making a token through one `create` on `sys/token/roles/<name>`.

use std::sync::Arc;

use coffer_store::SecretStore;
use serde::{Deserialize, Serialize};

use super::records::{encode, get, names, put, remove};
use crate::CoreError;

const ROLES: &str = "token-roles/";

/// The most policies a role names (allowed and disallowed each).
pub const MAX_ROLE_POLICIES: usize = 64;

/// A token role.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenRole {
    /// Its name.
    pub name: String,
    /// The policies a token made through it may carry, the creator's own or not (none: only
    /// policies the creator holds, as without a role).
    pub allowed_policies: Vec<String>,
    /// Policies a token made through it never carries.
    pub disallowed_policies: Vec<String>,
    /// Its tokens are orphans (no parent: revoking their creator leaves them alone).
    pub orphan: bool,
    /// Its tokens' time to live in seconds (0: the default).
    pub token_ttl: u64,
    /// Its tokens' explicit max time to live in seconds (0: none).
    pub token_explicit_max_ttl: u64,
    /// Leave `default` out of its tokens' policies.
    pub token_no_default_policy: bool,
}

/// A role, if it exists.
pub fn role(store: &Arc<dyn SecretStore>, name: &str) -> Result<Option<TokenRole>, CoreError> {
    get(store, &format!("{ROLES}{name}"), "token role")
}

/// Writes a role.
pub fn save(store: &Arc<dyn SecretStore>, role: &TokenRole) -> Result<(), CoreError> {
    put(
        store,
        &format!("{ROLES}{}", role.name),
        encode("a token role", role)?,
    )
}

/// Deletes a role; answers whether it existed.
pub fn delete(store: &Arc<dyn SecretStore>, name: &str) -> Result<bool, CoreError> {
    remove(store, &format!("{ROLES}{name}"))
}

/// Every role's name.
pub fn role_names(store: &Arc<dyn SecretStore>) -> Result<Vec<String>, CoreError> {
    names(store, ROLES)
}

impl TokenRole {
    /// The policies a token made through the role carries, for `asked` (none: the allowed
    /// ones), or why not. `holds` answers whether the creator holds a policy (the rule when
    /// the role allows none of its own). Disallowed policies are never carried.
    pub fn policies(
        &self,
        asked: &[String],
        holds: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, String> {
        let wanted: Vec<String> = if asked.is_empty() {
            self.allowed_policies
                .iter()
                .filter(|p| !self.disallowed_policies.contains(p))
                .cloned()
                .collect()
        } else {
            asked.to_vec()
        };
        for p in &wanted {
            if self.disallowed_policies.contains(p) {
                return Err(format!("token role {} disallows the policy {p}", self.name));
            }
            // `default` needs no place in the list (as in Vault), but the creator must hold
            // it, as for the default a token is given.
            let allowed = if self.allowed_policies.is_empty() || p == super::DEFAULT_POLICY {
                holds(p)
            } else {
                self.allowed_policies.contains(p)
            };
            if !allowed || p == super::ROOT_POLICY {
                return Err(format!(
                    "token role {} does not allow the policy {p}{}",
                    self.name,
                    if self.allowed_policies.is_empty() {
                        " (it allows none of its own: only policies the creator holds)"
                    } else {
                        ""
                    }
                ));
            }
        }
        Ok(wanted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_allows_its_policies_and_never_root_or_a_disallowed_one() {
        let role = TokenRole {
            name: "ci".into(),
            allowed_policies: vec!["app".into(), "deploy".into()],
            disallowed_policies: vec!["deploy".into()],
            ..TokenRole::default()
        };
        let none = |_: &str| false;
        assert_eq!(role.policies(&[], none).unwrap(), ["app"]);
        assert_eq!(role.policies(&["app".into()], none).unwrap(), ["app"]);
        assert!(role.policies(&["deploy".into()], none).is_err());
        assert!(role.policies(&["other".into()], none).is_err());
        let open = TokenRole {
            name: "open".into(),
            ..TokenRole::default()
        };
        assert!(open.policies(&["app".into()], none).is_err());
        assert_eq!(open.policies(&["app".into()], |_| true).unwrap(), ["app"]);
        // Not even a creator holding root makes a root token through a role.
        assert!(open.policies(&["root".into()], |_| true).is_err());
    }
}
