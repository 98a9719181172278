//! [`AuditLog`]: the handle the daemon shares (as `Arc<AuditLog>`) to record one line per
//! request, and [`AuditConfig`], how it is set up.
//!
//! An append answers with the record's seq once its line is written (`write(2)` returned).
//! Appends are committed in groups, without a thread of their own: the appending task
//! encodes its line's body by itself and, under the short `chain` mutex, queues it. If no
//! task is writing, it leads: it yields once (so the other requests ready on its worker
//! queue their lines behind it), then takes the whole queue and, under the writer's mutex (see
//! the `writer` module), gives each line its seq and its tag, writes them with one system
//! call and answers every task whose line was in it. Lines queued meanwhile wait (as
//! futures, not blocked threads) and the leader hands the next batch to the first of their
//! tasks. So under load many records share one `write(2)`, and a lone request pays one.
//!
//! A failed batch fails every record in it and leaves the chain where it was: the lines
//! queued behind it get their seqs when they are written. A small thread
//! (`coffer-audit`) syncs what was written every `sync_interval` and checkpoints it, running
//! the `fdatasync`s outside the writer's mutex so appends do not wait for the disk. The
//! daemon calls [`AuditLog::ready`] before carrying out a request, so that a change is not
//! made when its record cannot be written (DESIGN.md, Audit: fail closed).

use std::fs::{File, OpenOptions, TryLockError};
use std::future::Future;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;

use coffer_crypto::AuditKeys;

use crate::config::AuditConfig;
use crate::message::Shared;
use crate::record::Names;
use crate::writer::{self, Writer};
use crate::{AuditError, Record, recover};

/// The lines waiting to be written.
struct Chain {
    /// Encoded bodies in arrival order, each with the slot of the task waiting for it (the
    /// leading task's own has none).
    queue: Vec<Queued>,
    /// A task is writing (or has been handed the next batch). Never false while `queue`
    /// holds lines.
    leading: bool,
    /// An empty queue to swap in for the batch being written.
    spare: Vec<Queued>,
}

struct Queued {
    body: Vec<u8>,
    slot: Option<Arc<Slot>>,
}

/// How a waiting append ends.
#[derive(Debug)]
enum Done {
    /// Its line was written (the seq) or could not be.
    Answer(Result<u64, AuditError>),
    /// The task is to lead the next batch.
    Lead,
}

enum SlotState {
    Waiting(Option<Waker>),
    Done(Done),
    /// The waiting future was dropped.
    Gone,
}

/// Where a waiting append learns how it ended.
struct Slot {
    state: Mutex<SlotState>,
}

impl Slot {
    /// Ends the wait with `done`; false when the waiter is gone.
    fn finish(&self, done: Done) -> bool {
        let mut state = locked(&self.state);
        match std::mem::replace(&mut *state, SlotState::Done(done)) {
            SlotState::Waiting(waker) => {
                drop(state);
                if let Some(w) = waker {
                    w.wake();
                }
                true
            }
            other => {
                *state = other;
                false
            }
        }
    }
}

/// The append-only, hash-chained audit log. `Send + Sync`; share it as `Arc<AuditLog>`.
pub struct AuditLog {
    dir: PathBuf,
    /// The checkpoint's copy outside the directory.
    anchor: Option<PathBuf>,
    /// Whether the directory had to be created at open (for the check at unseal).
    dir_created: bool,
    names: Names,
    chain: Mutex<Chain>,
    writer: Arc<Mutex<Writer>>,
    /// One sync (and checkpoint) at a time, in order.
    syncing: Arc<Mutex<()>>,
    shared: Arc<Shared>,
    /// The syncer thread and the way to stop it.
    syncer: Mutex<Option<(JoinHandle<()>, mpsc::Sender<()>)>>,
    /// Held (`flock`) while the log is open, so two daemons never write one chain.
    _lock: File,
    /// Records written, and the batches (`write(2)` calls) they were written in.
    records: AtomicU64,
    batches: AtomicU64,
}

