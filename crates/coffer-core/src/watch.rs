//! A watcher: the change events one caller may see, from a revision on, as they commit.
//!
//! The service makes a [`Watcher`] when a `watch` request (socket), an SSE stream or an
//! event subscription (HTTP) passed its gates; the listener then asks it for the next
//! events until its client goes away. Events come from the store's in-memory feed (a
//! watcher behind it reads the kept rows), so a watcher costs the writers nothing. Each
//! event is shown only when the caller's policy grants `list` or `meta` on its name (a deny
//! wins), within a token's namespace; the store's own namespace (policies, tokens) only to
//! callers that hold everything. The watcher ends when the store is sealed or its token
//! is revoked or expires.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use coffer_store::SecretStore;
use coffer_types::{Capability, ChangeEvent, Namespace};

use crate::CoreError;
use crate::access::{AccessControl, Principal};
use crate::vault::Vault;

/// Most events read from the feed at a time.
const BATCH: usize = 512;

/// Watchers at once, over every listener. An HTTP event subscription leaves its connection
/// slot when it becomes a WebSocket, so the connection limits do not bound them: this does.
pub const MAX_WATCHERS: u64 = 1024;

/// Places kept for callers that hold everything (root, the daemon's user): others are
/// refused once only these are left.
const RESERVED_WATCHERS: u64 = 16;

/// Watchers one caller (a uid, a token) may hold at once, unless it holds everything: so one
/// caller cannot take every place.
pub const MAX_WATCHERS_PER_CALLER: u32 = 64;

/// Counts watchers while they live: in all (a metric, and [`MAX_WATCHERS`]) and per caller.
#[derive(Debug, Default)]
pub struct WatcherCount {
    total: AtomicI64,
    by_caller: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

impl WatcherCount {
    /// Watchers connected now.
    pub fn get(&self) -> u64 {
        u64::try_from(self.total.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// A place for one more watcher of `caller` (held to [`MAX_WATCHERS_PER_CALLER`] when
    /// `limited`); `None` when the places are taken.
    pub(crate) fn take(self: &Arc<Self>, caller: String, limited: bool) -> Option<Counted> {
        let mut by = self
            .by_caller
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mine = by.entry(caller.clone()).or_insert(0);
        let total = if limited {
            MAX_WATCHERS - RESERVED_WATCHERS
        } else {
            MAX_WATCHERS
        };
        if self.get() >= total || (limited && *mine >= MAX_WATCHERS_PER_CALLER) {
            if *mine == 0 {
                by.remove(&caller);
            }
            return None;
        }
        *mine += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(Counted {
            count: self.clone(),
            caller,
        })
    }
}

/// One watcher's place, given back when it is dropped.
pub(crate) struct Counted {
    count: Arc<WatcherCount>,
    caller: String,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut by = self
            .count
            .by_caller
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = by.get_mut(&self.caller) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                by.remove(&self.caller);
            }
        }
        self.count.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What wakes a watcher and what ends it.
pub(crate) struct Signals {
    /// The feed's head: moves when events are published.
    pub wake: tokio::sync::watch::Receiver<u64>,
    /// Turns true when the daemon stops.
    pub ending: tokio::sync::watch::Receiver<bool>,
    /// The watcher's place in the count, while it lives.
    pub place: Counted,
}

/// Which events a watcher wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchScope {
    /// One namespace; `None`: every namespace the caller may see.
    pub namespace: Option<Namespace>,
    /// Only names starting with this (events without a name need it empty).
    pub prefix: String,
}

/// A caller's view of the event feed. Made by the service; see the module docs.
pub struct Watcher {
    vault: Arc<Vault>,
    access: Arc<AccessControl>,
    who: Principal,
    scope: WatchScope,
    /// Holds everything: no per-event policy check.
    unconditional: bool,
    /// The last revision read.
    at: u64,
    wake: tokio::sync::watch::Receiver<u64>,
    /// Turns true when the daemon stops.
    ending: tokio::sync::watch::Receiver<bool>,
    _counted: Counted,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("who", &self.who.describe())
            .field("scope", &self.scope)
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

impl Watcher {
    /// A watcher from revision `at` (events after it), woken by `signals`.
    pub(crate) fn new(
        vault: Arc<Vault>,
        access: Arc<AccessControl>,
        who: Principal,
        scope: WatchScope,
        at: u64,
        signals: Signals,
    ) -> Self {
        let Signals {
            wake,
            ending,
            place,
        } = signals;
        let unconditional = access.unconditional(&who);
        Self {
            vault,
            access,
            who,
            scope,
            unconditional,
            at,
            wake,
            ending,
            _counted: place,
        }
    }

