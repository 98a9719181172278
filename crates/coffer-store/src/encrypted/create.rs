//! Creating a namespace: its key, its sealed path, and (optionally) its passphrase wrap.

use std::sync::{Arc, PoisonError};

use coffer_crypto::{NamespaceKey, SecretBytes};
use coffer_types::{EventAction, Namespace, Timestamp};

use super::index::NameIndex;
use super::namespace::{Held, OpenNamespace};
use super::{EncryptedStore, FIRST_KEY_VERSION, namespace_key_aad, namespace_name_aad};
use crate::StoreError;
use crate::backend::{Backend, NamespaceRow};
use crate::store::{Change, SecretStore};

impl<B: Backend + ?Sized> EncryptedStore<B> {
    /// Creates `namespace`, with a passphrase wrap of its key when `passphrase` is given.
    pub(super) fn create(
        &self,
        namespace: &Namespace,
        passphrase: Option<&SecretBytes>,
        by: Change<'_>,
    ) -> Result<(), StoreError> {
        // One creation at a time, checked again under the lock: two callers racing to make
        // the same namespace (the access loader and the rotation scheduler at unseal, both
        // making the store's own) must not see the loser's `Conflict` before the winner's
        // namespace is usable.
        let _creating = self.creating.lock().unwrap_or_else(PoisonError::into_inner);
        self.check_current()?;
        if self.has_namespace(namespace) {
            return Err(StoreError::Conflict("the namespace already exists"));
        }
        if passphrase.is_some() {
            self.can_lock(namespace)?;
        }
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
            lock_wrap: passphrase
                .map(|p| self.lock_wrap(&id, FIRST_KEY_VERSION, &key, p))
                .transpose()?,
        };
        let event = self
            .sealer
            .plan(namespace, None, by, EventAction::NamespaceCreated, vec![]);
        self.backend.create_namespace(row, event)?;
        self.namespaces
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                namespace.clone(),
                Held::Open(Arc::new(OpenNamespace {
                    id,
                    path: namespace.clone(),
                    key,
                    key_version: FIRST_KEY_VERSION,
                    older: std::collections::BTreeMap::new(),
                    // A namespace that did not exist has no secrets.
                    names: Arc::new(NameIndex::empty()),
                })),
            );
        Ok(())
    }
}
