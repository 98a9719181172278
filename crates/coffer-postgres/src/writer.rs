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
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};

use coffer_store::{
    EventPlan, Feed, Modified, ModifyPlan, NameHash, NamespaceId, NamespaceRow, Retention,
    SecretId, StoreError, WritePlan, Written,
};
use coffer_types::{ChangeEvent, Timestamp, Version};
use postgres::{Client, Transaction};

use crate::connect::Connector;
use crate::{events, ops};

/// Most jobs committed together.
const MAX_BATCH: usize = 512;

/// The answer channel of one job.
pub(crate) type Reply<T> = SyncSender<Result<T, StoreError>>;

/// A change run on the writer thread (key generations): answers a count and maybe an event.
pub(crate) type RunJob =
    Box<dyn FnOnce(&mut Transaction<'_>) -> Result<(u64, Option<ChangeEvent>), StoreError> + Send>;

/// A write for the writer thread.
pub(crate) enum Job {
    Header(Vec<u8>, Reply<()>),
    Namespace(NamespaceRow, Option<EventPlan>, Reply<()>),
    Wraps {
        id: NamespaceId,
        wrapped_key: Vec<u8>,
        lock_wrap: Option<Vec<u8>>,
        event: Option<EventPlan>,
        reply: Reply<()>,
    },
    Event(EventPlan, Reply<()>),
    Write {
        namespace: NamespaceId,
        name: NameHash,
        plan: WritePlan,
        event: Option<EventPlan>,
        reply: Reply<Written>,
    },
    Modify {
        namespace: NamespaceId,
        name: NameHash,
        plan: ModifyPlan,
        event: Option<EventPlan>,
        reply: Reply<Option<Modified>>,
    },
    Delete {
        namespace: NamespaceId,
        name: NameHash,
        event: Option<EventPlan>,
        reply: Reply<Option<SecretId>>,
    },
    Prune {
        retention: Retention,
        now: Timestamp,
        reply: Reply<u64>,
    },
    /// Any other change; `note`: other hubs must reload every namespace after it.
    Run {
        run: RunJob,
        note: bool,
        reply: Reply<u64>,
    },
}

impl Job {
    fn reject(self, err: StoreError) {
        // A caller that gave up waiting has dropped its receiver; nothing to tell it.
        match self {
            Self::Header(_, r) | Self::Namespace(_, _, r) | Self::Event(_, r) => {
                drop(r.send(Err(err)));
            }
            Self::Wraps { reply, .. } => drop(reply.send(Err(err))),
            Self::Prune { reply, .. } | Self::Run { reply, .. } => drop(reply.send(Err(err))),
            Self::Write { reply, .. } => drop(reply.send(Err(err))),
            Self::Modify { reply, .. } => drop(reply.send(Err(err))),
            Self::Delete { reply, .. } => drop(reply.send(Err(err))),
        }
    }
}

/// A job's outcome, held until the batch commits.
enum Done {
    Unit(Reply<()>, Result<(), StoreError>),
    Count(Reply<u64>, Result<u64, StoreError>),
    Written(Reply<Written>, Result<Written, StoreError>),
    Modified(
        Reply<Option<Modified>>,
        Result<Option<Modified>, StoreError>,
    ),
    Deleted(
        Reply<Option<SecretId>>,
        Result<Option<SecretId>, StoreError>,
    ),
}

impl Done {
    fn failed(&self) -> bool {
        matches!(
            self,
            Self::Unit(_, Err(_))
                | Self::Count(_, Err(_))
                | Self::Written(_, Err(_))
                | Self::Modified(_, Err(_))
                | Self::Deleted(_, Err(_))
        )
    }

    fn fail_if_ok(self, err: impl Fn() -> StoreError) -> Self {
        match self {
            Self::Unit(r, Ok(())) => Self::Unit(r, Err(err())),
            Self::Count(r, Ok(_)) => Self::Count(r, Err(err())),
            Self::Written(r, Ok(_)) => Self::Written(r, Err(err())),
            Self::Modified(r, Ok(_)) => Self::Modified(r, Err(err())),
            Self::Deleted(r, Ok(_)) => Self::Deleted(r, Err(err())),
            other => other,
        }
    }

    fn send(self) {
        match self {
            Self::Unit(r, v) => drop(r.send(v)),
            Self::Count(r, v) => drop(r.send(v)),
            Self::Written(r, v) => drop(r.send(v)),
            Self::Modified(r, v) => drop(r.send(v)),
            Self::Deleted(r, v) => drop(r.send(v)),
        }
    }
}

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
            // The write lock every hub's batches take in turn.
            tx.execute(
                "SELECT head FROM event_counter WHERE id = 1 FOR UPDATE",
                &[],
            )?;
            Ok(tx)
        });
        let mut tx = match started {
            Ok(tx) => tx,
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
        let mut changed = false;
        let done: Vec<Done> = batch
            .into_iter()
            .map(|job| apply(&mut tx, job, single, &hub, &mut events, &mut changed))
            .collect();
        if single && done.iter().any(Done::failed) {
            // No savepoint: the failed job's statements go with the transaction.
            drop(tx.rollback());
            events.clear();
            done.into_iter().for_each(Done::send);
            return;
        }
        let notified = if changed || !events.is_empty() {
            // The payload names the hub: its own listener lets it pass.
            tx.execute("SELECT pg_notify('coffer', $1)", &[&hub])
                .map(drop)
        } else {
            Ok(())
        };
        match notified.and_then(|()| tx.commit()) {
            Ok(()) => {
                // Published before the replies: a writer that watches from the head it was
                // told after its write never waits for its own event.
                feed.publish(events);
                done.into_iter().for_each(Done::send);
            }
            Err(e) => {
                let detail = ops::detail(&e);
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

/// Applies one job; its event joins `events` and `changed` is set when it changed rows
/// another hub may have cached.
fn apply(
    tx: &mut Transaction<'_>,
    job: Job,
    single: bool,
    hub: &str,
    events: &mut Vec<ChangeEvent>,
    changed: &mut bool,
) -> Done {
    let mut evented = None;
    let mut noted = false;
    let keep = |tx: &mut Transaction<'_>, event: Option<EventPlan>, version: Option<Version>| {
        event
            .map(|plan| events::record(tx, plan, version))
            .transpose()
    };
    let done = match job {
        Job::Header(body, reply) => Done::Unit(
            reply,
            step(tx, single, |tx| {
                ops::put_header(tx, &body)?;
                noted = true;
                ops::note_change(tx, hub, None, None)
            }),
        ),
        Job::Namespace(row, event, reply) => Done::Unit(
            reply,
            step(tx, single, |tx| {
                ops::create_namespace(tx, &row)?;
                evented = keep(tx, event, None)?;
                noted = true;
                ops::note_change(tx, hub, Some(&row.id), None)
            }),
        ),
        Job::Event(event, reply) => Done::Unit(
            reply,
            step(tx, single, |tx| {
                evented = keep(tx, Some(event), None)?;
                Ok(())
            }),
        ),
        Job::Wraps {
            id,
            wrapped_key,
            lock_wrap,
            event,
            reply,
        } => Done::Unit(
            reply,
            step(tx, single, |tx| {
                ops::set_wraps(tx, &id, &wrapped_key, lock_wrap.as_deref())?;
                evented = keep(tx, event, None)?;
                noted = true;
                ops::note_change(tx, hub, Some(&id), None)
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
                evented = keep(tx, event, Some(w.version))?;
                noted = true;
                ops::note_change(tx, hub, Some(&namespace), Some((&w.id, &name, &name_ct)))?;
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
                    evented = keep(tx, event, Some(m.row.current))?;
                    noted = true;
                    let secret = (&m.row.id, &name, &m.row.name_ct[..]);
                    ops::note_change(tx, hub, Some(&namespace), Some(secret))?;
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
                    evented = keep(tx, event, None)?;
                    noted = true;
                    let secret = (&row.id, &name, &row.name_ct[..]);
                    ops::note_change(tx, hub, Some(&namespace), Some(secret))?;
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
        Job::Run { run, note, reply } => Done::Count(
            reply,
            step(tx, single, |tx| {
                let (n, event) = run(tx)?;
                evented = event;
                if note {
                    noted = true;
                    ops::note_change(tx, hub, None, None)?;
                }
                Ok(n)
            }),
        ),
    };
    // A job that failed kept no event and changed nothing, even if its plan had sealed one.
    if !done.failed() {
        events.extend(evented);
        *changed |= noted;
    }
    done
}
