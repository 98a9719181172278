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

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use coffer_crypto::aead::Aad;
use coffer_crypto::{IndexKey, MasterKey, NamespaceKey, SecretBytes};
use coffer_types::{Kind, Namespace, SecretName, Timestamp, Version};

use crate::StoreError;
use crate::backend::{
    Backend, NameHash, NamespaceId, NamespaceRow, NewSecret, Planned, SecretId, SecretRow,
    VersionRow, WritePlan, Written,
};
use crate::store::{Secret, SecretMeta, SecretStore, VersionInfo, Write};

/// The first generation of every namespace key.
const FIRST_KEY_VERSION: u32 = 1;

/// Metadata kept encrypted with each secret.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct MetaBlob {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
}

/// An open namespace: its id, path and key.
struct OpenNamespace {
    id: NamespaceId,
    path: Namespace,
    key: NamespaceKey,
    key_version: u32,
}

impl OpenNamespace {
    fn entry_aad(&self, secret: &SecretId, version: Version, kind: Kind) -> Aad {
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

    fn corrupt(what: &'static str) -> impl Fn(coffer_crypto::CryptoError) -> StoreError {
        move |source| StoreError::Corrupt { what, source }
    }

    fn name_of(&self, row: &SecretRow) -> Result<SecretName, StoreError> {
        let plain = self
            .key
            .open(&row.name_ct, &self.name_aad(&row.id))
            .map_err(Self::corrupt("secret name"))?;
        plain
            .expose_str()
            .and_then(|s| SecretName::parse(s).ok())
            .ok_or(StoreError::Malformed("a stored name"))
    }

    fn meta_of(&self, row: &SecretRow) -> Result<MetaBlob, StoreError> {
        let plain = self
            .key
            .open(&row.meta_ct, &self.meta_aad(&row.id))
            .map_err(Self::corrupt("secret metadata"))?;
        serde_json::from_slice(plain.expose_secret())
            .map_err(|_| StoreError::Malformed("stored metadata"))
    }

    fn plan(
        self: Arc<Self>,
        name: SecretName,
        value: SecretBytes,
        kind: Kind,
        actor: String,
    ) -> WritePlan {
        Box::new(move |current: Option<&SecretRow>| {
            let now = Timestamp::now();
            let (id, version, create) = match current {
                Some(row) => (
                    row.id,
                    row.current.next().ok_or(StoreError::Conflict(
                        "the secret has reached the last version number",
                    ))?,
                    None,
                ),
                None => {
                    let id = SecretId::generate()?;
                    let meta = serde_json::to_vec(&MetaBlob::default())
                        .map_err(|_| StoreError::Malformed("metadata"))?;
                    let new = NewSecret {
                        id,
                        name_ct: self
                            .key
                            .seal(name.as_str().as_bytes(), &self.name_aad(&id))
                            .map_err(StoreError::Crypto)?,
                        meta_ct: self
                            .key
                            .seal(&meta, &self.meta_aad(&id))
                            .map_err(StoreError::Crypto)?,
                        created: now,
                    };
                    (id, Version::FIRST, Some(new))
                }
            };
            let ciphertext = self
                .key
                .seal(value.expose_secret(), &self.entry_aad(&id, version, kind))
                .map_err(StoreError::Crypto)?;
            Ok(Planned {
                create,
                version: VersionRow {
                    version,
                    kind,
                    created: now,
                    actor,
                    key_version: self.key_version,
                    ciphertext,
                },
            })
        })
    }
}

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
            .map_err(OpenNamespace::corrupt("namespace name"))?;
        let path = path
            .expose_str()
            .and_then(|s| Namespace::parse(s).ok())
            .ok_or(StoreError::Malformed("a stored namespace"))?;
        let key = master
            .unwrap_key(
                &row.wrapped_key,
                &namespace_key_aad(&row.id, row.key_version),
            )
            .map_err(OpenNamespace::corrupt("namespace key"))?;
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
    ) -> Result<(Arc<OpenNamespace>, SecretRow, Vec<VersionRow>), StoreError> {
        let ns = self.namespace(namespace)?;
        let (row, _) = self
            .backend
            .read(&ns.id, &self.name_hash(namespace, name), None)?
            .ok_or(StoreError::NotFound("secret"))?;
        let versions = self.backend.versions(&row.id)?;
        Ok((ns, row, versions))
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
        let value = ns
            .key
            .open(
                &ver.ciphertext,
                &ns.entry_aad(&row.id, ver.version, ver.kind),
            )
            .map_err(OpenNamespace::corrupt("secret value"))?;
        Ok(Secret {
            value,
            version: ver.version,
            kind: ver.kind,
            index: row.index,
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
        let plan = ns.plan(
            name.clone(),
            write.value.clone(),
            write.kind,
            write.actor.to_owned(),
        );
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

    fn list(&self, namespace: &Namespace) -> Result<Vec<SecretName>, StoreError> {
        let ns = self.namespace(namespace)?;
        let mut names = self
            .backend
            .secrets(&ns.id)?
            .iter()
            .map(|row| ns.name_of(row))
            .collect::<Result<Vec<_>, _>>()?;
        names.sort();
        Ok(names)
    }

    fn versions(
        &self,
        namespace: &Namespace,
        name: &SecretName,
    ) -> Result<Vec<VersionInfo>, StoreError> {
        let (_, _, versions) = self.live(namespace, name)?;
        Ok(versions.into_iter().map(info).collect())
    }

    fn metadata(&self, namespace: &Namespace, name: &SecretName) -> Result<SecretMeta, StoreError> {
        let (ns, row, versions) = self.live(namespace, name)?;
        let meta = ns.meta_of(&row)?;
        let newest = versions
            .iter()
            .find(|v| v.version == row.current)
            .ok_or(StoreError::Malformed("the newest version is missing"))?;
        Ok(SecretMeta {
            namespace: namespace.clone(),
            name: ns.name_of(&row)?,
            index: row.index,
            current: row.current,
            kind: newest.kind,
            created: row.created,
            updated: newest.created,
            description: meta.description,
            versions: versions.into_iter().map(info).collect(),
        })
    }
}

fn info(v: VersionRow) -> VersionInfo {
    VersionInfo {
        version: v.version,
        kind: v.kind,
        created: v.created,
        actor: v.actor,
    }
}
