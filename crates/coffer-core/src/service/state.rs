//! The service's state: what it holds, its configuration, and the helpers every gate and
//! every operation use. The request path itself is in `call`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coffer_audit::{AuditLog, Outcome};
use coffer_crypto::SecretBytes;
use coffer_crypto::kdf::Argon2Params;
use coffer_store::{SecretStore, StoreError};
use coffer_types::{Action, Namespace};
use tokio_util::task::TaskTracker;

use crate::access::{AccessConfig, AccessControl};
use crate::cache::{CacheLimits, JitCache};
use crate::vault::Vault;
use crate::{CoreError, Gate, Refusal};

/// Limits and tunables of the service.
#[derive(Debug, Clone, Copy)]
pub struct ServiceConfig {
    /// The cache.
    pub cache: CacheLimits,
    /// The largest value accepted, in bytes.
    pub max_value_bytes: usize,
    /// Argon2id cost of passphrase slots added at run time.
    pub argon2: Argon2Params,
    /// The version limit of a new secret written without one (`None`: unlimited). The TPM NV
    /// store defaults to a small one: NV holds kilobytes, and every kept version takes room.
    pub default_max_versions: Option<u32>,
    /// Gate 0: what one peer may cost before it is known (rates, refusal and unseal
    /// budgets, condensed refusal records).
    pub peer: crate::bounds::PeerLimits,
    /// How long change events are kept.
    pub events: coffer_store::Retention,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            cache: CacheLimits::default(),
            max_value_bytes: 1 << 20,
            argon2: Argon2Params::default(),
            default_max_versions: None,
            peer: crate::bounds::PeerLimits::default(),
            events: coffer_store::Retention::default(),
        }
    }
}

/// The service behind every listener.
pub struct Service {
    pub(super) vault: Arc<Vault>,
    pub(super) cache: JitCache,
    pub(super) access: Arc<AccessControl>,
    pub(super) audit: Option<Arc<AuditLog>>,
    pub(super) config: ServiceConfig,
    /// Requests whose work runs detached from their listener, waited for at shutdown.
    pub(super) tasks: TaskTracker,
    /// Requests in the service (from arrival to their record), and whether the daemon is
    /// stopping (new requests are then refused).
    pub(super) inflight: InFlight,
    /// Request ids: a random prefix per start and a counter.
    pub(super) request_prefix: String,
    pub(super) requests: AtomicU64,
    /// Requests answered, by action and outcome (metrics).
    pub(super) counts: Counts,
    /// Values read per namespace (a metric).
    pub(super) materialized: std::sync::RwLock<std::collections::HashMap<Namespace, AtomicU64>>,
    /// Gate 0.
    pub(super) peers: crate::bounds::PeerGuard,
    /// Watchers connected (a metric).
    pub(super) watchers: Arc<crate::watch::WatcherCount>,
    /// The data directory, whose audit anchor a backup carries (unset: no anchor).
    pub(super) data_dir: std::sync::OnceLock<std::path::PathBuf>,
    /// What the daemon listens on (set once, at start), for `status`.
    pub(super) listeners: std::sync::OnceLock<Vec<String>>,
    /// When the service was made, for `status`'s uptime.
    pub(super) started: std::time::Instant,
    /// Turns true when the daemon stops: every watch ends.
    pub(super) ending: tokio::sync::watch::Sender<bool>,
    /// Scheduled backups' counters.
    pub(super) backups: crate::schedule::Backups,
    /// The rotation schedule and its counters.
    pub(super) rotation: crate::schedule::Rotation,
    /// What the webhook delivery worker shares with the operations.
    pub(super) webhooks: Arc<crate::webhook::Webhooks>,
    /// Permits for yescrypt hashes (16 MiB and tens of ms each): a flood waits here.
    pub(super) yescrypt: Arc<tokio::sync::Semaphore>,
    /// Places for yescrypt requests waiting or computing: the wait above is bounded, so
    /// requests whose callers went away cannot pile up behind it (their work runs on).
    pub(super) yescrypt_queue: Arc<tokio::sync::Semaphore>,
    /// This daemon's place among the hubs sharing its store (alone: the leader).
    pub(super) cluster: crate::cluster::Cluster,
    /// The fleet's state in memory (a hub's connected nodes, a node's managed secrets).
    pub(super) fleet: crate::fleet::FleetState,
}

/// yescrypt hashes computed at once, daemon-wide (each holds up to 64 MiB).
pub(super) const YESCRYPT_CONCURRENCY: usize = 2;

/// yescrypt requests waiting or computing at once, daemon-wide; one more is refused
/// (`rate_limited`) rather than queued.
pub(super) const YESCRYPT_QUEUE: usize = 32;

pub(super) type Gated<T> = Result<T, Refusal>;

pub(super) fn at(gate: Gate) -> impl FnOnce(CoreError) -> Refusal {
    move |error| Refusal { gate, error }
}

