//! The writer: the only code that appends to the log, called by the task leading a batch
//! (see `crate::log`) under the writer's mutex.
//!
//! Each batch of lines is appended with one `write(2)` through the descriptor kept open on
//! the current file. A failed write is cut back off the file (a record is never half in the
//! chain) and the descriptor is dropped, so the next batch opens the file again. What a kept
//! descriptor cannot notice by itself (the file removed or replaced, the file or directory
//! made unwritable) is checked by the syncer thread every `check_interval` with
//! [`Writer::check`], which makes the log refuse requests until it is fixed. Syncing and checkpointing are split in three,
//! so the `fdatasync`s run outside the mutex (see `crate::log`): [`Writer::prepare_sync`]
//! under the mutex, [`PendingSync::run`] outside it, [`Writer::finish_sync`] under it again.

use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use coffer_crypto::AuditKeys;

use crate::AuditError;
use crate::chain::{self, Hash};
use crate::checkpoint::{self, Checkpoint};
use crate::counter::{AuditCounter, Count, CounterState};
use crate::gap::Gap;
use crate::message::Shared;
use crate::record::finish_line;
use crate::recover::Start;

/// A batch buffer grown past this by a burst is given back afterwards.
const KEEP_BUFFER: usize = 256 << 10;

/// Opens an audit file for appending, as every write does.
pub(crate) fn open_append(path: &Path) -> std::io::Result<File> {
    // std sets O_CLOEXEC on every file it opens.
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

pub(crate) struct Writer {
    dir: PathBuf,
    /// The checkpoint's copy outside the directory.
    anchor: Option<PathBuf>,
    max_file_bytes: u64,
    /// Retention limits (0: none) and whether a rotation made it due.
    keep_files: usize,
    max_total_bytes: u64,
    retention_due: bool,
    /// What the check at open found missing, until acknowledged: no record but the gap
    /// record is written and no checkpoint either.
    pub(crate) gap: Option<Gap>,
    shared: Arc<Shared>,
    /// The key checkpoints are MAC'd with.
    keys: Option<AuditKeys>,
    /// The seq of the next line and the link it is chained to.
    next_seq: u64,
    prev: Hash,
    /// The lines of the batch being written.
    out: Vec<u8>,
    current: PathBuf,
    current_name: String,
    current_len: u64,
    /// The descriptor batches are written through, opened at the first write to `current`.
    file: Option<File>,
    /// The last record written.
    written: Option<Checkpoint>,
    unsynced: bool,
    /// A file was created since the directory was last synced.
    dir_dirty: bool,
    pub(crate) last_sync: Instant,
    /// The seq last checkpointed under the current keys, and the slot to write next.
    checkpointed: Option<u64>,
    next_slot: Option<usize>,
    /// Bytes of a failed write that could not be cut off yet: (file, length to cut back to).
    pending_truncate: Option<(PathBuf, u64)>,
    /// The counter checkpoints are anchored in (see `crate::counter`).
    counter: Option<Arc<dyn AuditCounter>>,
    /// Its value as last seen (`None`: to be read, or first use to be done).
    pub(crate) counter_value: Option<u64>,
    counter_interval: Duration,
    last_advance: Instant,
    /// The seq checkpointed by the last advance.
    advanced_seq: Option<u64>,
}

/// The slow half of a sync, run without the writer's mutex.
pub(crate) struct PendingSync {
    dir: PathBuf,
    anchor: Option<PathBuf>,
    /// The file the last record is in.
    file: PathBuf,
    dir_dirty: bool,
    /// What the sync makes durable.
    cp: Checkpoint,
    /// The checkpoint to write after it: keys and the slots to use.
    keys: Option<AuditKeys>,
    slots: Vec<usize>,
    /// The counter, its value as last seen, and whether this checkpoint advances it.
    counter: Option<Arc<dyn AuditCounter>>,
    counter_value: Option<u64>,
    advance: bool,
    /// The counter's value once the checkpoint is written.
    reached: Cell<Option<u64>>,
}

fn counter_error(reason: String) -> AuditError {
    AuditError::Counter { reason }
}

impl PendingSync {
    /// `fdatasync`s the file (and the directory), then writes the checkpoint.
    pub(crate) fn run(&self) -> Result<(), AuditError> {
        File::open(&self.file)
            .and_then(|f| f.sync_data())
            .map_err(|e| AuditError::unavailable(&self.file, &e))?;
        if self.dir_dirty {
            checkpoint::sync_dir(&self.dir).map_err(|e| AuditError::unavailable(&self.dir, &e))?;
        }
        let Some(keys) = &self.keys else {
            return Ok(());
        };
        let Some(counter) = &self.counter else {
            return self.write_slots(keys, None);
        };
        // The order of writes is what makes a kill -9 at any moment harmless (crate::counter).
        let value = match self.counter_value {
            Some(v) => v,
            None => match counter.state().map_err(counter_error)? {
                CounterState::At(v) => v,
                CounterState::Missing | CounterState::Unset => {
                    counter.define().map_err(counter_error)?;
                    self.write_slots(keys, Some(Count::Pending))?;
                    counter.increment().map_err(counter_error)?
                }
            },
        };
        self.reached.set(Some(value));
        if !self.advance {
            return self.write_slots(keys, Some(Count::At(value)));
        }
        let next = value
            .checked_add(1)
            .ok_or_else(|| counter_error("the counter is at its maximum".into()))?;
        self.write_slots(keys, Some(Count::At(next)))?;
        // The value is unknown until the increment answers: read again at the next sync.
        self.reached.set(None);
        let now = counter.increment().map_err(counter_error)?;
        if now != next {
            return Err(counter_error(format!(
                "the counter went from {value} to {now}, not {next}: something else increments it"
            )));
        }
        self.reached.set(Some(now));
        Ok(())
    }

    /// Writes the checkpoint, with `count`, into the slots of the directory's file and the
    /// anchor.
    fn write_slots(&self, keys: &AuditKeys, count: Option<Count>) -> Result<(), AuditError> {
        let cp = Checkpoint {
            counter: count,
            ..self.cp.clone()
        };
        for &slot in &self.slots {
            checkpoint::write(&self.dir, slot, &cp, keys)?;
            if let Some(anchor) = &self.anchor {
                checkpoint::write_file(anchor, slot, &cp, keys)?;
            }
        }
        Ok(())
    }
}

impl Writer {
    pub(crate) fn new(
        config: &crate::config::AuditConfig,
        start: Start,
        shared: Arc<Shared>,
    ) -> Self {
        // The last record on disk may be only in the page cache (after a crash of the
        // process, not of the machine): sync it before the first checkpoint anchors it.
        let written = start.last_file.as_deref().map(|path| Checkpoint {
            seq: start.next_seq - 1,
            hash: start.prev,
            file: file_name_of(path),
            counter: None,
        });
        Self {
            unsynced: written.is_some(),
            dir: config.dir.clone(),
            anchor: config.anchor.clone(),
            max_file_bytes: config.max_file_bytes,
            keep_files: config.keep_files,
            max_total_bytes: config.max_total_bytes,
            retention_due: false,
            gap: None,
            shared,
            keys: None,
            next_seq: start.next_seq,
            prev: start.prev,
            out: Vec::with_capacity(16 << 10),
            current_name: file_name_of(&start.current),
            current: start.current,
            current_len: start.len,
            file: None,
            written,
            dir_dirty: false,
            last_sync: Instant::now(),
            checkpointed: None,
            next_slot: None,
            pending_truncate: None,
            counter: config.counter.clone(),
            counter_value: None,
            counter_interval: config.counter_interval,
            last_advance: Instant::now(),
            advanced_seq: None,
        }
    }

    /// Gives each body its seq and tag, in order, and appends the lines with one write.
    /// Answers the first seq: on success the lines are in the chain as `first..`, on
    /// failure none of them is and the chain goes on from where it was.
    pub(crate) fn write_batch<'b>(
        &mut self,
        bodies: impl IntoIterator<Item = &'b [u8]>,
    ) -> Result<u64, AuditError> {
        if let Some(gap) = &self.gap {
            return Err(AuditError::Tampered {
                missing: gap.missing.clone(),
            });
        }
        if self.shared.full.load(Ordering::Acquire) {
            return Err(AuditError::Full {
                path: self.dir.clone(),
                free: self.shared.free.load(Ordering::Relaxed),
                reserve: self.shared.reserve,
            });
        }
        let first = self.write_lines(bodies)?;
        if self.retention_due && self.keys.is_some() {
            self.retention_due = false;
            if let Err(e) = self.retain() {
                tracing::error!(error = %e, "cannot apply the audit retention limits");
            }
        }
        Ok(first)
    }

    /// Writes one event line (a `gap` or `retention` record, MAC'd with the current keys),
    /// numbered at least `at_least`: a gap record skips the seqs of the missing records, so
    /// no seq is ever used twice and the checkpoint never goes down. Answers its seq.
    pub(crate) fn write_event(&mut self, body: &[u8], at_least: u64) -> Result<u64, AuditError> {
        if at_least > self.next_seq {
            if self.current_len == 0 {
                // The next file is not written yet: name it for the seq it starts with.
                if std::fs::metadata(&self.current).is_ok_and(|m| m.len() == 0) {
                    let _ = std::fs::remove_file(&self.current);
                }
                self.file = None;
                let next = self.dir.join(chain::file_name(at_least));
                self.current_name = file_name_of(&next);
                self.current.clone_from(&next);
                *self
                    .shared
                    .current
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = next;
            }
            self.next_seq = at_least;
        }
        self.write_lines([body])
    }

    /// Applies the retention limits (see `crate::retain`): writes the `retention` record,
    /// syncs it, then removes the files it names.
    fn retain(&mut self) -> Result<(), AuditError> {
        let Some(crate::retain::Due {
            victims,
            oldest,
            body,
        }) = crate::retain::prepare(
            &self.dir,
            &self.current,
            self.keep_files,
            self.max_total_bytes,
        )?
        else {
            return Ok(());
        };
        let seq = self.write_event(&body, 0)?;
        match &self.file {
            Some(f) => f.sync_data(),
            None => File::open(&self.current).and_then(|f| f.sync_data()),
        }
        .map_err(|e| AuditError::unavailable(&self.current, &e))?;
        crate::retain::remove(&self.dir, &victims)?;
        tracing::info!(
            record = seq,
            oldest,
            files = victims.len(),
            "audit retention applied"
        );
        Ok(())
    }

    /// Numbers, chains, MACs (with keys) and writes lines; see [`Writer::write_batch`].
    fn write_lines<'b>(
        &mut self,
        bodies: impl IntoIterator<Item = &'b [u8]>,
    ) -> Result<u64, AuditError> {
        let first = self.next_seq;
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        let (mut seq, mut prev) = (first, self.prev);
        // The batch starts a file (a new one, or one `write_buf` rotates to): its first line
        // names the link before it, so the file can be checked on its own.
        let mut first_in_file = self.current_len == 0 || self.current_len >= self.max_file_bytes;
        for body in bodies {
            prev = finish_line(&mut out, seq, body, prev, self.keys.as_ref(), first_in_file);
            first_in_file = false;
            seq += 1;
        }
        let result = self.write_buf(&out, first);
        if out.capacity() <= KEEP_BUFFER {
            self.out = out;
        }
        match result {
            Ok(()) => {
                let last = seq - 1;
                self.next_seq = seq;
                self.prev = prev;
                match &mut self.written {
                    Some(w) => {
                        w.seq = last;
                        w.hash = prev;
                        if w.file != self.current_name {
                            w.file.clone_from(&self.current_name);
                        }
                    }
                    None => {
                        self.written = Some(Checkpoint {
                            seq: last,
                            hash: prev,
                            file: self.current_name.clone(),
                            counter: None,
                        });
                    }
                }
                self.unsynced = true;
                self.shared.healthy.store(true, Ordering::Release);
                Ok(first)
            }
            Err(err) => {
                if self.shared.healthy.swap(false, Ordering::AcqRel) {
                    tracing::error!(
                        error = %err,
                        "audit records could not be written; requests are refused until they can"
                    );
                }
                Err(err)
            }
        }
    }

    /// Rotates when due (the new file named by `first`), cuts off leftovers of a failed
    /// write, and appends `buf` with one write through a descriptor opened for it.
    fn write_buf(&mut self, buf: &[u8], first: u64) -> Result<(), AuditError> {
        if self.current_len > 0 && self.current_len >= self.max_file_bytes {
            self.rotate(first)?;
        }
        if let Some((path, len)) = &self.pending_truncate {
            cut_back(path, *len).map_err(|e| AuditError::unavailable(path, &e))?;
            self.pending_truncate = None;
        }
        let mut file = match self.file.take() {
            Some(file) => file,
            None => open_append(&self.current)
                .map_err(|e| AuditError::unavailable(&self.current, &e))?,
        };
        let mut written = 0;
        while written < buf.len() {
            match file.write(&buf[written..]) {
                Ok(0) => {
                    let e = std::io::Error::from(std::io::ErrorKind::WriteZero);
                    return Err(self.cut_failed(&file, written, &e));
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // The descriptor is dropped: the next batch opens the file again.
                Err(e) => return Err(self.cut_failed(&file, written, &e)),
            }
        }
        self.file = Some(file);
        if self.current_len == 0 {
            self.dir_dirty = true; // the file may be new
        }
        self.current_len += written as u64;
        Ok(())
    }

    /// Removes the part of a record that reached the file before `err`, so no record is half
    /// in the chain; when that fails too, it is retried before the next write.
    fn cut_failed(&mut self, file: &File, written: usize, err: &std::io::Error) -> AuditError {
        let path = &self.current;
        if written > 0 {
            // O_APPEND and the directory lock make these the file's last bytes; the length
            // is asked for only now, so a good write costs no fstat.
            let before = file
                .metadata()
                .map(|m| m.len().saturating_sub(written as u64))
                .unwrap_or(self.current_len);
            if let Err(trunc) = file.set_len(before) {
                tracing::error!(
                    path = %path.display(),
                    error = %trunc,
                    "cannot cut a failed audit write off; retrying before the next write"
                );
                self.pending_truncate = Some((path.clone(), before));
            }
        }
        AuditError::unavailable(path, err)
    }

    /// Starts a new file named by `first`, after syncing the old one, so a checkpoint
    /// covering records in the new file never covers unsynced records in the old (rare, so
    /// done under the mutex). The checkpoint itself is left to the next sync: checkpoints are
    /// written only by syncs, one at a time (see `crate::log`), so one prepared before this
    /// rotation can never be written after, and over, a newer one.
    fn rotate(&mut self, first: u64) -> Result<(), AuditError> {
        let synced = match self.file.take() {
            Some(file) => file.sync_data(),
            None => File::open(&self.current).and_then(|f| f.sync_data()),
        };
        synced.map_err(|e| {
            self.shared.healthy.store(false, Ordering::Release);
            AuditError::unavailable(&self.current, &e)
        })?;
        let next = self.dir.join(chain::file_name(first));
        tracing::info!(path = %next.display(), "starting a new audit file");
        self.current_len = 0;
        self.retention_due = self.keep_files > 0 || self.max_total_bytes > 0;
        self.current_name = file_name_of(&next);
        self.current = next.clone();
        let mut current = self
            .shared
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *current = next;
        Ok(())
    }

    /// Checks that the next batch can go where the chain is: the current file is still the
    /// one the descriptor writes to, and it and the directory are writable. Otherwise drops
    /// the descriptor and marks the log unhealthy (requests are refused until
    /// [`writable`] succeeds again).
    pub(crate) fn check(&mut self) -> Result<(), AuditError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let replaced = match (file.metadata(), std::fs::metadata(&self.current)) {
            (Ok(open), Ok(named)) => open.ino() != named.ino() || open.dev() != named.dev(),
            _ => true,
        };
        let problem = if replaced {
            Err(std::io::Error::other(
                "the file was removed or replaced while open",
            ))
        } else {
            writable(&self.dir, &self.current)
        };
        problem.map_err(|e| {
            self.file = None;
            let err = AuditError::unavailable(&self.current, &e);
            if self.shared.healthy.swap(false, Ordering::AcqRel) {
                tracing::error!(
                    error = %err,
                    "the audit log cannot be written; requests are refused until it can"
                );
            }
            err
        })
    }

    /// Whether records were written since the last sync.
    pub(crate) fn unsynced(&self) -> bool {
        self.unsynced || self.dir_dirty
    }

    /// What a sync of everything written so far has to do; `None` when there is nothing.
    /// `last` checkpoints into both slots (for shutdown and key changes).
    pub(crate) fn prepare_sync(&mut self, last: bool) -> Option<PendingSync> {
        let cp = self.written.clone()?;
        let keys = self.keys.as_ref().map(AuditKeys::duplicate);
        let needs_checkpoint =
            keys.is_some() && self.gap.is_none() && (last || self.checkpointed != Some(cp.seq));
        if !self.unsynced() && !needs_checkpoint {
            return None;
        }
        let slots = match (&keys, needs_checkpoint) {
            (Some(k), true) => {
                let first = self
                    .next_slot
                    .unwrap_or_else(|| checkpoint::read(&self.dir, k).map_or(0, |s| s.next_slot()));
                if last {
                    vec![first, 1 - first]
                } else {
                    vec![first]
                }
            }
            _ => Vec::new(),
        };
        let advance = needs_checkpoint
            && self.counter.is_some()
            && self.counter_value.is_some()
            && self.advanced_seq != Some(cp.seq)
            && (last || self.last_advance.elapsed() >= self.counter_interval);
        let pending = PendingSync {
            counter: self.counter.clone().filter(|_| needs_checkpoint),
            counter_value: self.counter_value,
            advance,
            reached: Cell::new(None),
            dir: self.dir.clone(),
            anchor: self.anchor.clone(),
            file: self.dir.join(&cp.file),
            dir_dirty: self.dir_dirty,
            cp,
            keys,
            slots,
        };
        // Writes from here on are after the sync: they set these again.
        self.unsynced = false;
        self.dir_dirty = false;
        Some(pending)
    }

    /// Records what [`PendingSync::run`] achieved.
    pub(crate) fn finish_sync(
        &mut self,
        pending: PendingSync,
        result: Result<(), AuditError>,
    ) -> Result<(), AuditError> {
        self.last_sync = Instant::now();
        match result {
            Ok(()) => {
                if let Some(&slot) = pending.slots.last() {
                    self.next_slot = Some(1 - slot);
                    self.checkpointed = Some(pending.cp.seq);
                }
                if pending.counter.is_some() {
                    self.counter_value = pending.reached.get();
                    if pending.advance {
                        self.advanced_seq = Some(pending.cp.seq);
                        self.last_advance = Instant::now();
                    }
                }
                Ok(())
            }
            Err(err) => {
                if pending.counter.is_some() {
                    self.counter_value = pending.reached.get();
                }
                // Try again at the next sync.
                self.unsynced = true;
                self.dir_dirty |= pending.dir_dirty;
                self.next_slot = None;
                self.shared.healthy.store(false, Ordering::Release);
                tracing::error!(error = %err, "cannot sync the audit log or write its checkpoint");
                Err(err)
            }
        }
    }

    /// Switches keys (the caller anchored what was written under the old ones first).
    pub(crate) fn set_keys(&mut self, keys: Option<AuditKeys>) {
        self.keys = keys;
        self.checkpointed = None;
        self.next_slot = None;
    }

    /// Whether keys are set.
    pub(crate) fn has_keys(&self) -> bool {
        self.keys.is_some()
    }

    /// Notes that the counter's value already covers the checkpoint of `seq`.
    pub(crate) fn advanced(&mut self, seq: Option<u64>) {
        self.advanced_seq = seq;
    }

    /// The counter checkpoints are anchored in, if any.
    pub(crate) fn counter(&self) -> Option<&Arc<dyn AuditCounter>> {
        self.counter.as_ref()
    }

    /// The keys, while set.
    pub(crate) fn keys(&self) -> Option<&AuditKeys> {
        self.keys.as_ref()
    }

    /// The last record written (0: none) and the seq the next one gets.
    pub(crate) fn position(&self) -> (u64, u64) {
        (self.written.as_ref().map_or(0, |w| w.seq), self.next_seq)
    }
}