/// The lock file inside the audit directory.
const LOCK_FILE: &str = "lock";

/// Takes the audit directory's lock, without waiting.
fn lock(dir: &Path) -> Result<File, AuditError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|source| AuditError::Dir {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(AuditError::Locked {
            path: dir.to_path_buf(),
        }),
        Err(TryLockError::Error(source)) => Err(AuditError::Dir { path, source }),
    }
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing under these mutexes panics between changes that belong together (the writer's
    // state changes only after a write succeeded), so a poisoned state is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Syncs what is written and checkpoints it; the `fdatasync`s run outside the writer's
/// mutex. `last` writes the checkpoint into both slots.
fn sync(writer: &Mutex<Writer>, syncing: &Mutex<()>, last: bool) -> Result<(), AuditError> {
    let _one = locked(syncing);
    let Some(pending) = locked(writer).prepare_sync(last) else {
        return Ok(());
    };
    let result = pending.run();
    locked(writer).finish_sync(pending, result)
}

impl AuditLog {
    /// Opens the log in `config.dir`, continuing the chain of its newest file, and starts the
    /// syncer thread (`coffer-audit`).
    ///
    /// A partial last line (a crash mid-write) is cut off with a warning. Only the tail of
    /// the newest file is read.
    pub fn open(config: AuditConfig) -> Result<Self, AuditError> {
        let dir_created = !config.dir.exists();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.dir)
            .map_err(|source| AuditError::Dir {
                path: config.dir.clone(),
                source,
            })?;
        let lock = lock(&config.dir)?;
        let start = recover::start(&config.dir)?;
        tracing::debug!(
            dir = %config.dir.display(),
            next_seq = start.next_seq,
            "audit log opened"
        );
        let shared = Arc::new(Shared::new(start.current.clone(), config.reserve_bytes));
        crate::space::watch(&config.dir, &shared);
        let chain = Chain {
            queue: Vec::with_capacity(64),
            leading: false,
            spare: Vec::with_capacity(64),
        };
        let writer = Arc::new(Mutex::new(Writer::new(&config, start, Arc::clone(&shared))));
        let syncing = Arc::new(Mutex::new(()));
        let (stop, stopped) = mpsc::channel::<()>();
        let (w, s) = (Arc::clone(&writer), Arc::clone(&syncing));
        let (space_dir, space) = (config.dir.clone(), Arc::clone(&shared));
        let (sync_every, check_every) = (config.sync_interval, config.check_interval);
        let thread = std::thread::Builder::new()
            .name("coffer-audit".into())
            .spawn(move || {
                let tick = check_every.min(sync_every);
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    // Failures are logged (once) and looked at again at the next tick.
                    crate::space::watch(&space_dir, &space);
                    let due = {
                        let mut writer = locked(&w);
                        let _ = writer.check();
                        writer.unsynced() && writer.last_sync.elapsed() >= sync_every
                    };
                    if due {
                        let _ = sync(&w, &s, false);
                    }
                }
            })
            .map_err(|source| AuditError::Thread { source })?;
        Ok(Self {
            anchor: config.anchor,
            dir_created,
            dir: config.dir,
            names: Names::new(config.plain_names).with_hub(config.hub.as_deref()),
            chain: Mutex::new(chain),
            writer,
            syncing,
            shared,
            syncer: Mutex::new(Some((thread, stop))),
            _lock: lock,
            records: AtomicU64::new(0),
            batches: AtomicU64::new(0),
        })
    }

    /// Sets the audit keys: `Some` at unseal, `None` at seal.
    ///
    /// With keys, names are hashed and checkpoints written. Without keys, names are withheld
    /// (unless `plain_names`). What was written under the old keys is synced and anchored
    /// under them first; with new keys, what is written is checkpointed under them at once.
    pub fn set_keys(&self, keys: Option<AuditKeys>) {
        if self.shared.closed.load(Ordering::Acquire) {
            return;
        }
        let _one = locked(&self.syncing);
        let anchor = |last| {
            let Some(pending) = locked(&self.writer).prepare_sync(last) else {
                return;
            };
            let result = pending.run();
            let _ = locked(&self.writer).finish_sync(pending, result);
        };
        let had_keys = locked(&self.writer).has_keys();
        if had_keys {
            anchor(true);
        }
        let setting = keys.is_some();
        self.names.set_keys(keys.as_ref().map(AuditKeys::duplicate));
        locked(&self.writer).set_keys(keys);
        if setting && !had_keys {
            self.check_gap();
        }
        if setting {
            anchor(false);
        }
    }

    /// The check at unseal: the log against its newest checkpoint (see `crate::gap`). A
    /// gap makes the log refuse every record but the gap record, until acknowledged.
    fn check_gap(&self) {
        let mut writer = locked(&self.writer);
        if writer.gap.is_some() {
            return;
        }
        let Some(keys) = writer.keys().map(AuditKeys::duplicate) else {
            return;
        };
        let head = crate::gap::Head {
            last: writer.position().0,
            dir_created: self.dir_created,
        };
        let failed = |e: AuditError| {
            Some(crate::gap::Gap {
                after: head.last,
                checkpoint: 0,
                checkpoint_file: String::new(),
                missing: format!("the log could not be checked: {e}"),
            })
        };
        let mut found = crate::gap::check(&self.dir, self.anchor.as_deref(), &keys, &head)
            .unwrap_or_else(failed);
        if let Some(counter) = writer.counter().cloned() {
            match crate::gap::check_counter(&self.dir, self.anchor.as_deref(), &keys, &*counter) {
                Ok(crate::gap::CounterCheck {
                    value,
                    rolled: None,
                    seq,
                }) => {
                    writer.counter_value = value;
                    // What that checkpoint anchors needs no advance of its own.
                    writer.advanced(seq);
                }
                Ok(crate::gap::CounterCheck {
                    value,
                    rolled: Some(rolled),
                    ..
                }) => {
                    writer.counter_value = value;
                    found = Some(match found {
                        Some(mut gap) => {
                            gap.missing = format!("{}; {rolled}", gap.missing);
                            gap
                        }
                        None => crate::gap::Gap {
                            after: head.last,
                            checkpoint: 0,
                            checkpoint_file: String::new(),
                            missing: rolled,
                        },
                    });
                }
                Err(e) => {
                    writer.counter_value = None;
                    found = found.or_else(|| failed(e));
                }
            }
        }
        if let Some(gap) = found {
            tracing::error!(
                dir = %self.dir.display(),
                missing = %gap.missing,
                checkpoint = gap.checkpoint,
                last_record = gap.after,
                "the audit log does not match its checkpoint: requests are refused until an \
                 operator runs `coffer audit acknowledge`"
            );
            writer.gap = Some(gap);
            self.shared.tampered.store(true, Ordering::Release);
        }
    }

    /// What the check at unseal found missing, while no operator has acknowledged it; the
    /// daemon then refuses every request but `audit_acknowledge` (`audit_tampered`).
    pub fn gap(&self) -> Option<String> {
        if !self.shared.tampered.load(Ordering::Acquire) {
            return None;
        }
        locked(&self.writer).gap.as_ref().map(|g| g.missing.clone())
    }

    /// Acknowledges the gap found at unseal: writes a MAC'd `gap` record naming what is
    /// missing (the records' seqs, the last checkpoint) and who acknowledged it, numbered
    /// past the checkpoint so no seq is reused, then syncs and checkpoints it. Answers its
    /// seq, or `None` when there is nothing to acknowledge.
    pub fn acknowledge(&self, by: &str) -> Result<Option<u64>, AuditError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(AuditError::Closed);
        }
        let seq = {
            let mut writer = locked(&self.writer);
            let Some(gap) = writer.gap.clone() else {
                return Ok(None);
            };
            if !writer.has_keys() {
                return Err(AuditError::Tampered {
                    missing: gap.missing,
                });
            }
            let body = serde_json::json!({
                "time": coffer_types::Timestamp::now(),
                "event": "gap",
                "after": gap.after,
                "checkpoint": gap.checkpoint,
                "checkpoint_file": gap.checkpoint_file,
                "missing": gap.missing,
                "acknowledged_by": by,
            });
            let body = serde_json::to_vec(&body).map_err(|e| AuditError::Encode {
                reason: e.to_string(),
            })?;
            let at_least = gap.checkpoint.max(gap.after) + 1;
            let seq = writer.write_event(&body, at_least)?;
            writer.gap = None;
            seq
        };
        self.shared.tampered.store(false, Ordering::Release);
        tracing::warn!(seq, by, "audit gap acknowledged; requests are served again");
        sync(&self.writer, &self.syncing, false)?;
        Ok(Some(seq))
    }

    fn full(&self) -> AuditError {
        AuditError::Full {
            path: self.dir.clone(),
            free: self.shared.free.load(Ordering::Relaxed),
            reserve: self.shared.reserve,
        }
    }

    /// Bytes free in the audit directory's file system at the last look (every
    /// `check_interval`), for the `coffer_audit_free_bytes` metric.
    pub fn free_bytes(&self) -> Option<u64> {
        match self.shared.free.load(Ordering::Relaxed) {
            u64::MAX => None,
            n => Some(n),
        }
    }

    /// Records written since the log was opened, and the batches they were written in (one
    /// `write(2)` each): their ratio is the mean batch, for the metrics.
    pub fn written(&self) -> (u64, u64) {
        (
            self.records.load(Ordering::Relaxed),
            self.batches.load(Ordering::Relaxed),
        )
    }

    /// Syncs what is written and checkpoints it now (before a verification of the live log).
    pub fn sync(&self) -> Result<(), AuditError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(AuditError::Closed);
        }
        sync(&self.writer, &self.syncing, false)
    }

    /// Whether a record can be written now.
    ///
    /// An atomic load while healthy. After a failed write or check, probes the current file
    /// and its directory (the directory writable, the file opened for appending and closed):
    /// success marks the log healthy again. After
    /// [`AuditLog::shutdown`], always [`AuditError::Closed`].
    pub fn ready(&self) -> Result<(), AuditError> {
        if self.shared.full.load(Ordering::Acquire) {
            return Err(self.full());
        }
        if self.shared.healthy.load(Ordering::Acquire) {
            return Ok(());
        }
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(AuditError::Closed);
        }
        let path = locked(&self.shared.current).clone();
        match writer::writable(&self.dir, &path) {
            Ok(_) => {
                self.shared.healthy.store(true, Ordering::Release);
                tracing::info!(path = %path.display(), "the audit log is writable again");
                Ok(())
            }
            Err(e) => Err(AuditError::unavailable(&path, &e)),
        }
    }

    /// Appends a record; the future resolves with its seq once the line is written
    /// (`write(2)` returned), not necessarily synced. The record is encoded before this
    /// returns, so the future does not borrow it.
    pub fn append(&self, record: &Record<'_>) -> Appending<'_> {
        Appending {
            log: self,
            state: self.enqueue(record),
        }
    }

    /// [`AuditLog::append`] for threads outside an async runtime: waits for the line by
    /// parking the thread.
    pub fn append_blocking(&self, record: &Record<'_>) -> Result<u64, AuditError> {
        struct Unpark(std::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut appending = std::pin::pin!(self.append(record));
        loop {
            if let Poll::Ready(answer) = appending.as_mut().poll(&mut cx) {
                return answer;
            }
            std::thread::park();
        }
    }

    /// Encodes the record's body and queues it, leading the batch when no one else is.
    fn enqueue(&self, record: &Record<'_>) -> Step {
        if self.shared.closed.load(Ordering::Acquire) {
            return Step::Done(Some(Err(AuditError::Closed)));
        }
        let mut body = Vec::with_capacity(256);
        if let Err(e) = self.names.encode_body(&mut body, record) {
            return Step::Done(Some(Err(e)));
        }
        let mut chain = locked(&self.chain);
        if !chain.leading {
            chain.leading = true;
            chain.queue.push(Queued { body, slot: None });
            return Step::Lead { yielded: false };
        }
        let slot = Arc::new(Slot {
            state: Mutex::new(SlotState::Waiting(None)),
        });
        chain.queue.push(Queued {
            body,
            slot: Some(Arc::clone(&slot)),
        });
        Step::Wait(slot)
    }

    /// Writes the queue, which holds the leader's own line (`own`: its slot, `None` for a
    /// task that led at once), and answers every task whose line was in it; then hands the
    /// next batch (lines queued meanwhile) to the first task still waiting, or writes that
    /// too when every waiter is gone. Answers for `own`.
    fn lead(&self, own: Option<&Arc<Slot>>) -> Result<u64, AuditError> {
        let mut answer = None;
        loop {
            let batch = {
                let mut chain = locked(&self.chain);
                let spare = std::mem::take(&mut chain.spare);
                std::mem::replace(&mut chain.queue, spare)
            };
            let result = locked(&self.writer).write_batch(batch.iter().map(|q| q.body.as_slice()));
            if result.is_ok() {
                self.records
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                self.batches.fetch_add(1, Ordering::Relaxed);
            }
            for (queued, i) in batch.iter().zip(0..) {
                let outcome = match &result {
                    Ok(first) => Ok(first + i),
                    Err(e) => Err(e.duplicate()),
                };
                match (&queued.slot, own) {
                    (None, None) => answer = Some(outcome),
                    (Some(slot), Some(mine)) if Arc::ptr_eq(slot, mine) => answer = Some(outcome),
                    (Some(slot), _) => {
                        slot.finish(Done::Answer(outcome));
                    }
                    (None, Some(_)) => {}
                }
            }
            let mut chain = locked(&self.chain);
            let mut batch = batch;
            batch.clear();
            if batch.capacity() <= 1024 {
                chain.spare = batch;
            }
            let mut handed_on = chain.queue.is_empty();
            if handed_on {
                chain.leading = false;
            }
            let mut i = 0;
            while !handed_on && i < chain.queue.len() {
                if let Some(slot) = &chain.queue[i].slot {
                    handed_on = slot.finish(Done::Lead);
                }
                i += 1;
            }
            drop(chain);
            if handed_on {
                // The first round held `own`.
                return answer.unwrap_or(Err(AuditError::Closed));
            }
        }
    }

    /// Syncs what is written, writes a final checkpoint (with keys) into both slots and stops
    /// the syncer thread. Later appends answer [`AuditError::Closed`]; later calls do nothing.
    /// Also done on drop.
    pub fn shutdown(&self) {
        let Some((thread, stop)) = locked(&self.syncer).take() else {
            return;
        };
        drop(stop);
        if thread.join().is_err() {
            tracing::error!("the audit syncer thread panicked");
        }
        // Appends racing with this are answered; the final sync covers them.
        self.shared.closed.store(true, Ordering::Release);
        if locked(&self.writer).has_keys() || locked(&self.writer).unsynced() {
            let _ = sync(&self.writer, &self.syncing, true);
        }
        self.shared.healthy.store(false, Ordering::Release);
    }

    /// The audit directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The checkpoint's copy outside the directory, when configured.
    pub fn anchor(&self) -> Option<&Path> {
        self.anchor.as_deref()
    }

    /// The counter comparison for `coffer audit verify`: the counter's state against the
    /// newest checkpoint's count, in words, and whether they are consistent; `None` when the
    /// log has no counter or no keys.
    pub fn counter_report(&self) -> Option<(bool, String)> {
        let (counter, keys) = {
            let writer = locked(&self.writer);
            (writer.counter()?.clone(), writer.keys()?.duplicate())
        };
        Some(
            match crate::gap::counter_report(&self.dir, self.anchor.as_deref(), &keys, &*counter) {
                Ok(report) => report,
                Err(e) => (
                    false,
                    format!("{}: cannot be compared: {e}", counter.describe()),
                ),
            },
        )
    }
}

/// Where an append stands.
enum Step {
    /// Answered (taken once).
    Done(Option<Result<u64, AuditError>>),
    /// Leading the batch its own line opened (the line is queued, with no slot). The first
    /// poll yields once, so that the other tasks ready on this worker queue their lines
    /// behind it first and share its `write(2)`; the next one writes the batch.
    Lead {
        /// Whether the one yield was made.
        yielded: bool,
    },
    /// Waiting for a leader to write the line.
    Wait(Arc<Slot>),
}

/// The future of [`AuditLog::append`]: resolves with the record's seq once its line is
/// written. Dropped while waiting, the line is still written; dropped when handed the next
/// batch, it writes that batch first.
#[must_use = "the record is not known to be written until the future resolves"]
pub struct Appending<'a> {
    log: &'a AuditLog,
    state: Step,
}

