//! Gate 7 for namespaces that lock: create with a passphrase, set a passphrase, lock,
//! unlock (DESIGN.md, "A namespace may also be locked by its own passphrase"). The grant
//! (`sudo` on `sys/namespaces`, as creating one needs) was checked at gate 5.
//!
//! Argon2id (64 MiB, tens to hundreds of ms) runs on the blocking pool under the daemon's
//! password-hash permits (the ones yescrypt uses), so a flood of unlocks waits rather than
//! taking the machine's memory. A wrong passphrase costs the caller several requests of its
//! rate (gate 4's limiter), so guessing is slow even for a caller the limiter admits.

use std::sync::Arc;

use coffer_crypto::SecretBytes;
use coffer_store::{Change, StoreError};
use coffer_types::Namespace;

use super::state::{Gated, Service, blocking, stored};
use crate::access::Principal;
use crate::{CoreError, Gate, Refusal, Reply};

/// Requests of the caller's rate a wrong passphrase costs besides its own.
const WRONG_PASSPHRASE_COST: usize = 4;

/// What to do to the namespace.
pub(super) enum LockOp {
    Create(Option<SecretBytes>),
    Passphrase(SecretBytes),
    Lock,
    Unlock(SecretBytes),
}

impl Service {
    pub(super) async fn namespace_lock_op(
        &self,
        who: &Principal,
        namespace: &coffer_types::Parsed<Namespace>,
        op: LockOp,
    ) -> Gated<Reply> {
        let store = self.store()?;
        let namespace = namespace
            .valid()
            .map_err(|e| Refusal::at(Gate::Validation, CoreError::InvalidName(e)))?
            .clone();
        let actor = who.actor();
        let hashes = matches!(
            op,
            LockOp::Create(Some(_)) | LockOp::Passphrase(_) | LockOp::Unlock(_)
        );
        // A permit for the Argon2id work, moved into the blocking task: a caller who leaves
        // does not free it before the hash is done.
        let permit = if hashes {
            Some(
                Arc::clone(&self.yescrypt)
                    .acquire_owned()
                    .await
                    .map_err(|_| {
                        Refusal::at(Gate::Store, CoreError::Unavailable("stopping".to_owned()))
                    })?,
            )
        } else {
            None
        };
        let (ns, locking) = (namespace.clone(), matches!(op, LockOp::Lock));
        let done = blocking(move || {
            let _permit = permit;
            let by = Change::by(&actor);
            Ok(match op {
                LockOp::Create(pass) => store.create_namespace_with(&ns, pass.as_ref(), by),
                LockOp::Passphrase(pass) => store.set_namespace_passphrase(&ns, &pass, by),
                LockOp::Lock => store.lock_namespace(&ns, by),
                LockOp::Unlock(pass) => store.unlock_namespace(&ns, &pass, by),
            })
        })
        .await
        .map_err(stored)?;
        match done {
            Ok(()) => {}
            Err(StoreError::WrongPassphrase) => {
                for _ in 0..WRONG_PASSPHRASE_COST {
                    let _ = self.access.admit(who);
                }
                return Err(Refusal::at(
                    Gate::Store,
                    CoreError::Store(StoreError::WrongPassphrase),
                ));
            }
            Err(e) => return Err(stored(CoreError::Store(e))),
        }
        if locking {
            // Every cached value of the namespace goes at once; watches of it end.
            self.cache.flush_namespace(&namespace);
            tracing::info!(
                event = "secret_action",
                "a namespace was locked; its cached values were flushed"
            );
        }
        Ok(Reply::Done)
    }
}
