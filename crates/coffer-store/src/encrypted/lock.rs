//! Namespaces that lock (DESIGN.md, "A namespace may also be locked by its own passphrase").
//!
//! A namespace with a passphrase holds a second wrap of its key in its row (`lock_wrap`:
//! the master key's wrap sealed again under an Argon2id key of the passphrase, see
//! [`coffer_crypto::nslock`]). Locking removes the master-only wrap from the row in one
//! durable transaction and forgets the key and the name index in memory; the row then holds
//! only the passphrase wrap, so neither a restart nor a stolen database with the master key
//! opens the namespace. Unlocking opens the passphrase wrap and writes the master-only wrap
//! back.

use std::sync::{Arc, PoisonError};

use coffer_crypto::aead::Aad;
use coffer_crypto::kdf::Argon2Params;
use coffer_crypto::nslock::PassphraseWrap;
use coffer_crypto::{NamespaceKey, SecretBytes};
use coffer_types::{EventAction, Namespace};

use super::index::NameIndex;
use super::namespace::OpenNamespace;
use super::{EncryptedStore, Held, namespace_key_aad};
use crate::StoreError;
use crate::backend::{Backend, KeyWraps, NamespaceId, NamespaceRow};
use crate::store::{Change, NamespaceState};

/// The associated data of a passphrase wrap: the namespace and the key generation.
fn lock_wrap_aad(id: &NamespaceId, key_version: u32) -> Aad {
    Aad::new("coffer namespace passphrase wrap v1")
        .with(id)
        .with_u32(key_version)
}

fn parse_wrap(bytes: &[u8]) -> Result<PassphraseWrap, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|_| StoreError::Malformed("a namespace's passphrase wrap"))
}

/// The conflict a namespace without a passphrase answers to `lock`.
const NO_PASSPHRASE: &str = "the namespace has no passphrase, so it cannot be locked; set one \
                             first with `coffer namespaces passphrase NAMESPACE`";

impl<B: Backend + ?Sized> EncryptedStore<B> {
    /// A passphrase wrap of `key` (generation `key_version` of namespace `id`), serialized.
    pub(super) fn lock_wrap(
        &self,
        id: &NamespaceId,
        key_version: u32,
        key: &NamespaceKey,
        passphrase: &SecretBytes,
    ) -> Result<Vec<u8>, StoreError> {
        if passphrase.is_empty() {
            return Err(StoreError::Invalid("the passphrase is empty".to_owned()));
        }
        let wrap = PassphraseWrap::wrap(
            &self.master,
            key,
            passphrase,
            Argon2Params::default(),
            &lock_wrap_aad(id, key_version),
        )
        .map_err(StoreError::Crypto)?;
        serde_json::to_vec(&wrap).map_err(|_| StoreError::Malformed("a passphrase wrap"))
    }

    /// Whether `namespace` may have a passphrase at all: not the store's own, and only on a
    /// backend that keeps passphrase wraps.
    pub(super) fn can_lock(&self, namespace: &Namespace) -> Result<(), StoreError> {
        if namespace.is_system() {
            return Err(StoreError::Invalid(
                "the daemon's own namespace cannot have a passphrase".to_owned(),
            ));
        }
        if !self.backend.supports_locking() {
            return Err(StoreError::Unsupported(
                "this store cannot keep a namespace's passphrase (namespaces that lock need \
                 the sqlite store; TPM NV does not offer them)",
            ));
        }
        Ok(())
    }

