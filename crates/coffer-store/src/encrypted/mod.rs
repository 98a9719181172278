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
//!
//! Lists are served from an in-memory index of each namespace's names ([`index`]), built in
//! the background when the store is opened and kept in step with every change made here.

mod create;
mod feed;
mod follow;
mod index;
mod listing;
mod lock;
mod master;
mod meta;
mod namespace;
mod rekey;
mod rotate;
mod scan;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use std::thread::JoinHandle;

use coffer_crypto::aead::Aad;
use coffer_crypto::{IndexKey, MasterKey};
use coffer_types::{ChangeEvent, EventAction, Namespace, SecretName, Timestamp, Version};

use crate::StoreError;
use crate::backend::{Backend, NameHash, NamespaceId, NamespaceRow, SecretRow, Written};
use crate::store::{
    Change, Describe, ListQuery, NameFilter, Page, Secret, SecretStore, Write, WriteValue,
};
use coffer_types::{SecretMeta, SecretSummary, VersionInfo};
use index::NameIndex;
use meta::info;
use namespace::{Held, OpenNamespace, PlanValue, VersionPlan};
use scan::scan;

/// The first generation of every namespace key.
const FIRST_KEY_VERSION: u32 = 1;

/// The data model over a backend, holding the unsealed keys. Dropping it forgets them (and
/// stops the thread building the name indexes, waiting for it).
pub struct EncryptedStore<B: Backend + ?Sized> {
    backend: Arc<B>,
    master: MasterKey,
    index: IndexKey,
    /// Seeded foldhash: looked up on every request, cheaper than SipHash, still keyed.
    namespaces: rekey::Namespaces,
    /// Set when the store is dropped: a build in progress gives up.
    closing: Arc<AtomicBool>,
    /// The thread building the name indexes of the namespaces that existed at open.
    builder: Option<JoinHandle<()>>,
    /// Rows read at a time while a name index is built.
    scan_page: usize,
    /// Seals and opens the event feed's rows.
    sealer: feed::Sealer,
    /// Held while a namespace is created, locked or unlocked, its passphrase changed, or its
    /// key generations change.
    creating: Arc<std::sync::Mutex<()>>,
    /// Re-encrypts namespaces whose key was rotated.
    rekeyer: Arc<rekey::Rekeyer>,
    /// Set once the master key was replaced under this store: it makes no more namespace
    /// keys (the store opened with the new master key does).
    retired: AtomicBool,
}

/// Rows read from the backend at a time while a name index is built; between two pages the
/// build looks at the closing flag.
const SCAN_PAGE: usize = 8192;

pub(super) fn namespace_key_aad(id: &NamespaceId, key_version: u32) -> Aad {
    Aad::new("coffer namespace key v1")
        .with(id)
        .with_u32(key_version)
}

pub(super) fn namespace_name_aad(id: &NamespaceId) -> Aad {
    Aad::new("coffer namespace name v1").with(id)
}

pub(super) fn corrupt(what: &'static str) -> impl Fn(coffer_crypto::CryptoError) -> StoreError {
    move |source| StoreError::Corrupt { what, source }
}

impl<B: Backend + ?Sized> EncryptedStore<B> {
    /// Opens the store with its master key, unwrapping every namespace key, and starts
    /// building the namespaces' name indexes in the background (a list made before its
    /// namespace's index is built waits for it, or builds it).
    pub fn open(backend: Arc<B>, master: MasterKey) -> Result<Self, StoreError> {
        Self::open_with_scan_page(backend, master, SCAN_PAGE)
    }

    /// [`EncryptedStore::open`], reading `scan_page` rows at a time when building a name
    /// index (tests use small pages so a build spans many of them).
    #[doc(hidden)]
    pub fn open_with_scan_page(
        backend: Arc<B>,
        master: MasterKey,
        scan_page: usize,
    ) -> Result<Self, StoreError> {
        let root = master.duplicate();
        Self::open_inner(backend, master, root, scan_page)
    }

