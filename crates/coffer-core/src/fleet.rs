//! The fleet's registry, as kept in the store's own namespace (encrypted like every
//! secret, and so shared by every hub of one database): the fleet's CA, join tokens (hashed),
//! nodes (public keys, tags, certificate fingerprints), pre-authorized keys and the
//! assignment rules. A node keeps its own side under the same root in its own store: its
//! key pair, certificate and what it holds.
//!
//! Which secrets a node receives is decided here, once ([`Assignment::covers`]): a secret
//! carrying one of the node's tags, or under a rule's prefix for one of them.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use coffer_fleet::pki::FleetCa;
use coffer_types::{Namespace, SecretName};

use coffer_types::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// The prefix of every fleet record.
pub const ROOT: &str = "fleet/";
/// Where the fleet's CA lives.
pub const CA_AT: &str = "fleet/ca";
/// Where the assignment rules live.
pub const RULES_AT: &str = "fleet/rules";
/// A node's own record, in its own store.
pub const SELF_AT: &str = "fleet/self";
/// What a node holds from the fleet, in its own store.
pub const HELD_AT: &str = "fleet/held";
/// The prefix of node records.
pub const NODES: &str = "fleet/node/";
/// The prefix of join tokens.
pub const TOKENS: &str = "fleet/token/";
/// The prefix of the key index (a key's hash to its node).
pub const KEYS: &str = "fleet/key/";

/// The most tags on one node or token; the most assignment rules.
pub const MAX_TAGS: usize = coffer_store::MAX_TAGS;
/// The most assignment rules.
pub const MAX_RULES: usize = 1024;
/// The longest a join token lasts (a year).
pub const MAX_TOKEN_TTL_SECS: u64 = 365 * 86_400;

/// Where node `id`'s record lives.
pub fn node_at(id: &str) -> String {
    format!("{NODES}{id}")
}

/// Where join token `id` lives.
pub fn token_at(id: &str) -> String {
    format!("{TOKENS}{id}")
}

/// Where the index entry of a node's public key lives.
pub fn key_at(key: &str) -> String {
    let digest = sha2::Sha256::digest(key.as_bytes());
    format!("{KEYS}{}", data_encoding::HEXLOWER.encode(&digest[..16]))
}

/// Whether `tag` is a fleet tag: 1 to 64 of `a-z 0-9 . _ -`, starting with a letter or digit.
pub fn valid_tag(tag: &str) -> bool {
    (1..=64).contains(&tag.len())
        && tag.as_bytes()[0].is_ascii_alphanumeric()
        && tag
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Whether `id` could be a node or token id (what the registry mints: 1 to 32 of
/// `a-z 0-9`), checked before it reaches a record's name.
pub fn valid_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A node, as the hubs know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Its id.
    pub id: String,
    /// Its X25519 public key (base64url).
    pub key: String,
    /// Its tags.
    pub tags: BTreeSet<String>,
    /// Whether it may sync (a disabled node's stream is closed).
    pub enabled: bool,
    /// Its client certificate's SHA-256 (none until it enrolls).
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// Its host name, as it said at enrollment.
    #[serde(default)]
    pub hostname: Option<String>,
    /// When it was added (enrolled or pre-authorized).
    pub created: Timestamp,
    /// When it enrolled.
    #[serde(default)]
    pub enrolled: Option<Timestamp>,
    /// Who added it (`join:<token id>` or the operator).
    pub by: String,
}

/// A join token: its hash, never the token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinToken {
    /// Its id (the part before the dot).
    pub id: String,
    /// SHA-256 of the whole token (hex).
    pub hash: String,
    /// The tags a node joining with it takes.
    pub tags: BTreeSet<String>,
    /// Joins left.
    pub uses: u32,
    /// When it stops working.
    pub expires: Timestamp,
    /// When it was made.
    pub created: Timestamp,
    /// Who made it.
    pub by: String,
}

/// One assignment rule: the secrets of `namespace` under `prefix` go to nodes tagged `tag`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Rule {
    /// The nodes' tag.
    pub tag: String,
    /// The namespace.
    pub namespace: String,
    /// The names' prefix (empty: all).
    pub prefix: String,
}

/// The assignment rules as stored (a `kv` record is a JSON object).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RulesRecord {
    /// The rules, sorted.
    pub rules: Vec<Rule>,
}

/// The fleet's CA as stored (the key encrypted with the rest of the store).
#[derive(Serialize, Deserialize)]
pub struct CaRecord {
    /// Its certificate (PEM).
    pub cert: String,
    /// Its key (PKCS#8 PEM).
    pub key: String,
}

