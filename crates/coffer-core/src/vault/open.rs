//! Opening the master key through a slot: automatically at start (first boot, TPM slots,
//! key file slots), or on request (`coffer unseal`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use coffer_crypto::{MasterKey, SecretBytes, SlotKind};
use coffer_store::{Backend, SecretStore, StoreHeader};
use coffer_tpm::TpmRc;
use coffer_types::wire::UnsealWith;

use super::state::{FirstBoot, RETRY_EVERY, State, Vault, VaultOptions};
use super::unlock::open_store;
use crate::CoreError;
use crate::bootstrap;
use crate::status::{
    CacheStatus, MemoryStatus, SealState, SlotSummary, StatusReport, TpmStatus, show_time,
};
use crate::vault::slots::NewSlot;

/// How a TPM slot sealed by another machine's TPM is shown (`slots list`, status).
pub(crate) const FOREIGN_NOTE: &str = "sealed by another TPM";

impl Vault {
    /// Opens the vault, unsealing through the TPM or a key file when the store has such a
    /// slot, and initializing an empty store when `options.first_boot` says how. Never fails:
    /// a problem leaves the vault sealed or unavailable, with the reason logged and reported
    /// by `status`.
    pub fn start(backend: Arc<dyn Backend>, options: VaultOptions) -> Self {
        let vault = Self {
            backend,
            options,
            state: RwLock::new(State::Sealed(String::new())),
            last_try: Mutex::new(Instant::now()),
            unsealing: Mutex::new(()),
            header: Mutex::new(()),
            epoch: AtomicU64::new(0),
            foreign_tpm_slots: Mutex::new(Vec::new()),
        };
        let state = vault.automatic();
        vault.replace(state);
        vault
    }
    /// Gate 1: the open store, or why there is none. An unavailable store retries its key
    /// file at most once a second, so fixing it needs no restart.
    pub fn store(&self) -> Result<Arc<dyn SecretStore>, CoreError> {
        {
            let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
            match &*state {
                State::Unsealed { store, .. } => return Ok(store.clone()),
                State::Sealed(_) => return Err(CoreError::Sealed),
                State::Unavailable(reason) => {
                    let mut last = self.last_try.lock().unwrap_or_else(PoisonError::into_inner);
                    if last.elapsed() < RETRY_EVERY {
                        return Err(CoreError::Unavailable(reason.clone()));
                    }
                    *last = Instant::now();
                }
            }
        }
        let next = self.automatic();
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        // Someone may have unsealed meanwhile; only replace an unavailable state.
        if matches!(*state, State::Unavailable(_)) {
            *state = next;
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
        match &*state {
            State::Unsealed { store, .. } => Ok(store.clone()),
            State::Sealed(_) => Err(CoreError::Sealed),
            State::Unavailable(reason) => Err(CoreError::Unavailable(reason.clone())),
        }
    }
    /// Opens the store through slots of the given kind. Blocking (Argon2id and the TPM run
    /// here), one attempt at a time: an attempt that finds another under way waits for it
    /// when `queue` (an operator known to the daemon), or is refused at once
    /// (`rate_limited`: an anonymous key over the network), so guesses cannot pile up.
    pub fn unseal(
        &self,
        with: UnsealWith,
        key: Option<SecretBytes>,
        queue: bool,
    ) -> Result<(), CoreError> {
        let unsealed = || {
            matches!(
                *self.state.read().unwrap_or_else(PoisonError::into_inner),
                State::Unsealed { .. }
            )
        };
        if unsealed() {
            return Ok(());
        }
        let _one = if queue {
            self.unsealing
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        } else {
            match self.unsealing.try_lock() {
                Ok(guard) => guard,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return Err(CoreError::RateLimited),
            }
        };
        // Another attempt may have opened it while this one waited.
        if unsealed() {
            return Ok(());
        }
        let header = self.header()?;
        let master = self.open_by_request(&header, with, key)?;
        let (store, root) = open_store(self.backend.clone(), master.duplicate())?;
        self.replace(State::Unsealed {
            store,
            master,
            root,
        });
        tracing::info!(slot = with.as_str(), "store unsealed");
        Ok(())
    }
    /// The status report (reads the header: blocking).
    pub fn status(&self, cache: CacheStatus) -> StatusReport {
        let (state, reason, namespaces, key_rotations) = {
            let guard = self.state.read().unwrap_or_else(PoisonError::into_inner);
            match &*guard {
                State::Unsealed { store, .. } => (
                    SealState::Unsealed,
                    None,
                    Some(store.namespaces().iter().filter(|n| !n.is_system()).count()),
                    store
                        .key_rotations()
                        .into_iter()
                        .map(|p| coffer_types::reply::KeyRotationStatus {
                            namespace: p.namespace.as_str().to_owned(),
                            key_version: p.key_version,
                            done: p.done,
                            total: p.total,
                        })
                        .collect(),
                ),
                State::Sealed(r) => (SealState::Sealed, Some(r.clone()), None, Vec::new()),
                State::Unavailable(r) => {
                    (SealState::Unavailable, Some(r.clone()), None, Vec::new())
                }
            }
        };
        let header = StoreHeader::load(self.backend.as_ref()).ok().flatten();
        let slots = header
            .as_ref()
            .map(|h| h.slots.iter().map(|s| self.summary(s)).collect())
            .unwrap_or_default();
        let lock = coffer_crypto::locked::stats();
        StatusReport {
            state,
            reason,
            version: env!("CARGO_PKG_VERSION").into(),
            backend: self.backend.kind().into(),
            store_id: header.as_ref().map(|h| h.store_id.clone()),
            initialized: header.as_ref().map(|h| show_time(h.created)),
            slots,
            namespaces,
            tpm: TpmStatus {
                present: self.options.tpm.is_some(),
                tcti: self.options.tpm.as_ref().map(|t| t.tcti().to_owned()),
            },
            cache,
            memory: MemoryStatus {
                locked_pages: lock.pages,
                lock_refusals: lock.refused,
            },
            key_rotations,
            daemon: None,
            detail_withheld: false,
        }
    }
    pub(super) fn summary(&self, s: &coffer_crypto::SlotRecord) -> SlotSummary {
        SlotSummary {
            id: s.id,
            kind: s.kind().as_str().into(),
            created: show_time(s.created),
            path: self.key_file_of(&s.params).map(|p| p.display().to_string()),
            pcrs: s.params.pcrs().map(str::to_owned),
            note: self
                .foreign_tpm_slots
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&s.id)
                .then(|| FOREIGN_NOTE.to_owned()),
        }
    }

