//! The name index of one namespace: its live names, sorted, each with its secret's id, so a
//! list reads no row and decrypts nothing.
//!
//! The index is built once, from one scan of the namespace's rows, and then kept in step
//! with every change made through the [`crate::EncryptedStore`] that owns it. Why it stays
//! exact, however the changes and the build interleave:
//!
//! - Changes are recorded from the moment the store is opened. While the build runs they are
//!   queued; the build applies them on top of its scan and turns the index ready in the same
//!   critical section, so each change is applied exactly once: queued, or directly after.
//! - A change is recorded only after the backend committed it, never for a failed
//!   transaction, and it names the secret's id. Ids are random and never reused, and each
//!   secret is created once and removed (deleted or revoked) at most once, so whether a secret
//!   is in the index is a function of the *set* of facts seen about its id, not of their order:
//!   it is listed when its creation was seen (by the scan or as a change) and its removal was
//!   not. Threads that race past each other after their commits therefore cannot corrupt it:
//!   - a removal takes a name's entry only if the entry is that id (a newer secret of the
//!     same name keeps its entry);
//!   - a removal that finds no entry for its id leaves a tombstone, so the creation, still
//!     on its way from another thread, is not inserted when it arrives;
//!   - a creation whose name already has an entry (an older secret whose removal is still on
//!     its way) is kept aside and takes the name when that removal arrives.
//! - In the queue replay the scan is one more source of "created" facts, which the queued
//!   creation of the same id repeats rather than adds to.
//!
//! What the index cannot see: rows changed by another process or another store over the
//! same backend after the scan (the same holds for namespaces); reopen the store to rebuild.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use coffer_types::SecretName;

use crate::StoreError;
use crate::backend::SecretId;

/// Most tombstones kept; the oldest is forgotten first. A tombstone is needed only while a
/// creation that committed before a removal is still on its way to the index (a thread
/// between its commit and its next statement), so even a small bound is never reached in
/// practice; removals of secrets the index never saw (written by another store) also leave
/// one, which is why there is a bound at all.
const MAX_TOMBSTONES: usize = 4096;

/// The live names of a namespace, each with the secret that has it.
///
/// Memory, per name: the entry, a `Box<str>` (16 bytes) and a [`SecretId`] (16 bytes), in
/// B-tree nodes of up to 11 entries (node headers and inner nodes add 1 to 2 bytes an entry),
/// and the name's own heap block, which for a name of `n` bytes is
/// `max(32, n + 8 rounded up to 16)` bytes in glibc's allocator. `tests/index_memory.rs`
/// measures 68 bytes a name for 20-byte names (53 bytes requested); 40-byte names cost
/// about 84. So a million secrets with such names take 70 to 85 MB.
#[derive(Default)]
pub(super) struct Names {
    live: BTreeMap<Box<str>, SecretId>,
    /// Secrets whose creation was seen while another secret still held their name in the
    /// index (its removal not yet seen). Empty but for such races.
    aside: Vec<(Box<str>, SecretId)>,
    /// Ids whose removal was seen before their creation.
    tombstones: HashSet<SecretId>,
    /// The tombstones in the order they were left, for forgetting the oldest (may hold ids
    /// already taken out of `tombstones`).
    tombstone_order: VecDeque<SecretId>,
}

impl Names {
    /// The index of a scan: every live secret's name and id.
    pub(super) fn scanned(live: BTreeMap<Box<str>, SecretId>) -> Self {
        Self {
            live,
            ..Self::default()
        }
    }

    fn holds(&self, name: &str, id: SecretId) -> bool {
        self.live.get(name) == Some(&id) || self.aside.iter().any(|(n, i)| **n == *name && *i == id)
    }

    /// A secret was created (idempotent: a creation already seen is not added twice).
    fn create(&mut self, name: &str, id: SecretId) {
        if self.tombstones.remove(&id) || self.holds(name, id) {
            return;
        }
        if self.live.contains_key(name) {
            self.aside.push((name.into(), id));
        } else {
            self.live.insert(name.into(), id);
        }
    }

    /// A secret was deleted or revoked.
    fn remove(&mut self, name: &str, id: SecretId) {
        if self.live.get(name) == Some(&id) {
            match self.aside.iter().position(|(n, _)| **n == *name) {
                Some(at) => {
                    let (_, next) = self.aside.swap_remove(at);
                    self.live.insert(name.into(), next);
                }
                None => {
                    self.live.remove(name);
                }
            }
        } else if let Some(at) = self
            .aside
            .iter()
            .position(|(n, i)| **n == *name && *i == id)
        {
            self.aside.swap_remove(at);
        } else {
            self.bury(id);
        }
    }

