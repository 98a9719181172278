//! What coffer says about a secret without its value: metadata, versions, list entries.

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
    /// Every version kept, oldest first.
    pub versions: Vec<VersionInfo>,
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
