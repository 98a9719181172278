//! The event feed's rows in PostgreSQL: numbering a change's event inside its transaction,
//! reading pages of kept events, and pruning by the retention window. The counter row is
//! locked by every write transaction first (see the writer), so revisions are handed out
//! in commit order across every hub.

use coffer_store::{EventPlan, EventRows, Retention, SealedEvent, StoreError};
use coffer_types::{ChangeEvent, Timestamp, Version};
use postgres::{GenericClient, Transaction};

use crate::ops::db;
use crate::prepared;

/// Most events one prune deletes; the caller repeats while it deletes this many.
const PRUNE_BATCH: i64 = 10_000;

/// The newest revision.
pub(crate) fn head(c: &mut impl GenericClient) -> Result<u64, StoreError> {
    c.query_one("SELECT head FROM event_counter WHERE id = 1", &[])
        .map(|r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0))
        .map_err(db("reading the event head"))
}

/// Numbers and keeps a change's event, inside the change's transaction.
pub(crate) fn record(
    tx: &mut Transaction<'_>,
    plan: EventPlan,
    version: Option<Version>,
) -> Result<ChangeEvent, StoreError> {
    let revision: i64 = prepared::query_one(
        tx,
        "UPDATE event_counter SET head = head + 1 WHERE id = 1 RETURNING head",
        &[],
    )
    .map_err(db("numbering an event"))?
    .get(0);
    let revision = u64::try_from(revision).map_err(|_| StoreError::Malformed("a revision"))?;
    let (event, sealed) = plan(revision, version)?;
    prepared::execute(
        tx,
        "INSERT INTO events (revision, time, sealed) VALUES ($1, $2, $3)",
        &[
            &i64::try_from(revision).map_err(|_| StoreError::Malformed("a revision"))?,
            &event.time.as_millis(),
            &sealed,
        ],
    )
    .map_err(db("keeping an event"))?;
    Ok(event)
}

/// Up to `limit` kept events after `after`, read in one snapshot with the counter.
pub(crate) fn after(
    c: &mut postgres::Client,
    after: u64,
    limit: usize,
) -> Result<EventRows, StoreError> {
    let mut tx = c
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(db("reading events"))?;
    let counter = tx
        .query_one("SELECT head, floor FROM event_counter WHERE id = 1", &[])
        .map_err(db("reading events"))?;
    let (head, floor): (i64, i64) = (counter.get(0), counter.get(1));
    let rows = tx
        .query(
            "SELECT revision, time, sealed FROM events WHERE revision > $1
             ORDER BY revision LIMIT $2",
            &[
                &i64::try_from(after).unwrap_or(i64::MAX),
                &i64::try_from(limit).unwrap_or(i64::MAX),
            ],
        )
        .map_err(db("reading events"))?
        .into_iter()
        .map(|r| SealedEvent {
            revision: u64::try_from(r.get::<_, i64>(0)).unwrap_or(0),
            time: Timestamp::from_millis(r.get(1)),
            sealed: r.get(2),
        })
        .collect();
    tx.commit().map_err(db("reading events"))?;
    Ok(EventRows {
        floor: u64::try_from(floor).unwrap_or(0),
        head: u64::try_from(head).unwrap_or(0),
        rows,
    })
}

/// Deletes up to [`PRUNE_BATCH`] of the oldest events `retention` no longer keeps.
pub(crate) fn prune(
    tx: &mut Transaction<'_>,
    retention: Retention,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let head = head(tx)?;
    let by_count = i64::try_from(retention.by_count(head)).unwrap_or(i64::MAX);
    let cutoff = retention.cutoff(now).as_millis();
    let floor: Option<i64> = prepared::query_one(
        tx,
        "SELECT MAX(revision) FROM (SELECT revision, time FROM events
             ORDER BY revision LIMIT $3) oldest WHERE revision <= $1 OR time < $2",
        &[&by_count, &cutoff, &PRUNE_BATCH],
    )
    .map_err(db("pruning events"))?
    .get(0);
    let Some(floor) = floor else {
        return Ok(0);
    };
    let pruned = prepared::execute(tx, "DELETE FROM events WHERE revision <= $1", &[&floor])
        .map_err(db("pruning events"))?;
    prepared::execute(
        tx,
        "UPDATE event_counter SET floor = GREATEST(floor, $1) WHERE id = 1",
        &[&floor],
    )
    .map_err(db("pruning events"))?;
    Ok(pruned)
}
