//! The single writer thread and its group commit.
//!
//! Every write goes through one connection on one thread. The thread takes the first waiting
//! job, then every job that queued up meanwhile (up to [`MAX_BATCH`]), applies each inside its
//! own savepoint of one transaction, and commits once: one WAL sync for the whole batch. A
//! job's reply is sent only after that commit, so an acknowledged write is on disk. A job that
//! fails rolls back its savepoint alone; the others still commit.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, TryRecvError};

use crate::batch::Done;

use coffer_types::{NvIndex, Version};

use crate::backend::SecretId;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::events;
use super::row;
use crate::StoreError;
use crate::backend::{
    Live, Modified, ModifyPlan, NameHash, NamespaceId, NamespaceRow, SecretRow, VersionRow,
    WritePlan, Written, check_modification, check_plan,
};
use crate::events::{EventPlan, Feed};
use coffer_types::ChangeEvent;

/// Most jobs committed together.
const MAX_BATCH: usize = 512;

/// A write for the writer thread: its own kind of change runs on the connection.
pub(super) type Job = crate::batch::Job<RunJob>;

/// A change run on the writer thread (key generations: `keys`).
pub(super) type RunJob =
    Box<dyn FnOnce(&Connection) -> Result<(u64, Option<ChangeEvent>), StoreError> + Send>;

/// Runs until every sender is gone, publishing each committed batch's events to `feed`.
pub(super) fn run(mut conn: Connection, jobs: Receiver<Job>, feed: &Feed) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        commit_batch(&mut conn, batch, feed);
    }
}

fn commit_batch(conn: &mut Connection, batch: Vec<Job>, feed: &Feed) {
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let detail = e.to_string();
            for job in batch {
                job.reject(StoreError::unavailable("starting a write", detail.clone()));
            }
            return;
        }
    };
    let mut events = Vec::new();
    let done: Vec<Done> = batch
        .into_iter()
        .map(|job| apply(&mut tx, job, &mut events))
        .collect();
    match tx.commit() {
        Ok(()) => {
            // Published before the replies: a writer that watches from the head it was told
            // after its write never waits for its own event.
            feed.publish(events);
            done.into_iter().for_each(Done::send);
        }
        Err(e) => {
            let detail = e.to_string();
            tracing::error!(error = %detail, "commit failed; the batch's writes were not stored");
            for d in done {
                d.fail_if_ok(|| StoreError::unavailable("committing a write", detail.clone()))
                    .send();
            }
        }
    }
}

