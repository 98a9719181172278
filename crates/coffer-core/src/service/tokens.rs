//! Gate 7 (with its validation) for tokens: making, listing, looking up, renewing and
//! revoking them. Making and managing others' tokens needs `sudo` on `sys/token` (gate 5);
//! a token's own lookup, renewal and revocation need only the token.

use std::time::Duration;

use coffer_types::Namespace;

use super::state::invalid;
use super::state::{Gated, Service, blocking, stored};
use crate::access::{DEFAULT_POLICY, Principal, TokenSpec};
use crate::op::{Operation, TokenInput};
use crate::{CoreError, Gate, Refusal, Reply};

/// The time to live of a token made without one (Vault's default, 32 days).
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(768 * 3600);
/// The longest token lifetime accepted: ten years.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
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
                let access = self.access.clone();
                blocking(move || access.revoke_token(&store, &accessor))
                    .await
                    .map_err(stored)?;
                Ok(Reply::Done)
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
                let (access, accessor) = (self.access.clone(), token.accessor.clone());
                blocking(move || access.revoke_token(&store, &accessor))
                    .await
                    .map(|()| Reply::Done)
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

    async fn create_token(&self, who: &Principal, input: TokenInput) -> Gated<Reply> {
        let store = self.store()?;
        let ttl = input
            .ttl
            .filter(|&t| t > 0)
            .map_or(DEFAULT_TOKEN_TTL, Duration::from_secs);
        if ttl > MAX_TOKEN_TTL {
            return Err(invalid("a token's ttl is between 1 second and 10 years"));
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
        let policies = if input.policies.is_empty() {
            vec![DEFAULT_POLICY.to_owned()]
        } else {
            input.policies
        };
        let access = self.access.clone();
        let actor = who.actor();
        let spec = TokenSpec {
            policies,
            ttl,
            namespace: input.namespace,
            display_name: input.display_name,
        };
        let minted = blocking(move || access.create_token(&store, spec, &actor))
            .await
            .map_err(|e| match e {
                e @ CoreError::InvalidRequest(_) => Refusal::at(Gate::Validation, e),
                e => stored(e),
            })?;
        Ok(Reply::TokenCreated {
            token: minted.token,
            record: Box::new(minted.record),
        })
    }
}
