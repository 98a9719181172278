//! Tokens (the agent keys of reference 001): a random secret shown once when it is made,
//! stored only as a keyed hash, with an accessor (a public id for listing and revoking), the
//! policies it carries, an optional namespace it is confined to, and an expiry.
//!
//! A token is `cft_` and 43 base64url characters (32 random bytes). The daemon keeps every
//! live token's record in memory, keyed by hash, so resolving a token is one hash and one
//! map lookup (and one more per ancestor); the records themselves live in the store's own
//! namespace (see `system`).
//!
//! Tokens form trees, as in Vault: a token made by a token names it as its parent, and a
//! token is alive only while every ancestor is (present and unexpired). Revoking a token
//! therefore ends its descendants the moment its own record is deleted; their records are
//! removed right after, and any a crash left behind are removed when the store is next
//! opened.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use coffer_crypto::{SecretBytes, TokenKey};
use coffer_types::Timestamp;

use crate::CoreError;

/// The prefix of every coffer token.
pub const TOKEN_PREFIX: &str = "cft_";

/// The deepest a chain of tokens may go (a token made by a token made by ...): bounds the
/// walk up the ancestors that resolving a token makes.
pub const MAX_TOKEN_DEPTH: usize = 32;

/// The time to live of a token made without one (Vault's default, 32 days).
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(768 * 3600);
/// The longest a token lives, renewals included: ten years after it was made (the max TTL
/// of a token made without an explicit one).
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

pub use coffer_types::reply::TokenRecord;

/// Whether `text` has the form of an accessor (24 lowercase hex digits).
pub fn is_accessor(text: &str) -> bool {
    text.len() == 24 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

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
    /// Its max TTL from now: no expiry, renewals included, goes past it.
    pub max_ttl: Duration,
    /// The accessor of its parent (`None`: made by a peer, or an orphan).
    pub parent: Option<String>,
    /// The latest its max expiry may be (its parent's max expiry).
    pub ceiling: Option<Timestamp>,
}

fn random(n: usize) -> Result<SecretBytes, CoreError> {
    SecretBytes::random(n).map_err(|e| CoreError::Store(coffer_store::StoreError::Crypto(e)))
}

/// A new random credential: `prefix` and 43 base64url characters (32 random bytes).
pub(crate) fn random_credential(prefix: &str) -> Result<SecretBytes, CoreError> {
    let body = random(32)?;
    let encoded = data_encoding::BASE64URL_NOPAD.encode(body.expose_secret());
    let mut token = SecretBytes::zeroed(prefix.len() + encoded.len());
    token.expose_secret_mut()[..prefix.len()].copy_from_slice(prefix.as_bytes());
    token.expose_secret_mut()[prefix.len()..].copy_from_slice(encoded.as_bytes());
    // The encoded copy is a String the allocator may hand out again: wipe it.
    let mut encoded = encoded;
    zeroize::Zeroize::zeroize(&mut encoded);
    Ok(token)
}

/// A new accessor: 24 lowercase hex digits (12 random bytes).
pub(crate) fn random_accessor() -> Result<String, CoreError> {
    Ok(data_encoding::HEXLOWER.encode(random(12)?.expose_secret()))
}

/// The keyed hash of a credential that is not a token (an AppRole secret-id, a wrapping
/// token), under a `domain` of its own: no such hash can ever be taken for a token's.
pub(crate) fn domain_hash(key: &TokenKey, domain: &[u8], credential: &SecretBytes) -> [u8; 32] {
    let mut input = SecretBytes::zeroed(domain.len() + credential.len());
    input.expose_secret_mut()[..domain.len()].copy_from_slice(domain);
    input.expose_secret_mut()[domain.len()..].copy_from_slice(credential.expose_secret());
    key.hash(&input)
}