    /// Opens the store with its master key and its derivation root
    /// ([`crate::StoreHeader::root`]): the row lookups and the event feed's seal come from
    /// the root; namespace keys and paths are wrapped under the master key.
    pub fn open_rooted(
        backend: Arc<B>,
        master: MasterKey,
        root: MasterKey,
    ) -> Result<Self, StoreError> {
        Self::open_inner(backend, master, root, SCAN_PAGE)
    }

    fn open_inner(
        backend: Arc<B>,
        master: MasterKey,
        root: MasterKey,
        scan_page: usize,
    ) -> Result<Self, StoreError> {
        let scan_page = scan_page.max(1);
        let index = root.index_key();
        let mut namespaces = HashMap::default();
        let mut older = HashMap::<NamespaceId, Vec<crate::NamespaceKeyRow>>::new();
        for row in backend.namespace_keys()? {
            older.entry(row.namespace).or_default().push(row);
        }
        for row in backend.namespaces()? {
            if row.locked() {
                namespaces.insert(Self::namespace_path(&master, &row)?, Held::Locked);
                continue;
            }
            let mut ns = Self::open_namespace(&master, &row)?;
            for old in older.remove(&row.id).unwrap_or_default() {
                let key = master
                    .unwrap_key(
                        &old.wrapped_key,
                        &namespace_key_aad(&row.id, old.key_version),
                    )
                    .map_err(corrupt("namespace key"))?;
                ns.older.insert(old.key_version, key);
            }
            namespaces.insert(ns.path.clone(), Held::Open(Arc::new(ns)));
        }
        let closing = Arc::new(AtomicBool::new(false));
        let open = namespaces.values().filter_map(Held::open).cloned();
        let builder = Self::start_builder(&backend, open, &closing, scan_page);
        let sealer = feed::Sealer::new(&root);
        let rekeyer = Arc::new(rekey::Rekeyer::default());
        // Rotations a crash or a seal interrupted resume now.
        for ns in namespaces
            .values()
            .filter_map(Held::open)
            .filter(|ns| !ns.older.is_empty())
        {
            rekeyer.enqueue(ns, Vec::new());
        }
        let namespaces = Arc::new(RwLock::new(namespaces));
        let creating = Arc::new(std::sync::Mutex::new(()));
        rekeyer.start(rekey::Worker {
            backend: backend.clone(),
            namespaces: namespaces.clone(),
            sealer: sealer.clone(),
            closing: closing.clone(),
            creating: creating.clone(),
        });
        Ok(Self {
            sealer,
            creating,
            rekeyer,
            backend,
            master,
            index,
            namespaces,
            closing,
            builder,
            scan_page,
            retired: AtomicBool::new(false),
        })
    }

    /// Starts the thread that builds the name indexes of `namespaces`, one after the other.
    /// Without it (the thread cannot start) every index is built by its first list.
    fn start_builder(
        backend: &Arc<B>,
        namespaces: impl Iterator<Item = Arc<OpenNamespace>>,
        closing: &Arc<AtomicBool>,
        scan_page: usize,
    ) -> Option<JoinHandle<()>> {
        let namespaces: Vec<Arc<OpenNamespace>> = namespaces.collect();
        if namespaces.is_empty() {
            return None;
        }
        let (backend, closing) = (backend.clone(), closing.clone());
        std::thread::Builder::new()
            .name("coffer-name-index".into())
            .spawn(move || {
                for ns in namespaces {
                    if closing.load(Ordering::Relaxed) {
                        return;
                    }
                    // A namespace some list is already building is left to it.
                    let built = ns
                        .names
                        .build(false, || scan(&*backend, &ns, &closing, scan_page));
                    if let Err(e) = built.as_ref()
                        && !closing.load(Ordering::Relaxed)
                    {
                        tracing::warn!(
                            error = %e,
                            "building a namespace's name index failed; its next list retries"
                        );
                    }
                }
            })
            .inspect_err(|e| {
                tracing::warn!(error = %e, "the name index thread did not start; lists build it");
            })
            .ok()
    }

    /// The path sealed in a namespace's row.
    fn namespace_path(master: &MasterKey, row: &NamespaceRow) -> Result<Namespace, StoreError> {
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
        Ok(path)
    }

