//! The vault: the store's seal state and the slots that open it.
//!
//! ```text
//!   start ──tpm or file slot opens──> Unsealed <──unseal── Sealed <──seal── Unsealed
//!     │                                  ^
//!     ├─key file unfit──> Unavailable ──fixed (retried at most once a second)
//!     └─no slot opens by itself (passphrase; PCRs changed)──> Sealed
//! ```
//!
//! Only `Unsealed` holds keys: the store (with the namespace keys) and a copy of the master
//! key for adding slots. Sealing drops both, which zeroizes them; the service flushes the
//! cache beside it. Opening slots is in [`open`], managing them in [`slots`].

mod open;
mod slots;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use coffer_crypto::{AuditKeys, MasterKey, SecretBytes, TokenKey, locked};
use coffer_store::{Backend, SecretStore, StoreHeader};
use coffer_tpm::{PcrPolicy, Tpm};
use coffer_types::wire::UnsealWith;

use crate::CoreError;
use crate::status::{
    CacheStatus, MemoryStatus, SealState, SlotSummary, StatusReport, TpmStatus, show_time,
};

pub(crate) use open::open_store;
pub(crate) use slots::make_slot;
pub use slots::{NewSlot, SlotAdded};

/// How often an unavailable store retries its key file.
const RETRY_EVERY: Duration = Duration::from_secs(1);

enum State {
    Unsealed {
        store: Arc<dyn SecretStore>,
        master: MasterKey,
    },
    Sealed(String),
    Unavailable(String),
}

/// What a store with no header becomes on the first start of `coffer serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstBoot {
    /// A key file slot, minting the key file here when missing.
    KeyFile(PathBuf),
    /// A TPM slot sealed to this PCR policy.
    Tpm(PcrPolicy),
}

/// What the vault can open slots with.
#[derive(Clone, Default)]
pub struct VaultOptions {
    /// Overrides the key file path recorded in file slots (`--key-file`).
    pub key_file: Option<PathBuf>,
    /// The TPM, when one is reachable.
    pub tpm: Option<Arc<Tpm>>,
    /// How to initialize an empty store; `None` leaves it uninitialized.
    pub first_boot: Option<FirstBoot>,
}

/// The store's seal state.
pub struct Vault {
    backend: Arc<dyn Backend>,
    options: VaultOptions,
    state: RwLock<State>,
    last_try: Mutex<Instant>,
    /// Serializes changes of the store header (slots).
    header: Mutex<()>,
    /// Counts changes of state, so what is derived from the keys (tokens, policies, audit
    /// keys) is reloaded when the store was sealed and opened again.
    epoch: AtomicU64,
}

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
            header: Mutex::new(()),
            epoch: AtomicU64::new(0),
        };
        let state = vault.automatic();
        vault.replace(state);
        vault
    }

    fn replace(&self, next: State) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        *state = next;
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Changes each time the vault is sealed or unsealed.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The audit log's keys, while unsealed.
    pub fn audit_keys(&self) -> Option<AuditKeys> {
        self.with_master(|m| Ok(m.audit_keys())).ok()
    }

    /// The token hashing key, while unsealed.
    pub fn token_key(&self) -> Option<TokenKey> {
        self.with_master(|m| Ok(m.token_key())).ok()
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The TPM, when one is reachable.
    pub fn tpm(&self) -> Option<&Arc<Tpm>> {
        self.options.tpm.as_ref()
    }

    fn header(&self) -> Result<StoreHeader, CoreError> {
        StoreHeader::load(self.backend.as_ref())?.ok_or_else(|| {
            CoreError::Unavailable("the store is not initialized; run `coffer init`".to_owned())
        })
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

    /// Runs `f` with the master key, or answers `sealed`.
    fn with_master<T>(
        &self,
        f: impl FnOnce(&MasterKey) -> Result<T, CoreError>,
    ) -> Result<T, CoreError> {
        match &*self.state.read().unwrap_or_else(PoisonError::into_inner) {
            State::Unsealed { master, .. } => f(master),
            State::Sealed(_) => Err(CoreError::Sealed),
            State::Unavailable(reason) => Err(CoreError::Unavailable(reason.clone())),
        }
    }

    /// Forgets the keys. The caller flushes the cache.
    pub fn seal(&self) {
        self.replace(State::Sealed(
            "sealed by an operator; run `coffer unseal`".to_owned(),
        ));
        tracing::info!("store sealed; keys forgotten");
    }

    /// Opens the store through slots of the given kind. Blocking (Argon2id and the TPM run
    /// here).
    pub fn unseal(&self, with: UnsealWith, key: Option<SecretBytes>) -> Result<(), CoreError> {
        if matches!(
            *self.state.read().unwrap_or_else(PoisonError::into_inner),
            State::Unsealed { .. }
        ) {
            return Ok(());
        }
        let header = self.header()?;
        let master = self.open_by_request(&header, with, key)?;
        let store = open::open_store(self.backend.clone(), master.duplicate())?;
        self.replace(State::Unsealed { store, master });
        tracing::info!(slot = with.as_str(), "store unsealed");
        Ok(())
    }

    /// The status report (reads the header: blocking).
    pub fn status(&self, cache: CacheStatus) -> StatusReport {
        let (state, reason, namespaces) = {
            let guard = self.state.read().unwrap_or_else(PoisonError::into_inner);
            match &*guard {
                State::Unsealed { store, .. } => (
                    SealState::Unsealed,
                    None,
                    Some(store.namespaces().iter().filter(|n| !n.is_system()).count()),
                ),
                State::Sealed(r) => (SealState::Sealed, Some(r.clone()), None),
                State::Unavailable(r) => (SealState::Unavailable, Some(r.clone()), None),
            }
        };
        let header = StoreHeader::load(self.backend.as_ref()).ok().flatten();
        let slots = header
            .as_ref()
            .map(|h| h.slots.iter().map(|s| self.summary(s)).collect())
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
            tpm: TpmStatus {
                present: self.options.tpm.is_some(),
                tcti: self.options.tpm.as_ref().map(|t| t.tcti().to_owned()),
            },
            cache,
            memory: MemoryStatus {
                locked_pages: lock.pages,
                lock_refusals: lock.refused,
            },
        }
    }

    fn summary(&self, s: &coffer_crypto::SlotRecord) -> SlotSummary {
        SlotSummary {
            id: s.id,
            kind: s.kind().as_str().into(),
            created: show_time(s.created),
            path: self.key_file_of(&s.params).map(|p| p.display().to_string()),
            pcrs: s.params.pcrs().map(str::to_owned),
        }
    }
}
