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
use coffer_types::{Capability, ChangeEvent, Namespace, Timestamp};

use crate::CoreError;
use crate::access::{AccessControl, Principal};
use crate::vault::Vault;

/// Most events read from the feed at a time.
const BATCH: usize = 512;

/// Counts watchers connected while they live (a metric).
#[derive(Debug, Default)]
pub struct WatcherCount(AtomicI64);

impl WatcherCount {
    /// Watchers connected now.
    pub fn get(&self) -> u64 {
        u64::try_from(self.0.load(Ordering::Relaxed)).unwrap_or(0)
    }
}

struct Counted(Arc<WatcherCount>);

impl Counted {
    fn new(count: &Arc<WatcherCount>) -> Self {
        count.0.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What wakes a watcher and what ends it.
pub(crate) struct Signals {
    /// The feed's head: moves when events are published.
    pub wake: tokio::sync::watch::Receiver<u64>,
    /// Turns true when the daemon stops.
    pub ending: tokio::sync::watch::Receiver<bool>,
    /// The count the watcher is one of while it lives.
    pub count: Arc<WatcherCount>,
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
            count,
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
            _counted: Counted::new(&count),
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
            // Marked seen before reading, so a commit that lands after the read wakes us.
            self.wake.borrow_and_update();
            let store = self.vault.store()?;
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

    /// The caller's token is still alive.
    fn still_allowed(&self) -> Result<(), CoreError> {
        let Some(token) = &self.who.token else {
            return Ok(());
        };
        match self.access.token(&token.accessor) {
            Some(t) if t.expires > Timestamp::now() => Ok(()),
            _ => Err(CoreError::Unauthenticated(
                "the token was revoked or expired",
            )),
        }
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
