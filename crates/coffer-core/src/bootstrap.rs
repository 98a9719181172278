//! Making a store: `coffer init`, and the first boot of `coffer serve` on an empty data
//! directory (reference 004, section 1).
//!
//! A new store gets a random master key, its first slot (a key file or a passphrase), a
//! recovery slot when asked, and the `default` namespace. The header with the slots is
//! written before the namespace; a crash between the two leaves a store whose `default`
//! namespace is created at its next unseal.

use std::path::PathBuf;
use std::sync::Arc;

use coffer_crypto::kdf::Argon2Params;
use coffer_crypto::{MasterKey, RecoveryKey, SecretBytes, SlotKey, SlotParams, SlotRecord};
use coffer_store::{Backend, EncryptedStore, SecretStore, StoreError, StoreHeader};
use coffer_types::Namespace;

use crate::{CoreError, keyfile};

/// The slot a new store starts with.
pub enum FirstSlot {
    /// A key file at this path: minted when missing, used when already there and sound.
    KeyFile(PathBuf),
    /// A passphrase.
    Passphrase {
        /// The passphrase.
        passphrase: SecretBytes,
        /// Argon2id cost.
        argon2: Argon2Params,
    },
}

/// What initialization made.
pub struct Initialized {
    /// The open store.
    pub store: Arc<dyn SecretStore>,
    /// The recovery key, to be shown once.
    pub recovery: Option<RecoveryKey>,
    /// The key file, when one was minted.
    pub minted: Option<PathBuf>,
}

/// Initializes an empty backend.
pub fn initialize(
    backend: Arc<dyn Backend>,
    first: FirstSlot,
    with_recovery: bool,
) -> Result<Initialized, CoreError> {
    if StoreHeader::load(backend.as_ref())?.is_some() {
        return Err(CoreError::AlreadyInitialized(
            "the store is already initialized".to_owned(),
        ));
    }
    let master = MasterKey::generate().map_err(StoreError::Crypto)?;
    let mut header = StoreHeader::new()?;
    let mut minted = None;
    let (params, key) = match first {
        FirstSlot::KeyFile(path) => {
            let contents = if path.exists() {
                keyfile::read(&path)?
            } else {
                let key = keyfile::mint(&path)?;
                minted = Some(path.clone());
                key
            };
            let path = std::path::absolute(&path).unwrap_or(path);
            (
                SlotParams::File { path },
                SlotKey::from_key_file(&contents).map_err(StoreError::Crypto)?,
            )
        }
        FirstSlot::Passphrase { passphrase, argon2 } => {
            let params = SlotParams::new_passphrase(argon2).map_err(StoreError::Crypto)?;
            let key = SlotKey::from_passphrase(&passphrase, &params).map_err(StoreError::Crypto)?;
            (params, key)
        }
    };
    header.slots.push(
        SlotRecord::wrap(header.next_slot_id(), params, &key, &master)
            .map_err(StoreError::Crypto)?,
    );
    let recovery = if with_recovery {
        let rk = RecoveryKey::generate().map_err(StoreError::Crypto)?;
        header.slots.push(
            SlotRecord::wrap(
                header.next_slot_id(),
                SlotParams::Recovery {},
                &SlotKey::from_recovery(&rk),
                &master,
            )
            .map_err(StoreError::Crypto)?,
        );
        Some(rk)
    } else {
        None
    };
    header.save(backend.as_ref())?;
    let store = open_store(backend, master)?;
    Ok(Initialized {
        store,
        recovery,
        minted,
    })
}

/// Opens the data model with the master key, creating `default` if a crash left it out.
pub(crate) fn open_store(
    backend: Arc<dyn Backend>,
    master: MasterKey,
) -> Result<Arc<dyn SecretStore>, CoreError> {
    let store = EncryptedStore::open(backend, master)?;
    let default = Namespace::default_namespace();
    if !store.has_namespace(&default) {
        store.create_namespace(&default)?;
    }
    Ok(Arc::new(store))
}
