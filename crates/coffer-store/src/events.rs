//! The event feed's storage side: numbering, keeping and pruning change events, and the
//! in-memory fan-out every watcher reads from.
//!
//! A change that carries an [`EventPlan`] gets the store's next revision inside the same
//! transaction as the change itself; the plan seals the event (namespace, name, actor, all
//! encrypted under the master key, bound to the revision) and the backend keeps the sealed
//! row. After the commit the backend publishes the plaintext event, in revision order, to its
//! [`Feed`]: a bounded ring in memory and a wake-up for watchers. A watcher behind the ring
//! reads the kept rows instead ([`Backend::events`](crate::Backend::events)), so a slow
//! watcher costs the writers nothing and a fast one never touches the database (Teleport's
//! lesson: fan out from memory).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use coffer_types::{ChangeEvent, Timestamp, Version};

use crate::StoreError;

/// Seals a change's event inside the backend's transaction, given its revision and the
/// secret's version after the change (none for a namespace or a removal). Answers the
/// plaintext event (published after the commit) and its sealed form (kept).
pub type EventPlan =
    Box<dyn FnOnce(u64, Option<Version>) -> Result<(ChangeEvent, Vec<u8>), StoreError> + Send>;

/// A kept event: its revision and time in the clear, the rest sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedEvent {
    /// The revision.
    pub revision: u64,
    /// When the change was made (what retention by age looks at).
    pub time: Timestamp,
    /// The event, sealed under the master key.
    pub sealed: Vec<u8>,
}

/// A page of kept events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventRows {
    /// Events up to this revision were pruned: a consumer may resume from it or later.
    pub floor: u64,
    /// The newest revision.
    pub head: u64,
    /// Events after the revision asked for, oldest first.
    pub rows: Vec<SealedEvent>,
}

/// How long events are kept: the older of the two limits wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events older than this many milliseconds are pruned (default 7 days).
    pub max_age_ms: u64,
    /// At most this many events are kept (default 1,000,000).
    pub max_events: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age_ms: 7 * 24 * 3600 * 1000,
            max_events: 1_000_000,
        }
    }
}

impl Retention {
    /// Events up to this revision (inclusive) are beyond the count limit, given the head.
    pub fn by_count(&self, head: u64) -> u64 {
        head.saturating_sub(self.max_events)
    }

    /// Events written before this time are pruned.
    pub fn cutoff(&self, now: Timestamp) -> Timestamp {
        let age = i64::try_from(self.max_age_ms).unwrap_or(i64::MAX);
        Timestamp::from_millis(now.as_millis().saturating_sub(age))
    }
}

/// Events the ring keeps in memory for watchers; older ones are read from the backend.
pub const RING_EVENTS: usize = 16_384;

/// The in-memory end of the feed: the newest events, and the head revision watchers wait on.
pub struct Feed {
    ring: Mutex<VecDeque<Arc<ChangeEvent>>>,
    head: tokio::sync::watch::Sender<u64>,
    cap: usize,
}

impl Default for Feed {
    /// An empty feed at revision 0.
    fn default() -> Self {
        Self::new(0)
    }
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("head", &self.head())
            .finish_non_exhaustive()
    }
}

impl Feed {
    /// A feed whose newest revision is `head` (what the backend has kept), with an empty ring.
    pub fn new(head: u64) -> Self {
        Self::with_capacity(head, RING_EVENTS)
    }

    /// [`Feed::new`] keeping at most `cap` events in memory (tests use small rings).
    pub fn with_capacity(head: u64, cap: usize) -> Self {
        Self {
            ring: Mutex::new(VecDeque::new()),
            head: tokio::sync::watch::Sender::new(head),
            cap: cap.max(1),
        }
    }

    /// The newest revision published.
    pub fn head(&self) -> u64 {
        *self.head.borrow()
    }

    /// A receiver that wakes whenever the head moves.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// Publishes committed events, in revision order (backends call this after each commit,
    /// from the one place that commits, so the order is the revisions'). When they do not
    /// follow what the ring holds (another daemon sharing the store numbered the revisions
    /// between), the ring starts again from them: it never holds a gap, so a watcher asking
    /// for the revisions between reads them from the backend.
    pub fn publish(&self, events: impl IntoIterator<Item = ChangeEvent>) {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let mut newest = None;
        for event in events {
            if ring
                .back()
                .is_some_and(|last| last.revision + 1 != event.revision)
            {
                ring.clear();
            }
            newest = Some(event.revision);
            if ring.len() == self.cap {
                ring.pop_front();
            }
            ring.push_back(Arc::new(event));
        }
        // Moved while the ring is held, so the head and the ring change together.
        if let Some(rev) = newest {
            self.head.send_if_modified(|head| {
                let moved = rev > *head;
                *head = (*head).max(rev);
                moved
            });
        }
    }

    /// Moves the head to `head` without events (an import continues the feed from its
    /// snapshot's head; another daemon sharing the store committed revisions up to it); never
    /// moves it back. When it moves, the ring is emptied: watchers read the revisions it
    /// skipped from the backend.
    pub fn advance(&self, head: u64) {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        self.head.send_if_modified(|h| {
            let moved = head > *h;
            if moved {
                ring.clear();
                *h = head;
            }
            moved
        });
    }