/// Whether a record could be appended to `path` in `dir`: the directory is writable (for
/// rotation) and the file opens for appending (it is created if missing, as a write would).
pub(crate) fn writable(dir: &Path, path: &Path) -> std::io::Result<()> {
    nix::unistd::access(
        dir,
        nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
    )
    .map_err(std::io::Error::from)?;
    open_append(path).map(drop)
}

/// Cuts a file back to `len` (the leftovers of a failed write).
fn cut_back(path: &Path, len: u64) -> std::io::Result<()> {
    OpenOptions::new().write(true).open(path)?.set_len(len)
}

fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuditConfig;
    use coffer_crypto::SecretBytes;

    fn keys() -> AuditKeys {
        AuditKeys::from_bytes(
            SecretBytes::copy_from(&[1; 32]),
            SecretBytes::copy_from(&[2; 32]),
        )
        .unwrap()
    }

    /// The syncer thread prepares a sync, the writer rotates meanwhile (past the prepared
    /// checkpoint), then the syncer writes its checkpoint: it must succeed, and the next sync
    /// must checkpoint the newest record, never lower.
    #[test]
    fn a_rotation_during_a_sync_does_not_race_its_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let config = AuditConfig {
            dir: tmp.path().to_path_buf(),
            max_file_bytes: 512,
            ..AuditConfig::default()
        };
        let start = crate::recover::start(tmp.path()).unwrap();
        let shared = Arc::new(Shared::new(start.current.clone(), 0));
        let mut writer = Writer::new(&config, start, shared);
        writer.set_keys(Some(keys()));
        let body = br#"{"time":"2026-11-30T00:00:00.000Z","action":"get","outcome":"ok"}"#;
        writer.write_batch([&body[..]; 3]).unwrap();
        let prepared = writer.prepare_sync(false).unwrap();
        assert_eq!(prepared.cp.seq, 3);
        // Past 512 bytes: the next batches rotate to new files.
        for _ in 0..4 {
            writer.write_batch([&body[..]; 3]).unwrap();
        }
        assert!(crate::chain::list(tmp.path()).unwrap().len() > 1);
        let result = prepared.run();
        assert!(result.is_ok(), "{result:?}");
        writer.finish_sync(prepared, result).unwrap();
        let next = writer.prepare_sync(false).unwrap();
        assert_eq!(next.cp.seq, 15);
        let result = next.run();
        assert!(result.is_ok(), "{result:?}");
        writer.finish_sync(next, result).unwrap();
        assert!(crate::verify(tmp.path(), Some(&keys())).unwrap().ok());
    }
}
