//! Opening the master key through a slot: automatically at start (first boot, TPM slots,
//! key file slots), or on request (`coffer unseal`).

use std::path::PathBuf;
use std::sync::Arc;

use coffer_crypto::{
    MasterKey, RecoveryKey, SecretBytes, SlotKey, SlotKind, SlotParams, SlotRecord,
};
use coffer_store::{Backend, EncryptedStore, SecretStore, StoreError, StoreHeader};
use coffer_tpm::{PcrPolicy, SealedKey, TpmRc};
use coffer_types::Namespace;
use coffer_types::wire::UnsealWith;

use super::{FirstBoot, State, Vault};
use crate::bootstrap;
use crate::vault::slots::NewSlot;
use crate::{CoreError, keyfile};

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

fn crypto(e: coffer_crypto::CryptoError) -> CoreError {
    CoreError::Store(StoreError::Crypto(e))
}

/// How a slot is described in messages: `tpm slot 1 (PCRs sha256:7)`.
pub(super) fn describe(slot: &SlotRecord) -> String {
    match slot.params.pcrs() {
        Some(pcrs) => format!("{} slot {} (PCRs {pcrs})", slot.kind(), slot.id),
        None => format!("{} slot {}", slot.kind(), slot.id),
    }
}

impl Vault {
    /// Tries what needs no person: first-boot initialization, then TPM and key-file slots.
    pub(super) fn automatic(&self) -> State {
        match self.open_automatically() {
            Ok(Some(master)) => match open_store(self.backend.clone(), master.duplicate()) {
                Ok(store) => {
                    tracing::info!(backend = self.backend.kind(), "store unsealed");
                    State::Unsealed { store, master }
                }
                Err(e) => {
                    tracing::warn!("secret store unavailable: {e}");
                    State::Unavailable(e.to_string())
                }
            },
            Ok(None) => {
                let reason = "no slot opens this store by itself; run `coffer unseal`";
                tracing::info!("store is sealed: {reason}");
                State::Sealed(reason.to_owned())
            }
            Err(OpenFailure::Sealed(reason)) => {
                tracing::warn!("store is sealed: {reason}");
                State::Sealed(reason)
            }
            Err(OpenFailure::Unavailable(e)) => {
                let reason = e.to_string();
                tracing::warn!(
                    "secret store unavailable: {reason}; every secret operation answers \
                     store_unavailable until this is fixed"
                );
                State::Unavailable(reason)
            }
        }
    }

    fn open_automatically(&self) -> Result<Option<MasterKey>, OpenFailure> {
        let Some(header) = StoreHeader::load(self.backend.as_ref())
            .map_err(|e| OpenFailure::Unavailable(e.into()))?
        else {
            return self.first_boot().map_err(OpenFailure::Unavailable);
        };
        // The TPM first: it needs no file on disk at all.
        let mut sealed_reason = None;
        for slot in header.slots_of(SlotKind::Tpm) {
            let started = std::time::Instant::now();
            match self.open_tpm_slot(slot, None) {
                Ok(master) => {
                    tracing::info!(
                        slot = slot.id,
                        pcrs = slot.params.pcrs(),
                        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                        "unsealed the node key with the TPM"
                    );
                    return Ok(Some(master));
                }
                Err(e) => {
                    let reason = format!(
                        "{e}{}",
                        match e.rc() {
                            Some(rc) if rc == TpmRc::POLICY_FAIL.to_string() =>
                                ". The PCRs no longer hold the values the node key was sealed \
                                 to (a firmware, boot chain or OS change). Unseal with another \
                                 slot (`coffer unseal --recovery`), then `coffer slots reseal` \
                                 if the change was intended",
                            _ => "",
                        }
                    );
                    tracing::warn!(
                        slot = slot.id,
                        pcrs = slot.params.pcrs(),
                        rc = e.rc(),
                        "{reason}"
                    );
                    sealed_reason.get_or_insert(reason);
                }
            }
        }
        let mut file_err = None;
        for slot in header.slots_of(SlotKind::File) {
            match self.open_file_slot(slot) {
                Ok(master) => return Ok(Some(master)),
                Err(e) => {
                    file_err.get_or_insert(e);
                }
            }
        }
        match (file_err, sealed_reason) {
            (Some(e), _) => Err(OpenFailure::Unavailable(e)),
            (None, Some(reason)) => Err(OpenFailure::Sealed(reason)),
            (None, None) => Ok(None),
        }
    }

    fn first_boot(&self) -> Result<Option<MasterKey>, CoreError> {
        let first = match (&self.options.key_file, &self.options.first_boot) {
            (Some(path), _) => NewSlot::KeyFile(path.clone()),
            (None, Some(FirstBoot::KeyFile(path))) => NewSlot::KeyFile(path.clone()),
            (None, Some(FirstBoot::Tpm(pcrs))) => NewSlot::Tpm { pcrs: pcrs.clone() },
            (None, None) => {
                return Err(CoreError::Unavailable(
                    "the store is not initialized; run `coffer init`".to_owned(),
                ));
            }
        };
        let tpm_pcrs = match &first {
            NewSlot::Tpm { pcrs } => Some(pcrs.to_string()),
            _ => None,
        };
        let made = bootstrap::initialize(self.backend.clone(), first, false, self.tpm().cloned())?;
        if let Some(minted) = &made.minted {
            tracing::warn!(
                path = %minted.display(),
                "minted a new key file for a new store. BACK IT UP, apart from the data \
                 directory: losing it makes every stored secret unrecoverable. Run \
                 `coffer init` instead to also get a recovery key"
            );
        }
        if let Some(pcrs) = tpm_pcrs {
            tracing::warn!(
                pcrs,
                "initialized a new store sealed to this machine's TPM: it opens at every boot \
                 with no person present. It has no recovery slot yet: run `coffer slots add \
                 recovery` now and keep the key offline, or a change of the measured PCRs \
                 (a firmware update) locks the store for good"
            );
        }
        Ok(Some(made.master))
    }

    pub(super) fn key_file_of(&self, params: &SlotParams) -> Option<PathBuf> {
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

    fn open_file_slot(&self, slot: &SlotRecord) -> Result<MasterKey, CoreError> {
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
    pub(super) fn node_key(&self, slot: &SlotRecord) -> Result<SecretBytes, CoreError> {
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

    fn open_tpm_slot(
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
    pub(super) fn open_by_request(
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

/// Why no slot opened the store automatically.
pub(super) enum OpenFailure {
    /// Nothing is broken, but a person must unseal (the PCRs changed).
    Sealed(String),
    /// Something must be fixed (the key file).
    Unavailable(CoreError),
}
