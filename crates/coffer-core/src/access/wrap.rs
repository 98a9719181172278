//! Response wrapping (Vault's `X-Vault-Wrap-TTL`, `sys/wrapping/*`): a response kept in the
//! store's own namespace under a single-use wrapping token, so a credential reaches a machine
//! once, and an interception shows (the rightful unwrap then fails).
//!
//! A wrapping token is `cfw_` and 43 base64url characters. Like a token, it is kept only as a
//! keyed hash (under a domain of its own, so no wrapping token's hash is ever a token's):
//! `wrapping/<hex of the hash>` holds one line of JSON, the [`WrapRecord`] (never the token),
//! then the response's bytes. The store encrypts the whole value like every secret; the
//! response is never written anywhere else.

use std::sync::Arc;

use coffer_crypto::{SecretBytes, TokenKey};
use coffer_store::SecretStore;
use coffer_types::Timestamp;
use serde::{Deserialize, Serialize};

use super::records::{encode, get_bytes, malformed, names, put_bytes, remove};
use crate::CoreError;

/// The prefix of every wrapping token.
pub const WRAP_PREFIX: &str = "cfw_";
/// What a wrapping token is hashed under, apart from tokens and secret-ids.
const HASH_DOMAIN: &[u8] = b"coffer-wrapping-token\0";
const WRAPPED: &str = "wrapping/";

/// The most wrapped responses kept at once (expired ones are swept when it is reached).
pub const MAX_WRAPPED: usize = 10_000;
/// The longest `creation_path` kept.
pub const MAX_PATH: usize = 512;
/// A wrapping token's TTL when `sys/wrapping/wrap` is not given one (Vault's 5 minutes).
pub const DEFAULT_TTL: u64 = 300;
/// The longest a wrapping token lives: 32 days (Vault's default maximum TTL).
pub const MAX_TTL: u64 = 768 * 3600;

/// Checks a wrapping TTL in seconds: 1 s to [`MAX_TTL`]. (A listener asks before it
/// carries out the request whose response it would wrap.)
pub fn check_ttl(secs: u64) -> Result<(), String> {
    if (1..=MAX_TTL).contains(&secs) {
        Ok(())
    } else {
        Err(format!(
            "a wrapping TTL is 1 second to {MAX_TTL} seconds (768h), not {secs}"
        ))
    }
}

/// A wrapped response's record: never the wrapping token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WrapRecord {
    /// Its accessor (public: named in `wrap_info`).
    pub accessor: String,
    /// When it was wrapped.
    pub created: Timestamp,
    /// When the wrapping token stops working.
    pub expires: Timestamp,
    /// Its time to live as made, in seconds.
    pub ttl: u64,
    /// The path whose response it holds (Vault's `creation_path`).
    pub path: String,
    /// Who wrapped it.
    pub creator: String,
}

impl WrapRecord {
    /// Whether it has expired at `now`.
    pub fn expired(&self, now: Timestamp) -> bool {
        now >= self.expires
    }
}

/// The keyed hash a wrapping token is kept as.
pub fn hash_wrap_token(key: &TokenKey, token: &SecretBytes) -> [u8; 32] {
    super::token::domain_hash(key, HASH_DOMAIN, token)
}

/// Whether `token` has the form of a wrapping token (so a listener can tell one from a
/// token without asking the store).
pub fn is_wrap_token(token: &SecretBytes) -> bool {
    token.expose_secret().starts_with(WRAP_PREFIX.as_bytes())
}

/// A new wrapping token and its accessor.
pub(crate) fn mint() -> Result<(SecretBytes, String), CoreError> {
    Ok((
        super::token::random_credential(WRAP_PREFIX)?,
        super::token::random_accessor()?,
    ))
}

fn at(hash: &[u8; 32]) -> String {
    format!("{WRAPPED}{}", data_encoding::HEXLOWER.encode(hash))
}

/// Keeps `response` under `hash`.
pub(crate) fn save(
    store: &Arc<dyn SecretStore>,
    hash: &[u8; 32],
    record: &WrapRecord,
    response: &SecretBytes,
) -> Result<(), CoreError> {
    let head = encode("a wrapped response's record", record)?;
    let mut value = SecretBytes::zeroed(head.len() + 1 + response.len());
    let bytes = value.expose_secret_mut();
    bytes[..head.len()].copy_from_slice(&head);
    bytes[head.len()] = b'\n';
    bytes[head.len() + 1..].copy_from_slice(response.expose_secret());
    // Any bytes: a record line, then the response.
    put_bytes(store, &at(hash), &value, coffer_types::Kind::File)
}

/// The record and response kept under `hash`, if any (expired ones included: the caller
/// decides).
pub(crate) fn load(
    store: &Arc<dyn SecretStore>,
    hash: &[u8; 32],
) -> Result<Option<(WrapRecord, SecretBytes)>, CoreError> {
    let Some(value) = get_bytes(store, &at(hash))? else {
        return Ok(None);
    };
    let bytes = value.expose_secret();
    let split = bytes.iter().position(|&b| b == b'\n').ok_or_else(|| {
        tracing::error!("a stored wrapped response has no record line");
        CoreError::Unavailable("the stored wrapped response cannot be read".to_owned())
    })?;
    let record: WrapRecord =
        serde_json::from_slice(&bytes[..split]).map_err(malformed("wrapped response's record"))?;
    Ok(Some((record, SecretBytes::copy_from(&bytes[split + 1..]))))
}

/// Removes what is kept under `hash`; answers whether it was there.
pub(crate) fn delete(store: &Arc<dyn SecretStore>, hash: &[u8; 32]) -> Result<bool, CoreError> {
    remove(store, &at(hash))
}

/// How many wrapped responses are kept (expired ones not yet removed included).
pub(crate) fn count(store: &Arc<dyn SecretStore>) -> Result<usize, CoreError> {
    Ok(names(store, WRAPPED)?.len())
}

/// Removes every expired wrapped response; answers how many are left.
pub(crate) fn sweep(store: &Arc<dyn SecretStore>, now: Timestamp) -> Result<usize, CoreError> {
    let mut left = 0;
    for hex in names(store, WRAPPED)? {
        let Some(hash) = data_encoding::HEXLOWER
            .decode(hex.as_bytes())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        else {
            continue;
        };
        match load(store, &hash)? {
            Some((record, _)) if record.expired(now) => {
                delete(store, &hash)?;
            }
            Some(_) => left += 1,
            None => {}
        }
    }
    Ok(left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_tokens_are_their_own_kind() {
        let key = coffer_crypto::MasterKey::generate().unwrap().token_key();
        let (token, accessor) = mint().unwrap();
        let text = token.expose_str().unwrap();
        assert!(text.starts_with("cfw_") && text.len() == 47);
        assert!(is_wrap_token(&token));
        assert!(super::super::token::is_accessor(&accessor));
        // Neither a token's hash nor a secret-id's.
        assert_ne!(hash_wrap_token(&key, &token), key.hash(&token));
        assert_ne!(
            hash_wrap_token(&key, &token),
            super::super::approle::hash_secret_id(&key, &token)
        );
    }
}
