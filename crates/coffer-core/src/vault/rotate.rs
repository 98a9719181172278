//! `coffer rotate-master`: a new master key. Every slot is re-wrapped under it (key file
//! and TPM slots by the daemon, which can read and unseal their secrets; the recovery slot
//! with a new recovery key; passphrase slots with the passphrases given, or dropped when
//! asked), the derivation root is wrapped under it, and every namespace key and path is
//! sealed anew, all in one backend transaction. The running store switches to it at once.

use std::sync::PoisonError;

use coffer_crypto::{MasterKey, RecoveryKey, SecretBytes, SlotKey, SlotKind, SlotRecord};
use coffer_store::StoreError;

use super::state::{State, Vault};
use super::unlock::{describe, open_store};
use crate::{CoreError, keyfile};

/// What `rotate-master` did.
pub struct MasterRotated {
    /// The new recovery key, when the store has a recovery slot: shown this once.
    pub recovery: Option<RecoveryKey>,
    /// The passphrase slots dropped for want of their passphrase.
    pub dropped: Vec<u32>,
}

fn crypto(e: coffer_crypto::CryptoError) -> CoreError {
    CoreError::Store(StoreError::Crypto(e))
}

impl Vault {
    /// The key that opens `slot`, rebuilt by the daemon (key file, TPM) or from one of
    /// `passphrases`; `Ok(None)`: a passphrase slot none of them opens. A recovery slot gets
    /// the new recovery key `recovery`.
    fn slot_key(
        &self,
        slot: &SlotRecord,
        passphrases: &[SecretBytes],
        recovery: &RecoveryKey,
    ) -> Result<Option<SlotKey>, CoreError> {
        let opens = |key: &SlotKey| slot.unwrap_master(key).is_ok();
        Ok(match slot.kind() {
            SlotKind::Recovery => Some(SlotKey::from_recovery(recovery)),
            SlotKind::File => {
                let path = self.key_file_of(&slot.params).ok_or_else(|| {
                    CoreError::InvalidRequest("a key file slot without a path".to_owned())
                })?;
                let key = SlotKey::from_key_file(&keyfile::read(&path)?).map_err(crypto)?;
                if !opens(&key) {
                    return Err(CoreError::Unavailable(format!(
                        "{} no longer opens with {}; fix or remove the slot first",
                        describe(slot),
                        path.display()
                    )));
                }
                Some(key)
            }
            SlotKind::Tpm => Some(SlotKey::from_node_key(&self.node_key(slot)?)),
            SlotKind::Passphrase => passphrases.iter().find_map(|p| {
                SlotKey::from_passphrase(p, &slot.params)
                    .ok()
                    .filter(|k| opens(k))
            }),
            SlotKind::TpmPassphrase => {
                let node = self.node_key(slot)?;
                passphrases.iter().find_map(|p| {
                    SlotKey::from_node_key_and_passphrase(&node, p, &slot.params)
                        .ok()
                        .filter(|k| opens(k))
                })
            }
            _ => None,
        })
    }

    /// Replaces the master key (see the module). `passphrases` open the passphrase slots;
    /// a passphrase slot none opens is an error, or dropped with `drop_passphrase_slots`.
    /// Blocking (Argon2id, the TPM).
    pub fn rotate_master(
        &self,
        passphrases: &[SecretBytes],
        drop_passphrase_slots: bool,
        actor: &str,
    ) -> Result<MasterRotated, CoreError> {
        let _guard = self.header.lock().unwrap_or_else(PoisonError::into_inner);
        let (store, root) = match &*self.state.read().unwrap_or_else(PoisonError::into_inner) {
            State::Unsealed { store, root, .. } => (store.clone(), root.duplicate()),
            State::Sealed(_) => return Err(CoreError::Sealed),
            State::Unavailable(reason) => return Err(CoreError::Unavailable(reason.clone())),
        };
        let mut header = self.header()?;
        let next = MasterKey::generate().map_err(crypto)?;
        let recovery = RecoveryKey::generate().map_err(crypto)?;
        let mut slots = Vec::new();
        let mut dropped = Vec::new();
        for slot in &header.slots {
            match self.slot_key(slot, passphrases, &recovery)? {
                Some(key) => {
                    let mut record = SlotRecord::wrap(slot.id, slot.params.clone(), &key, &next)
                        .map_err(crypto)?;
                    record.created = slot.created;
                    slots.push(record);
                }
                None if drop_passphrase_slots => dropped.push(slot.id),
                None => {
                    return Err(CoreError::InvalidRequest(format!(
                        "{} needs its passphrase to be re-wrapped under the new master key: \
                         give it, or drop the slot (--drop-passphrase-slots)",
                        describe(slot)
                    )));
                }
            }
        }
        if slots.is_empty() {
            return Err(CoreError::InvalidRequest(
                "no slot would open the store under the new master key; give the \
                 passphrases or add a slot first"
                    .to_owned(),
            ));
        }
        let has_recovery = slots.iter().any(|s| s.kind() == SlotKind::Recovery);
        header.slots = slots;
        header.root = Some(next.wrap_root(&root, &header.store_id).map_err(crypto)?);
        let body = serde_json::to_vec(&header)
            .map_err(|_| CoreError::Store(StoreError::Malformed("the store header")))?;
        store.rewrap_master(&next, &body, coffer_store::Change::by(actor))?;
        drop(store);
        // The store switches to the new key now; what fails here leaves it sealed (every
        // slot re-wrapped above opens it).
        match open_store(self.backend.clone(), next.duplicate()) {
            Ok((store, root)) => self.replace(State::Unsealed {
                store,
                master: next,
                root,
            }),
            Err(e) => {
                tracing::error!(error = %e, "the store did not open under its new master key");
                self.replace(State::Sealed(format!(
                    "the master key was replaced but the store did not open again ({e}); \
                     unseal it"
                )));
                return Err(e);
            }
        }
        tracing::info!(
            dropped = dropped.len(),
            "the master key was replaced; every slot and namespace key is wrapped under it"
        );
        Ok(MasterRotated {
            recovery: has_recovery.then_some(recovery),
            dropped,
        })
    }
}
