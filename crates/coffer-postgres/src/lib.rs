//! coffer's PostgreSQL backend: the sealed rows of one store in a PostgreSQL database that
//! several coffer daemons (hubs) may serve at once.
//!
//! The rows are exactly SQLite's (keyed hashes, ciphertexts, no name or value in the clear;
//! `schema`). Reads run on a small pool of connections; writes go to one writer thread per
//! hub that commits them in groups (`writer`), and every hub's batches take one row lock in
//! turn, so versions, check-and-set and revisions are decided once across hubs. A listening
//! thread (`follow`) moves this hub's event feed when the other hubs commit, and offers their
//! changes to whoever keeps caches ([`coffer_store::Shared`]).
//!
//! Durability is PostgreSQL's: a write is acknowledged after its commit returned (with the
//! server's `synchronous_commit`, by default on: the WAL was flushed).
#![forbid(unsafe_code)]

mod blocking;
mod connect;
mod events;
#[cfg(feature = "fixture")]
#[allow(clippy::unwrap_used)] // Test code: a server that cannot start fails the test.
pub mod fixture;
mod follow;
mod keys;
mod lease;
mod ops;
mod prepared;
mod row;
mod snapshot;
mod writer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use coffer_store::{
    Backend, EventPlan, EventRows, Feed, KeyRotation, Modified, ModifyPlan, NameHash, NamespaceId,
    NamespaceKeyRow, NamespaceRow, Rekey, RemoteChanges, Retention, Rewrapped, SecretId, SecretRow,
    Shared, StoreError, VersionRow, WritePlan, Written,
};
use coffer_types::{Timestamp, Version};

use coffer_store::batch::Reply;
pub use connect::{Connector, PgOptions};
pub use follow::POLL;
pub use lease::{Lease, LeaseHolder, TWIN};
use ops::db;
use prepared::Reader;
use writer::{Job, PgRun, Writer};

/// Reader connections open at most.
const MAX_READERS: usize = 16;
/// Jobs that may wait for the writer before senders block.
const QUEUE: usize = 4096;

#[derive(Default)]
struct Readers {
    idle: Vec<Reader>,
    open: usize,
}

/// Sealed rows in a PostgreSQL database.
pub struct PgBackend {
    connector: Arc<Connector>,
    hub: String,
    readers: Mutex<Readers>,
    returned: Condvar,
    jobs: Mutex<Option<SyncSender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    follower: Mutex<Option<JoinHandle<()>>>,
    stop: Arc<AtomicBool>,
    feed: Arc<Feed>,
    changes: tokio::sync::watch::Sender<u64>,
    opened_at: u64,
}

impl std::fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBackend")
            .field("database", &self.connector.describe())
            .field("hub", &self.hub)
            .finish_non_exhaustive()
    }
}

