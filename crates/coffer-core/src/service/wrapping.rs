//! Gate 7 (with its validation) for response wrapping and `sys/capabilities*`.
//!
//! A wrap needs any valid token (gate 2); an unwrap, lookup or rewrap needs only its wrapping
//! token, which is its credential: a wrong or spent one is refused at the identity gate and
//! counted against the peer as a bad token is (see `call`). Every take and put of a wrapped
//! response runs under one lock, so two unwraps racing for one token cannot both win.

use std::sync::{Arc, Mutex, PoisonError};

use coffer_crypto::{SecretBytes, TokenKey};
use coffer_store::SecretStore;
use coffer_types::Timestamp;

use super::state::{Gated, Service, blocking, invalid, stored};
use crate::access::Principal;
use crate::access::wrap::{self, WrapRecord};
use crate::op::{CapabilitiesOf, MAX_CAPABILITY_PATHS, WrapOp};
use crate::{CoreError, Gate, Refusal, Reply, WrapReply};

/// Serializes every change to the wrapped responses (one daemon owns its store).
static WRAPPING: Mutex<()> = Mutex::new(());

/// What every refused unwrap, lookup or rewrap answers, whatever was wrong (Vault's words).
pub(crate) const INVALID_WRAPPING_TOKEN: &str = "wrapping token is not valid or does not exist";

/// The longest Vault path a capabilities request may name.
const MAX_CAPABILITY_PATH: usize = 1024;

fn refused() -> Refusal {
    Refusal::at(
        Gate::Identity,
        CoreError::InvalidRequest(INVALID_WRAPPING_TOKEN.to_owned()),
    )
}

fn after(now: Timestamp, secs: u64) -> Timestamp {
    let ms = i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    Timestamp::from_millis(now.as_millis().saturating_add(ms))
}

fn wrapped(r: WrapReply) -> Reply {
    Reply::Wrapped(Box::new(r))
}

/// Keeps `response` under a new wrapping token (the lock held).
fn put(
    store: &Arc<dyn SecretStore>,
    key: &TokenKey,
    response: &SecretBytes,
    ttl: u64,
    path: String,
    creator: String,
) -> Result<WrapReply, CoreError> {
    let now = Timestamp::now();
    if wrap::count(store)? >= wrap::MAX_WRAPPED && wrap::sweep(store, now)? >= wrap::MAX_WRAPPED {
        return Err(CoreError::InvalidRequest(format!(
            "{} wrapped responses are waiting to be unwrapped, the most kept at once; unwrap \
             or let some expire first",
            wrap::MAX_WRAPPED
        )));
    }
    let (token, accessor) = wrap::mint()?;
    let record = WrapRecord {
        accessor,
        created: now,
        expires: after(now, ttl),
        ttl,
        path,
        creator,
    };
    wrap::save(
        store,
        &wrap::hash_wrap_token(key, &token),
        &record,
        response,
    )?;
    Ok(WrapReply::Token { token, record })
}

/// The live record and response under `token`, removed when `take` (the lock held). An
/// expired one is removed and answered as none.
fn find(
    store: &Arc<dyn SecretStore>,
    key: &TokenKey,
    token: &SecretBytes,
    take: bool,
) -> Result<Option<(WrapRecord, SecretBytes)>, CoreError> {
    if !wrap::is_wrap_token(token) {
        return Ok(None);
    }
    let hash = wrap::hash_wrap_token(key, token);
    let Some((record, response)) = wrap::load(store, &hash)? else {
        return Ok(None);
    };
    if record.expired(Timestamp::now()) {
        wrap::delete(store, &hash)?;
        return Ok(None);
    }
    // Whoever removes the record gets the response: the delete is decided in the store's
    // transaction, so two daemons sharing the store (hubs) cannot both unwrap it.
    if take && !wrap::delete(store, &hash)? {
        return Ok(None);
    }
    Ok(Some((record, response)))
}

impl Service {
    /// The most bytes a wrapped response may have: what the largest value's JSON could be.
    pub fn max_wrapped_bytes(&self) -> usize {
        self.config
            .max_value_bytes
            .saturating_mul(8)
            .saturating_add(64 << 10)
    }