    fn bury(&mut self, id: SecretId) {
        if !self.tombstones.insert(id) {
            return;
        }
        self.tombstone_order.push_back(id);
        while self.tombstones.len() > MAX_TOMBSTONES {
            match self.tombstone_order.pop_front() {
                Some(old) => {
                    self.tombstones.remove(&old);
                }
                None => break,
            }
        }
        // Ids consumed by their creation stay in the order queue; drop them now and then.
        if self.tombstone_order.len() > 2 * MAX_TOMBSTONES {
            let kept = &self.tombstones;
            self.tombstone_order.retain(|id| kept.contains(id));
        }
    }

    /// Applies the changes queued while the scan ran. Each id's facts are taken together
    /// (see the module header), so the queue's order does not matter.
    fn replay(&mut self, log: Vec<Change>) {
        let mut by_id: HashMap<SecretId, (Box<str>, bool, bool)> = HashMap::new();
        for change in log {
            let (name, id, created) = match change {
                Change::Created(name, id) => (name, id, true),
                Change::Removed(name, id) => (name, id, false),
            };
            match by_id.entry(id) {
                Entry::Occupied(mut e) => {
                    let facts = e.get_mut();
                    facts.1 |= created;
                    facts.2 |= !created;
                }
                Entry::Vacant(e) => {
                    e.insert((name, created, !created));
                }
            }
        }
        for (id, (name, created, removed)) in by_id {
            match (created, removed) {
                (true, false) => self.create(&name, id),
                // Created and removed: gone, whether or not the scan saw it.
                (true, true) => {
                    if self.holds(&name, id) {
                        self.remove(&name, id);
                    }
                }
                (false, true) => self.remove(&name, id),
                (false, false) => {}
            }
        }
    }

    /// Up to `max` names at or after `from` that start with `prefix`, in order.
    fn chunk(&self, from: Bound<&str>, prefix: &str, max: usize) -> Vec<Box<str>> {
        let from = match from {
            Bound::Unbounded => Bound::Included(prefix),
            // Every name with the prefix sorts at or after the prefix itself.
            Bound::Included(f) | Bound::Excluded(f) if f < prefix => Bound::Included(prefix),
            other => other,
        };
        self.live
            .range::<str, _>((from, Bound::Unbounded))
            .map(|(name, _)| name)
            .take_while(|name| name.starts_with(prefix))
            .take(max)
            .cloned()
            .collect()
    }

    /// How many names are live.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.live.len()
    }
}

/// A change recorded while the index is being built.
enum Change {
    Created(Box<str>, SecretId),
    Removed(Box<str>, SecretId),
}

enum Phase {
    /// Not built yet: changes are queued; `building` while some thread scans.
    Pending {
        log: Vec<Change>,
        building: bool,
    },
    Ready(Names),
}

/// A namespace's name index, built once in the background (see the module header).
pub(super) struct NameIndex {
    phase: Mutex<Phase>,
    /// Signalled when a build ends, well or not.
    built: Condvar,
}

impl NameIndex {
    /// An index still to be built from the namespace's rows; changes are recorded from now.
    pub(super) fn pending() -> Self {
        Self {
            phase: Mutex::new(Phase::Pending {
                log: Vec::new(),
                building: false,
            }),
            built: Condvar::new(),
        }
    }

