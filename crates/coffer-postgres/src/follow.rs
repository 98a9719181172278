//! Following the other hubs: a thread `LISTEN`s on the store's channel (every commit that
//! changed something `NOTIFY`s it) and, on each wake-up and at least every
//! [`POLL`], reads the event head and the newest change. The event head moves this hub's
//! feed (watchers then read the other hubs' events from the table); the change number wakes
//! whoever keeps caches ([`coffer_store::Shared`]). NOTIFY is only the wake-up: the tables
//! are the truth, so a lost notification (a reconnect) costs at most one [`POLL`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use coffer_store::{ChangedSecret, Feed, RemoteChange, RemoteChanges, SecretId, StoreError};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, GenericClient, Transaction};

use crate::connect::Connector;
use crate::events;
use crate::ops::db;
use crate::row::{array, get};

/// The longest a change by another hub goes unseen when no notification arrives.
pub const POLL: Duration = Duration::from_secs(1);

/// Changes kept for hubs that fall behind; one further behind drops everything it cached.
const KEEP_CHANGES: i64 = 100_000;

/// Drops the oldest noted changes beyond [`KEEP_CHANGES`].
pub(crate) fn prune_changes(tx: &mut Transaction<'_>) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM changes WHERE seq <= (SELECT MAX(seq) FROM changes) - $1",
        &[&KEEP_CHANGES],
    )
    .map(drop)
    .map_err(db("pruning noted changes"))
}

/// The newest noted change.
pub(crate) fn newest(c: &mut impl GenericClient) -> Result<u64, StoreError> {
    c.query_one("SELECT COALESCE(MAX(seq), 0) FROM changes", &[])
        .map_err(db("reading noted changes"))
        .and_then(|r| crate::row::get::<i64>(&r, 0))
        .map(|n| u64::try_from(n).unwrap_or(0))
}

/// Changes other hubs than `hub` made after `after`, oldest first, up to `limit`.
pub(crate) fn after(
    c: &mut Client,
    hub: &str,
    after: u64,
    limit: usize,
) -> Result<RemoteChanges, StoreError> {
    let doing = db("reading noted changes");
    let after_sql = i64::try_from(after).unwrap_or(i64::MAX);
    // One snapshot: a prune between the two reads cannot hide that changes were lost.
    let mut tx = c
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(&doing)?;
    let oldest: i64 = get(
        &tx.query_one("SELECT COALESCE(MIN(seq), 0) FROM changes", &[])
            .map_err(&doing)?,
        0,
    )?;
    let rows = tx
        .query(
            "SELECT seq, namespace, secret, name_hash, name_ct, hub FROM changes WHERE seq > $1
             ORDER BY seq LIMIT $2",
            &[&after_sql, &i64::try_from(limit).unwrap_or(i64::MAX)],
        )
        .map_err(&doing)?;
    tx.commit().map_err(&doing)?;
    let mut out = RemoteChanges {
        // Changes after `after` were pruned: the caller cannot know what they touched.
        lost: oldest > after_sql + 1,
        newest: after,
        changes: Vec::new(),
    };
    for r in rows {
        out.newest = u64::try_from(get::<i64>(&r, 0)?).unwrap_or(out.newest);
        if get::<&str>(&r, 5)? == hub {
            continue;
        }
        let namespace: Option<Vec<u8>> = get(&r, 1)?;
        let secret: Option<Vec<u8>> = get(&r, 2)?;
        let name_hash: Option<Vec<u8>> = get(&r, 3)?;
        let name_ct: Option<Vec<u8>> = get(&r, 4)?;
        out.changes.push(RemoteChange {
            namespace: namespace.map(array).transpose()?,
            secret: match (secret, name_hash, name_ct) {
                (Some(id), Some(h), Some(ct)) => Some(ChangedSecret {
                    id: SecretId(array(id)?),
                    name_hash: array(h)?,
                    name_ct: ct,
                }),
                _ => None,
            },
        });
    }
    Ok(out)
}

/// What the listening thread moves.
pub(crate) struct Follower {
    pub(crate) connector: Arc<Connector>,
    pub(crate) feed: Arc<Feed>,
    pub(crate) changes: tokio::sync::watch::Sender<u64>,
    pub(crate) stop: Arc<AtomicBool>,
    /// This hub's name: notifications it sent itself wake nothing.
    pub(crate) hub: String,
}

impl Follower {
    /// Listens until `stop` is set; reconnects (every [`POLL`]) while the database is away.
    pub(crate) fn run(self) {
        while !self.stop.load(Ordering::Relaxed) {
            match self.connector.connect() {
                Ok(client) => {
                    if let Err(e) = self.listen(client) {
                        tracing::warn!(error = %e, "lost the database's notifications; reconnecting");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "the database is away; retrying"),
            }
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(POLL);
        }
    }

    fn listen(&self, mut client: Client) -> Result<(), StoreError> {
        client
            .batch_execute("LISTEN coffer")
            .map_err(db("listening for changes"))?;
        let mut look = true;
        while !self.stop.load(Ordering::Relaxed) {
            if look {
                self.look(&mut client)?;
            }
            // Read after LISTEN: what was committed before it is seen by the look above, what
            // after it wakes this wait. Only another hub's commit (or the poll) calls for a
            // look; this hub's own commits are in its feed already.
            let mut woke = Vec::new();
            let first = client
                .notifications()
                .timeout_iter(POLL)
                .next()
                .map_err(db("listening for changes"))?;
            if let Some(first) = first {
                woke.push(first);
                let mut notes = client.notifications();
                let mut queued = notes.iter();
                while let Some(n) = queued.next().map_err(db("listening for changes"))? {
                    woke.push(n);
                }
            }
            look = woke.is_empty() || woke.iter().any(|n| n.payload() != self.hub);
            if client.is_closed() {
                return Err(StoreError::unavailable(
                    "listening for changes",
                    "the connection closed",
                ));
            }
        }
        Ok(())
    }

    /// Reads the event head and the newest change, and moves what follows them.
    fn look(&self, client: &mut Client) -> Result<(), StoreError> {
        let head = events::head(client)?;
        self.feed.advance(head);
        let newest = newest(client)?;
        self.changes.send_if_modified(|seen| {
            let moved = newest > *seen;
            *seen = (*seen).max(newest);
            moved
        });
        Ok(())
    }
}
