//! The event feed's rows in SQLite: numbering a change's event inside its savepoint, reading
//! pages of kept events, and pruning by the retention window.

use coffer_types::{ChangeEvent, Timestamp, Version};
use rusqlite::{Connection, params};

use crate::StoreError;
use crate::events::{EventPlan, EventRows, Retention, SealedEvent};

/// Most events one prune deletes, so a prune never holds the writer long; the caller repeats
/// it while it deletes this many.
pub(super) const PRUNE_BATCH: u64 = 10_000;

fn db(doing: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::unavailable(doing, e)
}

/// The newest revision.
pub(super) fn head(c: &Connection) -> Result<u64, StoreError> {
    c.query_row("SELECT head FROM event_counter WHERE id = 1", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|h| u64::try_from(h).unwrap_or(0))
    .map_err(db("reading the event head"))
}

/// Numbers and keeps a change's event, inside the change's savepoint: a change that rolls
/// back takes its revision with it.
pub(super) fn record(
    c: &Connection,
    plan: EventPlan,
    version: Option<Version>,
) -> Result<ChangeEvent, StoreError> {
    let revision: i64 = c
        .prepare_cached("UPDATE event_counter SET head = head + 1 WHERE id = 1 RETURNING head")
        .and_then(|mut st| st.query_row([], |r| r.get(0)))
        .map_err(db("numbering an event"))?;
    let revision = u64::try_from(revision).map_err(|_| StoreError::Malformed("a revision"))?;
    let (event, sealed) = plan(revision, version)?;
    c.prepare_cached("INSERT INTO events (revision, time, sealed) VALUES (?1, ?2, ?3)")
        .and_then(|mut st| st.execute(params![revision as i64, event.time.as_millis(), sealed]))
        .map_err(db("keeping an event"))?;
    Ok(event)
}

/// Up to `limit` kept events after `after`, in one read transaction with the counter.
pub(super) fn after(c: &Connection, after: u64, limit: usize) -> Result<EventRows, StoreError> {
    let tx = c.unchecked_transaction().map_err(db("reading events"))?;
    let (head, floor): (i64, i64) = tx
        .prepare_cached("SELECT head, floor FROM event_counter WHERE id = 1")
        .and_then(|mut st| st.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(db("reading events"))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let mut st = tx
        .prepare_cached(
            "SELECT revision, time, sealed FROM events WHERE revision > ?1
             ORDER BY revision LIMIT ?2",
        )
        .map_err(db("reading events"))?;
    let rows = st
        .query_map(params![after, limit], |r| {
            Ok(SealedEvent {
                revision: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                time: Timestamp::from_millis(r.get(1)?),
                sealed: r.get(2)?,
            })
        })
        .map_err(db("reading events"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db("reading events"))?;
    drop(st);
    drop(tx);
    Ok(EventRows {
        floor: u64::try_from(floor).unwrap_or(0),
        head: u64::try_from(head).unwrap_or(0),
        rows,
    })
}

/// Deletes up to [`PRUNE_BATCH`] of the oldest events `retention` no longer keeps.
pub(super) fn prune(
    c: &Connection,
    retention: Retention,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let head = head(c)?;
    let by_count = i64::try_from(retention.by_count(head)).unwrap_or(i64::MAX);
    let cutoff = retention.cutoff(now).as_millis();
    // The newest revision, among the oldest batch, that is past either limit.
    let floor: Option<i64> = c
        .prepare_cached(
            "SELECT MAX(revision) FROM (SELECT revision, time FROM events ORDER BY revision LIMIT ?3)
             WHERE revision <= ?1 OR time < ?2",
        )
        .and_then(|mut st| {
            st.query_row(params![by_count, cutoff, PRUNE_BATCH as i64], |r| r.get(0))
        })
        .map_err(db("pruning events"))?;
    let Some(floor) = floor else {
        return Ok(0);
    };
    let pruned = c
        .prepare_cached("DELETE FROM events WHERE revision <= ?1")
        .and_then(|mut st| st.execute(params![floor]))
        .map_err(db("pruning events"))?;
    c.prepare_cached("UPDATE event_counter SET floor = MAX(floor, ?1) WHERE id = 1")
        .and_then(|mut st| st.execute(params![floor]))
        .map_err(db("pruning events"))?;
    Ok(pruned as u64)
}