impl PgBackend {
    /// Connects, brings the schema up to date, and starts the writer and the listener.
    /// `hub` names this daemon among those sharing the database (its changes are not
    /// handed back to it).
    pub fn open(options: &PgOptions, hub: &str) -> Result<Self, StoreError> {
        let connector = Arc::new(Connector::new(options)?);
        // This process among the hubs: the name and a random tag, so two processes given one
        // name (a copied configuration) still tell their changes and the lease apart.
        let tag = SecretId::generate()?;
        let hub = &format!(
            "{hub}@{:02x}{:02x}{:02x}{:02x}",
            tag.0[0], tag.0[1], tag.0[2], tag.0[3]
        );
        let mut client = connector.connect()?;
        schema::migrate(&mut client)?;
        let feed = Arc::new(Feed::new(events::head(&mut client)?));
        let opened_at = follow::newest(&mut client)?;
        let changes = tokio::sync::watch::Sender::new(opened_at);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let writer = Writer {
            connector: connector.clone(),
            hub: hub.to_owned(),
            feed: feed.clone(),
            client: Some(client),
        };
        let writer = std::thread::Builder::new()
            .name("coffer-pg-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::unavailable("starting the writer thread", e))?;
        let follower = follow::Follower {
            connector: connector.clone(),
            feed: feed.clone(),
            changes: changes.clone(),
            stop: stop.clone(),
            hub: hub.to_owned(),
        };
        let follower = std::thread::Builder::new()
            .name("coffer-pg-listen".into())
            .spawn(move || follower.run())
            .map_err(|e| StoreError::unavailable("starting the listening thread", e))?;
        tracing::info!(
            database = connector.describe(),
            hub,
            "PostgreSQL store open"
        );
        Ok(Self {
            connector,
            hub: hub.to_owned(),
            readers: Mutex::new(Readers::default()),
            returned: Condvar::new(),
            jobs: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            follower: Mutex::new(Some(follower)),
            stop,
            feed,
            changes,
            opened_at,
        })
    }

    /// Where the database is (no password): `user@host:port/db`.
    pub fn describe(&self) -> &str {
        self.connector.describe()
    }

    /// This hub's member id among those sharing the database: its name, `@`, and a tag
    /// random for each process.
    pub fn hub(&self) -> &str {
        &self.hub
    }

    /// The connection settings (for leases and the hub table, on their own connections).
    pub fn connector(&self) -> &Arc<Connector> {
        &self.connector
    }

    /// Runs `f` on a pooled connection; a connection the database closed is not returned.
    fn with_reader<T>(
        &self,
        f: impl FnOnce(&mut Reader) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = {
            let mut pool = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if let Some(conn) = pool.idle.pop() {
                    break Some(conn);
                }
                if pool.open < MAX_READERS {
                    pool.open += 1;
                    break None;
                }
                pool = self
                    .returned
                    .wait(pool)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let forget = || {
            self.readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .open -= 1;
            self.returned.notify_one();
        };
        let mut conn = match conn.filter(|c| !c.client.is_closed()) {
            Some(conn) => conn,
            None => Reader::new(self.connector.connect().inspect_err(|_| forget())?),
        };
        let result = f(&mut conn);
        if conn.client.is_closed() {
            forget();
        } else {
            self.readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .idle
                .push(conn);
            self.returned.notify_one();
        }
        result
    }

    /// Every row a query returns, each turned into a `T` by `map`.
    fn rows<T>(
        &self,
        doing: &'static str,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
        map: impl Fn(&postgres::Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.with_reader(|c| {
            c.query(sql, params)
                .map_err(db(doing))?
                .iter()
                .map(&map)
                .collect()
        })
    }

    fn submit<T>(&self, make: impl FnOnce(Reply<T>) -> Job) -> Result<T, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let sender = self
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| StoreError::unavailable("writing", "the store is closed"))?;
        sender
            .send(make(reply))
            .map_err(|_| StoreError::unavailable("writing", "the writer thread stopped"))?;
        answer
            .recv()
            .map_err(|_| StoreError::unavailable("writing", "the writer thread stopped"))?
    }

    fn run(
        &self,
        note: bool,
        f: impl FnOnce(
            &mut postgres::Transaction<'_>,
            &mut events::Pending,
        ) -> Result<(u64, Option<coffer_types::ChangeEvent>), StoreError>
        + Send
        + 'static,
    ) -> Result<u64, StoreError> {
        self.submit(|reply| Job::Run {
            run: PgRun {
                run: Box::new(f),
                note,
            },
            reply,
        })
    }
}

mod schema;

impl Drop for PgBackend {
    /// Lets the writer finish what is queued, then stops both threads (from any thread,
    /// an async runtime's included).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let mut idle = std::mem::take(
            &mut self
                .readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .idle,
        );
        let threads: Vec<JoinHandle<()>> = [&self.writer, &self.follower]
            .into_iter()
            .filter_map(|t| t.lock().unwrap_or_else(PoisonError::into_inner).take())
            .collect();
        blocking::off_runtime(move || {
            // Wakes the listener from its wait at once (else it sees the flag within a poll).
            if let Some(reader) = idle.first_mut() {
                let _ = reader
                    .client
                    .batch_execute("SELECT pg_notify('coffer', '')");
            }
            drop(idle);
            for handle in threads {
                let _ = handle.join();
            }
        });
    }
}

