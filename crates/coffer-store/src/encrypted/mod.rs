//! [`EncryptedStore`]: the data model over sealed rows, written once for every backend.
//!
//! What is bound where (each a distinct associated-data context):
//! - a value: namespace, secret id, version, kind (`coffer entry v1`), under the namespace key;
//! - a secret's name and metadata: namespace and secret id, under the namespace key;
//! - a namespace key: namespace id and key generation, under the master key;
//! - a namespace path: namespace id, under the master key.
//!
//! So a ciphertext copied into another row, another version or another namespace fails to
//! decrypt, and a stolen database yields no name and no value.

mod namespace;

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use coffer_crypto::aead::Aad;
use coffer_crypto::{IndexKey, MasterKey, NamespaceKey};
use coffer_types::{Namespace, SecretName, Timestamp, Version};

use crate::StoreError;
use crate::backend::{
    Backend, Modification, NameHash, NamespaceId, NamespaceRow, SecretRow, Written,
};
use crate::store::{Describe, ListQuery, Page, Secret, SecretStore, Write};
use coffer_types::{SecretMeta, SecretSummary, VersionInfo};
use namespace::{OpenNamespace, VersionPlan, info};

/// A page of live rows with their decrypted names, and the namespace they belong to.
type NamedPage = (Arc<OpenNamespace>, Page<(SecretName, SecretRow)>);

/// The first generation of every namespace key.
const FIRST_KEY_VERSION: u32 = 1;

/// The data model over a backend, holding the unsealed keys. Dropping it forgets them.
pub struct EncryptedStore<B: Backend + ?Sized> {
    backend: Arc<B>,
    master: MasterKey,
    index: IndexKey,
    /// Seeded foldhash: looked up on every request, cheaper than SipHash, still keyed.
    namespaces: RwLock<HashMap<Namespace, Arc<OpenNamespace>, foldhash::fast::RandomState>>,
}

fn namespace_key_aad(id: &NamespaceId, key_version: u32) -> Aad {
    Aad::new("coffer namespace key v1")
        .with(id)
        .with_u32(key_version)
}

fn namespace_name_aad(id: &NamespaceId) -> Aad {
    Aad::new("coffer namespace name v1").with(id)
}

fn corrupt(what: &'static str) -> impl Fn(coffer_crypto::CryptoError) -> StoreError {
    move |source| StoreError::Corrupt { what, source }
}

impl<B: Backend + ?Sized> EncryptedStore<B> {
    /// Opens the store with its master key, unwrapping every namespace key.
    pub fn open(backend: Arc<B>, master: MasterKey) -> Result<Self, StoreError> {
        let index = master.index_key();
        let mut namespaces = HashMap::default();
        for row in backend.namespaces()? {
            let ns = Self::open_namespace(&master, &row)?;
            namespaces.insert(ns.path.clone(), Arc::new(ns));
        }
        Ok(Self {
            backend,
            master,
            index,
            namespaces: RwLock::new(namespaces),
        })
    }

    fn open_namespace(master: &MasterKey, row: &NamespaceRow) -> Result<OpenNamespace, StoreError> {
        let path = master
            .open(&row.name_ct, &namespace_name_aad(&row.id))
            .map_err(corrupt("namespace name"))?;
        let path = path
            .expose_str()
            .and_then(|s| {
                // The daemon's own namespace is outside the grammar on purpose.
                if s == Namespace::SYSTEM {
                    Some(Namespace::system())
                } else {
                    Namespace::parse(s).ok()
                }
            })
            .ok_or(StoreError::Malformed("a stored namespace"))?;
        let key = master
            .unwrap_key(
                &row.wrapped_key,
                &namespace_key_aad(&row.id, row.key_version),
            )
            .map_err(corrupt("namespace key"))?;
        Ok(OpenNamespace {
            id: row.id,
            path,
            key,
            key_version: row.key_version,
        })
    }

    /// The backend underneath.
    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    fn namespace_id(&self, namespace: &Namespace) -> NamespaceId {
        self.index
            .hash("namespace", &[namespace.as_str().as_bytes()])
    }

    fn name_hash(&self, namespace: &Namespace, name: &SecretName) -> NameHash {
        self.index.hash(
            "secret name",
            &[namespace.as_str().as_bytes(), name.as_str().as_bytes()],
        )
    }

    fn namespace(&self, namespace: &Namespace) -> Result<Arc<OpenNamespace>, StoreError> {
        self.namespaces
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(namespace)
            .cloned()
            .ok_or(StoreError::NotFound("namespace"))
    }

