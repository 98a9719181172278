//! An open namespace: its key, the associated data of each record kind, and the write and
//! modify plans that run inside the backend's transaction.

use coffer_crypto::aead::Aad;
use coffer_crypto::{CryptoError, NamespaceKey, SecretBytes};
use coffer_types::{GeneratorSpec, Kind, Namespace, SecretName, Timestamp, Version};

use crate::StoreError;
use crate::backend::{
    Modification, ModifyPlan, NamespaceId, NewSecret, Planned, SecretId, SecretRow, VersionRow,
    WritePlan,
};
use crate::store::{Describe, WriteMode};
use coffer_types::VersionInfo;

/// Metadata kept encrypted with each secret.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct MetaBlob {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<GeneratorSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_versions: Option<u32>,
}

impl MetaBlob {
    fn apply(&mut self, description: Option<String>, max_versions: Option<u32>) {
        if let Some(d) = description {
            self.description = (!d.is_empty()).then_some(d);
        }
        if let Some(m) = max_versions {
            self.max_versions = (m > 0).then_some(m);
        }
    }

    /// The oldest version to keep once `current` is the newest.
    fn prune_before(&self, current: Version) -> Option<Version> {
        let keep = self.max_versions?;
        current
            .get()
            .checked_sub(keep)
            .and_then(|n| Version::new(n + 1))
            .filter(|v| *v > Version::FIRST)
    }
}

/// What a plan needs to write a version, owned so it can cross to the writer thread.
pub(super) struct VersionPlan {
    pub name: SecretName,
    pub value: SecretBytes,
    pub kind: Option<Kind>,
    pub new_kind: Kind,
    pub actor: String,
    pub mode: WriteMode,
    pub description: Option<String>,
    pub max_versions: Option<u32>,
    pub new_max_versions: Option<u32>,
    pub generated: Option<GeneratorSpec>,
}

/// A namespace with its key unwrapped.
pub(super) struct OpenNamespace {
    pub id: NamespaceId,
    pub path: Namespace,
    pub key: NamespaceKey,
    pub key_version: u32,
}

fn corrupt(what: &'static str) -> impl Fn(CryptoError) -> StoreError {
    move |source| StoreError::Corrupt { what, source }
}

impl OpenNamespace {
    pub fn entry_aad(&self, secret: &SecretId, version: Version, kind: Kind) -> Aad {
        Aad::new("coffer entry v1")
            .with(self.path.as_str())
            .with(secret.0)
            .with_u32(version.get())
            .with(kind.as_str())
    }

    fn name_aad(&self, secret: &SecretId) -> Aad {
        Aad::new("coffer secret name v1")
            .with(self.path.as_str())
            .with(secret.0)
    }

    fn meta_aad(&self, secret: &SecretId) -> Aad {
        Aad::new("coffer secret meta v1")
            .with(self.path.as_str())
            .with(secret.0)
    }

    pub fn name_of(&self, row: &SecretRow) -> Result<SecretName, StoreError> {
        let plain = self
            .key
            .open(&row.name_ct, &self.name_aad(&row.id))
            .map_err(corrupt("secret name"))?;
        plain
            .expose_str()
            .and_then(|s| SecretName::parse(s).ok())
            .ok_or(StoreError::Malformed("a stored name"))
    }

    pub fn meta_of(&self, row: &SecretRow) -> Result<MetaBlob, StoreError> {
        let plain = self
            .key
            .open(&row.meta_ct, &self.meta_aad(&row.id))
            .map_err(corrupt("secret metadata"))?;
        serde_json::from_slice(plain.expose_secret())
            .map_err(|_| StoreError::Malformed("stored metadata"))
    }

    fn seal_meta(&self, id: &SecretId, meta: &MetaBlob) -> Result<Vec<u8>, StoreError> {
        let json = serde_json::to_vec(meta).map_err(|_| StoreError::Malformed("metadata"))?;
        self.key
            .seal(&json, &self.meta_aad(id))
            .map_err(StoreError::Crypto)
    }

