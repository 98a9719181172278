//! Namespace key rotation: a new key generation for new writes at once, and a background
//! thread that re-encrypts what the older generations sealed (values, names, metadata).
//!
//! Crash-safe by construction: the rows say which generation sealed them (a version's
//! `key_version`; a name or metadata opens under one generation only), the older
//! generations stay in the backend until nothing uses them, and every re-encryption is
//! conditional on the row still holding what was read. So after a crash the store opens
//! with every generation it still needs, and the thread resumes where rows say it must.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use coffer_types::{EventAction, Namespace};

use super::feed::Sealer;
use super::namespace::{Held, OpenNamespace, RowState};
use crate::StoreError;
use crate::backend::{Backend, Rekey};
use crate::store::{Change, RekeyProgress};

/// Secret rows re-encrypted per transaction.
const REKEY_PAGE: usize = 256;

/// How long the thread waits before retrying a rotation that failed (the backend was busy).
const RETRY: Duration = Duration::from_secs(2);

/// The open namespaces, shared with the rotation thread.
pub(super) type Namespaces = Arc<RwLock<HashMap<Namespace, Held, foldhash::fast::RandomState>>>;

#[derive(Default)]
struct Queue {
    /// Namespaces to re-encrypt, with the handles of generations that writers may still
    /// hold (a rotation completes only once they are gone).
    pending: VecDeque<(Namespace, Vec<Weak<OpenNamespace>>)>,
    progress: BTreeMap<Namespace, RekeyProgress>,
}

/// The rotation thread's queue and progress.
#[derive(Default)]
pub(super) struct Rekeyer {
    queue: Mutex<Queue>,
    wake: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Rekeyer {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a namespace's re-encryption.
    pub(super) fn enqueue(&self, ns: &OpenNamespace, stale: Vec<Weak<OpenNamespace>>) {
        let mut q = self.queue();
        q.progress
            .entry(ns.path.clone())
            .or_insert_with(|| RekeyProgress {
                namespace: ns.path.clone(),
                key_version: ns.key_version,
                done: 0,
                total: 0,
            });
        q.pending.push_back((ns.path.clone(), stale));
        self.wake.notify_all();
    }

    /// The rotations in progress.
    pub(super) fn progress(&self) -> Vec<RekeyProgress> {
        self.queue().progress.values().cloned().collect()
    }

    fn set(&self, path: &Namespace, f: impl FnOnce(&mut RekeyProgress)) {
        if let Some(p) = self.queue().progress.get_mut(path) {
            f(p);
        }
    }

    /// Starts the thread (once).
    pub(super) fn start<B: Backend + ?Sized>(self: &Arc<Self>, worker: Worker<B>) {
        let rekeyer = self.clone();
        match std::thread::Builder::new()
            .name("coffer-rekey".into())
            .spawn(move || rekeyer.run(&worker))
        {
            Ok(handle) => {
                *self.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
            }
            Err(e) => tracing::error!(
                error = %e,
                "the key rotation thread did not start; rotations resume at the next unseal"
            ),
        }
    }

    /// Wakes the thread so it sees the closing flag, and waits for it.
    pub(super) fn stop(&self) {
        self.wake.notify_all();
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            // A thread that panicked has nothing more to tell.
            let _ = handle.join();
        }
    }

    fn run<B: Backend + ?Sized>(&self, w: &Worker<B>) {
        loop {
            let (path, stale) = {
                let mut q = self.queue();
                loop {
                    if w.closing.load(Ordering::Relaxed) {
                        return;
                    }
                    if let Some(next) = q.pending.pop_front() {
                        break next;
                    }
                    q = self
                        .wake
                        .wait_timeout(q, Duration::from_millis(500))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            };
            match w.rotate(self, &path, &stale) {
                Ok(()) => {
                    self.queue().progress.remove(&path);
                }
                Err(e) => {
                    if w.closing.load(Ordering::Relaxed) {
                        return;
                    }
                    tracing::warn!(error = %e, "a namespace key rotation paused; it retries");
                    let q = self.queue();
                    let (mut q, _) = self
                        .wake
                        .wait_timeout(q, RETRY)
                        .unwrap_or_else(PoisonError::into_inner);
                    q.pending.push_back((path, stale));
                }
            }
        }
    }
}

/// What the rotation thread works with.
pub(super) struct Worker<B: ?Sized> {
    pub backend: Arc<B>,
    pub namespaces: Namespaces,
    pub sealer: Sealer,
    pub closing: Arc<AtomicBool>,
    /// Held while a namespace's generations change in memory.
    pub creating: Arc<Mutex<()>>,
}

impl<B: Backend + ?Sized> Worker<B> {
    fn current(&self, path: &Namespace) -> Option<Arc<OpenNamespace>> {
        self.namespaces
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path)
            .and_then(Held::open)
            .cloned()
    }