/// Applies one job inside a savepoint, rolling it back alone on failure; the event of a job
/// that succeeded joins `events`.
fn apply(tx: &mut Transaction<'_>, job: Job, events: &mut Vec<ChangeEvent>) -> Done {
    fn in_savepoint<T>(
        tx: &mut Transaction<'_>,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let sp = tx
            .savepoint()
            .map_err(|e| StoreError::unavailable("starting a write", e))?;
        // A panic inside a plan must not take the writer thread down with it.
        let result = catch_unwind(AssertUnwindSafe(|| f(&sp))).unwrap_or_else(|_| {
            tracing::error!("a write panicked; it was rolled back");
            Err(StoreError::Malformed("a write failed inside the store"))
        });
        match result {
            Ok(v) => sp
                .commit()
                .map(|()| v)
                .map_err(|e| StoreError::unavailable("writing", e)),
            // Dropping the savepoint rolls it back.
            Err(e) => Err(e),
        }
    }

    // The change and its event in one savepoint: both or neither.
    let keep = |c: &Connection, event: Option<EventPlan>, version: Option<Version>| {
        event
            .map(|plan| events::record(c, plan, version))
            .transpose()
    };
    let mut evented = Vec::with_capacity(1);
    let done = match job {
        Job::Header(body, reply) => Done::Unit(reply, in_savepoint(tx, |c| put_header(c, &body))),
        Job::Namespace(row, event, reply) => Done::Unit(
            reply,
            in_savepoint(tx, |c| {
                create_namespace(c, &row)?;
                evented.extend(keep(c, event, None)?);
                Ok(())
            }),
        ),
        Job::Event(event, reply) => Done::Unit(
            reply,
            in_savepoint(tx, |c| {
                evented.extend(keep(c, Some(event), None)?);
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
            in_savepoint(tx, |c| {
                set_wraps(c, &id, &from, &to)?;
                evented.extend(keep(c, event, None)?);
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
            in_savepoint(tx, |c| {
                let w = write(c, &namespace, &name, plan)?;
                evented.extend(keep(c, event, Some(w.version))?);
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
            in_savepoint(tx, |c| {
                let m = modify(c, &namespace, &name, plan)?;
                if let Some(m) = &m {
                    evented.extend(keep(c, event, Some(m.row.current))?);
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
            in_savepoint(tx, |c| {
                let d = delete(c, &namespace, &name)?;
                if d.is_some() {
                    evented.extend(keep(c, event, None)?);
                }
                Ok(d)
            }),
        ),
        Job::Prune {
            retention,
            now,
            reply,
        } => Done::Count(
            reply,
            in_savepoint(tx, |c| events::prune(c, retention, now)),
        ),
        Job::Run { run, reply } => Done::Count(
            reply,
            in_savepoint(tx, |c| {
                let (n, event) = run(c)?;
                evented.extend(event);
                Ok(n)
            }),
        ),
    };
    // A savepoint that failed kept no event, even if its plan had sealed one.
    if !done.failed() {
        events.append(&mut evented);
    }
    done
}

fn db(doing: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::unavailable(doing, e)
}

fn put_header(c: &Connection, body: &[u8]) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO header (id, body) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET body = excluded.body",
        params![body],
    )
    .map(drop)
    .map_err(db("writing the store header"))
}

pub(super) fn create_namespace(c: &Connection, row: &NamespaceRow) -> Result<(), StoreError> {
    let inserted = c
        .execute(
            "INSERT INTO namespaces (id, name_ct, key_version, wrapped_key, created, lock_wrap)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO NOTHING",
            params![
                &row.id[..],
                row.name_ct,
                row.key_version,
                row.wrapped_key,
                row.created.as_millis(),
                row.lock_wrap
            ],
        )
        .map_err(db("creating a namespace"))?;
    if inserted == 0 {
        return Err(StoreError::Conflict("the namespace already exists"));
    }
    Ok(())
}

fn set_wraps(
    c: &Connection,
    id: &NamespaceId,
    from: &crate::KeyWraps,
    to: &crate::KeyWraps,
) -> Result<(), StoreError> {
    let updated = c
        .execute(
            "UPDATE namespaces SET wrapped_key = ?2, lock_wrap = ?3
             WHERE id = ?1 AND wrapped_key = ?4 AND lock_wrap IS ?5",
            params![
                &id[..],
                to.wrapped_key,
                to.lock_wrap,
                from.wrapped_key,
                from.lock_wrap
            ],
        )
        .map_err(db("changing a namespace's key wraps"))?;
    if updated == 0 {
        let exists = c
            .query_row(
                "SELECT 1 FROM namespaces WHERE id = ?1",
                params![&id[..]],
                |_| Ok(()),
            )
            .optional()
            .map_err(db("changing a namespace's key wraps"))?;
        return Err(match exists {
            Some(()) => StoreError::Conflict(crate::backend::WRAPS_CHANGED),
            None => StoreError::NotFound("namespace"),
        });
    }
    Ok(())
}

fn live_row(
    c: &Connection,
    namespace: &NamespaceId,
    name: &NameHash,
) -> Result<Option<SecretRow>, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {} FROM secrets s WHERE s.namespace = ?1 AND s.name_hash = ?2 AND s.revoked IS NULL",
        row::SECRET_COLUMNS
    ))
    .and_then(|mut st| {
        st.query_row(params![&namespace[..], &name[..]], |r| row::secret(r, 0))
            .optional()
    })
    .map_err(db("reading a secret"))?
    .transpose()
}

fn take_slot(c: &Connection) -> Result<NvIndex, StoreError> {
    let freed: Option<i64> = c
        .prepare_cached("SELECT MIN(slot) FROM free_slots")
        .and_then(|mut st| st.query_row([], |r| r.get(0)))
        .map_err(db("allocating an index"))?;
    let slot = match freed {
        Some(slot) => {
            c.prepare_cached("DELETE FROM free_slots WHERE slot = ?1")
                .and_then(|mut st| st.execute(params![slot]))
                .map_err(db("allocating an index"))?;
            slot
        }
        None => c
            .prepare_cached(
                "UPDATE slot_counter SET next = next + 1 WHERE id = 1 RETURNING next - 1",
            )
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .map_err(db("allocating an index"))?,
    };
    u32::try_from(slot)
        .ok()
        .and_then(NvIndex::from_slot)
        .ok_or(StoreError::Full)
}

fn free_slot(c: &Connection, index: NvIndex) -> Result<(), StoreError> {
    c.prepare_cached("INSERT INTO free_slots (slot) VALUES (?1)")
        .and_then(|mut st| st.execute(params![index.slot()]))
        .map(drop)
        .map_err(db("freeing an index"))
}

fn write(
    c: &Connection,
    namespace: &NamespaceId,
    name: &NameHash,
    plan: WritePlan,
) -> Result<Written, StoreError> {
    let current = live_row(c, namespace, name)?;
    let newest = |row: &SecretRow| version_row(c, &row.id, row.current);
    let planned = plan(Live::new(current.as_ref(), &newest))?;
    check_plan(current.as_ref(), &planned)?;
    let version: Version = planned.version.version;
    let (id, index, created) = match (&current, &planned.create) {
        (Some(row), _) => {
            let v = &planned.version;
            c.prepare_cached(
                "UPDATE secrets SET current = ?2, kind = ?3, updated = ?4,
                 meta_ct = COALESCE(?5, meta_ct) WHERE id = ?1",
            )
            .and_then(|mut st| {
                st.execute(params![
                    &row.id.0[..],
                    version.get(),
                    v.kind.as_str(),
                    v.created.as_millis(),
                    planned.meta_ct,
                ])
            })
            .map_err(db("updating a secret"))?;
            (row.id, row.index, false)
        }
        (None, Some(new)) => {
            let index = take_slot(c)?;
            c.prepare_cached(
                "INSERT INTO secrets (id, namespace, name_hash, name_ct, meta_ct, slot, current,
                                      kind, created, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    &new.id.0[..],
                    &namespace[..],
                    &name[..],
                    new.name_ct,
                    new.meta_ct,
                    index.slot(),
                    version.get(),
                    planned.version.kind.as_str(),
                    new.created.as_millis(),
                    planned.version.created.as_millis(),
                ])
            })
            .map_err(db("creating a secret"))?;
            (new.id, index, true)
        }
        (None, None) => return Err(StoreError::Malformed("a write plan created nothing")),
    };
    let v = &planned.version;
    c.prepare_cached(
        "INSERT INTO versions (secret, version, kind, created, actor, key_version, ciphertext)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut st| {
        st.execute(params![
            &id.0[..],
            version.get(),
            v.kind.as_str(),
            v.created.as_millis(),
            v.actor,
            v.key_version,
            v.ciphertext,
        ])
    })
    .map_err(db("writing a version"))?;
    prune(c, &id, planned.prune_before)?;
    Ok(Written {
        id,
        version,
        index,
        created,
    })
}