    pub fn open_version(
        &self,
        row: &SecretRow,
        version: &VersionRow,
    ) -> Result<SecretBytes, StoreError> {
        let ciphertext = version.ciphertext.as_ref().ok_or(StoreError::Destroyed)?;
        self.key
            .open(
                ciphertext,
                &self.entry_aad(&row.id, version.version, version.kind),
            )
            .map_err(corrupt("secret value"))
    }

    /// Plans a new version given the live row (if any), checking mode and kind.
    pub fn write_plan(self: std::sync::Arc<Self>, w: VersionPlan) -> WritePlan {
        Box::new(move |current: Option<&SecretRow>| {
            match (w.mode, current) {
                (WriteMode::Create, Some(_)) => {
                    return Err(StoreError::Conflict(
                        "a secret by that name exists; rotate it instead",
                    ));
                }
                (WriteMode::Update, None) => return Err(StoreError::NotFound("secret")),
                _ => {}
            }
            let kind = w.kind.or(current.map(|r| r.kind)).unwrap_or(w.new_kind);
            kind.check(w.value.expose_secret())
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
            let now = Timestamp::now();
            let (id, version, create, mut meta) = match current {
                Some(row) => (
                    row.id,
                    row.current.next().ok_or(StoreError::Conflict(
                        "the secret has reached the last version number",
                    ))?,
                    None,
                    self.meta_of(row)?,
                ),
                None => (
                    SecretId::generate()?,
                    Version::FIRST,
                    Some(()),
                    MetaBlob {
                        max_versions: w.new_max_versions.filter(|m| *m > 0),
                        ..MetaBlob::default()
                    },
                ),
            };
            meta.apply(w.description, w.max_versions);
            meta.generated = w.generated;
            let meta_ct = self.seal_meta(&id, &meta)?;
            let create = match create {
                Some(()) => Some(NewSecret {
                    id,
                    name_ct: self
                        .key
                        .seal(w.name.as_str().as_bytes(), &self.name_aad(&id))
                        .map_err(StoreError::Crypto)?,
                    meta_ct: meta_ct.clone(),
                    created: now,
                }),
                None => None,
            };
            let ciphertext = self
                .key
                .seal(w.value.expose_secret(), &self.entry_aad(&id, version, kind))
                .map_err(StoreError::Crypto)?;
            Ok(Planned {
                meta_ct: create.is_none().then_some(meta_ct),
                create,
                prune_before: meta.prune_before(version),
                version: VersionRow {
                    version,
                    kind,
                    created: now,
                    actor: w.actor,
                    key_version: self.key_version,
                    ciphertext: Some(ciphertext),
                },
            })
        })
    }

    /// Plans a metadata change.
    pub fn describe_plan(self: std::sync::Arc<Self>, change: Describe) -> ModifyPlan {
        Box::new(move |row: &SecretRow| {
            let mut meta = self.meta_of(row)?;
            meta.apply(change.description, change.max_versions);
            Ok(Modification {
                meta_ct: Some(self.seal_meta(&row.id, &meta)?),
                prune_before: meta.prune_before(row.current),
                ..Modification::default()
            })
        })
    }
}

/// A version's facts for callers.
pub(super) fn info(v: VersionRow) -> VersionInfo {
    VersionInfo {
        version: v.version,
        kind: v.kind,
        created: v.created,
        actor: v.actor,
        destroyed: v.ciphertext.is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_the_newest_max_versions() {
        let meta = |m| MetaBlob {
            max_versions: Some(m),
            ..MetaBlob::default()
        };
        let v = |n| Version::new(n).unwrap();
        assert_eq!(meta(3).prune_before(v(3)), None);
        assert_eq!(meta(3).prune_before(v(4)), Some(v(2)));
        assert_eq!(meta(1).prune_before(v(10)), Some(v(10)));
        assert_eq!(MetaBlob::default().prune_before(v(100)), None);
    }
}