impl Shared for PgBackend {
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changes_after(&self, after: u64, limit: usize) -> Result<RemoteChanges, StoreError> {
        self.with_reader(|c| follow::after(&mut c.client, &self.hub, after, limit))
    }

    fn member(&self) -> &str {
        &self.hub
    }

    fn opened_at(&self) -> u64 {
        self.opened_at
    }
}

/// Numbers and keeps `event`, if any, with the batch's other events.
fn event_of(
    event: Option<EventPlan>,
    pending: &mut events::Pending,
) -> Result<Option<coffer_types::ChangeEvent>, StoreError> {
    event.map(|e| pending.record(e, None)).transpose()
}

impl Backend for PgBackend {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn shared(&self) -> Option<&dyn Shared> {
        Some(self)
    }

    fn header(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.with_reader(|c| {
            c.query_opt("SELECT body FROM header WHERE id = 1", &[])
                .map_err(db("reading the store header"))?
                .map(|r| row::get(&r, 0))
                .transpose()
        })
    }

    fn put_header(&self, body: &[u8]) -> Result<(), StoreError> {
        let body = body.to_vec();
        self.submit(|reply| Job::Header(body, reply))
    }

    fn swap_header(&self, expected: Option<&[u8]>, body: &[u8]) -> Result<bool, StoreError> {
        let (expected, body) = (expected.map(<[u8]>::to_vec), body.to_vec());
        self.run(true, move |tx, _| {
            let swapped = ops::swap_header(tx, expected.as_deref(), &body)?;
            Ok((u64::from(swapped), None))
        })
        .map(|n| n == 1)
    }

    fn namespaces(&self) -> Result<Vec<NamespaceRow>, StoreError> {
        self.rows(
            "listing namespaces",
            &format!("SELECT {} FROM namespaces n", row::NAMESPACE_COLUMNS),
            &[],
            |r| row::namespace(r, 0),
        )
    }

    fn create_namespace(
        &self,
        row: NamespaceRow,
        event: Option<EventPlan>,
    ) -> Result<(), StoreError> {
        self.submit(|reply| Job::Namespace(row, event, reply))
    }

    fn supports_locking(&self) -> bool {
        true
    }

    fn set_namespace_wraps(
        &self,
        id: &NamespaceId,
        from: coffer_store::KeyWraps,
        to: coffer_store::KeyWraps,
        event: Option<EventPlan>,
    ) -> Result<(), StoreError> {
        let id = *id;
        self.submit(|reply| Job::Wraps {
            id,
            from,
            to,
            event,
            reply,
        })
    }

    fn read(
        &self,
        namespace: &NamespaceId,
        name: &NameHash,
        version: Option<Version>,
    ) -> Result<Option<(SecretRow, VersionRow)>, StoreError> {
        // One statement, one snapshot: the secret and the version it names (its newest
        // unless one is asked for), and whether that version exists.
        let wanted = version.map(|v| i64::from(v.get()));
        self.with_reader(|c| {
            let found = c
                .query_opt(
                    &format!(
                        "SELECT {}, {} FROM secrets s
                         LEFT JOIN versions v ON v.secret = s.id
                              AND v.version = COALESCE($3, s.current)
                         WHERE s.namespace = $1 AND s.name_hash = $2 AND s.revoked IS NULL",
                        row::SECRET_COLUMNS,
                        row::VERSION_COLUMNS
                    ),
                    &[&&namespace[..], &&name[..], &wanted],
                )
                .map_err(db("reading a secret"))?;
            let Some(found) = found else {
                return Ok(None);
            };
            let secret = row::secret(&found, 0)?;
            if found
                .try_get::<_, Option<i64>>(11)
                .map_err(db("reading a secret"))?
                .is_none()
            {
                return Err(StoreError::NotFound("version"));
            }
            Ok(Some((secret, row::version(&found, 11)?)))
        })
    }