/// A store failure as a refusal: input the store found wrong (a value that does not fit its
/// kind, a merge too large, custom metadata over the limits) at validation, the rest at the
/// store.
pub(super) fn stored(error: CoreError) -> Refusal {
    let gate = match &error {
        CoreError::Store(StoreError::Invalid(_) | StoreError::TooLarge { .. }) => Gate::Validation,
        _ => Gate::Store,
    };
    Refusal { gate, error }
}

/// A refusal of invalid input, at validation.
pub(super) fn invalid(m: impl Into<String>) -> Refusal {
    Refusal::at(Gate::Validation, CoreError::InvalidRequest(m.into()))
}

/// Runs store work on the blocking pool.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CoreError> + Send + 'static,
) -> Result<T, CoreError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "a store task failed");
        Err(CoreError::Unavailable("a store task failed".to_owned()))
    })
}

impl Service {
    /// A service over `vault` with no policy file (root and the daemon's user hold
    /// everything), the default rate limit, and no audit log.
    pub fn new(vault: Vault, config: ServiceConfig) -> Self {
        let daemon_uid = nix::unistd::geteuid().as_raw();
        let prefix = SecretBytes::random(4)
            .map(|b| data_encoding::HEXLOWER.encode(b.expose_secret()))
            .unwrap_or_else(|_| format!("{:08x}", std::process::id()));
        Self {
            vault: Arc::new(vault),
            cache: JitCache::new(config.cache),
            access: Arc::new(AccessControl::new(AccessConfig::default(), daemon_uid)),
            audit: None,
            config,
            tasks: TaskTracker::new(),
            inflight: InFlight::default(),
            request_prefix: prefix,
            requests: AtomicU64::new(0),
            counts: Counts::default(),
            materialized: Default::default(),
            peers: crate::bounds::PeerGuard::new(config.peer, daemon_uid),
            watchers: Arc::default(),
            data_dir: std::sync::OnceLock::new(),
            listeners: std::sync::OnceLock::new(),
            started: std::time::Instant::now(),
            ending: tokio::sync::watch::Sender::new(false),
            rotation: Default::default(),
            backups: Default::default(),
            webhooks: Arc::default(),
            yescrypt: Arc::new(tokio::sync::Semaphore::new(YESCRYPT_CONCURRENCY)),
            yescrypt_queue: Arc::new(tokio::sync::Semaphore::new(YESCRYPT_QUEUE)),
            cluster: crate::cluster::Cluster::default(),
            fleet: Default::default(),
        }
    }

    /// This daemon's place among the hubs sharing its store.
    pub fn cluster(&self) -> &crate::cluster::Cluster {
        &self.cluster
    }

    /// Uses these policies and rate limits.
    pub fn with_access(mut self, config: AccessConfig) -> Self {
        let daemon_uid = nix::unistd::geteuid().as_raw();
        self.access = Arc::new(AccessControl::new(config, daemon_uid));
        self
    }

