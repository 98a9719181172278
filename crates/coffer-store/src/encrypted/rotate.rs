//! Starting a namespace key rotation (the thread that completes it is in `rekey`).

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};

use coffer_crypto::NamespaceKey;
use coffer_types::{EventAction, Namespace};

use super::namespace::OpenNamespace;
use super::{EncryptedStore, namespace_key_aad};
use crate::StoreError;
use crate::backend::Backend;
use crate::store::Change;

impl<B: Backend + ?Sized> EncryptedStore<B> {
    /// Starts a key rotation of `namespace`: a new key generation, wrapped under the master
    /// key, used by every write from now on; a background thread re-encrypts what older
    /// generations sealed and then forgets them. Answers the new generation.
    /// [`StoreError::Conflict`] while a rotation of the namespace is in progress.
    pub fn rotate_key(&self, namespace: &Namespace, by: Change<'_>) -> Result<u32, StoreError> {
        let _held = self.creating.lock().unwrap_or_else(PoisonError::into_inner);
        self.check_current()?;
        let old = self.namespace(namespace)?;
        if self.row(&old.id)?.lock_wrap.is_some() {
            // Its passphrase wrap is bound to the current generation and only the
            // passphrase re-seals it.
            return Err(StoreError::Conflict(
                "the namespace has a passphrase (it can be locked): its key cannot be rotated \
                 (docs/key-hierarchy.md, \"Rotating keys\")",
            ));
        }
        if !old.older.is_empty() {
            return Err(StoreError::Conflict(
                "a key rotation of this namespace is in progress; wait for it to complete",
            ));
        }
        let next = old.key_version.checked_add(1).ok_or(StoreError::Conflict(
            "the namespace has reached the last key generation",
        ))?;
        let key = NamespaceKey::generate().map_err(StoreError::Crypto)?;
        let wrapped_key = self
            .master
            .wrap(&key, &namespace_key_aad(&old.id, next))
            .map_err(StoreError::Crypto)?;
        let event = self.sealer.plan(
            namespace,
            None,
            by,
            EventAction::NamespaceKeyRotating,
            vec![],
        );
        self.backend.rotate_namespace_key(
            crate::KeyRotation {
                namespace: old.id,
                from: old.key_version,
                to: next,
                wrapped_key,
            },
            event,
        )?;
        let mut older = BTreeMap::new();
        older.insert(old.key_version, old.key.duplicate());
        let ns = Arc::new(OpenNamespace {
            id: old.id,
            path: old.path.clone(),
            key,
            key_version: next,
            older,
            names: old.names.clone(),
        });
        self.namespaces
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(namespace.clone(), super::Held::Open(ns.clone()));
        self.rekeyer.enqueue(&ns, vec![Arc::downgrade(&old)]);
        Ok(next)
    }
}
