//! The vault: the store's seal state and the slots that open it.
//!
//! ```text
//!   start ──file slot opens──> Unsealed <──unseal── Sealed <──seal── Unsealed
//!     │                           ^
//!     ├─key file unfit──> Unavailable ──fixed (retried at most once a second)
//!     └─no automatic slot──> Sealed
//! ```
//!
//! Only `Unsealed` holds keys. Sealing drops the store, which zeroizes the master key and the
//! namespace keys; the service flushes the cache beside it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use coffer_crypto::{RecoveryKey, SecretBytes, SlotKey, SlotKind, SlotParams, locked};
use coffer_store::{Backend, SecretStore, StoreError, StoreHeader};
use coffer_types::wire::UnsealWith;

use crate::bootstrap::{self, FirstSlot};
use crate::status::{CacheStatus, MemoryStatus, SealState, SlotSummary, StatusReport, show_time};
use crate::{CoreError, keyfile};

/// How often an unavailable store retries its key file.
const RETRY_EVERY: Duration = Duration::from_secs(1);

enum State {
    Unsealed(Arc<dyn SecretStore>),
    Sealed(String),
    Unavailable(String),
}

/// Where `file` slots find their key file.
#[derive(Debug, Clone, Default)]
pub struct KeyFiles {
    /// Overrides the path recorded in the slot (`--key-file`).
    pub path_override: Option<PathBuf>,
    /// Where the first boot mints a key file; `None` leaves an empty store uninitialized.
    pub first_boot: Option<PathBuf>,
}

/// The store's seal state.
pub struct Vault {
    backend: Arc<dyn Backend>,
    key_files: KeyFiles,
    state: RwLock<State>,
    last_try: Mutex<Instant>,
}