    /// Up to `limit` events after revision `after` from memory; `None` when the ring no longer
    /// (or does not yet) hold all of them, so the caller reads the backend.
    pub fn after(&self, after: u64, limit: usize) -> Option<Vec<Arc<ChangeEvent>>> {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let head = self.head();
        if after >= head {
            return Some(Vec::new());
        }
        let first = ring.front()?.revision;
        // Revisions the ring never got (another daemon sharing the store numbered them, the
        // head moved before they were published) are read from the backend.
        if first > after + 1 || ring.back().is_some_and(|last| last.revision < head) {
            return None;
        }
        let skip = usize::try_from(after + 1 - first).ok()?;
        Some(ring.iter().skip(skip).take(limit).cloned().collect())
    }

    /// Forgets the events in memory (their names) when the store is sealed; the head stays.
    pub fn clear(&self) {
        self.ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// Events kept in memory only: the memory backend's store, and the TPM NV backend's (NV has
/// no room for a log; its feed starts again at each start, and a consumer resuming across a
/// restart is told to resync).
#[derive(Debug, Default)]
pub struct MemoryEvents {
    inner: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    floor: u64,
    head: u64,
    rows: VecDeque<SealedEvent>,
}

impl MemoryEvents {
    /// Kept events numbered from `base` on: revisions `base + 1`, ...; a consumer asking for
    /// one at or before `base` is told to resync. A store whose log does not survive a
    /// restart starts from a base above every revision it handed out before (the TPM NV
    /// store takes the time in microseconds), so an old revision is never taken for a new one.
    pub fn starting_at(base: u64) -> Self {
        Self {
            inner: Mutex::new(Kept {
                floor: base,
                head: base,
                rows: VecDeque::new(),
            }),
        }
    }

    /// The newest revision.
    pub fn head(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .head
    }

    /// Numbers and keeps a change's event; the caller holds its own write lock, so numbering
    /// and the change are one step. Answers the event to publish.
    pub fn record(
        &self,
        plan: EventPlan,
        version: Option<Version>,
    ) -> Result<ChangeEvent, StoreError> {
        let mut kept = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let revision = kept.head + 1;
        let (event, sealed) = plan(revision, version)?;
        kept.head = revision;
        kept.rows.push_back(SealedEvent {
            revision,
            time: event.time,
            sealed,
        });
        Ok(event)
    }

    /// Forgets every kept event and goes on from `head` (head = floor = `head`, never
    /// below the current head): an import into an empty store continues its snapshot's feed.
    pub fn restart_at(&self, head: u64) -> u64 {
        let mut kept = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let head = head.max(kept.head);
        kept.rows.clear();
        kept.head = head;
        kept.floor = head;
        head
    }

    /// Up to `limit` kept events after `after`.
    pub fn after(&self, after: u64, limit: usize) -> EventRows {
        let kept = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        // Rows are in revision order: find the first after `after` by bisection.
        let from = kept.rows.partition_point(|r| r.revision <= after);
        EventRows {
            floor: kept.floor,
            head: kept.head,
            rows: kept.rows.range(from..).take(limit).cloned().collect(),
        }
    }

    /// Drops what `retention` no longer keeps at `now`; answers how many.
    pub fn prune(&self, retention: Retention, now: Timestamp) -> u64 {
        let mut kept = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let by_count = retention.by_count(kept.head);
        let cutoff = retention.cutoff(now);
        let mut pruned = 0;
        while let Some(front) = kept.rows.front() {
            if front.revision > by_count && front.time >= cutoff {
                break;
            }
            kept.floor = front.revision;
            kept.rows.pop_front();
            pruned += 1;
        }
        pruned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_types::EventAction;

    fn event(revision: u64) -> ChangeEvent {
        ChangeEvent {
            revision,
            time: Timestamp::from_millis(1000),
            namespace: "default".into(),
            name: Some("a".into()),
            version: Some(1),
            versions: vec![],
            action: EventAction::Written,
            actor: "uid:0".into(),
        }
    }

    #[test]
    fn the_ring_serves_what_it_holds_and_says_when_it_does_not() {
        let feed = Feed::with_capacity(10, 4);
        assert_eq!(feed.after(10, 100).unwrap().len(), 0);
        assert!(
            feed.after(9, 100).is_none(),
            "revision 10 was never in the ring"
        );
        feed.publish((11..=16).map(event));
        assert_eq!(feed.head(), 16);
        // The ring holds 13..=16.
        assert!(feed.after(11, 100).is_none());
        let got: Vec<u64> = feed
            .after(12, 100)
            .unwrap()
            .iter()
            .map(|e| e.revision)
            .collect();
        assert_eq!(got, vec![13, 14, 15, 16]);
        let got: Vec<u64> = feed
            .after(14, 1)
            .unwrap()
            .iter()
            .map(|e| e.revision)
            .collect();
        assert_eq!(got, vec![15]);
        feed.clear();
        assert!(feed.after(12, 100).is_none());
        assert_eq!(feed.head(), 16);
    }

    #[test]
    fn memory_events_number_keep_and_prune() {
        let kept = MemoryEvents::default();
        for _ in 0..5 {
            kept.record(
                Box::new(|rev, _| Ok((event(rev), rev.to_be_bytes().to_vec()))),
                None,
            )
            .unwrap();
        }
        assert_eq!(kept.head(), 5);
        let retention = Retention {
            max_age_ms: u64::MAX,
            max_events: 2,
        };
        assert_eq!(kept.prune(retention, Timestamp::from_millis(2000)), 3);
        let page = kept.after(0, 10);
        assert_eq!((page.floor, page.head, page.rows.len()), (3, 5, 2));
        let by_age = Retention {
            max_age_ms: 500,
            max_events: 100,
        };
        assert_eq!(kept.prune(by_age, Timestamp::from_millis(2000)), 2);
        assert_eq!(kept.after(0, 10).floor, 5);
    }
}
