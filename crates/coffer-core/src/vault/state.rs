//! The vault's state: the seal state and what the slots are opened with. Opening it is in
//! `unlock` and `open`, managing slots in `slots`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use coffer_crypto::{AuditKeys, MasterKey, TokenKey};
use coffer_store::{Backend, SecretStore, StoreHeader};
use coffer_tpm::{PcrPolicy, Tpm};

use crate::CoreError;

/// How often an unavailable store retries its key file.
pub(super) const RETRY_EVERY: Duration = Duration::from_secs(1);

pub(crate) enum State {
    Unsealed {
        store: Arc<dyn SecretStore>,
        master: MasterKey,
        /// The derivation root (`StoreHeader::root`): the audit and token keys come from it.
        root: MasterKey,
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
    pub(super) backend: Arc<dyn Backend>,
    pub(super) options: VaultOptions,
    pub(super) state: RwLock<State>,
    pub(super) last_try: Mutex<Instant>,
    /// One unseal attempt at a time: each may cost an Argon2id hash (64 MiB) or a TPM
    /// round; more at once are refused rather than queued.
    pub(super) unsealing: Mutex<()>,
    /// Serializes changes of the store header (slots).
    pub(super) header: Mutex<()>,
    /// Counts changes of state, so what is derived from the keys (tokens, policies, audit
    /// keys) is reloaded when the store was sealed and opened again.
    pub(super) epoch: AtomicU64,
    /// TPM slots found sealed by another TPM (a restored data directory): shown as such.
    pub(super) foreign_tpm_slots: Mutex<Vec<u32>>,
}

impl Vault {
    pub(super) fn replace(&self, next: State) {
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
        self.with_root(|r| Ok(r.audit_keys())).ok()
    }

    /// The token hashing key, while unsealed.
    pub fn token_key(&self) -> Option<TokenKey> {
        self.with_root(|r| Ok(r.token_key())).ok()
    }

    /// Runs `f` with the derivation root, or answers `sealed`.
    pub(super) fn with_root<T>(
        &self,
        f: impl FnOnce(&MasterKey) -> Result<T, CoreError>,
    ) -> Result<T, CoreError> {
        match &*self.state.read().unwrap_or_else(PoisonError::into_inner) {
            State::Unsealed { root, .. } => f(root),
            State::Sealed(_) => Err(CoreError::Sealed),
            State::Unavailable(reason) => Err(CoreError::Unavailable(reason.clone())),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The TPM, when one is reachable.
    pub fn tpm(&self) -> Option<&Arc<Tpm>> {
        self.options.tpm.as_ref()
    }

    pub(super) fn header(&self) -> Result<StoreHeader, CoreError> {
        StoreHeader::load(self.backend.as_ref())?.ok_or_else(|| {
            CoreError::Unavailable("the store is not initialized; run `coffer init`".to_owned())
        })
    }

    /// Runs `f` with the master key, or answers `sealed`.
    pub(super) fn with_master<T>(
        &self,
        f: impl FnOnce(&MasterKey) -> Result<T, CoreError>,
    ) -> Result<T, CoreError> {
        match &*self.state.read().unwrap_or_else(PoisonError::into_inner) {
            State::Unsealed { master, .. } => f(master),
            State::Sealed(_) => Err(CoreError::Sealed),
            State::Unavailable(reason) => Err(CoreError::Unavailable(reason.clone())),
        }
    }

    /// Forgets the keys because the store changed under them (its master key was replaced
    /// by another daemon sharing it): the store is unavailable, and opened again by its
    /// unattended slots (a key file, the TPM) at the next request after a short wait. The
    /// caller flushes the cache.
    pub fn reopen_later(&self, why: &str) {
        self.replace(State::Unavailable(why.to_owned()));
        tracing::warn!(
            reason = why,
            "store closed; it is opened again with its slots"
        );
    }

    /// Forgets the keys. The caller flushes the cache.
    pub fn seal(&self) {
        self.replace(State::Sealed(
            "sealed by an operator; run `coffer unseal`".to_owned(),
        ));
        tracing::info!("store sealed; keys forgotten");
    }
}
