//! An open namespace: its key, the associated data of each record kind, and the write and
//! modify plans that run inside the backend's transaction.

use std::collections::BTreeMap;

use coffer_crypto::aead::Aad;
use coffer_crypto::{CryptoError, NamespaceKey, SecretBytes};
use coffer_types::{GeneratorSpec, Kind, Namespace, SecretName, Timestamp, Version};

use crate::backend::{
    Modification, ModifyPlan, NamespaceId, NewSecret, Planned, SecretId, SecretRow, VersionRow,
    WritePlan,
};
use crate::store::{Describe, Mark, WriteMode};
use crate::{Gone, StoreError};
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
    /// KV v2's `custom_metadata`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: BTreeMap<String, String>,
    /// KV v2's `cas_required`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cas_required: bool,
    /// KV v2's `delete_version_after`, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_after: Option<u64>,
    /// Soft-deleted versions (KV v2's `deletion_time`): version number to the time it was,
    /// or will be, deleted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deleted: BTreeMap<u32, Timestamp>,
}

impl MetaBlob {
    /// When `version` was (or will be) soft-deleted.
    pub fn deletion(&self, version: Version) -> Option<Timestamp> {
        self.deleted.get(&version.get()).copied()
    }

    /// Applies a [`Describe`]'s changes but the description and the version limit.
    fn apply_kv(&mut self, change: &Describe, current: Version, now: Timestamp) {
        if let Some(custom) = &change.custom_metadata {
            self.custom = custom.clone();
        }
        if let Some(required) = change.cas_required {
            self.cas_required = required;
        }
        if let Some(after) = change.delete_version_after {
            self.delete_after = (after > 0).then_some(after);
        }
        let delete = |deleted: &mut BTreeMap<u32, Timestamp>, v: u32| {
            if v >= 1 && v <= current.get() {
                let at = deleted.entry(v).or_insert(now);
                // A deletion scheduled for later happens now.
                *at = (*at).min(now);
            }
        };
        match &change.mark {
            None => {}
            Some(Mark::DeleteLatest) => delete(&mut self.deleted, current.get()),
            Some(Mark::Delete(versions)) => {
                for v in versions {
                    delete(&mut self.deleted, v.get());
                }
            }
            Some(Mark::Undelete(versions)) => {
                for v in versions {
                    self.deleted.remove(&v.get());
                }
            }
        }
    }

    /// Forgets the deletion times of versions pruned below `before`.
    fn forget_before(&mut self, before: Option<Version>) {
        if let Some(before) = before {
            self.deleted = self.deleted.split_off(&before.get());
        }
    }

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
    pub cas: Option<u32>,
    pub cas_required: bool,
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
        let ciphertext = version.ciphertext.as_ref().ok_or(StoreError::Gone(Gone {
            version: version.version,
            created: version.created,
            deletion: None,
            destroyed: true,
            custom_metadata: BTreeMap::new(),
        }))?;
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
            let stored_meta = current.map(|row| self.meta_of(row)).transpose()?;
            match w.cas {
                Some(cas) if cas != current.map_or(0, |r| r.current.get()) => {
                    return Err(StoreError::Conflict(crate::CAS_MISMATCH));
                }
                None if w.cas_required || stored_meta.as_ref().is_some_and(|m| m.cas_required) => {
                    return Err(StoreError::Conflict(
                        "check-and-set parameter required for this call",
                    ));
                }
                _ => {}
            }
            kind.check(w.value.expose_secret())
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
            let now = Timestamp::now();
            let (id, version, create, mut meta) = match (current, stored_meta) {
                (Some(row), Some(meta)) => (
                    row.id,
                    row.current.next().ok_or(StoreError::Conflict(
                        "the secret has reached the last version number",
                    ))?,
                    None,
                    meta,
                ),
                _ => (
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
            if let Some(after) = meta.delete_after {
                let ms = i64::try_from(after.saturating_mul(1000)).unwrap_or(i64::MAX);
                meta.deleted.insert(
                    version.get(),
                    Timestamp::from_millis(now.as_millis().saturating_add(ms)),
                );
            }
            let prune_before = meta.prune_before(version);
            meta.forget_before(prune_before);
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
                prune_before,
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
            meta.apply_kv(&change, row.current, Timestamp::now());
            meta.apply(change.description, change.max_versions);
            let prune_before = meta.prune_before(row.current);
            meta.forget_before(prune_before);
            Ok(Modification {
                meta_ct: Some(self.seal_meta(&row.id, &meta)?),
                prune_before,
                ..Modification::default()
            })
        })
    }
}

/// A version's facts for callers.
pub(super) fn info(v: VersionRow, meta: &MetaBlob) -> VersionInfo {
    VersionInfo {
        deleted: meta.deletion(v.version),
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