/// One version of a secret, read inside the write's transaction.
fn version_row(c: &Connection, id: &SecretId, version: Version) -> Result<VersionRow, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {} FROM versions v WHERE v.secret = ?1 AND v.version = ?2",
        row::VERSION_COLUMNS
    ))
    .and_then(|mut st| {
        st.query_row(params![&id.0[..], version.get()], |r| row::version(r, 0))
            .optional()
    })
    .map_err(db("reading a version"))?
    .ok_or(StoreError::NotFound("version"))?
}

fn prune(c: &Connection, id: &SecretId, before: Option<Version>) -> Result<(), StoreError> {
    let Some(before) = before else {
        return Ok(());
    };
    c.prepare_cached("DELETE FROM versions WHERE secret = ?1 AND version < ?2")
        .and_then(|mut st| st.execute(params![&id.0[..], before.get()]))
        .map(drop)
        .map_err(db("pruning old versions"))
}

fn version_numbers(c: &Connection, id: &SecretId) -> Result<Vec<Version>, StoreError> {
    let mut st = c
        .prepare_cached("SELECT version FROM versions WHERE secret = ?1")
        .map_err(db("reading versions"))?;
    let rows = st
        .query_map(params![&id.0[..]], |r| r.get::<_, u32>(0))
        .map_err(db("reading versions"))?;
    rows.map(|r| {
        r.map_err(db("reading versions"))
            .and_then(|n| Version::new(n).ok_or(StoreError::Malformed("version 0")))
    })
    .collect()
}

fn modify(
    c: &Connection,
    namespace: &NamespaceId,
    name: &NameHash,
    plan: ModifyPlan,
) -> Result<Option<Modified>, StoreError> {
    let Some(mut row) = live_row(c, namespace, name)? else {
        return Ok(None);
    };
    let m = plan(&row)?;
    check_modification(&row, &version_numbers(c, &row.id)?, &m)?;
    for v in &m.destroy {
        c.prepare_cached(
            "UPDATE versions SET ciphertext = NULL WHERE secret = ?1 AND version = ?2",
        )
        .and_then(|mut st| st.execute(params![&row.id.0[..], v.get()]))
        .map_err(db("destroying a version"))?;
    }
    prune(c, &row.id, m.prune_before)?;
    if let Some(meta) = &m.meta_ct {
        c.prepare_cached("UPDATE secrets SET meta_ct = ?2 WHERE id = ?1")
            .and_then(|mut st| st.execute(params![&row.id.0[..], meta]))
            .map_err(db("updating metadata"))?;
        row.meta_ct.clone_from(meta);
    }
    if let Some(at) = m.revoke {
        // The live-name and live-slot indexes cover unrevoked rows only: the name and the
        // index are free from this commit on.
        c.prepare_cached("UPDATE secrets SET revoked = ?2 WHERE id = ?1")
            .and_then(|mut st| st.execute(params![&row.id.0[..], at.as_millis()]))
            .map_err(db("revoking a secret"))?;
        free_slot(c, row.index)?;
        row.revoked = Some(at);
    }
    Ok(Some(Modified {
        row,
        destroyed: m.destroy,
    }))
}

fn delete(
    c: &Connection,
    namespace: &NamespaceId,
    name: &NameHash,
) -> Result<Option<SecretId>, StoreError> {
    let Some(row) = live_row(c, namespace, name)? else {
        return Ok(None);
    };
    // Versions go with their secret (ON DELETE CASCADE); secure_delete zeroes the pages.
    c.prepare_cached("DELETE FROM secrets WHERE id = ?1")
        .and_then(|mut st| st.execute(params![&row.id.0[..]]))
        .map_err(db("deleting a secret"))?;
    free_slot(c, row.index)?;
    Ok(Some(row.id))
}
