//! Gate 7 (with its validation) for tokens: making, listing, looking up, renewing and
//! revoking them. Making a token needs `create` on `sys/token` and only gives policies the
//! creator holds (gate 5, `AccessControl::check_token_create`); managing others' tokens
//! needs `sudo` there; a token's own lookup, renewal and revocation need only the token.

use std::time::Duration;

use coffer_types::Namespace;

use super::state::invalid;
use super::state::{Gated, Service, blocking, stored};
use crate::access::token::{DEFAULT_TOKEN_TTL, MAX_TOKEN_TTL};
use crate::access::{DEFAULT_POLICY, Principal, ROOT_POLICY, TokenSpec};
use crate::op::{Operation, TokenInput};
use crate::{CoreError, Gate, Refusal, Reply};

/// The longest display name, in bytes.
const MAX_DISPLAY_NAME: usize = 128;

impl Service {
    pub(super) async fn tokens(&self, who: &Principal, op: Operation) -> Gated<Reply> {
        match op {
            Operation::TokenCreate(input) => self.create_token(who, input).await,
            Operation::TokenList => Ok(Reply::Tokens(
                self.access.tokens().iter().map(|t| (**t).clone()).collect(),
            )),
            Operation::TokenRevoke { accessor } => {
                let store = self.store()?;
                let (access, actor) = (self.access.clone(), who.actor());
                blocking(move || access.revoke_token(&store, &accessor, &actor))
                    .await
                    .map(Reply::TokensRevoked)
                    .map_err(stored)
            }
            Operation::TokenRevokeOrphan { accessor } => {
                let store = self.store()?;
                let (access, actor) = (self.access.clone(), who.actor());
                blocking(move || access.revoke_token_orphan(&store, &accessor, &actor))
                    .await
                    .map(Reply::TokensRevoked)
                    .map_err(stored)
            }
            Operation::TokenRenew { accessor } => {
                let store = self.store()?;
                let (access, actor) = (self.access.clone(), who.actor());
                blocking(move || access.renew_token(&store, &accessor, &actor))
                    .await
                    .map(|record| Reply::TokenInfo(Box::new(record)))
                    .map_err(stored)
            }
            Operation::TokenLookup {
                accessor: Some(accessor),
            } => self
                .access
                .token(&accessor)
                .map(|t| Reply::TokenInfo(Box::new((*t).clone())))
                .ok_or_else(|| {
                    Refusal::at(
                        Gate::Store,
                        CoreError::Store(coffer_store::StoreError::NotFound("token")),
                    )
                }),
            Operation::TokenLookup { accessor: None } => match &who.token {
                Some(t) => Ok(Reply::TokenInfo(Box::new((**t).clone()))),
                None => Err(invalid(
                    "this request carries no token; give an accessor to look one up",
                )),
            },
            Operation::TokenRevokeSelf => {
                let store = self.store()?;
                let Some(token) = &who.token else {
                    return Err(invalid("this request carries no token to revoke"));
                };
                let (access, accessor, actor) =
                    (self.access.clone(), token.accessor.clone(), who.actor());
                blocking(move || access.revoke_token(&store, &accessor, &actor))
                    .await
                    .map(Reply::TokensRevoked)
                    .map_err(stored)
            }
            Operation::TokenRenewSelf => {
                let store = self.store()?;
                let Some(token) = &who.token else {
                    return Err(invalid("this request carries no token to renew"));
                };
                let (access, accessor, actor) =
                    (self.access.clone(), token.accessor.clone(), who.actor());
                blocking(move || access.renew_token(&store, &accessor, &actor))
                    .await
                    .map(|record| Reply::TokenInfo(Box::new(record)))
                    .map_err(stored)
            }
            _ => Err(invalid("not a token operation")),
        }
    }

    /// The accessor of a token given in a request's body (Vault's `auth/token/lookup`,
    /// `revoke`, `renew` name the token itself), so the operation names it by accessor:
    /// the audit record and every message then carry the accessor, never the token. An
    /// unknown, revoked or expired token answers `None`; the caller then still goes through
    /// the gates (with an accessor that matches nothing), so a caller without the grant
    /// learns nothing about the token.
    pub fn token_accessor(&self, token: &coffer_crypto::SecretBytes) -> Option<String> {
        self.access.accessor_of(token)
    }

    async fn create_token(&self, who: &Principal, mut input: TokenInput) -> Gated<Reply> {
        if let Some(role) = input.role.take() {
            input = self.apply_role(who, &role, input).await?;
        }
        let store = self.store()?;
        let ttl = input
            .ttl
            .filter(|&t| t > 0)
            .map_or(DEFAULT_TOKEN_TTL, Duration::from_secs);
        if ttl > MAX_TOKEN_TTL {
            return Err(invalid("a token's ttl is between 1 second and 10 years"));
        }
        let max_ttl = input
            .max_ttl
            .filter(|&t| t > 0)
            .map_or(MAX_TOKEN_TTL, Duration::from_secs);
        if max_ttl > MAX_TOKEN_TTL {
            return Err(invalid(
                "a token's explicit max ttl is between 1 second and 10 years",
            ));
        }
        if input
            .display_name
            .as_ref()
            .is_some_and(|d| d.len() > MAX_DISPLAY_NAME)
        {
            return Err(invalid(format!(
                "a display name is at most {MAX_DISPLAY_NAME} bytes"
            )));
        }
        if let Some(ns) = &input.namespace {
            Namespace::parse(ns)
                .map_err(|e| Refusal::at(Gate::Validation, CoreError::InvalidName(e)))?;
        }
        for (i, p) in input.policies.iter().enumerate() {
            if input.policies[..i].contains(p) {
                return Err(invalid(format!(
                    "the policy {p} is named twice; name each policy once"
                )));
            }
        }
        let mut policies = if input.policies.is_empty() {
            vec![DEFAULT_POLICY.to_owned()]
        } else {
            input.policies
        };
        // Vault's `default` rides along, but never to a creator that lacks it (a policy
        // file may give `default` grants; no token passes on more than it holds).
        if input.default_policy
            && !policies
                .iter()
                .any(|p| p == DEFAULT_POLICY || p == ROOT_POLICY)
            && self.access.holds(who, DEFAULT_POLICY)
        {
            // Vault's order: sorted. (A root token carries `root` alone, as in Vault.)
            policies.push(DEFAULT_POLICY.to_owned());
            policies.sort();
        }
        let access = self.access.clone();
        let actor = who.actor();
        let spec = TokenSpec {
            policies,
            ttl,
            namespace: input.namespace,
            display_name: input.display_name,
            max_ttl,
            // A token's child, unless it asked for an orphan (gate 5 checked it may).
            parent: who
                .token
                .as_ref()
                .filter(|_| !input.orphan)
                .map(|t| t.accessor.clone()),
            ceiling: None,
        };
        let minted = blocking(move || access.create_token(&store, spec, &actor))
            .await
            .map_err(|e| match e {
                e @ CoreError::InvalidRequest(_) => Refusal::at(Gate::Validation, e),
                e @ CoreError::Unauthenticated(_) => Refusal::at(Gate::Identity, e),
                e => stored(e),
            })?;
        Ok(Reply::TokenCreated {
            token: minted.token,
            record: Box::new(minted.record),
        })
    }
}