    /// Records every request in `audit`.
    pub fn with_audit(mut self, audit: Arc<AuditLog>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Gives the audit log the keys when the store is unsealed (at start, with a key file or
    /// the TPM), so its check against the newest checkpoint runs now: a gap is reported in
    /// the daemon's log at start, and requests are refused (`audit_tampered`) until an
    /// operator acknowledges it. (Every unseal does the same at the next request.)
    pub fn check_audit(&self) {
        if let Some(audit) = &self.audit
            && let Some(keys) = self.vault.audit_keys()
        {
            audit.set_keys(Some(keys));
        }
    }

    /// Bytes free in the audit directory's file system, as last looked at (for metrics).
    pub fn audit_free_bytes(&self) -> Option<u64> {
        self.audit.as_ref().and_then(|a| a.free_bytes())
    }

    /// Audit records written since start, and the `write(2)` batches they took (metrics).
    pub fn audit_written(&self) -> Option<(u64, u64)> {
        self.audit.as_ref().map(|a| a.written())
    }

    /// Names the data directory, whose audit anchor backups carry (set once, at start).
    pub fn set_data_dir(&self, dir: std::path::PathBuf) {
        let _ = self.data_dir.set(dir);
    }

    /// Names what the daemon listens on, for `status` (set once, at start).
    pub fn set_listeners(&self, listeners: Vec<String>) {
        let _ = self.listeners.set(listeners);
    }

    /// The configuration.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// Seals the store, flushes the cache, and closes the audit log (at shutdown, after
    /// [`Service::drain`]).
    pub fn shutdown(&self) {
        self.vault.seal();
        self.cache.flush();
        self.access.unload(self.vault.epoch());
        if let Some(audit) = &self.audit {
            audit.shutdown();
        }
    }

    /// Whether the store is sealed (or unavailable). Not a request: nothing is audited.
    pub fn sealed(&self) -> bool {
        self.vault.store().is_err()
    }

    /// The seal state and store facts without a caller (Vault's unauthenticated
    /// `sys/seal-status`, which is not audited either), without the details
    /// (`crate::status`). Holds no name.
    pub async fn public_status(&self) -> crate::StatusReport {
        crate::status::without_detail(self.report().await)
    }

    /// The status for Vault's unauthenticated `sys/health` (not audited): with the details
    /// only when `caller` carries a token granted `read` on `sys/health`.
    pub async fn health(&self, caller: &crate::Caller) -> crate::StatusReport {
        let report = self.report().await;
        match self.token_reads(caller, crate::status::HEALTH_PATH).await {
            Ok(true) => report,
            _ => crate::status::without_detail(report),
        }
    }

    /// Whether the token `caller` carries is granted `read` on `path`, for the
    /// unauthenticated, unaudited `sys/` reads that show more to such a token
    /// (`sys/health`, `sys/ha-status`): refused at the identity gate when it carries no
    /// valid token.
    pub(super) async fn token_reads(
        &self,
        caller: &crate::Caller,
        path: &str,
    ) -> Result<bool, Refusal> {
        let Some(token) = caller.token.as_ref() else {
            return Err(Refusal::at(
                Gate::Identity,
                CoreError::Unauthenticated("this needs a token"),
            ));
        };
        let epoch = self.vault.epoch();
        if self.access.loaded_epoch() != Some(epoch) {
            self.sync(epoch).await;
        }
        let who = &caller.identity;
        let principal = self
            .access
            .resolve(who.uid, who.gid, Some(token))
            .map_err(|e| Refusal::at(Gate::Identity, e))?;
        Ok(self
            .access
            .grants(&principal, coffer_types::Capability::Read, path, None))
    }

    /// How many values were read (materialized) in each namespace since the start.
    pub fn materializations(&self) -> Vec<(Namespace, u64)> {
        let map = self
            .materialized
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut all: Vec<_> = map
            .iter()
            .map(|(ns, n)| (ns.clone(), n.load(Ordering::Relaxed)))
            .collect();
        all.sort();
        all
    }

    /// Requests answered since the start, by action and outcome.
    pub fn request_counts(&self) -> Vec<RequestCount> {
        self.counts.snapshot()
    }

    /// Counts one materialization in `namespace`.
    pub(super) fn materialized(&self, namespace: &Namespace) {
        if let Some(n) = self
            .materialized
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(namespace)
        {
            n.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.materialized
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(namespace.clone())
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The cache's time to live.
    pub fn ttl(&self) -> Duration {
        self.cache.ttl()
    }

    /// The store, or gate 1's refusal.
    pub(super) fn store(&self) -> Gated<Arc<dyn SecretStore>> {
        self.vault.store().map_err(at(Gate::Seal))
    }
}

/// The policy path of a secret: `namespace/name`.
pub(crate) fn secret_path(namespace: &Namespace, name: &str) -> String {
    let mut path = String::with_capacity(namespace.as_str().len() + 1 + name.len());
    path.push_str(namespace.as_str());
    path.push('/');
    path.push_str(name);
    path
}

/// How many requests ended with each outcome, per action.
pub(super) struct Counts([[AtomicU64; 3]; Action::ALL.len()]);

impl Default for Counts {
    fn default() -> Self {
        Self(std::array::from_fn(|_| Default::default()))
    }
}

/// Requests answered with one action and outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestCount {
    /// The action.
    pub action: Action,
    /// `ok`, `denied` or `error`.
    pub outcome: &'static str,
    /// How many.
    pub count: u64,
}

const OUTCOMES: [&str; 3] = ["ok", "denied", "error"];

impl Counts {
    pub(super) fn add(&self, action: Action, outcome: Outcome) {
        let i = match outcome {
            Outcome::Ok => 0,
            Outcome::Denied => 1,
            Outcome::Error => 2,
        };
        self.0[action.index()][i].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> Vec<RequestCount> {
        let mut out = Vec::new();
        for &action in Action::ALL {
            for (i, outcome) in OUTCOMES.iter().enumerate() {
                let count = self.0[action.index()][i].load(Ordering::Relaxed);
                if count > 0 {
                    out.push(RequestCount {
                        action,
                        outcome,
                        count,
                    });
                }
            }
        }
        out
    }
}

/// Requests in flight, counted so that shutdown can wait for every one that arrived before
/// it, and a flag that refuses the ones that arrive after.
#[derive(Default)]
pub(super) struct InFlight {
    count: std::sync::atomic::AtomicUsize,
    closing: std::sync::atomic::AtomicBool,
    idle: tokio::sync::Notify,
}

/// One request in flight; dropped when its record is written (or its future dropped).
pub(super) struct Entered<'a>(&'a InFlight);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl InFlight {
    /// Counts a request in (until the guard drops), and says whether the daemon is
    /// stopping (the request is then to be refused; its refusal is still waited for).
    pub(super) fn enter(&self) -> (Entered<'_>, bool) {
        // Sequentially consistent, with `close`: a request counts itself in, then reads the
        // flag; `close` sets the flag, then reads the count. Whichever comes first, the
        // request either sees the flag or is waited for.
        self.count.fetch_add(1, Ordering::SeqCst);
        (Entered(self), self.closing.load(Ordering::SeqCst))
    }

    /// Refuses new requests and waits for the ones in flight.
    pub(super) async fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        loop {
            let idle = self.idle.notified();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}