    fn live(
        &self,
        namespace: &Namespace,
        name: &SecretName,
    ) -> Result<(Arc<OpenNamespace>, SecretRow), StoreError> {
        let ns = self.namespace(namespace)?;
        let (row, _) = self
            .backend
            .read(&ns.id, &self.name_hash(namespace, name), None)?
            .ok_or(StoreError::NotFound("secret"))?;
        Ok((ns, row))
    }

    fn meta(&self, ns: &OpenNamespace, row: &SecretRow) -> Result<SecretMeta, StoreError> {
        let blob = ns.meta_of(row)?;
        let versions = self
            .backend
            .versions(&row.id)?
            .into_iter()
            .map(|v| info(v, &blob))
            .collect();
        Ok(SecretMeta {
            namespace: ns.path.clone(),
            name: ns.name_of(row)?,
            index: row.index,
            current: row.current,
            kind: row.kind,
            created: row.created,
            updated: row.updated,
            description: blob.description,
            generated: blob.generated,
            max_versions: blob.max_versions,
            revoked: row.revoked,
            versions,
            custom_metadata: blob.custom,
            cas_required: blob.cas_required,
            delete_version_after: blob.delete_after,
        })
    }

    /// Live rows with their names, sorted, filtered and paged as `query` asks.
    fn page(&self, namespace: &Namespace, query: &ListQuery) -> Result<NamedPage, StoreError> {
        let ns = self.namespace(namespace)?;
        let mut named = Vec::new();
        for row in self.backend.secrets(&ns.id)? {
            let name = ns.name_of(&row)?;
            let wanted = query
                .prefix
                .as_deref()
                .is_none_or(|p| name.as_str().starts_with(p))
                && query.after.as_ref().is_none_or(|a| &name > a);
            if wanted {
                named.push((name, row));
            }
        }
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let limit = query.limit.max(1);
        let next = (named.len() > limit).then(|| named[limit - 1].0.clone());
        named.truncate(limit);
        Ok((ns, Page { items: named, next }))
    }

    fn modify(
        &self,
        namespace: &Namespace,
        name: &SecretName,
        plan: crate::backend::ModifyPlan,
    ) -> Result<crate::backend::Modified, StoreError> {
        let ns = self.namespace(namespace)?;
        self.backend
            .modify(&ns.id, &self.name_hash(namespace, name), plan)?
            .ok_or(StoreError::NotFound("secret"))
    }
}

