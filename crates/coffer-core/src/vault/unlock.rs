//! Opening the master key through one slot: a key file, the TPM (with or without a
//! passphrase), a passphrase, the recovery key; and opening the store with it.

use std::path::PathBuf;
use std::sync::Arc;

use coffer_crypto::{
    MasterKey, RecoveryKey, SecretBytes, SlotKey, SlotKind, SlotParams, SlotRecord,
};
use coffer_store::{Backend, EncryptedStore, SecretStore, StoreError, StoreHeader};
use coffer_tpm::{PcrPolicy, SealedKey};
use coffer_types::Namespace;
use coffer_types::wire::UnsealWith;

use super::state::Vault;
use crate::{CoreError, keyfile};

/// Opens the data model with the master key (and the derivation root the header names),
/// creating `default` if a crash left it out. Answers the store and the root.
pub(crate) fn open_store(
    backend: Arc<dyn Backend>,
    master: MasterKey,
) -> Result<(Arc<dyn SecretStore>, MasterKey), CoreError> {
    let root = match StoreHeader::load(backend.as_ref())? {
        Some(header) => header.root(&master)?,
        None => master.duplicate(),
    };
    let store = EncryptedStore::open_rooted(backend, master, root.duplicate())?;
    let default = Namespace::default_namespace();
    if !store.has_namespace(&default) {
        store.create_namespace(&default, coffer_store::Change::by("coffer"))?;
    }
    Ok((Arc::new(store), root))
}

fn crypto(e: coffer_crypto::CryptoError) -> CoreError {
    CoreError::Store(StoreError::Crypto(e))
}

/// How a slot is described in messages: `tpm slot 1 (PCRs sha256:7)`.
pub(crate) fn describe(slot: &SlotRecord) -> String {
    match slot.params.pcrs() {
        Some(pcrs) => format!("{} slot {} (PCRs {pcrs})", slot.kind(), slot.id),
        None => format!("{} slot {}", slot.kind(), slot.id),
    }
}

impl Vault {
    /// Opens the master key of a store whose header is `header` but which is not this
    /// daemon's (a backup's), through slots of the kind `with`, as `coffer unseal` does:
    /// `key` is the passphrase or the recovery key, `key_file` the key file for file slots.
    /// Nothing is unsealed; TPM slots are not tried.
    pub fn open_detached(
        header: &StoreHeader,
        with: UnsealWith,
        key: Option<SecretBytes>,
        key_file: Option<PathBuf>,
    ) -> Result<MasterKey, CoreError> {
        if with == UnsealWith::Tpm {
            return Err(CoreError::Unsupported(
                "a backup is opened with the recovery key, a key file or a passphrase, not the TPM",
            ));
        }
        let vault = Self {
            backend: Arc::new(coffer_store::MemoryBackend::new()),
            options: super::VaultOptions {
                key_file,
                tpm: None,
                first_boot: None,
            },
            state: std::sync::RwLock::new(super::state::State::Sealed(String::new())),
            last_try: std::sync::Mutex::new(std::time::Instant::now()),
            unsealing: std::sync::Mutex::new(()),
            header: std::sync::Mutex::new(()),
            epoch: std::sync::atomic::AtomicU64::new(0),
            foreign_tpm_slots: std::sync::Mutex::new(Vec::new()),
        };
        vault.open_by_request(header, with, key)
    }