    /// The last revision this watcher has read (what a heartbeat reports and a reconnecting
    /// client resumes from).
    pub fn revision(&self) -> u64 {
        self.at
    }

    /// The next events the caller may see, in revision order, waiting up to `wait` for one;
    /// an empty answer means nothing happened in that time (send a heartbeat). An error
    /// ends the watch: the store was sealed, the token was revoked or expired, or the feed
    /// no longer holds the revision the watcher is at (`resync`).
    pub async fn next(&mut self, wait: Duration) -> Result<Vec<Arc<ChangeEvent>>, CoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if *self.ending.borrow() {
                return Err(stopping());
            }
            self.still_allowed()?;
            // Decided again each time: a policy reloaded since may have taken it away.
            self.unconditional = self.access.unconditional(&self.who);
            // Marked seen before reading, so a commit that lands after the read wakes us.
            self.wake.borrow_and_update();
            let store = self.vault.store()?;
            // A watch of a namespace that is locked ends with `locked` (the lock's own event,
            // published at its commit, is delivered first when it wins the race).
            self.not_locked(&*store)?;
            let at = self.at;
            let batch = read(store, at).await?;
            if let Some(last) = batch.last() {
                self.at = last.revision;
                let shown: Vec<_> = batch.into_iter().filter(|e| self.visible(e)).collect();
                if !shown.is_empty() {
                    return Ok(shown);
                }
                // Only events this caller may not see: a heartbeat is still due on time.
                if tokio::time::Instant::now() >= deadline {
                    return Ok(Vec::new());
                }
                continue;
            }
            let woken = tokio::select! {
                woken = tokio::time::timeout_at(deadline, self.wake.changed()) => woken,
                _ = self.ending.wait_for(|end| *end) => return Err(stopping()),
            };
            match woken {
                Ok(Ok(())) => {}
                // The feed is gone (the store was closed).
                Ok(Err(_)) => return Err(CoreError::Sealed),
                // Nothing in `wait`: the caller sends a heartbeat.
                Err(_) => return Ok(Vec::new()),
            }
        }
    }

    /// `locked` when the watched namespace is locked.
    fn not_locked(&self, store: &dyn SecretStore) -> Result<(), CoreError> {
        match &self.scope.namespace {
            Some(ns) if store.is_locked(ns) => Err(CoreError::Store(
                coffer_store::StoreError::Locked(ns.to_string()),
            )),
            _ => Ok(()),
        }
    }

    /// The caller's token is still alive.
    fn still_allowed(&self) -> Result<(), CoreError> {
        let Some(token) = &self.who.token else {
            return Ok(());
        };
        self.access
            .token_alive(&token.accessor)
            .map_err(CoreError::Unauthenticated)
    }

    fn visible(&self, event: &ChangeEvent) -> bool {
        let system = event.namespace == Namespace::SYSTEM;
        if let Some(ns) = &self.scope.namespace
            && ns.as_str() != event.namespace
        {
            return false;
        }
        let name = event.name.as_deref().unwrap_or("");
        if !name.starts_with(&self.scope.prefix)
            || (event.name.is_none() && !self.scope.prefix.is_empty())
        {
            return false;
        }
        if self.unconditional {
            return true;
        }
        if system {
            return false;
        }
        let path = format!("{}/{name}", event.namespace);
        let ns = Some(event.namespace.as_str());
        self.access.grants(&self.who, Capability::List, &path, ns)
            || self.access.grants(&self.who, Capability::Meta, &path, ns)
    }
}

fn stopping() -> CoreError {
    CoreError::Unavailable("the daemon is stopping".to_owned())
}

/// Events after `at`: from memory in place; from the kept rows (a watcher far behind) on
/// the blocking pool.
async fn read(store: Arc<dyn SecretStore>, at: u64) -> Result<Vec<Arc<ChangeEvent>>, CoreError> {
    if let Some(events) = store.recent_events(at, BATCH) {
        return Ok(events);
    }
    tokio::task::spawn_blocking(move || store.events(at, BATCH))
        .await
        .map_err(|_| CoreError::Unavailable("reading events failed".to_owned()))?
        .map_err(CoreError::from)
}
