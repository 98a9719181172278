//! What coffer says about a secret without its value: metadata, versions, list entries.

use std::collections::{BTreeMap, BTreeSet};

use crate::{GeneratorSpec, Kind, Namespace, NvIndex, SecretName, Timestamp, Version};

/// One version's facts, without its value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VersionInfo {
    /// The version number.
    pub version: Version,
    /// Its kind.
    pub kind: Kind,
    /// When it was written.
    pub created: Timestamp,
    /// Who wrote it.
    pub actor: String,
    /// Whether its ciphertext was erased.
    pub destroyed: bool,
    /// When it was (or will be) soft-deleted: unreadable from then on until undeleted
    /// (KV v2's `deletion_time`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<Timestamp>,
}

impl VersionInfo {
    /// Whether the version is soft-deleted at `now`.
    pub fn deleted_at(&self, now: Timestamp) -> bool {
        self.deleted.is_some_and(|d| d <= now)
    }
}

/// A secret's metadata. Never the value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SecretMeta {
    /// Namespace.
    pub namespace: Namespace,
    /// Name.
    pub name: SecretName,
    /// Index (of a revoked secret: the one it had).
    pub index: NvIndex,
    /// Newest version.
    pub current: Version,
    /// Kind of the newest version.
    pub kind: Kind,
    /// Created.
    pub created: Timestamp,
    /// Last written.
    pub updated: Timestamp,
    /// Operator's description.
    pub description: Option<String>,
    /// How the newest value was minted, when the daemon minted it.
    pub generated: Option<GeneratorSpec>,
    /// Most versions kept; `None`: unlimited.
    pub max_versions: Option<u32>,
    /// When it was revoked.
    pub revoked: Option<Timestamp>,
    /// The operator's key-value metadata (KV v2's `custom_metadata`). Never secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_metadata: BTreeMap<String, String>,
    /// Whether every write must carry a check-and-set version (KV v2's `cas_required`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cas_required: bool,
    /// New versions are soft-deleted this many seconds after they are written (KV v2's
    /// `delete_version_after`); `None`: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_version_after: Option<u64>,
    /// Every version kept, oldest first.
    pub versions: Vec<VersionInfo>,
    /// Its rotation policy and state, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<crate::RotationInfo>,
    /// Its fleet tags: the nodes carrying one of them receive it.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub tags: BTreeSet<String>,
}

/// A secret as `list` shows it, without its version history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SecretSummary {
    /// Name.
    pub name: SecretName,
    /// Index.
    pub index: NvIndex,
    /// Newest version.
    pub current: Version,
    /// Kind of the newest version.
    pub kind: Kind,
    /// Created.
    pub created: Timestamp,
    /// Last written.
    pub updated: Timestamp,
    /// Operator's description.
    pub description: Option<String>,
    /// Whether the newest value was minted by the daemon.
    pub generated: bool,
}
