//! The SQLite backend, coffer's embedded default.
//!
//! One file (`coffer.db`, with its `-wal` and `-shm`) created 0600. Reads run on a small
//! pool of connections beside the writer (WAL mode); writes go to one writer thread that
//! commits them in groups (see [`writer`]). `synchronous = FULL`: a write is acknowledged only
//! after its WAL frame is synced.

mod events;
mod keys;
mod row;
mod schema;
mod snapshot;
mod writer;

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use coffer_types::{Timestamp, Version};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::StoreError;
use crate::backend::{
    Backend, Modified, ModifyPlan, NameHash, NamespaceId, NamespaceRow, SecretId, SecretRow,
    VersionRow, WritePlan, Written,
};
use crate::batch::Reply;
use crate::events::EventPlan;
use writer::Job;

/// Reader connections open at most; a reader beyond them waits for one to be returned, so
/// bursts of reads do not open (and parse the schema for) connections only to drop them.
const MAX_READERS: usize = 16;
/// Jobs that may wait for the writer before senders block.
const QUEUE: usize = 4096;

/// Reader connections: the idle ones, and how many exist in all.
#[derive(Default)]
struct Readers {
    idle: Vec<Connection>,
    open: usize,
}

/// Sealed rows in one SQLite file.
pub struct SqliteBackend {
    path: PathBuf,
    readers: Mutex<Readers>,
    returned: Condvar,
    jobs: Mutex<Option<SyncSender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    feed: std::sync::Arc<crate::Feed>,
}

impl SqliteBackend {
    /// Opens (creating when missing, mode 0600) the database at `path` and starts its writer.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| StoreError::unavailable("creating the database file", e))?;
        let mut conn = Self::connect(path)?;
        schema::migrate(&mut conn)?;
        let feed = std::sync::Arc::new(crate::Feed::new(events::head(&conn)?));
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let publish = feed.clone();
        let writer = std::thread::Builder::new()
            .name("coffer-sqlite-writer".into())
            .spawn(move || writer::run(conn, rx, &publish))
            .map_err(|e| StoreError::unavailable("starting the writer thread", e))?;
        Ok(Self {
            path: path.to_owned(),
            readers: Mutex::new(Readers::default()),
            returned: Condvar::new(),
            jobs: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            feed,
        })
    }

    fn connect(path: &Path) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(|e| StoreError::unavailable("opening the database", e))?;
        schema::configure(&conn)?;
        Ok(conn)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs SQLite's `integrity_check`; `Ok(())` when it reports `ok`.
    pub fn integrity_check(&self) -> Result<(), StoreError> {
        let report: String = self.with_reader(|c| {
            c.query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .map_err(|e| StoreError::unavailable("checking integrity", e))
        })?;
        if report == "ok" {
            Ok(())
        } else {
            Err(StoreError::unavailable("checking integrity", report))
        }
    }

    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
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
        let conn = match conn {
            Some(conn) => conn,
            None => Self::connect(&self.path).inspect_err(|_| {
                self.readers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .open -= 1;
                self.returned.notify_one();
            })?,
        };
        let result = f(&conn);
        self.readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .idle
            .push(conn);
        self.returned.notify_one();
        result
    }

    /// Every row a query returns, each turned into a `T` by `map`.
    fn rows<T>(
        &self,
        doing: &'static str,
        sql: &str,
        params: impl rusqlite::Params,
        map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<Result<T, StoreError>>,
    ) -> Result<Vec<T>, StoreError> {
        self.with_reader(|c| {
            let mut st = c.prepare_cached(sql).map_err(db(doing))?;
            let rows = st.query_map(params, map).map_err(db(doing))?;
            rows.map(|r| r.map_err(db(doing))?).collect()
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
        wait(answer)
    }
}

impl SqliteBackend {
    /// Runs `f` on the writer thread in its own savepoint (the key generation changes).
    fn run(
        &self,
        f: impl FnOnce(&Connection) -> Result<(u64, Option<coffer_types::ChangeEvent>), StoreError>
        + Send
        + 'static,
    ) -> Result<u64, StoreError> {
        self.submit(|reply| Job::Run {
            run: Box::new(f),
            reply,
        })
    }
}

fn wait<T>(answer: Receiver<Result<T, StoreError>>) -> Result<T, StoreError> {
    answer
        .recv()
        .map_err(|_| StoreError::unavailable("writing", "the writer thread stopped"))?
}

impl Drop for SqliteBackend {
    /// Lets the writer finish what is queued, then joins it.
    fn drop(&mut self) {
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = handle.join();
        }
    }
}