/// A node's own record, in its own store.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct NodeSelf {
    /// Its id, once enrolled.
    #[serde(default)]
    pub node: Option<String>,
    /// The seed of its X25519 key (base64url).
    pub seed: String,
    /// Its TLS key (PKCS#8 PEM).
    pub tls_key: String,
    /// Its client certificate (DER, base64), once enrolled.
    #[serde(default)]
    pub cert: Option<String>,
    /// The fleet CA it trusts (PEM).
    pub ca_pem: String,
    /// The hubs it dials.
    #[serde(default)]
    pub hubs: Vec<String>,
    /// A join token not yet spent.
    #[serde(default)]
    pub token: Option<String>,
    /// Its tags, as the hub said.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The hub revision it last caught up to.
    #[serde(default)]
    pub since: u64,
    /// When it last caught up with a hub.
    #[serde(default)]
    pub last_sync: Option<Timestamp>,
}

impl std::fmt::Debug for NodeSelf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSelf")
            .field("node", &self.node)
            .field("since", &self.since)
            .finish_non_exhaustive()
    }
}

impl Drop for NodeSelf {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.seed);
        zeroize::Zeroize::zeroize(&mut self.tls_key);
        if let Some(t) = self.token.as_mut() {
            zeroize::Zeroize::zeroize(t);
        }
    }
}

/// What decides a node's secrets: its tags and the rules.
#[derive(Debug, Clone, Copy)]
pub struct Assignment<'a> {
    /// The node's tags.
    pub node_tags: &'a BTreeSet<String>,
    /// Every rule.
    pub rules: &'a [Rule],
}

impl Assignment<'_> {
    /// Whether the secret `name` of `namespace`, tagged `tags`, goes to the node.
    pub fn covers(&self, namespace: &str, name: &str, tags: &BTreeSet<String>) -> bool {
        !self.node_tags.is_disjoint(tags)
            || self.rules.iter().any(|r| {
                self.node_tags.contains(&r.tag)
                    && r.namespace == namespace
                    && name.starts_with(r.prefix.as_str())
            })
    }
}

/// A new join token: (its id, the token shown once).
pub fn mint_token() -> Result<(String, String), crate::CoreError> {
    let id = random_id(5)?;
    let secret = coffer_crypto::SecretBytes::random(32).map_err(|_| random_failed())?;
    let token = format!(
        "cft_{id}.{}",
        data_encoding::BASE64URL_NOPAD.encode(secret.expose_secret())
    );
    Ok((id, token))
}

/// A join token's id, when it has the shape of one.
pub fn token_id(token: &str) -> Option<&str> {
    let (id, _) = token.strip_prefix("cft_")?.split_once('.')?;
    valid_id(id).then_some(id)
}

/// The hash a join token is stored as.
pub fn token_hash(token: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(&sha2::Sha256::digest(token))
}

/// A random id of `bytes` bytes, in lower-case hex.
pub fn random_id(bytes: usize) -> Result<String, crate::CoreError> {
    let raw = coffer_crypto::SecretBytes::random(bytes).map_err(|_| random_failed())?;
    Ok(data_encoding::HEXLOWER.encode(raw.expose_secret()))
}

fn random_failed() -> crate::CoreError {
    crate::CoreError::Unavailable("the system's random source failed".to_owned())
}

/// A change to the fleet's registry another part of the daemon must hear of (the hub's
/// streams).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetNote {
    /// A node's record changed (added, retagged, disabled, removed).
    Node(String),
    /// The assignment rules changed.
    Rules,
    /// Anything may have changed: read the whole registry again.
    Everything,
}

/// What the service keeps in memory for the fleet.
pub struct FleetState {
    notes: tokio::sync::broadcast::Sender<FleetNote>,
    /// On a node: the secrets the fleet manages (read-only to local clients).
    managed: RwLock<HashSet<(Namespace, SecretName)>>,
    /// On a hub: the nodes whose streams are open here.
    connected: RwLock<HashSet<String>>,
    /// On a hub: the fleet's CA, once read.
    pub(crate) ca: Mutex<Option<Arc<FleetCa>>>,
    /// What `status` says of the fleet (set by the fleet's runtime).
    facts: Mutex<Option<coffer_types::reply::FleetFacts>>,
    /// On a hub: the store reads made for the fan-out.
    reads: std::sync::atomic::AtomicU64,
    /// On a hub: held while a join token's use is spent, so the nodes of one production run
    /// enrolling at once take their uses in turn here (the check-and-set settles races
    /// with other hubs).
    pub(crate) spending: tokio::sync::Mutex<()>,
}

