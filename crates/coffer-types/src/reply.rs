//! Replies that carry no secret, shared by the daemon that writes them and the clients that
//! read them: token records, policies, the audit log's verification, the daemon's status.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::Timestamp;
pub use crate::wire::SlotSummary;

/// What is kept of a token (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The public id: `token list` shows it, `token revoke` takes it, the audit log records it.
    pub accessor: String,
    /// The policies the token carries.
    pub policies: Vec<String>,
    /// The namespace the token is confined to (and its children), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// A label for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// When it was made.
    pub created: Timestamp,
    /// When it stops working.
    pub expires: Timestamp,
    /// Its time to live in seconds, as made: a renewal moves the expiry to now plus this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    /// Who made it (`uid:0`, `token:<accessor>`).
    pub creator: String,
    /// The accessor of the token that made it: revoking (or the expiry of) that token ends
    /// this one too. `None` for a token made by a peer without a token (root on the socket)
    /// or made as an orphan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The latest it can ever expire, fixed when it was made (its explicit max TTL, capped by
    /// its parent's): no renewal moves its expiry past this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_expires: Option<Timestamp>,
}

impl TokenRecord {
    /// Whether it has expired at `now`.
    pub fn expired(&self, now: Timestamp) -> bool {
        self.expires <= now
    }

    /// The record renewed at `now`: expiring its time to live from now, but never after
    /// its max expiry.
    pub fn renewed(&self, now: Timestamp) -> Self {
        let ttl_ms = match self.ttl {
            Some(secs) => i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            None => self
                .expires
                .as_millis()
                .saturating_sub(self.created.as_millis()),
        };
        let mut expires = Timestamp::from_millis(now.as_millis().saturating_add(ttl_ms));
        if let Some(max) = self.max_expires {
            expires = expires.min(max);
        }
        Self {
            expires,
            ..self.clone()
        }
    }

    /// Whether it was made without a parent token.
    pub fn orphan(&self) -> bool {
        self.parent.is_none()
    }

    /// Its max TTL in seconds from its creation (`None`: no max recorded).
    pub fn explicit_max_ttl(&self) -> Option<u64> {
        let max = self.max_expires?;
        u64::try_from((max.as_millis() - self.created.as_millis()).max(0) / 1000).ok()
    }

    /// Whether the token may act in `namespace`.
    pub fn covers(&self, namespace: &str) -> bool {
        match &self.namespace {
            None => true,
            Some(own) => {
                namespace == own
                    || namespace
                        .strip_prefix(own.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }
        }
    }
}

/// The stored and wire form of a policy: `{"rules":[{"path":"app/*","capabilities":["read"]}]}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PolicyText {
    /// The rules (coffer's form; empty for an HCL policy).
    #[serde(default)]
    pub rules: Vec<RuleText>,
    /// A Vault HCL policy, exactly as written (`path "secret/data/*" { ... }`); judged in
    /// Vault's model, beside any coffer rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hcl: Option<String>,
}

/// A rule as written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RuleText {
    /// The path pattern.
    pub path: String,
    /// The capability words.
    pub capabilities: Vec<String>,
}

/// Where a policy or binding comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicySource {
    /// Built in (`root`, and its bindings to root and the daemon's user).
    Builtin,
    /// The policy file.
    File,
    /// Put at run time, kept in the store.
    Store,
}

/// One policy as shown.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PolicyView {
    /// Its name.
    pub name: String,
    /// Where it comes from.
    pub source: PolicySource,
    /// Its rules.
    pub rules: PolicyText,
}

/// One binding as shown.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BindingView {
    /// The subject.
    pub subject: String,
    /// Its policies.
    pub policies: Vec<String>,
    /// Where the binding comes from.
    pub source: PolicySource,
}

/// Every policy and binding.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PolicyListing {
    /// The policies.
    pub policies: Vec<PolicyView>,
    /// The bindings.
    pub subjects: Vec<BindingView>,
}

