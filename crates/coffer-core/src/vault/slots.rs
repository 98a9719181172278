//! Managing key slots: add, remove (never the last), reseal TPM slots to the PCRs' current
//! values after an intended change. Each needs the store unsealed: a new slot wraps the master
//! key, which only exists while unsealed.

use std::path::PathBuf;
use std::sync::{Arc, PoisonError};

use coffer_crypto::kdf::Argon2Params;
use coffer_crypto::{
    MasterKey, RecoveryKey, SecretBytes, SlotKey, SlotKind, SlotParams, SlotRecord,
};
use coffer_store::{StoreError, StoreHeader};
use coffer_tpm::{PcrPolicy, Tpm};

use super::state::Vault;
use super::unlock::describe;
use crate::status::SlotSummary;
use crate::{CoreError, keyfile};

/// A slot to add.
pub enum NewSlot {
    /// A key file at this path: minted when missing, used when already there and sound.
    KeyFile(PathBuf),
    /// A passphrase.
    Passphrase {
        /// The passphrase.
        passphrase: SecretBytes,
        /// Argon2id cost.
        argon2: Argon2Params,
    },
    /// A recovery key, made now and answered once.
    Recovery,
    /// A node key sealed by the TPM to these PCRs.
    Tpm {
        /// The PCR policy.
        pcrs: PcrPolicy,
    },
    /// A TPM-sealed node key and a passphrase.
    TpmPassphrase {
        /// The PCR policy.
        pcrs: PcrPolicy,
        /// The passphrase.
        passphrase: SecretBytes,
        /// Argon2id cost.
        argon2: Argon2Params,
    },
}

impl NewSlot {
    /// The kind of slot this makes.
    pub fn kind(&self) -> SlotKind {
        match self {
            Self::KeyFile(_) => SlotKind::File,
            Self::Passphrase { .. } => SlotKind::Passphrase,
            Self::Recovery => SlotKind::Recovery,
            Self::Tpm { .. } => SlotKind::Tpm,
            Self::TpmPassphrase { .. } => SlotKind::TpmPassphrase,
        }
    }
}

/// What adding a slot made.
pub struct SlotAdded {
    /// The new slot's id.
    pub id: u32,
    /// The recovery key, for a recovery slot: shown once.
    pub recovery: Option<RecoveryKey>,
    /// The key file, when one was minted.
    pub minted: Option<PathBuf>,
}

fn crypto(e: coffer_crypto::CryptoError) -> CoreError {
    CoreError::Store(StoreError::Crypto(e))
}

fn need_tpm(tpm: Option<&Arc<Tpm>>) -> Result<&Arc<Tpm>, CoreError> {
    tpm.ok_or_else(|| {
        CoreError::Unavailable(format!(
            "a TPM slot needs a TPM and none is reachable (set COFFER_TPM_TCTI or check {})",
            coffer_tpm::DEVICE
        ))
    })
}

/// Seals a fresh node key: the slot's TPM parameters and the key itself.
fn sealed_node(
    tpm: &Tpm,
    pcrs: &PcrPolicy,
) -> Result<(String, Vec<u8>, Vec<u8>, SecretBytes), CoreError> {
    let node = SecretBytes::random(coffer_tpm::NODE_KEY_LEN).map_err(crypto)?;
    let sealed = tpm.seal(&node, pcrs).map_err(|source| CoreError::Tpm {
        context: format!("sealing a node key to PCRs {pcrs}"),
        source,
    })?;
    Ok((pcrs.to_string(), sealed.public, sealed.private, node))
}

/// The parameters and wrapping key of a new slot (sealing, minting or deriving as needed).
pub(crate) fn make_slot(
    new: NewSlot,
    id: u32,
    master: &MasterKey,
    tpm: Option<&Arc<Tpm>>,
) -> Result<(SlotRecord, SlotAdded), CoreError> {
    let mut added = SlotAdded {
        id,
        recovery: None,
        minted: None,
    };
    let (params, key) = match new {
        NewSlot::KeyFile(path) => {
            let contents = if path.exists() {
                keyfile::read(&path)?
            } else {
                let key = keyfile::mint(&path)?;
                added.minted = Some(path.clone());
                key
            };
            let path = std::path::absolute(&path).unwrap_or(path);
            (
                SlotParams::File { path },
                SlotKey::from_key_file(&contents).map_err(crypto)?,
            )
        }
        NewSlot::Passphrase { passphrase, argon2 } => {
            let params = SlotParams::new_passphrase(argon2).map_err(crypto)?;
            let key = SlotKey::from_passphrase(&passphrase, &params).map_err(crypto)?;
            (params, key)
        }
        NewSlot::Recovery => {
            let rk = RecoveryKey::generate().map_err(crypto)?;
            let key = SlotKey::from_recovery(&rk);
            added.recovery = Some(rk);
            (SlotParams::Recovery {}, key)
        }
        NewSlot::Tpm { pcrs } => {
            let (pcrs, public, private, node) = sealed_node(need_tpm(tpm)?, &pcrs)?;
            (
                SlotParams::Tpm {
                    pcrs,
                    public,
                    private,
                },
                SlotKey::from_node_key(&node),
            )
        }
        NewSlot::TpmPassphrase {
            pcrs,
            passphrase,
            argon2,
        } => {
            argon2.validate().map_err(crypto)?;
            let (pcrs, public, private, node) = sealed_node(need_tpm(tpm)?, &pcrs)?;
            let params = SlotParams::TpmPassphrase {
                pcrs,
                public,
                private,
                salt: SlotParams::new_salt().map_err(crypto)?,
                argon2,
            };
            let key = SlotKey::from_node_key_and_passphrase(&node, &passphrase, &params)
                .map_err(crypto)?;
            (params, key)
        }
    };
    let record = SlotRecord::wrap(id, params, &key, master).map_err(crypto)?;
    Ok((record, added))
}