    pub(crate) fn key_file_of(&self, params: &SlotParams) -> Option<PathBuf> {
        match params {
            SlotParams::File { path } => Some(
                self.options
                    .key_file
                    .clone()
                    .unwrap_or_else(|| path.clone()),
            ),
            _ => None,
        }
    }
    pub(crate) fn open_file_slot(&self, slot: &SlotRecord) -> Result<MasterKey, CoreError> {
        let Some(path) = self.key_file_of(&slot.params) else {
            return Err(CoreError::InvalidRequest("not a key file slot".to_owned()));
        };
        let contents = keyfile::read(&path)?;
        let key = SlotKey::from_key_file(&contents).map_err(crypto)?;
        slot.unwrap_master(&key).map_err(|_| {
            CoreError::Unavailable(format!(
                "key file {} does not open this store (it belongs to another store, or was \
                 replaced); restore the right key file or unseal with the recovery key",
                path.display()
            ))
        })
    }
    /// Unseals a TPM slot's node key with the TPM.
    pub(crate) fn node_key(&self, slot: &SlotRecord) -> Result<SecretBytes, CoreError> {
        let (Some(pcrs), Some((public, private))) = (slot.params.pcrs(), slot.params.sealed())
        else {
            return Err(CoreError::InvalidRequest("not a TPM slot".to_owned()));
        };
        let tpm = self.tpm().ok_or_else(|| {
            CoreError::Unavailable(format!(
                "{} needs a TPM and none is reachable (set COFFER_TPM_TCTI or check {})",
                describe(slot),
                coffer_tpm::DEVICE
            ))
        })?;
        let policy: PcrPolicy = pcrs
            .parse()
            .map_err(|e: coffer_tpm::PcrPolicyError| CoreError::InvalidRequest(e.to_string()))?;
        let sealed = SealedKey {
            public: public.to_vec(),
            private: private.to_vec(),
        };
        tpm.unseal(&sealed, &policy)
            .map_err(|source| CoreError::Tpm {
                context: format!("{} did not open", describe(slot)),
                source,
            })
    }
    pub(crate) fn open_tpm_slot(
        &self,
        slot: &SlotRecord,
        passphrase: Option<&SecretBytes>,
    ) -> Result<MasterKey, CoreError> {
        let node = self.node_key(slot)?;
        let key = match (&slot.params, passphrase) {
            (SlotParams::TpmPassphrase { .. }, Some(p)) => {
                SlotKey::from_node_key_and_passphrase(&node, p, &slot.params).map_err(crypto)?
            }
            (SlotParams::TpmPassphrase { .. }, None) => {
                return Err(CoreError::InvalidRequest(format!(
                    "{} needs its passphrase too",
                    describe(slot)
                )));
            }
            _ => SlotKey::from_node_key(&node),
        };
        slot.unwrap_master(&key)
            .map_err(|_| CoreError::Denied(format!("{} does not open this store", describe(slot))))
    }
    /// `coffer unseal`: tries the slots of the kind asked for.
    pub(crate) fn open_by_request(
        &self,
        header: &StoreHeader,
        with: UnsealWith,
        key: Option<SecretBytes>,
    ) -> Result<MasterKey, CoreError> {
        match with {
            UnsealWith::KeyFile => {
                let slot = header.slots_of(SlotKind::File).next().ok_or_else(|| {
                    CoreError::InvalidRequest("this store has no key file slot".to_owned())
                })?;
                self.open_file_slot(slot)
            }
            UnsealWith::Tpm => {
                let mut last = None;
                for slot in header.slots_of(SlotKind::Tpm) {
                    match self.open_tpm_slot(slot, None) {
                        Ok(m) => return Ok(m),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| {
                    CoreError::InvalidRequest("this store has no tpm slot".to_owned())
                }))
            }
            UnsealWith::Passphrase => {
                let passphrase = key.ok_or_else(|| {
                    CoreError::InvalidRequest("unseal with a passphrase needs `key`".to_owned())
                })?;
                let mut tried = false;
                for slot in header.slots_of(SlotKind::Passphrase) {
                    tried = true;
                    let key =
                        SlotKey::from_passphrase(&passphrase, &slot.params).map_err(crypto)?;
                    if let Ok(m) = slot.unwrap_master(&key) {
                        return Ok(m);
                    }
                }
                let mut tpm_err = None;
                for slot in header.slots_of(SlotKind::TpmPassphrase) {
                    tried = true;
                    match self.open_tpm_slot(slot, Some(&passphrase)) {
                        Ok(m) => return Ok(m),
                        Err(e @ CoreError::Tpm { .. }) => tpm_err = Some(e),
                        Err(_) => {}
                    }
                }
                match (tried, tpm_err) {
                    (_, Some(e)) => Err(e),
                    (true, None) => Err(CoreError::Denied(
                        "that passphrase does not open any passphrase slot of this store"
                            .to_owned(),
                    )),
                    (false, None) => Err(CoreError::InvalidRequest(
                        "this store has no passphrase slot".to_owned(),
                    )),
                }
            }
            UnsealWith::Recovery => {
                let text = key.ok_or_else(|| {
                    CoreError::InvalidRequest("unseal with the recovery key needs `key`".to_owned())
                })?;
                let rk = RecoveryKey::parse(&text)
                    .map_err(|e| CoreError::InvalidRequest(e.to_string()))?;
                let mut any = false;
                for slot in header.slots_of(SlotKind::Recovery) {
                    any = true;
                    if let Ok(m) = slot.unwrap_master(&SlotKey::from_recovery(&rk)) {
                        return Ok(m);
                    }
                }
                Err(if any {
                    CoreError::Denied(
                        "that recovery key does not open this store's recovery slot".to_owned(),
                    )
                } else {
                    CoreError::InvalidRequest("this store has no recovery slot".to_owned())
                })
            }
            _ => Err(CoreError::Unsupported("this slot kind cannot unseal")),
        }
    }
}