    fn write(
        &self,
        namespace: &NamespaceId,
        name: &NameHash,
        plan: WritePlan,
        event: Option<EventPlan>,
    ) -> Result<Written, StoreError> {
        let (namespace, name) = (*namespace, *name);
        self.submit(|reply| Job::Write {
            namespace,
            name,
            plan,
            event,
            reply,
        })
    }

    fn modify(
        &self,
        namespace: &NamespaceId,
        name: &NameHash,
        plan: ModifyPlan,
        event: Option<EventPlan>,
    ) -> Result<Option<Modified>, StoreError> {
        let (namespace, name) = (*namespace, *name);
        self.submit(|reply| Job::Modify {
            namespace,
            name,
            plan,
            event,
            reply,
        })
    }

    fn delete(
        &self,
        namespace: &NamespaceId,
        name: &NameHash,
        event: Option<EventPlan>,
    ) -> Result<Option<SecretId>, StoreError> {
        let (namespace, name) = (*namespace, *name);
        self.submit(|reply| Job::Delete {
            namespace,
            name,
            event,
            reply,
        })
    }

    fn record_event(&self, event: EventPlan) -> Result<(), StoreError> {
        self.submit(|reply| Job::Event(event, reply))
    }

    fn feed(&self) -> &Feed {
        &self.feed
    }

    fn events(&self, after: u64, limit: usize) -> Result<EventRows, StoreError> {
        self.with_reader(|c| events::after(&mut c.client, after, limit))
    }

    fn prune_events(&self, retention: Retention, now: Timestamp) -> Result<u64, StoreError> {
        self.submit(|reply| Job::Prune {
            retention,
            now,
            reply,
        })
    }

    fn secrets(&self, namespace: &NamespaceId) -> Result<Vec<SecretRow>, StoreError> {
        self.rows(
            "listing secrets",
            &format!(
                "SELECT {} FROM secrets s WHERE s.namespace = $1 AND s.revoked IS NULL",
                row::SECRET_COLUMNS
            ),
            &[&&namespace[..]],
            |r| row::secret(r, 0),
        )
    }

    fn live_count(&self, namespace: &NamespaceId) -> Result<u64, StoreError> {
        let n = self.rows(
            "counting secrets",
            "SELECT COUNT(*) FROM secrets WHERE namespace = $1 AND revoked IS NULL",
            &[&&namespace[..]],
            |r| row::get::<i64>(r, 0),
        )?;
        Ok(n.first().map_or(0, |n| u64::try_from(*n).unwrap_or(0)))
    }

    fn live_total(&self) -> Result<u64, StoreError> {
        // As in SQLite: slots handed out, less slots freed.
        let n = self.rows(
            "counting secrets",
            "SELECT (SELECT next FROM slot_counter WHERE id = 1) -
                    (SELECT COUNT(*) FROM free_slots)",
            &[],
            |r| row::get::<i64>(r, 0),
        )?;
        Ok(n.first().map_or(0, |n| u64::try_from(*n).unwrap_or(0)))
    }

    fn names(
        &self,
        namespace: &NamespaceId,
        after: Option<&SecretId>,
        limit: usize,
    ) -> Result<Vec<(SecretId, Vec<u8>)>, StoreError> {
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        // An empty bytea sorts before every id.
        let after: &[u8] = after.map_or(&[], |id| &id.0[..]);
        self.rows(
            "listing names",
            "SELECT s.id, s.name_ct FROM secrets s
             WHERE s.namespace = $1 AND s.revoked IS NULL AND s.id > $2
             ORDER BY s.id LIMIT $3",
            &[&&namespace[..], &after, &limit],
            |r| Ok((SecretId(row::array(row::get(r, 0)?)?), row::get(r, 1)?)),
        )
    }

    fn revoked(&self, namespace: &NamespaceId) -> Result<Vec<SecretRow>, StoreError> {
        self.rows(
            "listing revoked secrets",
            &format!(
                "SELECT {} FROM secrets s WHERE s.namespace = $1 AND s.revoked IS NOT NULL",
                row::SECRET_COLUMNS
            ),
            &[&&namespace[..]],
            |r| row::secret(r, 0),
        )
    }