impl std::fmt::Debug for Appending<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appending").finish_non_exhaustive()
    }
}

impl Future for Appending<'_> {
    type Output = Result<u64, AuditError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let slot = match &mut this.state {
            Step::Done(answer) => {
                return Poll::Ready(answer.take().unwrap_or(Err(AuditError::Closed)));
            }
            Step::Lead { yielded } => {
                if !*yielded {
                    *yielded = true;
                    // Tokio runs a yielded task again only after every other task ready on
                    // this worker and a look at the I/O driver: those requests queue their
                    // lines meanwhile. (Outside a runtime the waker is woken at once.)
                    let yielding = std::pin::pin!(tokio::task::yield_now());
                    if yielding.poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
                let answer = this.log.lead(None);
                this.state = Step::Done(None);
                return Poll::Ready(answer);
            }
            Step::Wait(slot) => Arc::clone(slot),
        };
        let mut state = locked(&slot.state);
        let done = match std::mem::replace(&mut *state, SlotState::Gone) {
            SlotState::Done(done) => done,
            SlotState::Waiting(_) | SlotState::Gone => {
                *state = SlotState::Waiting(Some(cx.waker().clone()));
                return Poll::Pending;
            }
        };
        drop(state);
        let answer = match done {
            Done::Answer(answer) => answer,
            Done::Lead => this.log.lead(Some(&slot)),
        };
        this.state = Step::Done(None);
        Poll::Ready(answer)
    }
}