    pub(super) async fn wrapping(&self, who: &Principal, op: WrapOp) -> Gated<Reply> {
        if let WrapOp::Wrap {
            response,
            ttl,
            path,
        } = &op
        {
            wrap::check_ttl(*ttl).map_err(invalid)?;
            if path.len() > wrap::MAX_PATH {
                return Err(invalid(format!(
                    "a wrapped response's path is at most {} bytes",
                    wrap::MAX_PATH
                )));
            }
            let max = self.max_wrapped_bytes();
            if response.len() > max {
                return Err(invalid(format!(
                    "a wrapped response is at most {max} bytes (this one is {})",
                    response.len()
                )));
            }
        }
        let store = self.store()?;
        let key = self
            .vault
            .token_key()
            .ok_or(Refusal::at(Gate::Seal, CoreError::Sealed))?;
        let creator = who.actor();
        let outcome = blocking(move || {
            let _changing = WRAPPING.lock().unwrap_or_else(PoisonError::into_inner);
            Ok(match op {
                WrapOp::Wrap {
                    response,
                    ttl,
                    path,
                } => Some(put(&store, &key, &response, ttl, path, creator)?),
                WrapOp::Unwrap { token } => {
                    find(&store, &key, &token, true)?.map(|(record, response)| {
                        WrapReply::Response {
                            response,
                            accessor: record.accessor,
                        }
                    })
                }
                WrapOp::Lookup { token } => {
                    find(&store, &key, &token, false)?.map(|(r, _)| WrapReply::Record(r))
                }
                // The new one is kept before the old one goes: a failure in between leaves
                // the old token working, never the response lost.
                WrapOp::Rewrap { token } => match find(&store, &key, &token, false)? {
                    Some((old, response)) => {
                        let new = put(&store, &key, &response, old.ttl, old.path, old.creator)?;
                        wrap::delete(&store, &wrap::hash_wrap_token(&key, &token))?;
                        Some(new)
                    }
                    None => None,
                },
            })
        })
        .await
        .map_err(|e| match e {
            e @ CoreError::InvalidRequest(_) => Refusal::at(Gate::Validation, e),
            e => stored(e),
        })?;
        outcome.map(wrapped).ok_or_else(refused)
    }

    /// Removes the wrapped responses that expired (the daemon's upkeep, every minute: an
    /// expired response leaves the store even when nobody presents its token). Not a
    /// request: it writes no audit record. Answers how many are left.
    pub async fn sweep_wrapped(&self) -> Result<usize, CoreError> {
        let Ok(store) = self.vault.store() else {
            return Ok(0);
        };
        blocking(move || {
            let _changing = WRAPPING.lock().unwrap_or_else(PoisonError::into_inner);
            wrap::sweep(&store, Timestamp::now())
        })
        .await
    }

    pub(super) fn capabilities(
        &self,
        who: &Principal,
        of: CapabilitiesOf,
        paths: Vec<String>,
    ) -> Gated<Reply> {
        if paths.is_empty() || paths.len() > MAX_CAPABILITY_PATHS {
            return Err(invalid(format!(
                "name 1 to {MAX_CAPABILITY_PATHS} paths (\"paths\")"
            )));
        }
        if paths.iter().any(|p| p.len() > MAX_CAPABILITY_PATH) {
            return Err(invalid(format!(
                "a path is at most {MAX_CAPABILITY_PATH} bytes"
            )));
        }
        let whose = match of {
            CapabilitiesOf::Caller => who.clone(),
            CapabilitiesOf::Token(token) => {
                self.access
                    .resolve(u32::MAX, u32::MAX, Some(&token))
                    .map_err(|_| invalid("the token is not valid (unknown, expired or revoked)"))?
            }
            CapabilitiesOf::Accessor(accessor) => self
                .access
                .principal_by_accessor(&accessor)
                .ok_or_else(|| {
                    Refusal::at(
                        Gate::Validation,
                        CoreError::Store(coffer_store::StoreError::NotFound("token")),
                    )
                })?,
        };
        Ok(Reply::Capabilities(
            paths
                .into_iter()
                .map(|p| {
                    let caps = self.access.capabilities(&whose, &p);
                    (p, caps)
                })
                .collect(),
        ))
    }
}
