//! The event feed's rows in PostgreSQL: numbering a change's event inside its transaction,
//! reading pages of kept events, and pruning by the retention window. The counter row is
//! locked by every write transaction first (see the writer), so revisions are handed out
//! in commit order across every hub.

use coffer_store::{
    EventPlan, EventRows, NameHash, NamespaceId, Retention, SealedEvent, SecretId, StoreError,
};
use coffer_types::{ChangeEvent, Timestamp, Version};
use postgres::{GenericClient, Transaction};

use crate::ops::db;
use crate::{prepared, row};

/// Most events one prune deletes; the caller repeats while it deletes this many.
const PRUNE_BATCH: i64 = 10_000;

/// The newest revision.
pub(crate) fn head(c: &mut impl GenericClient) -> Result<u64, StoreError> {
    c.query_one("SELECT head FROM event_counter WHERE id = 1", &[])
        .map_err(db("reading the event head"))
        .and_then(|r| row::get::<i64>(&r, 0))
        .map(|h| u64::try_from(h).unwrap_or(0))
}

/// What a batch keeps beside its rows, written together just before its commit: its events
/// (numbered from the head the batch read under its lock, so in commit order) and its change
/// notes for the other hubs (see `changes` in the schema). Three statements a batch rather
/// than three a write.
pub(crate) struct Pending {
    head: u64,
    events: Vec<(i64, i64, Vec<u8>)>,
    changes: Vec<Note>,
}

/// A change note: the namespace (none: the store as a whole) and the secret (id, lookup hash,
/// sealed name).
type Note = (
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
);

/// Where a job's additions start, to drop them when its savepoint rolls back.
#[derive(Clone, Copy)]
pub(crate) struct Mark {
    head: u64,
    events: usize,
    changes: usize,
}

impl Pending {
    /// A batch that read `head` under its lock.
    pub(crate) fn new(head: u64) -> Self {
        Self {
            head,
            events: Vec::new(),
            changes: Vec::new(),
        }
    }

    /// Numbers and keeps a change's event (the next revision); answers the event to publish.
    pub(crate) fn record(
        &mut self,
        plan: EventPlan,
        version: Option<Version>,
    ) -> Result<ChangeEvent, StoreError> {
        let revision = self.head + 1;
        let (event, sealed) = plan(revision, version)?;
        let at = i64::try_from(revision).map_err(|_| StoreError::Malformed("a revision"))?;
        self.events.push((at, event.time.as_millis(), sealed));
        self.head = revision;
        Ok(event)
    }

    /// Notes a change for the other hubs.
    pub(crate) fn note(
        &mut self,
        namespace: Option<&NamespaceId>,
        secret: Option<(&SecretId, &NameHash, &[u8])>,
    ) {
        self.changes.push((
            namespace.map(|n| n.to_vec()),
            secret.map(|(id, _, _)| id.0.to_vec()),
            secret.map(|(_, h, _)| h.to_vec()),
            secret.map(|(_, _, ct)| ct.to_vec()),
        ));
    }

    /// Whether anything was noted or recorded.
    pub(crate) fn is_empty(&self) -> bool {
        self.events.is_empty() && self.changes.is_empty()
    }

    /// Where the next job's additions start.
    pub(crate) fn mark(&self) -> Mark {
        Mark {
            head: self.head,
            events: self.events.len(),
            changes: self.changes.len(),
        }
    }

    /// Drops what was added since `mark` (the job's savepoint rolled back).
    pub(crate) fn undo(&mut self, mark: Mark) {
        self.head = mark.head;
        self.events.truncate(mark.events);
        self.changes.truncate(mark.changes);
    }

    /// Writes the events, the new head and the change notes of `hub`.
    pub(crate) fn flush(self, tx: &mut Transaction<'_>, hub: &str) -> Result<(), StoreError> {
        if !self.events.is_empty() {
            let (revisions, rest): (Vec<i64>, Vec<(i64, Vec<u8>)>) =
                self.events.into_iter().map(|(r, t, s)| (r, (t, s))).unzip();
            let (times, sealed): (Vec<i64>, Vec<Vec<u8>>) = rest.into_iter().unzip();
            prepared::execute(
                tx,
                "INSERT INTO events (revision, time, sealed)
                 SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bytea[])",
                &[&revisions, &times, &sealed],
            )
            .map_err(db("keeping events"))?;
            let head = i64::try_from(self.head).map_err(|_| StoreError::Malformed("a revision"))?;
            prepared::execute(
                tx,
                "UPDATE event_counter SET head = $1 WHERE id = 1",
                &[&head],
            )
            .map_err(db("numbering events"))?;
        }
        if !self.changes.is_empty() {
            let mut columns: [Vec<Option<Vec<u8>>>; 4] = Default::default();
            for (n, s, h, c) in self.changes {
                columns[0].push(n);
                columns[1].push(s);
                columns[2].push(h);
                columns[3].push(c);
            }
            let [n, s, h, c] = &columns;
            prepared::execute(
                tx,
                "INSERT INTO changes (namespace, secret, name_hash, name_ct, hub)
                 SELECT n, s, h, c, $5
                 FROM UNNEST($1::bytea[], $2::bytea[], $3::bytea[], $4::bytea[]) AS u(n, s, h, c)",
                &[n, s, h, c, &hub],
            )
            .map_err(db("noting changes"))?;
        }
        Ok(())
    }
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
    let (head, floor): (i64, i64) = (row::get(&counter, 0)?, row::get(&counter, 1)?);
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
        .map(|r| {
            Ok(SealedEvent {
                revision: u64::try_from(row::get::<i64>(&r, 0)?).unwrap_or(0),
                time: Timestamp::from_millis(row::get(&r, 1)?),
                sealed: row::get(&r, 2)?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
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