impl<B: Backend + ?Sized> SecretStore for EncryptedStore<B> {
    fn backend_kind(&self) -> &'static str {
        self.backend.kind()
    }

    fn namespaces(&self) -> Vec<Namespace> {
        let mut all: Vec<Namespace> = self
            .namespaces
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        all.sort();
        all
    }

    fn has_namespace(&self, namespace: &Namespace) -> bool {
        self.namespaces
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(namespace)
    }

    fn create_namespace(&self, namespace: &Namespace) -> Result<(), StoreError> {
        let id = self.namespace_id(namespace);
        let key = NamespaceKey::generate().map_err(StoreError::Crypto)?;
        let row = NamespaceRow {
            id,
            name_ct: self
                .master
                .seal(namespace.as_str().as_bytes(), &namespace_name_aad(&id))
                .map_err(StoreError::Crypto)?,
            key_version: FIRST_KEY_VERSION,
            wrapped_key: self
                .master
                .wrap(&key, &namespace_key_aad(&id, FIRST_KEY_VERSION))
                .map_err(StoreError::Crypto)?,
            created: Timestamp::now(),
        };
        self.backend.create_namespace(row)?;
        self.namespaces
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                namespace.clone(),
                Arc::new(OpenNamespace {
                    id,
                    path: namespace.clone(),
                    key,
                    key_version: FIRST_KEY_VERSION,
                }),
            );
        Ok(())
    }

    fn get(
        &self,
        namespace: &Namespace,
        name: &SecretName,
        version: Option<Version>,
    ) -> Result<Secret, StoreError> {
        let ns = self.namespace(namespace)?;
        let (row, ver) = self
            .backend
            .read(&ns.id, &self.name_hash(namespace, name), version)?
            .ok_or(StoreError::NotFound("secret"))?;
        let meta = ns.meta_of(&row)?;
        let deletion = meta.deletion(ver.version);
        if deletion.is_some_and(|d| d <= Timestamp::now()) {
            return Err(StoreError::Gone(crate::Gone {
                version: ver.version,
                created: ver.created,
                deletion,
                destroyed: ver.ciphertext.is_none(),
                custom_metadata: meta.custom,
            }));
        }
        let value = match ns.open_version(&row, &ver) {
            Err(StoreError::Gone(mut gone)) => {
                gone.custom_metadata = meta.custom;
                return Err(StoreError::Gone(gone));
            }
            other => other?,
        };
        Ok(Secret {
            value,
            version: ver.version,
            kind: ver.kind,
            index: row.index,
            created: ver.created,
            deletion,
            custom_metadata: meta.custom,
        })
    }

    fn set(
        &self,
        namespace: &Namespace,
        name: &SecretName,
        write: Write<'_>,
    ) -> Result<Written, StoreError> {
        let ns = self.namespace(namespace)?;
        let id = ns.id;
        let plan = ns.write_plan(VersionPlan {
            name: name.clone(),
            value: write.value.clone(),
            kind: write.kind,
            new_kind: write.new_kind,
            actor: write.actor.to_owned(),
            mode: write.mode,
            description: write.description,
            max_versions: write.max_versions,
            new_max_versions: write.new_max_versions,
            generated: write.generated,
            cas: write.cas,
            cas_required: write.cas_required,
        });
        self.backend
            .write(&id, &self.name_hash(namespace, name), plan)
    }

    fn delete(&self, namespace: &Namespace, name: &SecretName) -> Result<(), StoreError> {
        let ns = self.namespace(namespace)?;
        if self
            .backend
            .delete(&ns.id, &self.name_hash(namespace, name))?
        {
            Ok(())
        } else {
            Err(StoreError::NotFound("secret"))
        }
    }

    fn list(
        &self,
        namespace: &Namespace,
        query: &ListQuery,
    ) -> Result<Page<SecretName>, StoreError> {
        let (_, page) = self.page(namespace, query)?;
        Ok(Page {
            items: page.items.into_iter().map(|(name, _)| name).collect(),
            next: page.next,
        })
    }

    fn summaries(
        &self,
        namespace: &Namespace,
        query: &ListQuery,
    ) -> Result<Page<SecretSummary>, StoreError> {
        let (ns, page) = self.page(namespace, query)?;
        let items = page
            .items
            .into_iter()
            .map(|(name, row)| {
                let meta = ns.meta_of(&row)?;
                Ok(SecretSummary {
                    name,
                    index: row.index,
                    current: row.current,
                    kind: row.kind,
                    created: row.created,
                    updated: row.updated,
                    description: meta.description,
                    generated: meta.generated.is_some(),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Page {
            items,
            next: page.next,
        })
    }

    fn revoked(&self, namespace: &Namespace) -> Result<Vec<SecretMeta>, StoreError> {
        let ns = self.namespace(namespace)?;
        let mut all = self
            .backend
            .revoked(&ns.id)?
            .iter()
            .map(|row| self.meta(&ns, row))
            .collect::<Result<Vec<_>, _>>()?;
        all.sort_by(|a, b| (&a.name, a.revoked).cmp(&(&b.name, b.revoked)));
        Ok(all)
    }

    fn versions(
        &self,
        namespace: &Namespace,
        name: &SecretName,
    ) -> Result<Vec<VersionInfo>, StoreError> {
        let (ns, row) = self.live(namespace, name)?;
        let blob = ns.meta_of(&row)?;
        Ok(self
            .backend
            .versions(&row.id)?
            .into_iter()
            .map(|v| info(v, &blob))
            .collect())
    }

    fn metadata(&self, namespace: &Namespace, name: &SecretName) -> Result<SecretMeta, StoreError> {
        let (ns, row) = self.live(namespace, name)?;
        self.meta(&ns, &row)
    }

    fn describe(
        &self,
        namespace: &Namespace,
        name: &SecretName,
        change: Describe,
    ) -> Result<(), StoreError> {
        let plan = self.namespace(namespace)?.describe_plan(change);
        self.modify(namespace, name, plan).map(drop)
    }

    fn revoke(&self, namespace: &Namespace, name: &SecretName) -> Result<(), StoreError> {
        let at = Timestamp::now();
        let plan = Box::new(move |_: &SecretRow| {
            Ok(Modification {
                revoke: Some(at),
                ..Modification::default()
            })
        });
        self.modify(namespace, name, plan).map(drop)
    }

    fn destroy(
        &self,
        namespace: &Namespace,
        name: &SecretName,
        versions: &[Version],
    ) -> Result<Vec<Version>, StoreError> {
        let mut versions = versions.to_vec();
        versions.sort_unstable();
        versions.dedup();
        let plan = Box::new(move |_: &SecretRow| {
            Ok(Modification {
                destroy: versions,
                ..Modification::default()
            })
        });
        Ok(self.modify(namespace, name, plan)?.destroyed)
    }
}