/// Makes a token.
pub fn mint(key: &TokenKey, spec: TokenSpec, creator: String) -> Result<Minted, CoreError> {
    let token = random_credential(TOKEN_PREFIX)?;
    let accessor = random_accessor()?;
    let now = Timestamp::now();
    let after = |d: Duration| {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp::from_millis(now.as_millis().saturating_add(ms))
    };
    let mut max_expires = after(spec.max_ttl);
    if let Some(ceiling) = spec.ceiling {
        max_expires = max_expires.min(ceiling);
    }
    let record = TokenRecord {
        accessor,
        policies: spec.policies,
        namespace: spec.namespace,
        display_name: spec.display_name,
        created: now,
        expires: after(spec.ttl).min(max_expires),
        ttl: Some(spec.ttl.as_secs()),
        creator,
        parent: spec.parent,
        max_expires: Some(max_expires),
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

    /// Whether `record` may be used at `now`: it and every ancestor are present and
    /// unexpired. Answers why not.
    pub fn alive(&self, record: &TokenRecord, now: Timestamp) -> Result<(), &'static str> {
        if record.expired(now) {
            return Err("the token has expired");
        }
        let mut parent = record.parent.as_deref();
        for _ in 0..=MAX_TOKEN_DEPTH {
            let Some(accessor) = parent else {
                return Ok(());
            };
            let Some(up) = self.by_accessor(accessor) else {
                return Err("the token is not valid (its parent was revoked)");
            };
            if up.expired(now) {
                return Err("the token has expired (its parent expired)");
            }
            parent = up.parent.as_deref();
        }
        Err("the token is not valid (its chain of parents is too long)")
    }

    /// How many ancestors the token `accessor` has.
    pub fn depth(&self, accessor: &str) -> usize {
        let mut depth = 0;
        let mut at = self.by_accessor(accessor).and_then(|r| r.parent.clone());
        while let Some(a) = at {
            depth += 1;
            if depth > MAX_TOKEN_DEPTH {
                break;
            }
            at = self.by_accessor(&a).and_then(|r| r.parent.clone());
        }
        depth
    }

    /// The accessors of `accessor`'s descendants (children, grandchildren, ...), parents
    /// before their children.
    pub fn descendants(&self, accessor: &str) -> Vec<String> {
        let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
        for r in self.by_hash.values() {
            if let Some(p) = &r.parent {
                children.entry(p.as_str()).or_default().push(&r.accessor);
            }
        }
        let mut found: Vec<String> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::from([accessor]);
        let mut queue: VecDeque<&str> = VecDeque::from([accessor]);
        while let Some(at) = queue.pop_front() {
            for &c in children.get(at).into_iter().flatten() {
                if seen.insert(c) {
                    found.push(c.to_owned());
                    queue.push_back(c);
                }
            }
        }
        found
    }

    /// Accessors of tokens no longer alive at `now`: expired, or with an ancestor revoked
    /// (a crash between a revocation and its cleanup) or expired.
    pub fn expired(&self, now: Timestamp) -> Vec<String> {
        self.by_hash
            .values()
            .filter(|r| self.alive(r, now).is_err())
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
            max_ttl: Duration::from_secs(120),
            parent: None,
            ceiling: None,
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

    #[test]
    fn a_token_lives_only_while_its_ancestors_do() {
        let key = MasterKey::generate().unwrap().token_key();
        let mut t = Tokens::default();
        let root = mint(&key, spec(), "uid:0".into()).unwrap();
        let mut child_spec = spec();
        child_spec.parent = Some(root.record.accessor.clone());
        child_spec.ceiling = Some(Timestamp::from_millis(
            root.record.created.as_millis() + 30_000,
        ));
        let child = mint(&key, child_spec, "token:x".into()).unwrap();
        // The max expiry is capped by the parent's; so is the expiry.
        assert!(
            child.record.max_expires.unwrap().as_millis()
                <= root.record.created.as_millis() + 30_000
        );
        assert!(child.record.expires <= child.record.max_expires.unwrap());
        let mut grand_spec = spec();
        grand_spec.parent = Some(child.record.accessor.clone());
        let grand = mint(&key, grand_spec, "token:y".into()).unwrap();
        for m in [&root, &child, &grand] {
            t.insert(m.hash, m.record.clone());
        }
        let now = Timestamp::now();
        assert!(t.alive(&grand.record, now).is_ok());
        assert_eq!(t.depth(&grand.record.accessor), 2);
        assert_eq!(
            t.descendants(&root.record.accessor),
            vec![child.record.accessor.clone(), grand.record.accessor.clone()]
        );
        // The parent expires: its descendants with it.
        let later = Timestamp::from_millis(root.record.expires.as_millis() + 1);
        assert!(t.alive(&grand.record, later).is_err());
        // The parent is revoked (its record gone): the grandchild is dead too.
        t.remove(&child.record.accessor);
        assert!(t.alive(&grand.record, now).is_err());
        assert_eq!(t.expired(now), vec![grand.record.accessor.clone()]);
    }
}