    fn open_namespace(master: &MasterKey, row: &NamespaceRow) -> Result<OpenNamespace, StoreError> {
        let path = Self::namespace_path(master, row)?;
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
            older: std::collections::BTreeMap::new(),
            names: Arc::new(NameIndex::pending()),
        })
    }

    /// The backend underneath.
    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    /// The row id of a namespace (tests look at its rows through the backend).
    #[doc(hidden)]
    pub fn namespace_row_id(&self, namespace: &Namespace) -> NamespaceId {
        self.namespace_id(namespace)
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
        match self
            .namespaces
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(namespace)
        {
            Some(Held::Open(ns)) => Ok(ns.clone()),
            Some(Held::Locked) => Err(StoreError::Locked(namespace.to_string())),
            None => Err(StoreError::NotFound("namespace")),
        }
    }

    /// The live row filed under `name` and one of its versions, as the backend answers it;
    /// a row that is not the one asked for (another name hash, revoked) is an integrity error
    /// before anything of it is used. `Ok(None)` when there is no such secret.
    fn read(
        &self,
        ns: &OpenNamespace,
        name: &SecretName,
        version: Option<Version>,
    ) -> Result<Option<(SecretRow, crate::VersionRow)>, StoreError> {
        let hash = self.name_hash(&ns.path, name);
        let found = self.backend.read(&ns.id, &hash, version)?;
        if let Some((row, ver)) = &found
            && (row.name_hash != hash
                || row.revoked.is_some()
                || version.is_some_and(|v| v != ver.version))
        {
            return Err(StoreError::Integrity(
                "the backend answered another row than the one asked for",
            ));
        }
        Ok(found)
    }

    fn live(
        &self,
        namespace: &Namespace,
        name: &SecretName,
    ) -> Result<(Arc<OpenNamespace>, SecretRow), StoreError> {
        let ns = self.namespace(namespace)?;
        let (row, _) = self
            .read(&ns, name, None)?
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
            rotation: blob.rotation,
            tags: blob.tags,
        })
    }

    /// Runs a modification of the live secret `name`; records a revocation in the name
    /// index once the backend committed it.
    fn modify(
        &self,
        namespace: &Namespace,
        name: &SecretName,
        plan: crate::backend::ModifyPlan,
        event: Option<crate::EventPlan>,
    ) -> Result<crate::backend::Modified, StoreError> {
        let ns = self.namespace(namespace)?;
        let modified = self
            .backend
            .modify(&ns.id, &self.name_hash(namespace, name), plan, event)?
            .ok_or(StoreError::NotFound("secret"))?;
        if modified.row.revoked.is_some() {
            ns.names.removed(name, modified.row.id);
        }
        Ok(modified)
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

    fn secret_count(&self) -> Result<u64, StoreError> {
        // All of them, less the store's own bookkeeping (a small namespace).
        let mut own = 0u64;
        for ns in self.namespaces() {
            if ns.is_system() {
                own += self.backend.live_count(&self.namespace_id(&ns))?;
            }
        }
        Ok(self.backend.live_total()?.saturating_sub(own))
    }

    fn has_namespace(&self, namespace: &Namespace) -> bool {
        self.namespaces
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(namespace)
    }

    fn create_namespace(&self, namespace: &Namespace, by: Change<'_>) -> Result<(), StoreError> {
        self.create_namespace_with(namespace, None, by)
    }

    fn create_namespace_with(
        &self,
        namespace: &Namespace,
        passphrase: Option<&coffer_crypto::SecretBytes>,
        by: Change<'_>,
    ) -> Result<(), StoreError> {
        self.create(namespace, passphrase, by)
    }

    fn is_locked(&self, namespace: &Namespace) -> bool {
        matches!(
            self.namespaces
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(namespace),
            Some(Held::Locked)
        )
    }

    fn namespace_states(&self) -> Result<Vec<crate::NamespaceState>, StoreError> {
        self.states()
    }

    fn set_namespace_passphrase(
        &self,
        namespace: &Namespace,
        passphrase: &coffer_crypto::SecretBytes,
        by: Change<'_>,
    ) -> Result<(), StoreError> {
        self.passphrase(namespace, passphrase, by)
    }

    fn lock_namespace(&self, namespace: &Namespace, by: Change<'_>) -> Result<(), StoreError> {
        self.lock(namespace, by)
    }

    fn unlock_namespace(
        &self,
        namespace: &Namespace,
        passphrase: &coffer_crypto::SecretBytes,
        by: Change<'_>,
    ) -> Result<(), StoreError> {
        self.unlock(namespace, passphrase, by)
    }

    fn get(
        &self,
        namespace: &Namespace,
        name: &SecretName,
        version: Option<Version>,
    ) -> Result<Secret, StoreError> {
        let ns = self.namespace(namespace)?;
        let (mut row, mut ver) = self
            .read(&ns, name, version)?
            .ok_or(StoreError::NotFound("secret"))?;
        let mut meta = ns.meta_of(&row)?;
        // The newest version may wait for its rotation hook (or have been dropped by it):
        // a read without a version serves the one before.
        if version.is_none()
            && let Some(serving) = meta.serving().filter(|s| *s != ver.version)
        {
            (row, ver) = self
                .read(&ns, name, Some(serving))?
                .ok_or(StoreError::NotFound("secret"))?;
            meta = ns.meta_of(&row)?;
        }
        let value = ns.readable(&row, &ver, &meta, Timestamp::now())?;
        Ok(Secret {
            value,
            version: ver.version,
            kind: ver.kind,
            index: row.index,
            created: ver.created,
            deletion: meta.deletion(ver.version),
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
        let name_hash = self.name_hash(namespace, name);
        let plan = ns.clone().write_plan(VersionPlan {
            name: name.clone(),
            name_hash,
            value: match write.value {
                WriteValue::Given(value) => PlanValue::Given(value.clone()),
                WriteValue::Derived(derive) => PlanValue::Derived(derive),
            },
            kind: write.kind,
            new_kind: write.new_kind,
            actor: write.change.actor.to_owned(),
            mode: write.mode,
            description: write.description,
            max_versions: write.max_versions,
            new_max_versions: write.new_max_versions,
            generated: write.generated,
            cas: write.cas,
            cas_required: write.cas_required,
            rotation: write.rotation,
        });
        let event = self.sealer.plan(
            namespace,
            Some(name.as_str()),
            write.change,
            EventAction::Written,
            vec![],
        );
        let written = self.backend.write(&id, &name_hash, plan, event)?;
        if written.created {
            ns.names.created(name, written.id);
        }
        Ok(written)
    }

    fn delete(
        &self,
        namespace: &Namespace,
        name: &SecretName,
        by: Change<'_>,
    ) -> Result<(), StoreError> {
        let ns = self.namespace(namespace)?;
        let event = self.sealer.plan(
            namespace,
            Some(name.as_str()),
            by,
            EventAction::Removed,
            vec![],
        );
        let id = self
            .backend
            .delete(&ns.id, &self.name_hash(namespace, name), event)?
            .ok_or(StoreError::NotFound("secret"))?;
        ns.names.removed(name, id);
        Ok(())
    }

    fn list(
        &self,
        namespace: &Namespace,
        query: &ListQuery,
    ) -> Result<Page<SecretName>, StoreError> {
        self.names_page(&*self.namespace(namespace)?, query)
    }

    fn summaries(
        &self,
        namespace: &Namespace,
        query: &ListQuery,
    ) -> Result<Page<SecretSummary>, StoreError> {
        self.summary_page(namespace, query)
    }

    fn keys(
        &self,
        namespace: &Namespace,
        prefix: &str,
        filter: Option<&NameFilter>,
    ) -> Result<Vec<String>, StoreError> {
        self.folder(&*self.namespace(namespace)?, prefix, filter)
    }

    fn revoked(
        &self,
        namespace: &Namespace,
        query: &ListQuery,
    ) -> Result<Page<SecretMeta>, StoreError> {
        self.revoked_page(&*self.namespace(namespace)?, query)
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
        by: Change<'_>,
    ) -> Result<(), StoreError> {
        let (action, versions) = match &change.mark {
            Some(crate::Mark::Delete(v)) => (EventAction::Deleted, v.clone()),
            Some(crate::Mark::DeleteLatest) => (EventAction::Deleted, vec![]),
            Some(crate::Mark::Undelete(v)) => (EventAction::Undeleted, v.clone()),
            None => (EventAction::Described, vec![]),
        };
        let versions = versions.iter().map(|v| v.get()).collect();
        let event = self
            .sealer
            .plan(namespace, Some(name.as_str()), by, action, versions);
        let plan = self.namespace(namespace)?.describe_plan(change);
        self.modify(namespace, name, plan, event).map(drop)
    }

    fn revoke(
        &self,
        namespace: &Namespace,
        name: &SecretName,
        by: Change<'_>,
    ) -> Result<(), StoreError> {
        let event = self.sealer.plan(
            namespace,
            Some(name.as_str()),
            by,
            EventAction::Revoked,
            vec![],
        );
        let plan = self.namespace(namespace)?.revoke_plan(Timestamp::now());
        self.modify(namespace, name, plan, event).map(drop)
    }

    fn destroy(
        &self,
        namespace: &Namespace,
        name: &SecretName,
        versions: &[Version],
        by: Change<'_>,
    ) -> Result<Vec<Version>, StoreError> {
        let mut versions = versions.to_vec();
        versions.sort_unstable();
        versions.dedup();
        let event = self.sealer.plan(
            namespace,
            Some(name.as_str()),
            by,
            EventAction::Destroyed,
            versions.iter().map(|v| v.get()).collect(),
        );
        let plan = self.namespace(namespace)?.destroy_plan(versions);
        Ok(self.modify(namespace, name, plan, event)?.destroyed)
    }

    fn recent_events(&self, after: u64, limit: usize) -> Option<Vec<Arc<ChangeEvent>>> {
        let feed = self.backend.feed();
        if after > feed.head() {
            return None;
        }
        feed.after(after, limit)
    }

    fn events(&self, after: u64, limit: usize) -> Result<Vec<Arc<ChangeEvent>>, StoreError> {
        if let Some(events) = self.recent_events(after, limit) {
            return Ok(events);
        }
        let page = self.backend.events(after, limit)?;
        if after < page.floor || after > page.head {
            return Err(StoreError::Resync {
                asked: after,
                oldest: page.floor,
                head: page.head,
            });
        }
        page.rows
            .iter()
            .map(|row| self.sealer.open(row).map(Arc::new))
            .collect()
    }

    fn note(
        &self,
        namespace: &Namespace,
        by: Change<'_>,
        action: EventAction,
    ) -> Result<(), StoreError> {
        match self.sealer.plan(namespace, None, by, action, Vec::new()) {
            Some(plan) => self.backend.record_event(plan),
            None => Ok(()),
        }
    }

    fn head(&self) -> u64 {
        self.backend.feed().head()
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.backend.feed().subscribe()
    }

    fn prune_events(&self, retention: crate::Retention) -> Result<u64, StoreError> {
        self.backend.prune_events(retention, Timestamp::now())
    }

    fn rotate_key(&self, namespace: &Namespace, by: Change<'_>) -> Result<u32, StoreError> {
        EncryptedStore::rotate_key(self, namespace, by)
    }

    fn rewrap_master(
        &self,
        next: &MasterKey,
        header: &[u8],
        by: Change<'_>,
    ) -> Result<(), StoreError> {
        EncryptedStore::rewrap_master(self, next, header, by)
    }

    fn key_rotations(&self) -> Vec<crate::RekeyProgress> {
        self.rekeyer.progress()
    }

    fn follow(&self, page: &crate::RemoteChanges) -> Result<crate::Followed, StoreError> {
        EncryptedStore::follow(self, page)
    }

    fn key_generations_in_use(&self, namespace: &Namespace) -> Result<usize, StoreError> {
        Ok(1 + self.namespace(namespace)?.older.len())
    }
}

impl<B: Backend + ?Sized> Drop for EncryptedStore<B> {
    /// Stops the index builder and waits for it, so no thread keeps the keys past the store.
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Relaxed);
        self.rekeyer.stop();
        // The names in the feed's memory go with the keys.
        self.backend.feed().clear();
        if let Some(builder) = self.builder.take() {
            // A builder that panicked has nothing more to tell.
            let _ = builder.join();
        }
    }
}