impl Default for FleetState {
    fn default() -> Self {
        Self {
            notes: tokio::sync::broadcast::Sender::new(1024),
            managed: RwLock::default(),
            connected: RwLock::default(),
            ca: Mutex::default(),
            facts: Mutex::default(),
            reads: std::sync::atomic::AtomicU64::new(0),
            spending: tokio::sync::Mutex::new(()),
        }
    }
}

impl FleetState {
    /// Tells the hub's streams of a registry change.
    pub(crate) fn note(&self, note: FleetNote) {
        // No subscriber (no fleet listener): nothing to tell.
        let _ = self.notes.send(note);
    }

    /// Counts `n` store reads made for the fan-out.
    pub(crate) fn count_reads(&self, n: u64) {
        self.reads
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn subscribe(&self) -> tokio::sync::broadcast::Receiver<FleetNote> {
        self.notes.subscribe()
    }

    pub(crate) fn connected(&self) -> HashSet<String> {
        self.connected
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_connected(&self, node: &str, on: bool) {
        let mut set = self
            .connected
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if on {
            set.insert(node.to_owned());
        } else {
            set.remove(node);
        }
    }

    /// What `status` says of the fleet now.
    pub(crate) fn facts(&self) -> Option<coffer_types::reply::FleetFacts> {
        let mut facts = self
            .facts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()?;
        if facts.role == "hub" {
            facts.nodes_connected = Some(self.connected().len());
            facts.store_reads = Some(self.reads.load(std::sync::atomic::Ordering::Relaxed));
        }
        if let Some(at) = facts.last_sync {
            let age = Timestamp::now().as_millis().saturating_sub(at.as_millis()) / 1000;
            facts.last_sync_age_seconds = Some(u64::try_from(age).unwrap_or(0));
        }
        Some(facts)
    }

    /// Changes what `status` says of the fleet.
    pub(crate) fn set_facts(&self, change: impl FnOnce(&mut coffer_types::reply::FleetFacts)) {
        let mut facts = self.facts.lock().unwrap_or_else(PoisonError::into_inner);
        change(facts.get_or_insert_with(Default::default));
    }

    /// Whether the fleet manages this secret here (a node's local clients may not change it).
    pub(crate) fn is_managed(&self, namespace: &Namespace, name: &SecretName) -> bool {
        let set = self.managed.read().unwrap_or_else(PoisonError::into_inner);
        !set.is_empty() && set.contains(&(namespace.clone(), name.clone()))
    }

    pub(crate) fn set_managed(&self, key: (Namespace, SecretName), on: bool) {
        let mut set = self.managed.write().unwrap_or_else(PoisonError::into_inner);
        if on {
            set.insert(key);
        } else {
            set.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_ids_and_tokens_have_their_shapes() {
        assert!(valid_tag("kiosk") && valid_tag("site-a.1_x"));
        assert!(!valid_tag("") && !valid_tag("-x") && !valid_tag("Kiosk") && !valid_tag("a/b"));
        assert!(!valid_tag(&"a".repeat(65)));
        let (id, token) = mint_token().unwrap();
        assert_eq!(token_id(&token), Some(id.as_str()));
        assert_eq!(token_id("cft_../x.y"), None);
        assert_eq!(token_id("nope"), None);
        assert_eq!(token_hash(token.as_bytes()).len(), 64);
        assert!(valid_id(&random_id(6).unwrap()));
    }

    #[test]
    fn a_node_receives_what_its_tags_or_rules_cover() {
        let node_tags: BTreeSet<String> = ["kiosk".to_owned()].into();
        let rules = vec![Rule {
            tag: "kiosk".into(),
            namespace: "default".into(),
            prefix: "kiosk/".into(),
        }];
        let a = Assignment {
            node_tags: &node_tags,
            rules: &rules,
        };
        let none = BTreeSet::new();
        assert!(a.covers("default", "kiosk/wifi", &none));
        assert!(!a.covers("other", "kiosk/wifi", &none));
        assert!(!a.covers("default", "lab/x", &none));
        assert!(a.covers("default", "lab/x", &node_tags));
        let lab: BTreeSet<String> = ["lab".to_owned()].into();
        assert!(!a.covers("default", "lab/x", &lab));
    }
}
