//! The writer thread and its group commit, as in the SQLite backend: one connection, the
//! jobs that queued up meanwhile (up to [`MAX_BATCH`]) applied in one transaction, each in
//! its own savepoint, one commit. A job's reply is sent only after that commit, so an
//! acknowledged write is in PostgreSQL's WAL.
//!
//! Across hubs, every batch first locks the event counter's row: batches from every hub are
//! applied one at a time, so revisions and version numbers are decided once, in commit
//! order, and a plan always sees the rows as the last commit left them.
//!
//! A lost connection fails the batch it was running (the callers hear "unavailable"; a
//! commit whose answer was lost may or may not have happened, as with any database) and
//! the next batch connects again: a hub outlives a restart of PostgreSQL.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};

use coffer_store::batch::Done;
use coffer_store::{EventPlan, Feed, StoreError};
use coffer_types::{ChangeEvent, Version};
use postgres::{Client, Transaction};

use crate::connect::Connector;
use crate::events::{self, Pending};
use crate::ops;
use crate::prepared;

/// Most jobs committed together.
const MAX_BATCH: usize = 512;

/// A change run on the writer thread (key generations): answers a count and maybe an event.
pub(crate) type RunJob = Box<
    dyn FnOnce(&mut Transaction<'_>, &mut Pending) -> Result<(u64, Option<ChangeEvent>), StoreError>
        + Send,
>;

/// The writer's own kind of change; `note`: other hubs must reload every namespace after it.
pub(crate) struct PgRun {
    pub(crate) run: RunJob,
    pub(crate) note: bool,
}

/// A write for the writer thread.
pub(crate) type Job = coffer_store::batch::Job<PgRun>;

/// The writer's state.
pub(crate) struct Writer {
    pub(crate) connector: Arc<Connector>,
    pub(crate) hub: String,
    pub(crate) feed: Arc<Feed>,
    pub(crate) client: Option<Client>,
}

impl Writer {
    /// Runs until every sender is gone.
    pub(crate) fn run(mut self, jobs: Receiver<Job>) {
        while let Ok(first) = jobs.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            self.commit_batch(batch);
        }
    }

    fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            let client = self.connector.connect()?;
            crate::prepared::reset();
            tracing::info!(
                database = self.connector.describe(),
                "the writer is connected"
            );
            self.client = Some(client);
        }
        self.client
            .as_mut()
            .ok_or_else(|| StoreError::unavailable("writing", "no connection"))
    }

    fn commit_batch(&mut self, batch: Vec<Job>) {
        let hub = self.hub.clone();
        let feed = self.feed.clone();
        let client = match self.client() {
            Ok(c) => c,
            Err(e) => {
                let detail = e.to_string();
                for job in batch {
                    job.reject(StoreError::unavailable("writing", detail.clone()));
                }
                return;
            }
        };
        let started = client.transaction().and_then(|mut tx| {
            // The write lock every hub's batches take in turn, and the head it numbers from.
            let head: i64 = tx
                .query_one(
                    "SELECT head FROM event_counter WHERE id = 1 FOR UPDATE",
                    &[],
                )?
                .get(0);
            Ok((tx, Pending::new(u64::try_from(head).unwrap_or(0))))
        });
        let (mut tx, mut pending) = match started {
            Ok(started) => started,
            Err(e) => {
                let detail = ops::detail(&e);
                for job in batch {
                    job.reject(StoreError::unavailable("starting a write", detail.clone()));
                }
                return;
            }
        };
        let single = batch.len() == 1;
        let mut events = Vec::new();
        let done: Vec<Done> = batch
            .into_iter()
            .map(|job| apply(&mut tx, job, single, &mut pending, &mut events))
            .collect();
        if single && done.iter().any(Done::failed) {
            // No savepoint: the failed job's statements go with the transaction.
            drop(tx.rollback());
            done.into_iter().for_each(Done::send);
            return;
        }
        let kept = if pending.is_empty() {
            Ok(())
        } else {
            pending.flush(&mut tx, &hub).and_then(|()| {
                // The payload names the hub: its own listener lets it pass.
                prepared::execute(&mut tx, "SELECT pg_notify('coffer', $1)", &[&hub])
                    .map(drop)
                    .map_err(ops::db("notifying the other hubs"))
            })
        };
        let committed = kept
            .map_err(|e| e.to_string())
            .and_then(|()| tx.commit().map_err(|e| ops::detail(&e)));
        match committed {
            Ok(()) => {
                // Published before the replies: a writer that watches from the head it was
                // told after its write never waits for its own event.
                feed.publish(events);
                done.into_iter().for_each(Done::send);
            }
            Err(detail) => {
                tracing::error!(error = %detail, "commit failed; the batch's writes may not be stored");
                for d in done {
                    d.fail_if_ok(|| StoreError::unavailable("committing a write", detail.clone()))
                        .send();
                }
            }
        }
    }
}