    /// Tries what needs no person: first-boot initialization, then TPM and key-file slots.
    pub(super) fn automatic(&self) -> State {
        match self.open_automatically() {
            Ok(Some(master)) => match open_store(self.backend.clone(), master.duplicate()) {
                Ok((store, root)) => {
                    tracing::info!(backend = self.backend.kind(), "store unsealed");
                    State::Unsealed {
                        store,
                        master,
                        root,
                    }
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
                if reason.contains(FOREIGN_NOTE) {
                    tracing::info!("store is sealed until it is unsealed by another slot");
                } else {
                    tracing::warn!("store is sealed: {reason}");
                }
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
                Err(e) if e.rc() == Some(TpmRc::LOAD_INTEGRITY.to_string()) => {
                    // Not an error of this machine: the slot came with a data directory
                    // restored (or moved) from another. Said once, at start, at INFO.
                    let reason = format!(
                        "{} did not open: it was sealed by another TPM (this data directory \
                         was restored or moved from another machine) and cannot open here: \
                         unseal with the \
                         recovery key (`coffer unseal --recovery`), then bind the store to \
                         this TPM with `coffer slots add tpm` (and `coffer slots remove {}`)",
                        super::unlock::describe(slot),
                        slot.id
                    );
                    tracing::info!(slot = slot.id, "{reason}");
                    self.foreign_tpm_slots
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(slot.id);
                    sealed_reason.get_or_insert(reason);
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
}

/// Why no slot opened the store automatically.
pub(super) enum OpenFailure {
    /// Nothing is broken, but a person must unseal (the PCRs changed).
    Sealed(String),
    /// Something must be fixed (the key file).
    Unavailable(CoreError),
}