impl Vault {
    /// Opens the vault, unsealing through a key file when the store has one and initializing
    /// an empty store when `key_files.first_boot` says where. Never fails: a problem leaves
    /// the vault sealed or unavailable, with the reason logged and reported by `status`.
    pub fn start(backend: Arc<dyn Backend>, key_files: KeyFiles) -> Self {
        let vault = Self {
            backend,
            key_files,
            state: RwLock::new(State::Sealed(String::new())),
            last_try: Mutex::new(Instant::now()),
        };
        let state = vault.automatic();
        *vault.state.write().unwrap_or_else(PoisonError::into_inner) = state;
        vault
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Tries what needs no person: first-boot initialization, then the key-file slots.
    fn automatic(&self) -> State {
        match self.open_automatically() {
            Ok(Some(store)) => {
                tracing::info!(backend = self.backend.kind(), "store unsealed");
                State::Unsealed(store)
            }
            Ok(None) => {
                let reason = "no slot opens this store automatically; run `coffer unseal`";
                tracing::info!("store is sealed: {reason}");
                State::Sealed(reason.to_owned())
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::warn!(
                    "secret store unavailable: {reason}; every secret operation answers \
                     store_unavailable until this is fixed"
                );
                State::Unavailable(reason)
            }
        }
    }

    fn open_automatically(&self) -> Result<Option<Arc<dyn SecretStore>>, CoreError> {
        let Some(header) = StoreHeader::load(self.backend.as_ref())? else {
            let Some(path) = self
                .key_files
                .path_override
                .clone()
                .or(self.key_files.first_boot.clone())
            else {
                return Err(CoreError::Unavailable(
                    "the store is not initialized; run `coffer init`".to_owned(),
                ));
            };
            let made =
                bootstrap::initialize(self.backend.clone(), FirstSlot::KeyFile(path), false)?;
            if let Some(minted) = &made.minted {
                tracing::warn!(
                    path = %minted.display(),
                    "minted a new key file for a new store. BACK IT UP, apart from the data \
                     directory: losing it makes every stored secret unrecoverable. Run \
                     `coffer init` instead to also get a recovery key"
                );
            }
            return Ok(Some(made.store));
        };
        let mut first_err = None;
        for slot in header.slots_of(SlotKind::File) {
            match self.open_file_slot(slot) {
                Ok(store) => return Ok(Some(store)),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    fn key_file_of(&self, params: &SlotParams) -> Option<PathBuf> {
        match params {
            SlotParams::File { path } => Some(
                self.key_files
                    .path_override
                    .clone()
                    .unwrap_or_else(|| path.clone()),
            ),
            _ => None,
        }
    }

    fn open_file_slot(
        &self,
        slot: &coffer_crypto::SlotRecord,
    ) -> Result<Arc<dyn SecretStore>, CoreError> {
        let Some(path) = self.key_file_of(&slot.params) else {
            return Err(CoreError::InvalidRequest("not a key file slot".to_owned()));
        };
        let contents = keyfile::read(&path)?;
        let key = SlotKey::from_key_file(&contents).map_err(StoreError::Crypto)?;
        let master = slot.unwrap_master(&key).map_err(|_| {
            CoreError::Unavailable(format!(
                "key file {} does not open this store (it belongs to another store, or was \
                 replaced); restore the right key file or unseal with the recovery key",
                path.display()
            ))
        })?;
        bootstrap::open_store(self.backend.clone(), master)
    }

    /// Gate 1: the open store, or why there is none. An unavailable store retries its key
    /// file at most once a second, so fixing it needs no restart.
    pub fn store(&self) -> Result<Arc<dyn SecretStore>, CoreError> {
        {
            let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
            match &*state {
                State::Unsealed(store) => return Ok(store.clone()),
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
        }
        match &*state {
            State::Unsealed(store) => Ok(store.clone()),
            State::Sealed(_) => Err(CoreError::Sealed),
            State::Unavailable(reason) => Err(CoreError::Unavailable(reason.clone())),
        }
    }

    /// Forgets the keys. The caller flushes the cache.
    pub fn seal(&self) {
        *self.state.write().unwrap_or_else(PoisonError::into_inner) =
            State::Sealed("sealed by an operator; run `coffer unseal`".to_owned());
        tracing::info!("store sealed; keys forgotten");
    }

    /// Opens the store through a slot of the given kind. Blocking (Argon2id runs here).
    pub fn unseal(&self, with: UnsealWith, key: Option<SecretBytes>) -> Result<(), CoreError> {
        if matches!(
            *self.state.read().unwrap_or_else(PoisonError::into_inner),
            State::Unsealed(_)
        ) {
            return Ok(());
        }
        let header = StoreHeader::load(self.backend.as_ref())?.ok_or_else(|| {
            CoreError::Unavailable("the store is not initialized; run `coffer init`".to_owned())
        })?;
        let store = match with {
            UnsealWith::KeyFile => {
                let slot =
                    header
                        .slots_of(SlotKind::File)
                        .next()
                        .ok_or(CoreError::InvalidRequest(
                            "this store has no key file slot".to_owned(),
                        ))?;
                self.open_file_slot(slot)?
            }
            UnsealWith::Passphrase => {
                let passphrase = key.ok_or_else(|| {
                    CoreError::InvalidRequest("unseal with a passphrase needs `key`".to_owned())
                })?;
                self.open_with(&header, SlotKind::Passphrase, |params| {
                    SlotKey::from_passphrase(&passphrase, params).ok()
                })?
            }
            UnsealWith::Recovery => {
                let text = key.ok_or_else(|| {
                    CoreError::InvalidRequest("unseal with the recovery key needs `key`".to_owned())
                })?;
                let rk = RecoveryKey::parse(&text)
                    .map_err(|e| CoreError::InvalidRequest(e.to_string()))?;
                self.open_with(&header, SlotKind::Recovery, |_| {
                    Some(SlotKey::from_recovery(&rk))
                })?
            }
            _ => return Err(CoreError::Unsupported("this slot kind cannot unseal yet")),
        };
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = State::Unsealed(store);
        tracing::info!(slot = with.as_str(), "store unsealed");
        Ok(())
    }

    fn open_with(
        &self,
        header: &StoreHeader,
        kind: SlotKind,
        key_for: impl Fn(&SlotParams) -> Option<SlotKey>,
    ) -> Result<Arc<dyn SecretStore>, CoreError> {
        let mut any = false;
        for slot in header.slots_of(kind) {
            any = true;
            let Some(key) = key_for(&slot.params) else {
                continue;
            };
            if let Ok(master) = slot.unwrap_master(&key) {
                return bootstrap::open_store(self.backend.clone(), master);
            }
        }
        if any {
            Err(CoreError::Denied(format!(
                "that {kind} does not open any {kind} slot of this store"
            )))
        } else {
            Err(CoreError::InvalidRequest(format!(
                "this store has no {kind} slot"
            )))
        }
    }

    /// The status report (reads the header: blocking).
    pub fn status(&self, cache: CacheStatus) -> StatusReport {
        let (state, reason, namespaces) = {
            let guard = self.state.read().unwrap_or_else(PoisonError::into_inner);
            match &*guard {
                State::Unsealed(store) => {
                    (SealState::Unsealed, None, Some(store.namespaces().len()))
                }
                State::Sealed(r) => (SealState::Sealed, Some(r.clone()), None),
                State::Unavailable(r) => (SealState::Unavailable, Some(r.clone()), None),
            }
        };
        let header = StoreHeader::load(self.backend.as_ref()).ok().flatten();
        let slots = header
            .as_ref()
            .map(|h| {
                h.slots
                    .iter()
                    .map(|s| SlotSummary {
                        id: s.id,
                        kind: s.kind().as_str(),
                        created: show_time(s.created),
                        path: self.key_file_of(&s.params).map(|p| p.display().to_string()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let lock = locked::stats();
        StatusReport {
            state,
            reason,
            version: env!("CARGO_PKG_VERSION"),
            backend: self.backend.kind(),
            store_id: header.as_ref().map(|h| h.store_id.clone()),
            initialized: header.as_ref().map(|h| show_time(h.created)),
            slots,
            namespaces,
            cache,
            memory: MemoryStatus {
                locked_pages: lock.pages,
                lock_refusals: lock.refused,
            },
        }
    }
}