/// The audit log's verification, as answered.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AuditReport {
    /// Whether the chain and the checkpoint hold.
    pub ok: bool,
    /// Records read.
    pub records: u64,
    /// Files read.
    pub files: usize,
    /// The last record's sequence number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
    /// The sequence number the newest valid checkpoint anchors (`None`: not checked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<u64>,
    /// Records written after that checkpoint.
    pub unanchored: u64,
    /// Gaps an operator acknowledged ("gap acknowledged at seq N by WHO: what is missing").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<String>,
    /// Records without a MAC (written while sealed, or in the first format).
    #[serde(default)]
    pub unauthenticated: u64,
    /// The seq the log starts with after retention removed older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained_from: Option<u64>,
    /// The TPM counter the checkpoint is anchored in against the checkpoint, in words
    /// ("TPM NV counter 0x01530000 at 12, checkpoint at 12: consistent"); absent where the
    /// log has no counter (no TPM, or a store that does not use it) or when read offline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<String>,
    /// The first problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Whether the store can serve secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SealState {
    /// Keys are in memory; secrets are served.
    Unsealed,
    /// Waiting for `coffer unseal`.
    Sealed,
    /// Something needs fixing (the key file); secret operations answer `store_unavailable`.
    Unavailable,
}

/// Whether a TPM is reachable.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TpmStatus {
    /// A TPM answered at start.
    pub present: bool,
    /// Its TCTI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcti: Option<String>,
}

/// The JIT cache's figures.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct CacheStatus {
    /// Cached values.
    pub entries: usize,
    /// Their bytes.
    pub bytes: usize,
    /// Time to live in seconds (0: the cache is off).
    pub ttl_seconds: u64,
}

/// Locked-memory figures.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct MemoryStatus {
    /// Pages locked for secrets now.
    pub locked_pages: usize,
    /// Times the kernel refused to lock a page since start.
    pub lock_refusals: u64,
}

/// A namespace key rotation in progress.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyRotationStatus {
    /// The namespace.
    pub namespace: String,
    /// The key generation new writes use.
    pub key_version: u32,
    /// Versions under it so far.
    pub done: u64,
    /// Versions with a ciphertext in the namespace.
    pub total: u64,
}

/// The daemon's state.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StatusReport {
    /// Seal state.
    pub state: SealState,
    /// Why it is sealed or unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// coffer's version.
    pub version: Cow<'static, str>,
    /// The storage backend.
    pub backend: Cow<'static, str>,
    /// The store's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_id: Option<String>,
    /// When the store was initialized.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initialized: Option<String>,
    /// Key slots.
    pub slots: Vec<SlotSummary>,
    /// How many namespaces exist (known only while unsealed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<usize>,
    /// The TPM.
    pub tpm: TpmStatus,
    /// The cache.
    pub cache: CacheStatus,
    /// Locked memory.
    pub memory: MemoryStatus,
    /// Namespace key rotations in progress: versions re-encrypted so far, out of all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_rotations: Vec<KeyRotationStatus>,
    /// The daemon's own facts (a detail: only to callers allowed `meta` on `sys/status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon: Option<DaemonFacts>,
    /// The details (store id, key-file paths, the TPM's TCTI, why the store is sealed or
    /// unavailable, the daemon's facts) were left out: the caller may not see them (`meta`
    /// on `sys/status`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub detail_withheld: bool,
}

/// What a daemon serves from and how it runs, for `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DaemonFacts {
    /// The data directory.
    pub data_dir: String,
    /// What it listens on: sockets, the HTTP API, the credentials socket.
    pub listeners: Vec<String>,
    /// The audit log: `on (DIR)`, or `off`.
    pub audit: String,
    /// Where policies come from: the policy file's and the store's, counted.
    pub policies: String,
    /// Seconds since the daemon started.
    pub uptime_seconds: u64,
    /// Live secrets outside the daemon's own namespace (known only while unsealed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<u64>,
    /// Its place in a fleet, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetFacts>,
}

/// A daemon's place in a fleet, for `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FleetFacts {
    /// `hub` (serving nodes on `--fleet-listen`) or `node`.
    pub role: String,
    /// A hub's fleet listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// On a hub: the nodes whose streams are open here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes_connected: Option<usize>,
    /// On a node: its id, once enrolled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// On a node: the hub it is connected to now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub: Option<String>,
    /// On a node: when it last heard from a hub that it holds everything assigned to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<crate::Timestamp>,
    /// On a node: seconds since then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_age_seconds: Option<u64>,
    /// On a node: the hub revision it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// On a hub: the store reads its fan-out has made since it started (events not held in
    /// memory, changed secrets' metadata and values, the registry): per change, the same
    /// however many nodes are connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_reads: Option<u64>,
}