    pub(super) fn row(&self, id: &NamespaceId) -> Result<NamespaceRow, StoreError> {
        self.backend
            .namespaces()?
            .into_iter()
            .find(|r| r.id == *id)
            .ok_or(StoreError::NotFound("namespace"))
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.creating.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every namespace with its lock state, as the rows say.
    pub(super) fn states(&self) -> Result<Vec<NamespaceState>, StoreError> {
        let mut out = self
            .backend
            .namespaces()?
            .iter()
            .map(|row| {
                Ok(NamespaceState {
                    namespace: Self::namespace_path(&self.master, row)?,
                    locked: row.locked(),
                    passphrase: row.lock_wrap.is_some(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort_by(|a, b| a.namespace.cmp(&b.namespace));
        Ok(out)
    }

    /// An open namespace that may get a passphrase or be locked now (no key rotation in
    /// progress: its passphrase wrap is bound to one key generation), with its row.
    fn lockable(
        &self,
        namespace: &Namespace,
    ) -> Result<(Arc<OpenNamespace>, NamespaceRow), StoreError> {
        let ns = self.namespace(namespace)?;
        if !ns.older.is_empty() {
            return Err(StoreError::Conflict(
                "a key rotation of the namespace is in progress; try again once it completes",
            ));
        }
        self.can_lock(namespace)?;
        let row = self.row(&ns.id)?;
        Ok((ns, row))
    }

    /// Sets or replaces the passphrase of an open namespace.
    pub(super) fn passphrase(
        &self,
        namespace: &Namespace,
        passphrase: &SecretBytes,
        by: Change<'_>,
    ) -> Result<(), StoreError> {
        let _guard = self.guard();
        let (ns, row) = self.lockable(namespace)?;
        let wrap = self.lock_wrap(&ns.id, ns.key_version, &ns.key, passphrase)?;
        let event = self.sealer.plan(
            namespace,
            None,
            by,
            EventAction::NamespacePassphrase,
            vec![],
        );
        let to = KeyWraps {
            wrapped_key: row.wrapped_key.clone(),
            lock_wrap: Some(wrap),
        };
        self.backend
            .set_namespace_wraps(&ns.id, KeyWraps::of(&row), to, event)
    }

    /// Locks `namespace`: the row loses its master-only wrap (durably, with the event), then
    /// the key and the name index are forgotten here (zeroized once the last request that
    /// holds them ends).
    pub(super) fn lock(&self, namespace: &Namespace, by: Change<'_>) -> Result<(), StoreError> {
        let _guard = self.guard();
        let (ns, row) = self.lockable(namespace)?;
        let Some(wrap) = row.lock_wrap.clone() else {
            return Err(StoreError::Conflict(NO_PASSPHRASE));
        };
        let event = self
            .sealer
            .plan(namespace, None, by, EventAction::NamespaceLocked, vec![]);
        let to = KeyWraps {
            wrapped_key: Vec::new(),
            lock_wrap: Some(wrap),
        };
        self.backend
            .set_namespace_wraps(&ns.id, KeyWraps::of(&row), to, event)?;
        self.namespaces
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(namespace.clone(), Held::Locked);
        drop(ns);
        Ok(())
    }

    /// Unlocks `namespace` with its passphrase: the master-only wrap goes back into the row.
    pub(super) fn unlock(
        &self,
        namespace: &Namespace,
        passphrase: &SecretBytes,
        by: Change<'_>,
    ) -> Result<(), StoreError> {
        let _guard = self.guard();
        match self
            .namespaces
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(namespace)
        {
            None => return Err(StoreError::NotFound("namespace")),
            Some(Held::Open(_)) => {
                return Err(StoreError::Conflict("the namespace is not locked"));
            }
            Some(Held::Locked) => {}
        }
        let id = self.namespace_id(namespace);
        let row = self.row(&id)?;
        let stored = row.lock_wrap.as_deref().ok_or(StoreError::Integrity(
            "a locked namespace has no passphrase wrap",
        ))?;
        let key = parse_wrap(stored)?
            .unwrap(
                &self.master,
                passphrase,
                &lock_wrap_aad(&id, row.key_version),
            )
            .map_err(|source| StoreError::Corrupt {
                what: "namespace passphrase wrap",
                source,
            })?
            .ok_or(StoreError::WrongPassphrase)?;
        let wrapped = self
            .master
            .wrap(&key, &namespace_key_aad(&id, row.key_version))
            .map_err(StoreError::Crypto)?;
        let event = self
            .sealer
            .plan(namespace, None, by, EventAction::NamespaceUnlocked, vec![]);
        let to = KeyWraps {
            wrapped_key: wrapped,
            lock_wrap: row.lock_wrap.clone(),
        };
        self.backend
            .set_namespace_wraps(&id, KeyWraps::of(&row), to, event)?;
        self.namespaces
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                namespace.clone(),
                Held::Open(Arc::new(OpenNamespace {
                    id,
                    path: namespace.clone(),
                    key,
                    key_version: row.key_version,
                    older: std::collections::BTreeMap::new(),
                    // Built by the first list, as at open.
                    names: Arc::new(NameIndex::pending()),
                })),
            );
        Ok(())
    }
}
