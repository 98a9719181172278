//! Following the changes other daemons sharing the backend made ([`crate::Shared`]): what
//! this store keeps in memory (namespace keys, lock states, name indexes) is brought up to
//! the database, and the names changed are handed to the caches above the store.
//!
//! A changed secret is looked up again by its hash, and the name index is told the facts it
//! keeps (see `index`): the secret named in the change exists (created) or does not
//! (removed), and whichever secret holds the name now exists. The index's facts are a set, so
//! repeating one, or seeing one this daemon already applied, changes nothing.

use std::sync::{Arc, PoisonError};

use coffer_types::Namespace;

use super::index::NameIndex;
use super::namespace::{Held, OpenNamespace};
use super::{EncryptedStore, corrupt, namespace_key_aad};
use crate::backend::{Backend, NamespaceId, NamespaceRow};
use crate::{Followed, RemoteChanges, StoreError};

impl<B: Backend + ?Sized> EncryptedStore<B> {
    /// Applies a page of changes other daemons made (see the module header). A secret this
    /// store cannot open (its namespace locked here, or unknown) is skipped: nothing of it
    /// is cached.
    pub fn follow(&self, page: &RemoteChanges) -> Result<Followed, StoreError> {
        let mut out = Followed {
            everything: page.lost,
            ..Followed::default()
        };
        let whole = page.lost || page.changes.iter().any(|c| c.namespace.is_none());
        if whole || page.changes.iter().any(|c| c.secret.is_none()) {
            (out.namespaces, out.master_replaced) = self.reload_namespaces(page.lost)?;
        }
        out.everything |= whole;
        for change in &page.changes {
            let (Some(ns_id), Some(secret)) = (&change.namespace, &change.secret) else {
                continue;
            };
            let Some(ns) = self.open_by_id(ns_id) else {
                continue;
            };
            let name = ns.open_name(&secret.id, &secret.name_ct)?;
            let live = self.backend.read(ns_id, &secret.name_hash, None)?;
            match &live {
                Some((row, _)) if row.id == secret.id => ns.names.created(&name, secret.id),
                _ => ns.names.removed(&name, secret.id),
            }
            if let Some((row, _)) = live
                && row.id != secret.id
            {
                ns.names.created(&name, row.id);
            }
            out.secrets.push((ns.path.clone(), name));
        }
        Ok(out)
    }

    fn open_by_id(&self, id: &NamespaceId) -> Option<Arc<OpenNamespace>> {
        self.namespaces
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter_map(Held::open)
            .find(|ns| ns.id == *id)
            .cloned()
    }

    /// Reads every namespace row again; a namespace whose row changed (new, locked,
    /// unlocked, another key generation) is opened afresh, keeping its name index unless
    /// `rebuild`. Answers the namespaces that changed, and whether one did not open with
    /// this store's master key (replaced by another daemon).
    fn reload_namespaces(&self, rebuild: bool) -> Result<(Vec<Namespace>, bool), StoreError> {
        let _creating = self.creating.lock().unwrap_or_else(PoisonError::into_inner);
        let mut older =
            std::collections::HashMap::<NamespaceId, Vec<crate::NamespaceKeyRow>>::new();
        for row in self.backend.namespace_keys()? {
            older.entry(row.namespace).or_default().push(row);
        }
        let rows = self.backend.namespaces()?;
        let mut changed = Vec::new();
        let mut replaced = false;
        let mut map = self
            .namespaces
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for row in rows {
            let Ok(path) = Self::namespace_path(&self.master, &row) else {
                replaced = true;
                continue;
            };
            let held = map.get(&path);
            let older_rows = older.remove(&row.id).unwrap_or_default();
            let mut generations: Vec<u32> = older_rows.iter().map(|k| k.key_version).collect();
            generations.sort_unstable();
            let same = match held {
                Some(Held::Locked) => row.locked(),
                Some(Held::Open(ns)) => {
                    !row.locked()
                        && ns.key_version == row.key_version
                        && ns.older.keys().copied().eq(generations.iter().copied())
                }
                None => false,
            };
            if same && !rebuild {
                continue;
            }
            if row.locked() {
                map.insert(path.clone(), Held::Locked);
                changed.push(path);
                continue;
            }
            let names = match held {
                Some(Held::Open(ns)) if !rebuild => ns.names.clone(),
                _ => Arc::new(NameIndex::pending()),
            };
            match self.reopen(&row, older_rows, names) {
                Ok(ns) => {
                    map.insert(path.clone(), Held::Open(Arc::new(ns)));
                    changed.push(path);
                }
                // The master key was replaced by another daemon: this store must be opened
                // again (the caller closes it) rather than seal new keys under the old one.
                Err(e) => {
                    tracing::warn!(error = %e, "a namespace changed by another hub does not open with this hub's master key");
                    replaced = true;
                }
            }
        }
        Ok((changed, replaced))
    }

    fn reopen(
        &self,
        row: &NamespaceRow,
        older: Vec<crate::NamespaceKeyRow>,
        names: Arc<NameIndex>,
    ) -> Result<OpenNamespace, StoreError> {
        let mut ns = Self::open_namespace(&self.master, row)?;
        ns.names = names;
        for old in older {
            let key = self
                .master
                .unwrap_key(
                    &old.wrapped_key,
                    &namespace_key_aad(&row.id, old.key_version),
                )
                .map_err(corrupt("namespace key"))?;
            ns.older.insert(old.key_version, key);
        }
        Ok(ns)
    }
}
