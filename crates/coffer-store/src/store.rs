//! The [`SecretStore`] trait: the data model of DESIGN.md in plaintext terms.
//!
//! Implemented once, by [`crate::EncryptedStore`], over any [`crate::Backend`]; the core and
//! the conformance suite speak only this trait.

use coffer_crypto::SecretBytes;
use coffer_types::{Kind, Namespace, NvIndex, SecretName, Timestamp, Version};

use crate::StoreError;

/// A decrypted secret version.
pub struct Secret {
    /// The value, in locked memory.
    pub value: SecretBytes,
    /// Which version it is.
    pub version: Version,
    /// Its kind.
    pub kind: Kind,
    /// The secret's index.
    pub index: NvIndex,
}

/// What to write.
pub struct Write<'a> {
    /// The value.
    pub value: &'a SecretBytes,
    /// Its kind.
    pub kind: Kind,
    /// Who writes it, recorded with the version (`uid:0`).
    pub actor: &'a str,
}

/// One version's facts, without its value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VersionInfo {
    /// The version number.
    pub version: Version,
    /// Its kind.
    pub kind: Kind,
    /// When it was written.
    pub created: Timestamp,
    /// Who wrote it.
    pub actor: String,
}

/// A secret's metadata. Never the value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SecretMeta {
    /// Namespace.
    pub namespace: Namespace,
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
    /// Every version, oldest first.
    pub versions: Vec<VersionInfo>,
}

/// The store as the core sees it. Blocking; call from a blocking thread.
pub trait SecretStore: Send + Sync {
    /// The backend's short name (`sqlite`, `memory`).
    fn backend_kind(&self) -> &'static str;

    /// The namespaces that exist.
    fn namespaces(&self) -> Vec<Namespace>;

    /// Whether a namespace exists.
    fn has_namespace(&self, namespace: &Namespace) -> bool;

    /// Creates a namespace with a fresh key; [`StoreError::Conflict`] if it exists.
    fn create_namespace(&self, namespace: &Namespace) -> Result<(), StoreError>;

    /// The newest version, or `version`.
    fn get(
        &self,
        namespace: &Namespace,
        name: &SecretName,
        version: Option<Version>,
    ) -> Result<Secret, StoreError>;

    /// Writes a new version (version 1 of a new secret when the name is free).
    fn set(
        &self,
        namespace: &Namespace,
        name: &SecretName,
        write: Write<'_>,
    ) -> Result<crate::Written, StoreError>;

    /// Deletes a secret with every version.
    fn delete(&self, namespace: &Namespace, name: &SecretName) -> Result<(), StoreError>;

    /// Names in a namespace, sorted. Decrypts names only, never values.
    fn list(&self, namespace: &Namespace) -> Result<Vec<SecretName>, StoreError>;

    /// A secret's versions, oldest first.
    fn versions(
        &self,
        namespace: &Namespace,
        name: &SecretName,
    ) -> Result<Vec<VersionInfo>, StoreError>;

    /// A secret's metadata.
    fn metadata(&self, namespace: &Namespace, name: &SecretName) -> Result<SecretMeta, StoreError>;
}