/// Runs `f`, turning a panic into an error: a bug in a plan must not take the writer down.
fn guarded<T>(f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        tracing::error!("a write panicked; it was rolled back");
        Err(StoreError::Malformed("a write failed inside the store"))
    })
}

/// Runs one job's statements: in a savepoint of their own when the batch has others.
fn step<T>(
    tx: &mut Transaction<'_>,
    single: bool,
    f: impl FnOnce(&mut Transaction<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    if single {
        return guarded(|| f(tx));
    }
    let mut sp = tx
        .savepoint("job")
        .map_err(|e| StoreError::unavailable("starting a write", crate::ops::detail(&e)))?;
    // Dropping the savepoint on an error rolls it back.
    let v = guarded(|| f(&mut sp))?;
    sp.commit()
        .map(|()| v)
        .map_err(|e| StoreError::unavailable("writing", crate::ops::detail(&e)))
}

/// Applies one job: its statements, its event and its change note (kept in `pending` for
/// the batch's end); the event, once the job succeeded, joins `events` to be published.
fn apply(
    tx: &mut Transaction<'_>,
    job: Job,
    single: bool,
    pending: &mut Pending,
    events: &mut Vec<ChangeEvent>,
) -> Done {
    let mark = pending.mark();
    let mut evented = None;
    let done = {
        let p = &mut *pending;
        let ev = &mut evented;
        match job {
            Job::Header(body, reply) => Done::Unit(
                reply,
                step(tx, single, |tx| {
                    ops::put_header(tx, &body)?;
                    p.note(None, None);
                    Ok(())
                }),
            ),
            Job::Namespace(row, event, reply) => Done::Unit(
                reply,
                step(tx, single, |tx| {
                    ops::create_namespace(tx, &row)?;
                    *ev = keep(p, event, None)?;
                    p.note(Some(&row.id), None);
                    Ok(())
                }),
            ),
            Job::Event(event, reply) => Done::Unit(
                reply,
                step(tx, single, |_| {
                    *ev = keep(p, Some(event), None)?;
                    Ok(())
                }),
            ),
            Job::Wraps {
                id,
                from,
                to,
                event,
                reply,
            } => Done::Unit(
                reply,
                step(tx, single, |tx| {
                    ops::set_wraps(tx, &id, &from, &to)?;
                    *ev = keep(p, event, None)?;
                    p.note(Some(&id), None);
                    Ok(())
                }),
            ),
            Job::Write {
                namespace,
                name,
                plan,
                event,
                reply,
            } => Done::Written(
                reply,
                step(tx, single, |tx| {
                    let (w, name_ct) = ops::write(tx, &namespace, &name, plan)?;
                    *ev = keep(p, event, Some(w.version))?;
                    p.note(Some(&namespace), Some((&w.id, &name, &name_ct)));
                    Ok(w)
                }),
            ),
            Job::Modify {
                namespace,
                name,
                plan,
                event,
                reply,
            } => Done::Modified(
                reply,
                step(tx, single, |tx| {
                    let m = ops::modify(tx, &namespace, &name, plan)?;
                    if let Some(m) = &m {
                        *ev = keep(p, event, Some(m.row.current))?;
                        p.note(Some(&namespace), Some((&m.row.id, &name, &m.row.name_ct)));
                    }
                    Ok(m)
                }),
            ),
            Job::Delete {
                namespace,
                name,
                event,
                reply,
            } => Done::Deleted(
                reply,
                step(tx, single, |tx| {
                    let d = ops::delete(tx, &namespace, &name)?;
                    if let Some(row) = &d {
                        *ev = keep(p, event, None)?;
                        p.note(Some(&namespace), Some((&row.id, &name, &row.name_ct)));
                    }
                    Ok(d.map(|row| row.id))
                }),
            ),
            Job::Prune {
                retention,
                now,
                reply,
            } => Done::Count(
                reply,
                step(tx, single, |tx| {
                    let pruned = events::prune(tx, retention, now)?;
                    crate::follow::prune_changes(tx)?;
                    Ok(pruned)
                }),
            ),
            Job::Run {
                run: PgRun { run, note },
                reply,
            } => Done::Count(
                reply,
                step(tx, single, |tx| {
                    let (n, event) = run(tx, p)?;
                    *ev = event;
                    if note {
                        p.note(None, None);
                    }
                    Ok(n)
                }),
            ),
        }
    };
    // A job that failed kept no event and changed nothing, even if its plan had sealed one.
    if done.failed() {
        pending.undo(mark);
    } else {
        events.extend(evented);
    }
    done
}

/// Numbers and keeps `event`, if any.
fn keep(
    pending: &mut Pending,
    event: Option<EventPlan>,
    version: Option<Version>,
) -> Result<Option<ChangeEvent>, StoreError> {
    event.map(|plan| pending.record(plan, version)).transpose()
}