    fn versions(&self, secret: &SecretId) -> Result<Vec<VersionRow>, StoreError> {
        self.rows(
            "listing versions",
            &format!(
                "SELECT {} FROM versions v WHERE v.secret = $1 ORDER BY v.version",
                row::VERSION_COLUMNS
            ),
            &[&&secret.0[..]],
            |r| row::version(r, 0),
        )
    }

    fn namespace_keys(&self) -> Result<Vec<NamespaceKeyRow>, StoreError> {
        self.with_reader(|c| keys::namespace_keys(&mut c.client))
    }

    fn rotate_namespace_key(
        &self,
        rotation: KeyRotation,
        event: Option<EventPlan>,
    ) -> Result<(), StoreError> {
        self.run(true, move |tx, pending| {
            keys::rotate(tx, &rotation)?;
            Ok((0, event_of(event, pending)?))
        })
        .map(drop)
    }

    fn key_version_counts(&self, namespace: &NamespaceId) -> Result<Vec<(u32, u64)>, StoreError> {
        self.with_reader(|c| keys::counts(&mut c.client, namespace))
    }

    fn rekey(&self, changes: Vec<Rekey>) -> Result<u64, StoreError> {
        self.run(false, move |tx, _| Ok((keys::rekey(tx, &changes)?, None)))
    }

    fn drop_namespace_key(
        &self,
        namespace: &NamespaceId,
        key_version: u32,
        event: Option<EventPlan>,
    ) -> Result<(), StoreError> {
        let namespace = *namespace;
        self.run(true, move |tx, pending| {
            keys::drop_key(tx, &namespace, key_version)?;
            Ok((0, event_of(event, pending)?))
        })
        .map(drop)
    }

    fn rewrap(
        &self,
        header: &[u8],
        namespaces: Vec<Rewrapped>,
        event: Option<EventPlan>,
    ) -> Result<(), StoreError> {
        let header = header.to_vec();
        self.run(true, move |tx, pending| {
            keys::rewrap(tx, &header, &namespaces)?;
            Ok((0, event_of(event, pending)?))
        })
        .map(drop)
    }

    fn rekey_page(
        &self,
        namespace: &NamespaceId,
        after: Option<&SecretId>,
        limit: usize,
    ) -> Result<Vec<(SecretRow, Vec<VersionRow>)>, StoreError> {
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        let after: &[u8] = after.map_or(&[], |id| &id.0[..]);
        self.with_reader(|c| {
            let mut tx = c
                .client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .map_err(db("reading secrets"))?;
            let rows = tx
                .query(
                    &format!(
                        "SELECT {} FROM secrets s WHERE s.namespace = $1 AND s.id > $2
                         ORDER BY s.id LIMIT $3",
                        row::SECRET_COLUMNS
                    ),
                    &[&&namespace[..], &after, &limit],
                )
                .map_err(db("reading secrets"))?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let secret = row::secret(&r, 0)?;
                let versions = tx
                    .query(
                        &format!(
                            "SELECT {} FROM versions v WHERE v.secret = $1 ORDER BY v.version",
                            row::VERSION_COLUMNS
                        ),
                        &[&&secret.id.0[..]],
                    )
                    .map_err(db("reading versions"))?
                    .iter()
                    .map(|r| row::version(r, 0))
                    .collect::<Result<Vec<_>, _>>()?;
                out.push((secret, versions));
            }
            tx.commit().map_err(db("reading secrets"))?;
            Ok(out)
        })
    }

    fn snapshot(&self, visit: coffer_store::snapshot::Visit<'_>) -> Result<(), StoreError> {
        // Its own connection: a long snapshot holds no pooled reader.
        snapshot::visit(&mut self.connector.connect()?, visit)
    }

    fn import(
        &self,
        rows: coffer_store::snapshot::Rows<'_>,
    ) -> Result<coffer_store::Counts, StoreError> {
        let mut client = self.connector.connect()?;
        let (counts, head) = snapshot::import(&mut client, rows, &self.hub)?;
        self.feed.advance(head);
        Ok(counts)
    }
}