impl Drop for Appending<'_> {
    fn drop(&mut self) {
        let slot = match &self.state {
            Step::Done(_) => return,
            Step::Lead { .. } => {
                // Its line and any queued behind it are still to be written.
                let _ = self.log.lead(None);
                return;
            }
            Step::Wait(slot) => slot,
        };
        let mut state = locked(&slot.state);
        if let SlotState::Done(Done::Lead) = &*state {
            // Handed the next batch: lead it, or the lines behind it would wait forever.
            *state = SlotState::Gone;
            drop(state);
            let _ = self.log.lead(Some(slot));
        } else {
            *state = SlotState::Gone;
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.dir)
            .field("healthy", &self.shared.healthy.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn the_log_can_be_shared_across_threads() {
        assert_send_sync::<AuditLog>();
    }

    #[test]
    fn open_creates_a_private_directory_and_shutdown_is_idempotent() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        let log = AuditLog::open(AuditConfig {
            dir: dir.clone(),
            ..AuditConfig::default()
        })
        .unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(log.dir(), dir);
        assert!(log.ready().is_ok());
        assert!(matches!(
            AuditLog::open(AuditConfig {
                dir: dir.clone(),
                ..AuditConfig::default()
            }),
            Err(AuditError::Locked { .. })
        ));
        log.shutdown();
        log.shutdown();
        assert!(matches!(log.ready(), Err(AuditError::Closed)));
        assert!(matches!(
            log.append_blocking(&crate::record::tests::record()),
            Err(AuditError::Closed)
        ));
    }
}
