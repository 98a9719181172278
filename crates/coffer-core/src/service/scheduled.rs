//! Scheduled backups: the daemon's own work, like scheduled rotation. At each due time, with
//! the store unsealed, it makes a backup into the schedule's directory, removes the oldest
//! beyond `keep`, and leaves an audit record (action `backup`, the daemon as actor), an event
//! (`backup.made` or `backup.failed`, in the store's own namespace) and its counters (the
//! metrics). A failure is retried at the next due time; the daemon keeps serving.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use coffer_audit::Outcome;
use coffer_store::Change;
use coffer_types::{Action, EventAction, Namespace, Timestamp};

use super::record::OwnWork;
use super::state::{Service, blocking};
use crate::CoreError;
use crate::backup::Schedule;
use crate::backup::schedule::ensure_dir;
use crate::schedule::BackupStats;

/// How often a sealed daemon looks again whether it may make a due backup.
const SEALED_RETRY: Duration = Duration::from_secs(5);

impl Service {
    /// What the metrics show of scheduled backups.
    pub fn backup_stats(&self) -> BackupStats {
        BackupStats {
            made: self.backups.made.load(Ordering::Relaxed),
            failed: self.backups.failed.load(Ordering::Relaxed),
            ..*self.backups.last()
        }
    }

    /// Starts making backups on `schedule`, in the service's tasks (a shutdown's drain waits
    /// for the backup in progress), until `stop` turns true.
    pub fn start_backups(
        self: &Arc<Self>,
        schedule: Schedule,
        stop: tokio::sync::watch::Receiver<bool>,
    ) {
        self.backups.last().scheduled = true;
        let this = self.clone();
        self.tasks
            .spawn(async move { this.run_backups(schedule, stop).await });
    }

    async fn run_backups(
        self: Arc<Self>,
        schedule: Schedule,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let schedule = Arc::new(schedule);
        {
            let s = schedule.clone();
            let _ = blocking(move || {
                ensure_dir(&s.dir).map_err(|e| {
                    CoreError::Unavailable(format!("creating {}: {e}", s.dir.display()))
                })?;
                s.remove_leftovers();
                Ok(())
            })
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "the backup directory is not usable"));
        }
        // After an attempt, the next is `every` later at the soonest, even when it failed and
        // left no file to date it by.
        let mut not_before = Timestamp::from_millis(0);
        let every_ms = i64::try_from(schedule.every.as_millis()).unwrap_or(i64::MAX);
        loop {
            let s = schedule.clone();
            let due = blocking(move || Ok(s.next_due(Timestamp::now())))
                .await
                .unwrap_or_else(|_| Timestamp::now())
                .max(not_before);
            self.backups.last().next_due = Some(due);
            let wait = u64::try_from(due.as_millis() - Timestamp::now().as_millis()).unwrap_or(0);
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(wait)) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            if !self.cluster.is_leader() {
                // Another hub sharing the store holds the lease: it makes the backups.
                tokio::select! {
                    () = tokio::time::sleep(SEALED_RETRY) => continue,
                    _ = stop.changed() => return,
                }
            }
            if self.vault.store().is_err() {
                // Sealed: the backup waits for the unseal (a sealed daemon holds no key).
                tokio::select! {
                    () = tokio::time::sleep(SEALED_RETRY) => continue,
                    _ = stop.changed() => return,
                }
            }
            not_before =
                Timestamp::from_millis(Timestamp::now().as_millis().saturating_add(every_ms));
            self.backup_once(&schedule).await;
        }
    }

    /// Makes one scheduled backup now, prunes, and leaves its record, event and counters.
    async fn backup_once(&self, schedule: &Arc<Schedule>) {
        let started = Instant::now();
        let (vault, s) = (self.vault.clone(), schedule.clone());
        let data_dir = self.data_dir.get().cloned();
        let made = blocking(move || {
            let written = vault.backup_to_file(
                &s.recipients,
                &s.file_for(Timestamp::now()),
                data_dir.as_deref(),
                &mut |_| {},
            )?;
            let removed = s.prune();
            Ok((written, removed))
        })
        .await;
        let (outcome, code, action) = match &made {
            Ok((written, removed)) => {
                self.backups.made.fetch_add(1, Ordering::Relaxed);
                let mut last = self.backups.last();
                last.last_made = Some(Timestamp::now());
                last.last_bytes = written.bytes;
                last.last_seconds = started.elapsed().as_secs_f64();
                drop(last);
                tracing::info!(
                    path = %written.path.display(),
                    bytes = written.bytes,
                    removed = removed.len(),
                    "scheduled backup made"
                );
                (Outcome::Ok, None, EventAction::BackupMade)
            }
            Err(e) => {
                self.backups.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, dir = %schedule.dir.display(), "a scheduled backup failed");
                (Outcome::Error, Some(e.code()), EventAction::BackupFailed)
            }
        };
        let work = OwnWork {
            action: Action::Backup,
            namespace: None,
            name: None,
            outcome,
            code,
            gate: None,
        };
        self.record_own(work, "scheduled backup").await;
        if let Ok(store) = self.vault.store() {
            let noted = blocking(move || {
                Ok(store.note(
                    &Namespace::system(),
                    Change::by(super::rotation::ACTOR),
                    action,
                )?)
            })
            .await;
            if let Err(e) = noted {
                tracing::warn!(error = %e, "the event of a scheduled backup could not be kept");
            }
        }
    }
}
