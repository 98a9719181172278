//! Gate 7 (with its validation) for token roles: managing them (`sudo` on `sys/token`, gate
//! 5 in `gates`), and applying one to a token made through it (`create` on
//! `sys/token/roles/<name>` at gate 5; here, the role's policies, TTLs and orphan flag).

use std::sync::{Mutex, PoisonError};

use coffer_store::StoreError;

use super::state::{Gated, Service, blocking, invalid, stored};
use crate::access::approle::{MAX_ROLE_NAME, valid_role_name};
use crate::access::token::MAX_TOKEN_TTL;
use crate::access::token_role::{self, MAX_ROLE_POLICIES, TokenRole};
use crate::op::{TokenInput, TokenRoleInput, TokenRoleOp};
use crate::{CoreError, Gate, Refusal, Reply};

/// Serializes changes to the token roles (a read-modify-write each).
static CHANGING: Mutex<()> = Mutex::new(());

/// Checks a role's name: Vault's role names, as AppRole's (gate 5 checks it for a token
/// made through a role).
pub(super) fn check_role_name(name: &str) -> Gated<()> {
    if valid_role_name(name) {
        Ok(())
    } else {
        Err(invalid(format!(
            "a token role's name is 1 to {MAX_ROLE_NAME} of A-Z a-z 0-9 _ - . (not {} bytes as \
             given)",
            name.len()
        )))
    }
}

fn check_input(input: &TokenRoleInput) -> Gated<()> {
    for list in [&input.allowed_policies, &input.disallowed_policies]
        .into_iter()
        .flatten()
    {
        if list.len() > MAX_ROLE_POLICIES {
            return Err(invalid(format!(
                "a token role names at most {MAX_ROLE_POLICIES} policies in each list"
            )));
        }
        if let Some(p) = list.iter().find(|p| p.is_empty() || p.len() > 128) {
            return Err(invalid(format!(
                "a policy name is 1 to 128 bytes (one is {} bytes)",
                p.len()
            )));
        }
    }
    for secs in [input.token_ttl, input.token_explicit_max_ttl]
        .into_iter()
        .flatten()
    {
        if secs > MAX_TOKEN_TTL.as_secs() {
            return Err(invalid(format!(
                "a token role's TTLs are at most 10 years ({} seconds)",
                MAX_TOKEN_TTL.as_secs()
            )));
        }
    }
    Ok(())
}

fn changed(mut role: TokenRole, input: TokenRoleInput) -> TokenRole {
    let tidy = |mut v: Vec<String>| {
        v.sort();
        v.dedup();
        v
    };
    if let Some(p) = input.allowed_policies {
        role.allowed_policies = tidy(p);
    }
    if let Some(p) = input.disallowed_policies {
        role.disallowed_policies = tidy(p);
    }
    role.orphan = input.orphan.unwrap_or(role.orphan);
    role.token_ttl = input.token_ttl.unwrap_or(role.token_ttl);
    role.token_explicit_max_ttl = input
        .token_explicit_max_ttl
        .unwrap_or(role.token_explicit_max_ttl);
    role.token_no_default_policy = input
        .token_no_default_policy
        .unwrap_or(role.token_no_default_policy);
    role
}

impl Service {
    pub(super) async fn token_roles(
        &self,
        who: &crate::access::Principal,
        op: TokenRoleOp,
    ) -> Gated<Reply> {
        match &op {
            TokenRoleOp::Put { name, input } => {
                check_role_name(name)?;
                check_input(input)?;
                // No escalation: a role allows only policies its writer holds, never root.
                if let Some(p) = input.allowed_policies.iter().flatten().find(|p| {
                    p.as_str() == crate::access::ROOT_POLICY || !self.access.holds(who, p)
                }) {
                    return Err(Refusal::at(
                        Gate::Policy,
                        CoreError::Denied(format!(
                            "{} may not let a token role give the policy {p}: a role allows \
                             only policies its writer holds, and never root",
                            who.describe()
                        )),
                    ));
                }
            }
            TokenRoleOp::Get { name } | TokenRoleOp::Delete { name } => check_role_name(name)?,
            TokenRoleOp::List => {}
        }
        let store = self.store()?;
        blocking(move || {
            let _changing = CHANGING.lock().unwrap_or_else(PoisonError::into_inner);
            Ok(match op {
                TokenRoleOp::Put { name, input } => {
                    let role = token_role::role(&store, &name)?.unwrap_or(TokenRole {
                        name,
                        ..TokenRole::default()
                    });
                    token_role::save(&store, &changed(role, input))?;
                    Reply::Done
                }
                TokenRoleOp::Get { name } => Reply::TokenRole(Box::new(
                    token_role::role(&store, &name)?
                        .ok_or(CoreError::Store(StoreError::NotFound("token role")))?,
                )),
                TokenRoleOp::List => {
                    let names = token_role::role_names(&store)?;
                    if names.is_empty() {
                        return Err(CoreError::Store(StoreError::NotFound("token role")));
                    }
                    Reply::Keys(names)
                }
                TokenRoleOp::Delete { name } => {
                    token_role::delete(&store, &name)?;
                    Reply::Done
                }
            })
        })
        .await
        .map_err(stored)
    }

    /// Applies the role a token is made through: its policies (what was asked, or the
    /// role's), its TTLs where the request gave none, its orphan and default-policy
    /// settings. A role that does not exist, or does not allow what was asked, refuses.
    pub(super) async fn apply_role(
        &self,
        who: &crate::access::Principal,
        name: &str,
        mut input: TokenInput,
    ) -> Gated<TokenInput> {
        // (The role's name was checked at gate 5, before `create` on it was.)
        let store = self.store()?;
        let owned = name.to_owned();
        let role = blocking(move || token_role::role(&store, &owned))
            .await
            .map_err(stored)?
            .ok_or_else(|| invalid(format!("there is no token role named {name}")))?;
        input.policies = role
            .policies(&input.policies, |p| self.access.holds(who, p))
            .map_err(|m| Refusal::at(Gate::Policy, CoreError::Denied(m)))?;
        if input.policies.is_empty() {
            return Err(invalid(format!(
                "token role {name} names no allowed policy: name the policies (it allows those \
                 the caller holds)"
            )));
        }
        if input.ttl.is_none_or(|t| t == 0) && role.token_ttl > 0 {
            input.ttl = Some(role.token_ttl);
        }
        if role.token_explicit_max_ttl > 0 {
            let asked = input.max_ttl.filter(|&m| m > 0);
            input.max_ttl = Some(asked.map_or(role.token_explicit_max_ttl, |m| {
                m.min(role.token_explicit_max_ttl)
            }));
        }
        input.orphan |= role.orphan;
        input.default_policy &= !role.token_no_default_policy;
        Ok(input)
    }
}
