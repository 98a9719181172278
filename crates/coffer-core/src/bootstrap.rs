//! Making a store: `coffer init`, and the first boot of `coffer serve` on an empty data
//! directory (reference 004, section 1).
//!
//! A new store gets a random master key, its first slot (a key file, a passphrase, the TPM,
//! or the TPM and a passphrase), a recovery slot when asked, and the `default` namespace. The
//! header with the slots is written before the namespace; a crash between the two leaves a
//! store whose `default` namespace is created at its next unseal.

use std::path::PathBuf;
use std::sync::Arc;

use coffer_crypto::{MasterKey, RecoveryKey};
use coffer_store::{Backend, SecretStore, StoreError, StoreHeader};
use coffer_tpm::Tpm;

use crate::CoreError;
use crate::vault::{NewSlot, make_slot, open_store};

/// What initialization made.
pub struct Initialized {
    /// The open store.
    pub store: Arc<dyn SecretStore>,
    /// The master key (kept by the vault for adding slots).
    pub master: MasterKey,
    /// The recovery key, to be shown once.
    pub recovery: Option<RecoveryKey>,
    /// The key file, when one was minted.
    pub minted: Option<PathBuf>,
}

/// Initializes an empty backend with `first` and, when asked, a recovery slot.
pub fn initialize(
    backend: Arc<dyn Backend>,
    first: NewSlot,
    with_recovery: bool,
    tpm: Option<Arc<Tpm>>,
) -> Result<Initialized, CoreError> {
    if StoreHeader::load(backend.as_ref())?.is_some() {
        return Err(CoreError::AlreadyInitialized(
            "the store is already initialized".to_owned(),
        ));
    }
    let master = MasterKey::generate().map_err(StoreError::Crypto)?;
    let mut header = StoreHeader::new()?;
    let (slot, added) = make_slot(first, header.next_slot_id(), &master, tpm.as_ref())?;
    header.slots.push(slot);
    let recovery = if with_recovery {
        let (slot, added) = make_slot(NewSlot::Recovery, header.next_slot_id(), &master, None)?;
        header.slots.push(slot);
        added.recovery
    } else {
        None
    };
    header.save(backend.as_ref())?;
    let (store, _) = open_store(backend, master.duplicate())?;
    Ok(Initialized {
        store,
        master,
        recovery,
        minted: added.minted,
    })
}