    /// Re-encrypts until nothing is sealed under an older generation, then forgets them.
    fn rotate(
        &self,
        rekeyer: &Rekeyer,
        path: &Namespace,
        stale: &[Weak<OpenNamespace>],
    ) -> Result<(), StoreError> {
        loop {
            let Some(ns) = self.current(path) else {
                return Ok(());
            };
            if ns.older.is_empty() {
                return Ok(());
            }
            let counts = self.backend.key_version_counts(&ns.id)?;
            let total = counts.iter().map(|(_, n)| n).sum();
            let done = counts
                .iter()
                .find(|(k, _)| *k == ns.key_version)
                .map_or(0, |(_, n)| *n);
            rekeyer.set(path, |p| {
                p.key_version = ns.key_version;
                p.total = total;
                p.done = done;
            });
            let needed = self.pass(rekeyer, &ns)?;
            // Writers that took the namespace before the rotation may still seal under the
            // older generation: another pass once they are done.
            let writers_gone = stale.iter().all(|w| w.strong_count() == 0);
            if needed == 0 && writers_gone {
                return self.complete(&ns);
            }
            if !writers_gone {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// One walk over the namespace's rows; answers how many re-encryptions it tried.
    fn pass(&self, rekeyer: &Rekeyer, ns: &OpenNamespace) -> Result<u64, StoreError> {
        let mut after = None;
        let mut tried = 0u64;
        loop {
            if self.closing.load(Ordering::Relaxed) {
                return Err(StoreError::unavailable(
                    "rotating a namespace key",
                    "the store is closing",
                ));
            }
            let page = self
                .backend
                .rekey_page(&ns.id, after.as_ref(), REKEY_PAGE)?;
            let Some((last, _)) = page.last() else {
                return Ok(tried);
            };
            after = Some(last.id);
            let mut changes = Vec::new();
            let mut versions = 0u64;
            for (row, rows) in &page {
                if row.namespace != ns.id {
                    continue;
                }
                let name_aad = ns.name_aad(&row.id);
                if ns.key.open_unlocked(&row.name_ct, &name_aad).is_err() {
                    match ns
                        .older
                        .values()
                        .find_map(|k| k.open_unlocked(&row.name_ct, &name_aad).ok())
                    {
                        Some(plain) => changes.push(Rekey::Name {
                            secret: row.id,
                            old: row.name_ct.clone(),
                            new: ns.key.seal(&plain, &name_aad).map_err(StoreError::Crypto)?,
                        }),
                        None => tracing::warn!(
                            "a secret's name opens under no key generation; left as it is"
                        ),
                    }
                }
                let meta_aad = ns.meta_aad(&row.id, &RowState::of(row));
                if ns.key.open(&row.meta_ct, &meta_aad).is_err() {
                    match ns
                        .older
                        .values()
                        .find_map(|k| k.open(&row.meta_ct, &meta_aad).ok())
                    {
                        Some(plain) => changes.push(Rekey::Meta {
                            secret: row.id,
                            old: row.meta_ct.clone(),
                            new: ns
                                .key
                                .seal(plain.expose_secret(), &meta_aad)
                                .map_err(StoreError::Crypto)?,
                        }),
                        None => tracing::warn!(
                            "a secret's metadata opens under no key generation; left as it is"
                        ),
                    }
                }
                for v in rows {
                    let Some(ct) = &v.ciphertext else { continue };
                    if v.key_version == ns.key_version {
                        continue;
                    }
                    let aad = ns.entry_aad(&row.id, v.version, v.kind);
                    let Some(plain) = ns
                        .older
                        .get(&v.key_version)
                        .and_then(|k| k.open(ct, &aad).ok())
                    else {
                        tracing::warn!(
                            key_version = v.key_version,
                            "a version opens under no key generation; left as it is"
                        );
                        continue;
                    };
                    versions += 1;
                    changes.push(Rekey::Version {
                        secret: row.id,
                        version: v.version,
                        from: v.key_version,
                        old: ct.clone(),
                        to: ns.key_version,
                        new: ns
                            .key
                            .seal(plain.expose_secret(), &aad)
                            .map_err(StoreError::Crypto)?,
                    });
                }
            }
            if changes.is_empty() {
                continue;
            }
            tried += changes.len() as u64;
            let applied = self.backend.rekey(changes)?;
            rekeyer.set(&ns.path, |p| {
                p.done = p.done.saturating_add(versions.min(applied)).min(p.total);
            });
        }
    }

    /// Forgets the older generations (durably, the last with the completion's event) and
    /// serves the namespace with its current one only.
    fn complete(&self, ns: &Arc<OpenNamespace>) -> Result<(), StoreError> {
        let _held = self.creating.lock().unwrap_or_else(PoisonError::into_inner);
        let last = ns.older.keys().next_back().copied();
        for key_version in ns.older.keys() {
            let event = (Some(*key_version) == last)
                .then(|| {
                    self.sealer.plan(
                        &ns.path,
                        None,
                        Change::by("coffer"),
                        EventAction::NamespaceKeyRotated,
                        vec![],
                    )
                })
                .flatten();
            self.backend
                .drop_namespace_key(&ns.id, *key_version, event)?;
        }
        let mut map = self
            .namespaces
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(now) = map.get(&ns.path).and_then(Held::open)
            && Arc::ptr_eq(now, ns)
        {
            let single = OpenNamespace {
                id: ns.id,
                path: ns.path.clone(),
                key: ns.key.duplicate(),
                key_version: ns.key_version,
                older: BTreeMap::new(),
                names: ns.names.clone(),
            };
            map.insert(ns.path.clone(), Held::Open(Arc::new(single)));
        }
        tracing::info!(
            key_version = ns.key_version,
            "a namespace key rotation completed; the older generation is forgotten"
        );
        Ok(())
    }
}
