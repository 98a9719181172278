//! Gate 7 for a watch, and the event feed's upkeep: starting a [`Watcher`] where the caller
//! asked (checking that the feed still holds that revision), pruning by the retention
//! window, and the feed's numbers for metrics.

use coffer_store::StoreError;

use super::gates::WatchWork;
use super::state::{Gated, Service, blocking, stored};
use crate::access::Principal;
use crate::watch::{Signals, Watcher};
use crate::{CoreError, Gate, Refusal, Reply};

impl Service {
    pub(super) async fn watch(&self, who: &Principal, work: WatchWork) -> Gated<Reply> {
        let limited = !self.access.unconditional(who);
        let place = self
            .watchers
            .take(who.actor(), limited)
            .ok_or(Refusal::at(Gate::RateLimit, CoreError::RateLimited))?;
        let WatchWork {
            store,
            scope,
            since,
        } = work;
        // Subscribed before the head is read: a commit in between wakes the watcher.
        let wake = store.subscribe();
        let at = match since {
            None => store.head(),
            Some(since) => {
                // Refused now, with a clear answer, rather than after the stream began.
                blocking(move || store.events(since, 1).map(drop).map_err(CoreError::from))
                    .await
                    .map_err(stored)?;
                since
            }
        };
        Ok(Reply::Watch(Box::new(Watcher::new(
            self.vault.clone(),
            self.access.clone(),
            who.clone(),
            scope,
            at,
            Signals {
                wake,
                ending: self.ending.subscribe(),
                place,
            },
        ))))
    }

    /// Ends every watch (the daemon is stopping): each watcher's next answer is an error
    /// its listener sends before closing, so no stream holds the shutdown up.
    pub fn end_watches(&self) {
        self.ending.send_replace(true);
    }

    /// Watchers connected now (a metric).
    pub fn watchers(&self) -> u64 {
        self.watchers.get()
    }

    /// The store's newest revision, while it is unsealed (a metric).
    pub fn event_head(&self) -> Option<u64> {
        self.vault.store().ok().map(|s| s.head())
    }

    /// The namespace key rotations in progress (none while sealed), for the metrics.
    pub fn key_rotations(&self) -> Vec<coffer_store::RekeyProgress> {
        self.vault
            .store()
            .map(|s| s.key_rotations())
            .unwrap_or_default()
    }

    /// Drops the events the retention window no longer keeps (the daemon calls this now
    /// and then); answers how many. Not a request: the feed's upkeep writes no audit record
    /// (it changes no secret and no event says it happened).
    pub async fn prune_events(&self) -> Result<u64, CoreError> {
        let Ok(store) = self.vault.store() else {
            return Ok(0);
        };
        let retention = self.config.events;
        blocking(move || {
            let mut pruned = 0;
            loop {
                match store.prune_events(retention) {
                    Ok(0) => return Ok(pruned),
                    Ok(n) => pruned += n,
                    Err(StoreError::Unavailable { .. }) if pruned > 0 => return Ok(pruned),
                    Err(e) => return Err(e.into()),
                }
            }
        })
        .await
    }
}