fn db(doing: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::unavailable(doing, e)
}

impl Backend for SqliteBackend {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn header(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.with_reader(|c| {
            c.query_row("SELECT body FROM header WHERE id = 1", [], |r| r.get(0))
                .optional()
                .map_err(db("reading the store header"))
        })
    }

    fn put_header(&self, body: &[u8]) -> Result<(), StoreError> {
        let body = body.to_vec();
        self.submit(|reply| Job::Header(body, reply))
    }

    fn namespaces(&self) -> Result<Vec<NamespaceRow>, StoreError> {
        self.rows(
            "listing namespaces",
            &format!("SELECT {} FROM namespaces n", row::NAMESPACE_COLUMNS),
            [],
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

    fn record_event(&self, event: EventPlan) -> Result<(), StoreError> {
        self.submit(|reply| Job::Event(event, reply))
    }

    fn supports_locking(&self) -> bool {
        true
    }

    fn set_namespace_wraps(
        &self,
        id: &NamespaceId,
        from: crate::KeyWraps,
        to: crate::KeyWraps,
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
        // Two single-table statements in one read transaction (one snapshot), not a join: a
        // cached statement joining `versions` is marked for re-preparing whenever its bindings
        // are cleared (SQLite's plan depends on bound values there), so every read after the
        // first parsed and planned the query again: 80% of a read's CPU.
        self.with_reader(|c| {
            let tx = c.unchecked_transaction().map_err(db("reading a secret"))?;
            let secret = tx
                .prepare_cached(&format!(
                    "SELECT {} FROM secrets s
                     WHERE s.namespace = ?1 AND s.name_hash = ?2 AND s.revoked IS NULL",
                    row::SECRET_COLUMNS
                ))
                .map_err(db("reading a secret"))?
                .query_row(params![&namespace[..], &name[..]], |r| row::secret(r, 0))
                .optional()
                .map_err(db("reading a secret"))?;
            let Some(secret) = secret else {
                return Ok(None);
            };
            let secret = secret?;
            let wanted = version.unwrap_or(secret.current);
            let found = tx
                .prepare_cached(&format!(
                    "SELECT {} FROM versions v WHERE v.secret = ?1 AND v.version = ?2",
                    row::VERSION_COLUMNS
                ))
                .map_err(db("reading a secret"))?
                .query_row(params![&secret.id.0[..], wanted.get()], |r| {
                    row::version(r, 0)
                })
                .optional()
                .map_err(db("reading a secret"))?;
            // Dropping the transaction ends the read (nothing was written).
            drop(tx);
            match found {
                None => Err(StoreError::NotFound("version")),
                Some(version) => Ok(Some((secret, version?))),
            }
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

    fn feed(&self) -> &crate::Feed {
        &self.feed
    }

    fn events(&self, after: u64, limit: usize) -> Result<crate::EventRows, StoreError> {
        self.with_reader(|c| events::after(c, after, limit))
    }

    fn prune_events(&self, retention: crate::Retention, now: Timestamp) -> Result<u64, StoreError> {
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
                "SELECT {} FROM secrets s WHERE s.namespace = ?1 AND s.revoked IS NULL",
                row::SECRET_COLUMNS
            ),
            params![&namespace[..]],
            |r| row::secret(r, 0),
        )
    }

    fn live_count(&self, namespace: &NamespaceId) -> Result<u64, StoreError> {
        // The partial index of live names answers it: O(n) in the namespace's index, no
        // table rows read.
        let counted = self.rows(
            "counting secrets",
            "SELECT COUNT(*) FROM secrets WHERE namespace = ?1 AND revoked IS NULL",
            params![&namespace[..]],
            |r| Ok(Ok(r.get::<_, i64>(0)?)),
        )?;
        Ok(counted
            .first()
            .map_or(0, |n| u64::try_from(*n).unwrap_or(0)))
    }

    fn live_total(&self) -> Result<u64, StoreError> {
        // Every live secret holds one slot: those handed out, less those freed (a table
        // of the freed ones only, small beside the store).
        let counted = self.rows(
            "counting secrets",
            "SELECT (SELECT next FROM slot_counter WHERE id = 1) - \
             (SELECT COUNT(*) FROM free_slots)",
            [],
            |r| Ok(Ok(r.get::<_, i64>(0)?)),
        )?;
        Ok(counted
            .first()
            .map_or(0, |n| u64::try_from(*n).unwrap_or(0)))
    }

    fn names(
        &self,
        namespace: &NamespaceId,
        after: Option<&SecretId>,
        limit: usize,
    ) -> Result<Vec<(SecretId, Vec<u8>)>, StoreError> {
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        // An empty blob sorts before every id.
        let after: &[u8] = after.map_or(&[], |id| &id.0[..]);
        // `+s.namespace`: the namespace must not pick the (namespace, name_hash) index, which
        // would read the whole namespace and sort it for every page; this walks the primary
        // key from `after` (0.26 s for 100,000 rows against 8 s).
        self.rows(
            "listing names",
            "SELECT s.id, s.name_ct FROM secrets s
             WHERE +s.namespace = ?1 AND s.revoked IS NULL AND s.id > ?2
             ORDER BY s.id LIMIT ?3",
            params![&namespace[..], after, limit],
            |r| {
                let id: Vec<u8> = r.get(0)?;
                let name_ct: Vec<u8> = r.get(1)?;
                Ok(<[u8; 16]>::try_from(id)
                    .map(|id| (SecretId(id), name_ct))
                    .map_err(|_| StoreError::Malformed("a key column has the wrong length")))
            },
        )
    }

    fn revoked(&self, namespace: &NamespaceId) -> Result<Vec<SecretRow>, StoreError> {
        self.rows(
            "listing revoked secrets",
            &format!(
                "SELECT {} FROM secrets s WHERE s.namespace = ?1 AND s.revoked IS NOT NULL",
                row::SECRET_COLUMNS
            ),
            params![&namespace[..]],
            |r| row::secret(r, 0),
        )
    }

    fn namespace_keys(&self) -> Result<Vec<crate::NamespaceKeyRow>, StoreError> {
        self.with_reader(keys::namespace_keys)
    }

    fn rotate_namespace_key(
        &self,
        rotation: crate::KeyRotation,
        event: Option<EventPlan>,
    ) -> Result<(), StoreError> {
        self.run(move |c| Ok((0, keys::rotate(c, &rotation, event)?)))
            .map(drop)
    }

    fn key_version_counts(&self, namespace: &NamespaceId) -> Result<Vec<(u32, u64)>, StoreError> {
        self.with_reader(|c| keys::counts(c, namespace))
    }

    fn rekey(&self, changes: Vec<crate::Rekey>) -> Result<u64, StoreError> {
        self.run(move |c| Ok((keys::rekey(c, &changes)?, None)))
    }

    fn drop_namespace_key(
        &self,
        namespace: &NamespaceId,
        key_version: u32,
        event: Option<EventPlan>,
    ) -> Result<(), StoreError> {
        let namespace = *namespace;
        self.run(move |c| Ok((0, keys::drop_key(c, &namespace, key_version, event)?)))
            .map(drop)
    }

    fn rewrap(
        &self,
        header: &[u8],
        namespaces: Vec<crate::Rewrapped>,
        event: Option<EventPlan>,
    ) -> Result<(), StoreError> {
        let header = header.to_vec();
        self.run(move |c| {
            keys::rewrap(c, &header, &namespaces)?;
            Ok((0, event.map(|e| events::record(c, e, None)).transpose()?))
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
            let tx = c.unchecked_transaction().map_err(db("reading secrets"))?;
            let rows: Vec<SecretRow> = {
                let mut st = tx
                    .prepare_cached(&format!(
                        "SELECT {} FROM secrets s WHERE +s.namespace = ?1 AND s.id > ?2
                         ORDER BY s.id LIMIT ?3",
                        row::SECRET_COLUMNS
                    ))
                    .map_err(db("reading secrets"))?;
                let rows = st
                    .query_map(params![&namespace[..], after, limit], |r| row::secret(r, 0))
                    .map_err(db("reading secrets"))?;
                rows.map(|r| r.map_err(db("reading secrets"))?)
                    .collect::<Result<_, StoreError>>()?
            };
            let mut out = Vec::with_capacity(rows.len());
            let mut st = tx
                .prepare_cached(&format!(
                    "SELECT {} FROM versions v WHERE v.secret = ?1 ORDER BY v.version",
                    row::VERSION_COLUMNS
                ))
                .map_err(db("reading versions"))?;
            for secret in rows {
                let versions = st
                    .query_map(params![&secret.id.0[..]], |r| row::version(r, 0))
                    .map_err(db("reading versions"))?
                    .map(|r| r.map_err(db("reading versions"))?)
                    .collect::<Result<Vec<_>, StoreError>>()?;
                out.push((secret, versions));
            }
            Ok(out)
        })
    }

    fn versions(&self, secret: &SecretId) -> Result<Vec<VersionRow>, StoreError> {
        self.rows(
            "listing versions",
            &format!(
                "SELECT {} FROM versions v WHERE v.secret = ?1 ORDER BY v.version",
                row::VERSION_COLUMNS
            ),
            params![&secret.0[..]],
            |r| row::version(r, 0),
        )
    }

    fn snapshot(&self, visit: crate::snapshot::Visit<'_>) -> Result<(), StoreError> {
        // Its own connection: a long snapshot holds no pooled reader, and its read
        // transaction keeps one state while the writer goes on (WAL).
        snapshot::visit(&Self::connect(&self.path)?, visit)
    }

    fn import(&self, rows: crate::snapshot::Rows<'_>) -> Result<crate::Counts, StoreError> {
        let mut conn = Self::connect(&self.path)?;
        let (counts, head) = snapshot::import(&mut conn, rows)?;
        self.feed.advance(head);
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EncryptedStore, SecretStore, Write};
    use coffer_crypto::{MasterKey, SecretBytes};
    use coffer_types::{Namespace, SecretName};
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    fn write(store: &dyn SecretStore, name: &str, value: &[u8]) {
        let v = SecretBytes::copy_from(value);
        store
            .set(
                &Namespace::default(),
                &SecretName::parse(name).unwrap(),
                Write::new(&v, "uid:0"),
            )
            .unwrap();
    }

    #[test]
    fn files_hold_no_names_or_values_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coffer.db");
        let backend = Arc::new(SqliteBackend::open(&path).unwrap());
        let store = EncryptedStore::open(backend.clone(), MasterKey::generate().unwrap()).unwrap();
        store
            .create_namespace(&Namespace::default(), crate::Change::by("uid:0"))
            .unwrap();
        let secrets: Vec<(String, String)> = (0..50)
            .map(|i| {
                (
                    format!("probe-name-{i:03}"),
                    format!("PROBEVALUE{i:03}xyzzy"),
                )
            })
            .collect();
        for (n, v) in &secrets {
            write(&store, n, v.as_bytes());
            write(&store, n, format!("{v}-second").as_bytes());
        }
        // While open: the WAL holds recent pages.
        let check = |when: &str| {
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                let entry = entry.unwrap();
                let bytes = std::fs::read(entry.path()).unwrap();
                let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
                assert_eq!(mode & 0o077, 0, "{:?} is mode {mode:o}", entry.path());
                for needle in [&b"probe-name"[..], b"PROBEVALUE", b"default", b"xyzzy"] {
                    assert!(
                        !bytes.windows(needle.len()).any(|w| w == needle),
                        "{when}: {:?} contains {:?}",
                        entry.path(),
                        String::from_utf8_lossy(needle)
                    );
                }
            }
        };
        check("open");
        drop(store);
        drop(backend);
        check("closed");
    }

    #[test]
    fn a_panicking_derived_write_is_rolled_back_and_the_writer_lives_on() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(SqliteBackend::open(&dir.path().join("coffer.db")).unwrap());
        let store = EncryptedStore::open(backend, MasterKey::generate().unwrap()).unwrap();
        store
            .create_namespace(&Namespace::default(), crate::Change::by("uid:0"))
            .unwrap();
        write(&store, "k", b"before");
        let derive: crate::DeriveValue = Box::new(|_, _| panic!("a bug in a derive"));
        let err = store
            .set(
                &Namespace::default(),
                &SecretName::parse("k").unwrap(),
                Write::derived(derive, "uid:0"),
            )
            .expect_err("the panic is an error");
        assert_eq!(err.code(), coffer_types::ErrorCode::Internal, "{err}");
        write(&store, "k", b"after");
        let read = store
            .get(
                &Namespace::default(),
                &SecretName::parse("k").unwrap(),
                None,
            )
            .unwrap();
        assert_eq!(read.value.expose_secret(), b"after");
        assert_eq!(read.version.get(), 2, "the panicked write left no version");
    }

    #[test]
    fn a_second_open_sees_committed_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coffer.db");
        let backend = SqliteBackend::open(&path).unwrap();
        backend.put_header(b"{}").unwrap();
        drop(backend);
        let again = SqliteBackend::open(&path).unwrap();
        assert_eq!(again.header().unwrap().as_deref(), Some(&b"{}"[..]));
        again.integrity_check().unwrap();
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coffer.db");
        drop(SqliteBackend::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = SqliteBackend::open(&path).err().unwrap().to_string();
        assert!(err.contains("newer"), "{err}");
    }
}
