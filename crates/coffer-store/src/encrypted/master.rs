//! Replacing the master key (`coffer rotate-master`): every namespace's path and every
//! generation of its key sealed anew under the new master key, with the new header (its
//! slots re-wrapped, the derivation root wrapped under the new key), in one backend
//! transaction.

use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use coffer_crypto::MasterKey;

use super::{EncryptedStore, corrupt, namespace_key_aad, namespace_name_aad};
use crate::StoreError;
use crate::backend::{Backend, Rewrapped};

impl<B: Backend + ?Sized> EncryptedStore<B> {
    /// Refuses a change that wraps under the master key once it was replaced.
    pub(super) fn check_current(&self) -> Result<(), StoreError> {
        if self.retired.load(Ordering::Acquire) {
            return Err(StoreError::Conflict(
                "the store's master key was replaced meanwhile; try again",
            ));
        }
        Ok(())
    }

    /// Wraps every namespace key (every generation) and path under `next` and writes them
    /// with `header` (the new store header) in one atomic transaction. Afterwards this store
    /// refuses to make namespace keys: the caller opens the store again with `next`.
    pub fn rewrap_master(
        &self,
        next: &MasterKey,
        header: &[u8],
        by: crate::Change<'_>,
    ) -> Result<(), StoreError> {
        let _held = self.creating.lock().unwrap_or_else(PoisonError::into_inner);
        self.check_current()?;
        let mut older = std::collections::HashMap::<_, Vec<(u32, Vec<u8>)>>::new();
        for row in self.backend.namespace_keys()? {
            let key = self
                .master
                .unwrap_key(
                    &row.wrapped_key,
                    &namespace_key_aad(&row.namespace, row.key_version),
                )
                .map_err(corrupt("namespace key"))?;
            let aad = namespace_key_aad(&row.namespace, row.key_version);
            older.entry(row.namespace).or_default().push((
                row.key_version,
                next.wrap(&key, &aad).map_err(StoreError::Crypto)?,
            ));
        }
        let mut rows = Vec::new();
        for row in self.backend.namespaces()? {
            if row.lock_wrap.is_some() {
                // Its passphrase wrap holds a wrap under the current master key, sealed
                // under the passphrase: it cannot be re-wrapped without the passphrase.
                return Err(StoreError::Conflict(
                    "a namespace has a passphrase (it can be locked): the master key cannot be \
                     rotated while one does (docs/key-hierarchy.md, \"Rotating keys\")",
                ));
            }
            let name_aad = namespace_name_aad(&row.id);
            let path = self
                .master
                .open(&row.name_ct, &name_aad)
                .map_err(corrupt("namespace name"))?;
            let key_aad = namespace_key_aad(&row.id, row.key_version);
            let key = self
                .master
                .unwrap_key(&row.wrapped_key, &key_aad)
                .map_err(corrupt("namespace key"))?;
            rows.push(Rewrapped {
                namespace: row.id,
                name_ct: next
                    .seal(path.expose_secret(), &name_aad)
                    .map_err(StoreError::Crypto)?,
                wrapped_key: next.wrap(&key, &key_aad).map_err(StoreError::Crypto)?,
                older: older.remove(&row.id).unwrap_or_default(),
            });
        }
        // The event is sealed under the derivation root, which the new master key keeps.
        let event = self.sealer.plan(
            &coffer_types::Namespace::system(),
            None,
            by,
            coffer_types::EventAction::MasterKeyRotated,
            vec![],
        );
        self.backend.rewrap(header, rows, event)?;
        self.retired.store(true, Ordering::Release);
        Ok(())
    }
}
