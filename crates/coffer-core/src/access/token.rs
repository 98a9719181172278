//! Tokens (the agent keys of reference 001): a random secret shown once when it is made,
//! stored only as a keyed hash, with an accessor (a public id for listing and revoking), the
//! policies it carries, an optional namespace it is confined to, and an expiry.
//!
//! A token is `cft_` and 43 base64url characters (32 random bytes). The daemon keeps every
//! live token's record in memory, keyed by hash, so resolving a token is one hash and one
//! map lookup; the records themselves live in the store's own namespace (see `system`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use coffer_crypto::{SecretBytes, TokenKey};
use coffer_types::Timestamp;

use crate::CoreError;

/// The prefix of every coffer token.
pub const TOKEN_PREFIX: &str = "cft_";

pub use coffer_types::reply::TokenRecord;

/// A token just made: shown once, then only its hash is kept.
pub struct Minted {
    /// The token.
    pub token: SecretBytes,
    /// Its keyed hash.
    pub hash: [u8; 32],
    /// What is kept.
    pub record: TokenRecord,
}

/// What a new token carries.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    /// Policies (at least one).
    pub policies: Vec<String>,
    /// Time to live.
    pub ttl: Duration,
    /// Confinement to a namespace.
    pub namespace: Option<String>,
    /// A label.
    pub display_name: Option<String>,
}

fn random(n: usize) -> Result<SecretBytes, CoreError> {
    SecretBytes::random(n).map_err(|e| CoreError::Store(coffer_store::StoreError::Crypto(e)))
}

/// Makes a token.
pub fn mint(key: &TokenKey, spec: TokenSpec, creator: String) -> Result<Minted, CoreError> {
    let body = random(32)?;
    let encoded = data_encoding::BASE64URL_NOPAD.encode(body.expose_secret());
    let mut token = SecretBytes::zeroed(TOKEN_PREFIX.len() + encoded.len());
    token.expose_secret_mut()[..TOKEN_PREFIX.len()].copy_from_slice(TOKEN_PREFIX.as_bytes());
    token.expose_secret_mut()[TOKEN_PREFIX.len()..].copy_from_slice(encoded.as_bytes());
    // The encoded copy is a String the allocator may hand out again: wipe it.
    let mut encoded = encoded;
    zeroize::Zeroize::zeroize(&mut encoded);
    let accessor = data_encoding::HEXLOWER.encode(random(12)?.expose_secret());
    let now = Timestamp::now();
    let ttl_ms = i64::try_from(spec.ttl.as_millis()).unwrap_or(i64::MAX);
    let record = TokenRecord {
        accessor,
        policies: spec.policies,
        namespace: spec.namespace,
        display_name: spec.display_name,
        created: now,
        expires: Timestamp::from_millis(now.as_millis().saturating_add(ttl_ms)),
        ttl: Some(spec.ttl.as_secs()),
        creator,
    };
    Ok(Minted {
        hash: key.hash(&token),
        token,
        record,
    })
}

/// Live tokens, by hash and by accessor.
#[derive(Default)]
pub struct Tokens {
    by_hash: HashMap<[u8; 32], Arc<TokenRecord>>,
    by_accessor: HashMap<String, [u8; 32]>,
}

impl Tokens {
    /// Adds (or replaces) a token.
    pub fn insert(&mut self, hash: [u8; 32], record: TokenRecord) {
        self.by_accessor.insert(record.accessor.clone(), hash);
        self.by_hash.insert(hash, Arc::new(record));
    }

    /// Removes a token by accessor; answers its hash.
    pub fn remove(&mut self, accessor: &str) -> Option<[u8; 32]> {
        let hash = self.by_accessor.remove(accessor)?;
        self.by_hash.remove(&hash);
        Some(hash)
    }

    /// The record of a token, by its hash.
    pub fn by_hash(&self, hash: &[u8; 32]) -> Option<&Arc<TokenRecord>> {
        self.by_hash.get(hash)
    }

    /// The hash of a token, by its accessor.
    pub fn hash_of(&self, accessor: &str) -> Option<[u8; 32]> {
        self.by_accessor.get(accessor).copied()
    }

    /// The record of a token, by its accessor.
    pub fn by_accessor(&self, accessor: &str) -> Option<&Arc<TokenRecord>> {
        self.by_accessor
            .get(accessor)
            .and_then(|h| self.by_hash.get(h))
    }

    /// Every record, by accessor order.
    pub fn all(&self) -> Vec<Arc<TokenRecord>> {
        let mut all: Vec<_> = self.by_hash.values().cloned().collect();
        all.sort_by(|a, b| a.accessor.cmp(&b.accessor));
        all
    }

    /// Accessors of tokens expired at `now`.
    pub fn expired(&self, now: Timestamp) -> Vec<String> {
        self.by_hash
            .values()
            .filter(|r| r.expired(now))
            .map(|r| r.accessor.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_crypto::MasterKey;

    fn spec() -> TokenSpec {
        TokenSpec {
            policies: vec!["app".into()],
            ttl: Duration::from_secs(60),
            namespace: Some("acme".into()),
            display_name: None,
        }
    }

    #[test]
    fn tokens_are_random_prefixed_and_hashed() {
        let key = MasterKey::generate().unwrap().token_key();
        let a = mint(&key, spec(), "uid:0".into()).unwrap();
        let b = mint(&key, spec(), "uid:0".into()).unwrap();
        let text = a.token.expose_str().unwrap();
        assert!(
            text.starts_with("cft_") && text.len() == 47,
            "{}",
            text.len()
        );
        assert_ne!(a.hash, b.hash);
        assert_ne!(a.record.accessor, b.record.accessor);
        assert_eq!(key.hash(&a.token), a.hash);
        assert!(!a.record.expired(Timestamp::now()));
        assert!(
            a.record
                .expired(Timestamp::from_millis(a.record.expires.as_millis()))
        );
        // The record never holds the token.
        let json = serde_json::to_string(&a.record).unwrap();
        assert!(!json.contains(&text[4..]));
    }

    #[test]
    fn namespace_confinement_covers_children_only() {
        let key = MasterKey::generate().unwrap().token_key();
        let r = mint(&key, spec(), "uid:0".into()).unwrap().record;
        assert!(r.covers("acme") && r.covers("acme/prod"));
        assert!(!r.covers("acme-other") && !r.covers("default"));
    }

    #[test]
    fn the_registry_finds_by_hash_and_accessor() {
        let key = MasterKey::generate().unwrap().token_key();
        let m = mint(&key, spec(), "uid:0".into()).unwrap();
        let mut t = Tokens::default();
        t.insert(m.hash, m.record.clone());
        assert_eq!(t.by_hash(&m.hash).unwrap().accessor, m.record.accessor);
        assert!(t.by_accessor(&m.record.accessor).is_some());
        assert_eq!(t.remove(&m.record.accessor), Some(m.hash));
        assert!(t.by_hash(&m.hash).is_none());
    }
}
