//! The rotation schedule the service keeps: due times by secret in a min-heap, built at
//! unseal from the secrets that have a policy (see `service::rotation`), and the rotation
//! counters the metrics show.
//!
//! Memory grows with the secrets that have a policy, not with the store: an entry is the
//! namespace, the name and a time, twice (heap and map), about 150 bytes for short names;
//! 1,000 policies take about 150 kB, 100,000 about 15 MB, 1,000,000 about 150 MB. A pop or a
//! push is O(log n); a tick looks at the top only.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use coffer_types::Timestamp;

use crate::cache::CacheKey;

/// Due times by secret, and a heap of them (entries whose time is no longer the secret's are
/// skipped when popped).
#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Reverse<(Timestamp, CacheKey)>>,
    due: HashMap<CacheKey, Timestamp>,
    /// The store the queue was built from (its address); `None`: not built.
    built: Option<usize>,
}

/// The rotation schedule and counters a service holds.
#[derive(Default)]
pub(crate) struct Rotation {
    queue: Mutex<Queue>,
    rotated: AtomicU64,
    failed: AtomicU64,
}

/// What the metrics show of rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationStats {
    /// Rotations that made a version current since the daemon started.
    pub rotated: u64,
    /// Rotations whose version was dropped.
    pub failed: u64,
    /// When the next rotation is due, when one is scheduled.
    pub next_due: Option<Timestamp>,
}

impl Rotation {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Empties the schedule; `built`: the store it is now built from (`None`: to be built).
    pub(crate) fn reset(&self, built: Option<usize>) {
        *self.queue() = Queue {
            built,
            ..Queue::default()
        };
    }

    /// The store the schedule was built from.
    pub(crate) fn built(&self) -> Option<usize> {
        self.queue().built
    }

    /// Schedules `key` at `due` (replacing what it had). Before the schedule is built,
    /// nothing: the build reads it from the store.
    pub(crate) fn schedule(&self, key: CacheKey, due: Timestamp) {
        let mut q = self.queue();
        if q.built.is_none() {
            return;
        }
        q.due.insert(key.clone(), due);
        q.heap.push(Reverse((due, key)));
    }

    /// Schedules `key` at `due` unless it is scheduled already.
    pub(crate) fn schedule_if_absent(&self, key: CacheKey, due: Timestamp) {
        let mut q = self.queue();
        if !q.due.contains_key(&key) {
            q.due.insert(key.clone(), due);
            q.heap.push(Reverse((due, key)));
        }
    }

    /// The secrets due at `now`, taken off the schedule.
    pub(crate) fn take_due(&self, now: Timestamp) -> Vec<(CacheKey, Timestamp)> {
        let mut q = self.queue();
        let mut out = Vec::new();
        while let Some(Reverse((due, _))) = q.heap.peek() {
            if *due > now {
                break;
            }
            let Some(Reverse((due, key))) = q.heap.pop() else {
                break;
            };
            if q.due.get(&key) == Some(&due) {
                q.due.remove(&key);
                out.push((key, due));
            }
        }
        out
    }

    /// The earliest due time (stale entries at the top are dropped on the way).
    pub(crate) fn next_due(&self) -> Option<Timestamp> {
        let mut q = self.queue();
        while let Some(Reverse((due, key))) = q.heap.peek() {
            if q.due.get(key) == Some(due) {
                return Some(*due);
            }
            q.heap.pop();
        }
        None
    }

    /// Counts a rotation that made its version current (`true`) or dropped it.
    pub(crate) fn count(&self, rotated: bool) {
        let counter = if rotated { &self.rotated } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters and the next due time.
    pub(crate) fn stats(&self) -> RotationStats {
        RotationStats {
            rotated: self.rotated.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            next_due: self.next_due(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_types::{Namespace, SecretName};

    #[test]
    fn the_queue_skips_replaced_entries() {
        let r = Rotation::default();
        r.reset(Some(1));
        let key = (
            Namespace::default_namespace(),
            SecretName::parse("a").expect("valid"),
        );
        r.schedule(key.clone(), Timestamp::from_millis(10));
        r.schedule(key.clone(), Timestamp::from_millis(20));
        assert_eq!(r.next_due(), Some(Timestamp::from_millis(20)));
        assert!(r.take_due(Timestamp::from_millis(15)).is_empty());
        assert_eq!(r.take_due(Timestamp::from_millis(25)).len(), 1);
        assert_eq!(r.next_due(), None);
    }
}

/// What the metrics show of scheduled backups.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BackupStats {
    /// Whether backups are scheduled at all.
    pub scheduled: bool,
    /// Backups made since the daemon started.
    pub made: u64,
    /// Backups that failed since the daemon started.
    pub failed: u64,
    /// When the last backup was made.
    pub last_made: Option<Timestamp>,
    /// Its size in bytes.
    pub last_bytes: u64,
    /// How long it took, in seconds.
    pub last_seconds: f64,
    /// When the next one is due.
    pub next_due: Option<Timestamp>,
}

/// The counters a service keeps of its scheduled backups.
#[derive(Default)]
pub(crate) struct Backups {
    pub(crate) made: AtomicU64,
    pub(crate) failed: AtomicU64,
    last: Mutex<BackupStats>,
}

impl Backups {
    pub(crate) fn last(&self) -> std::sync::MutexGuard<'_, BackupStats> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