impl Vault {
    /// The slots, as `coffer slots list` shows them.
    pub fn slots(&self) -> Result<Vec<SlotSummary>, CoreError> {
        Ok(self
            .header()?
            .slots
            .iter()
            .map(|s| self.summary(s))
            .collect())
    }

    /// Adds a slot. Blocking (Argon2id, the TPM).
    pub fn add_slot(&self, new: NewSlot) -> Result<SlotAdded, CoreError> {
        let _guard = self.header.lock().unwrap_or_else(PoisonError::into_inner);
        let mut header = self.header()?;
        let id = header.next_slot_id();
        let tpm = self.tpm().cloned();
        let (record, added) = self.with_master(|m| make_slot(new, id, m, tpm.as_ref()))?;
        header.slots.push(record);
        header.save(self.backend.as_ref())?;
        Ok(added)
    }

    /// Removes a slot; refuses to remove the last one.
    pub fn remove_slot(&self, id: u32) -> Result<(), CoreError> {
        let _guard = self.header.lock().unwrap_or_else(PoisonError::into_inner);
        self.with_master(|_| Ok(()))?;
        let mut header = self.header()?;
        if !header.slots.iter().any(|s| s.id == id) {
            return Err(CoreError::Store(StoreError::NotFound("slot")));
        }
        if header.slots.len() == 1 {
            return Err(CoreError::InvalidRequest(
                "this is the store's last slot; add another before removing it, or the store \
                 can never be opened again"
                    .to_owned(),
            ));
        }
        header.slots.retain(|s| s.id != id);
        header.save(self.backend.as_ref())?;
        Ok(())
    }

    /// Seals fresh node keys for TPM slots (one, or all) to the PCRs' current values, after
    /// an intended change. A `tpm+passphrase` slot needs its passphrase. Answers the slots
    /// resealed.
    pub fn reseal(
        &self,
        id: Option<u32>,
        passphrase: Option<SecretBytes>,
    ) -> Result<Vec<u32>, CoreError> {
        let _guard = self.header.lock().unwrap_or_else(PoisonError::into_inner);
        let mut header: StoreHeader = self.header()?;
        let tpm = self.tpm().cloned();
        let mut done = Vec::new();
        for slot in header.slots.iter_mut() {
            if !slot.kind().uses_tpm() || id.is_some_and(|i| i != slot.id) {
                continue;
            }
            let pcrs: PcrPolicy = slot.params.pcrs().unwrap_or_default().parse().map_err(
                |e: coffer_tpm::PcrPolicyError| CoreError::InvalidRequest(e.to_string()),
            )?;
            let new = match (slot.kind(), &passphrase) {
                (SlotKind::Tpm, _) => NewSlot::Tpm { pcrs },
                (_, Some(p)) => {
                    // Check the passphrase against the old slot's derivation first is not
                    // possible (its node key no longer unseals); the new slot uses the
                    // passphrase given, with the same cost.
                    let SlotParams::TpmPassphrase { argon2, .. } = slot.params else {
                        continue;
                    };
                    NewSlot::TpmPassphrase {
                        pcrs,
                        passphrase: p.clone(),
                        argon2,
                    }
                }
                (_, None) => {
                    return Err(CoreError::InvalidRequest(format!(
                        "{} needs its passphrase to be resealed",
                        describe(slot)
                    )));
                }
            };
            let (record, _) = self.with_master(|m| make_slot(new, slot.id, m, tpm.as_ref()))?;
            *slot = record;
            done.push(slot.id);
        }
        if done.is_empty() {
            return Err(CoreError::InvalidRequest(match id {
                Some(i) => format!("slot {i} is not a TPM slot of this store"),
                None => "this store has no TPM slot to reseal".to_owned(),
            }));
        }
        header.save(self.backend.as_ref())?;
        for id in &done {
            tracing::info!(slot = id, "resealed to the PCRs' current values");
        }
        Ok(done)
    }
}