    /// The ready index of a namespace that has no secrets (one just created).
    pub(super) fn empty() -> Self {
        Self {
            phase: Mutex::new(Phase::Ready(Names::default())),
            built: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Phase> {
        // Every change under this lock is a few map operations that cannot fail half-way,
        // and a failed build resets its flag through `Claim`, so a poisoned lock still
        // guards a consistent index.
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that the backend committed the creation of secret `id` named `name`.
    pub(super) fn created(&self, name: &SecretName, id: SecretId) {
        match &mut *self.lock() {
            Phase::Pending { log, .. } => log.push(Change::Created(name.as_str().into(), id)),
            Phase::Ready(names) => names.create(name.as_str(), id),
        }
    }

    /// Records that the backend committed the deletion or revocation of secret `id`.
    pub(super) fn removed(&self, name: &SecretName, id: SecretId) {
        match &mut *self.lock() {
            Phase::Pending { log, .. } => log.push(Change::Removed(name.as_str().into(), id)),
            Phase::Ready(names) => names.remove(name.as_str(), id),
        }
    }

    /// Builds the index with `scan` unless it is built or being built. With `wait`, waits
    /// for a build another thread runs (and retries one that failed); without, returns at
    /// once when another thread is at it.
    pub(super) fn build(
        &self,
        wait: bool,
        scan: impl FnOnce() -> Result<Names, StoreError>,
    ) -> Result<(), StoreError> {
        let mut phase = self.lock();
        loop {
            match &mut *phase {
                Phase::Ready(_) => return Ok(()),
                Phase::Pending { building: true, .. } if !wait => return Ok(()),
                Phase::Pending { building: true, .. } => {
                    phase = self
                        .built
                        .wait(phase)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                Phase::Pending { building, .. } => {
                    *building = true;
                    break;
                }
            }
        }
        drop(phase);
        let claim = Claim(self);
        let mut names = scan()?;
        let mut phase = self.lock();
        if let Phase::Pending { log, .. } = &mut *phase {
            names.replay(std::mem::take(log));
        }
        *phase = Phase::Ready(names);
        drop(phase);
        drop(claim);
        Ok(())
    }

    /// Up to `max` names at or after `from` with `prefix`, building the index first (or
    /// waiting for its build).
    pub(super) fn chunk(
        &self,
        from: Bound<&str>,
        prefix: &str,
        max: usize,
        scan: impl FnOnce() -> Result<Names, StoreError>,
    ) -> Result<Vec<Box<str>>, StoreError> {
        if let Phase::Ready(names) = &*self.lock() {
            return Ok(names.chunk(from, prefix, max));
        }
        self.build(true, scan)?;
        match &*self.lock() {
            Phase::Ready(names) => Ok(names.chunk(from, prefix, max)),
            Phase::Pending { .. } => Err(StoreError::Malformed("the name index was not built")),
        }
    }
}

/// A running build: when it ends, however it ends, waiters are woken, and a build that did
/// not finish is marked as not running so the next caller retries it.
struct Claim<'a>(&'a NameIndex);

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Phase::Pending { building, .. } = &mut *self.0.lock() {
            *building = false;
        }
        self.0.built.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> SecretId {
        SecretId([n; 16])
    }

    fn listed(names: &Names) -> Vec<(String, SecretId)> {
        names
            .live
            .iter()
            .map(|(n, i)| (n.to_string(), *i))
            .collect()
    }

    #[test]
    fn a_removal_before_its_creation_leaves_nothing() {
        let mut names = Names::default();
        names.remove("a", id(1));
        names.create("a", id(1));
        assert_eq!(names.len(), 0);
        assert!(names.tombstones.is_empty(), "the tombstone was consumed");
    }

    #[test]
    fn a_newer_secret_keeps_its_name_whatever_the_order() {
        // Commit order: create 1, delete 1, create 2. Every order of applying them ends with
        // secret 2 listed.
        let events: [(bool, SecretId); 3] = [(true, id(1)), (false, id(1)), (true, id(2))];
        let orders = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        for order in orders {
            let mut names = Names::default();
            for i in order {
                let (created, id) = events[i];
                if created {
                    names.create("a", id);
                } else {
                    names.remove("a", id);
                }
            }
            assert_eq!(listed(&names), [("a".to_owned(), id(2))], "{order:?}");
            assert!(names.aside.is_empty() && names.tombstones.is_empty());
        }
    }

    #[test]
    fn the_queue_replays_on_top_of_the_scan_in_any_order() {
        // The scan saw secret 1 (created after the store opened, so its creation is queued
        // too); secret 1 was then deleted, and the deletion was queued before the creation.
        let mut names = Names::scanned(BTreeMap::from([("a".into(), id(1))]));
        names.replay(vec![
            Change::Removed("a".into(), id(1)),
            Change::Created("a".into(), id(1)),
            Change::Created("b".into(), id(2)),
        ]);
        assert_eq!(listed(&names), [("b".to_owned(), id(2))]);
    }

    #[test]
    fn tombstones_are_bounded() {
        let mut names = Names::default();
        for i in 0..(3 * MAX_TOMBSTONES) {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
            names.remove("x", SecretId(bytes));
        }
        assert_eq!(names.tombstones.len(), MAX_TOMBSTONES);
        assert!(names.tombstone_order.len() <= 2 * MAX_TOMBSTONES);
    }

    #[test]
    fn chunks_start_at_the_prefix_and_stop_after_it() {
        let live = ["a", "app/a", "app/b", "apq", "b"]
            .iter()
            .enumerate()
            .map(|(i, n)| (Box::from(*n), id(i as u8)))
            .collect();
        let names = Names::scanned(live);
        let got = names.chunk(Bound::Unbounded, "app/", 10);
        assert_eq!(got, [Box::from("app/a"), Box::from("app/b")]);
        let got = names.chunk(Bound::Excluded("app/a"), "app/", 10);
        assert_eq!(got, [Box::from("app/b")]);
        assert_eq!(names.chunk(Bound::Excluded("a"), "", 2).len(), 2);
    }

    #[test]
    fn waiters_get_the_built_index_and_a_failed_build_is_retried() {
        let index = NameIndex::pending();
        index.created(&SecretName::parse("late").unwrap(), id(9));
        let failed = index.build(true, || Err(StoreError::Malformed("test")));
        assert!(failed.is_err());
        let got = index
            .chunk(Bound::Unbounded, "", 10, || {
                Ok(Names::scanned(BTreeMap::from([("early".into(), id(1))])))
            })
            .unwrap();
        assert_eq!(got, [Box::from("early"), Box::from("late")]);
    }
}
