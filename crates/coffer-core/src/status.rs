//! What `status` reports: seal state and store facts, never a value or a secret's name.

use coffer_types::Timestamp;
pub use coffer_types::wire::SlotSummary;

/// Whether the store can serve secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
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
#[derive(Debug, Clone, serde::Serialize)]
pub struct TpmStatus {
    /// A TPM answered at start.
    pub present: bool,
    /// Its TCTI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcti: Option<String>,
}

/// The JIT cache's figures.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct CacheStatus {
    /// Cached values.
    pub entries: usize,
    /// Their bytes.
    pub bytes: usize,
    /// Time to live in seconds (0: the cache is off).
    pub ttl_seconds: u64,
}

/// Locked-memory figures.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct MemoryStatus {
    /// Pages locked for secrets now.
    pub locked_pages: usize,
    /// Times the kernel refused to lock a page since start.
    pub lock_refusals: u64,
}

/// The daemon's state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusReport {
    /// Seal state.
    pub state: SealState,
    /// Why it is sealed or unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// coffer's version.
    pub version: &'static str,
    /// The storage backend.
    pub backend: &'static str,
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
}

pub(crate) fn show_time(t: Timestamp) -> String {
    t.to_string()
}
