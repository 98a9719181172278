//! Snapshots of the SQLite store (one read transaction) and imports into an empty one (one
//! write transaction). The columns of each row are the ones `row` reads and the writer
//! writes: a column added there is added here, once per row type.

use rusqlite::{Connection, TransactionBehavior, params};

use super::{events, row, writer};
use crate::StoreError;
use crate::backend::{SecretRow, VersionRow};
use crate::snapshot::{Counts, ImportCheck, Rows, SnapshotRow, Visit};

fn db(doing: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::unavailable(doing, e)
}

/// Every row of one state, in snapshot order, handed to `visit` as it is read.
pub(super) fn visit(c: &Connection, visit: Visit<'_>) -> Result<(), StoreError> {
    const DOING: &str = "taking a snapshot";
    // A deferred transaction's snapshot starts at its first read and holds to the end.
    let tx = c.unchecked_transaction().map_err(db(DOING))?;
    let header: Option<Vec<u8>> = {
        use rusqlite::OptionalExtension;
        tx.query_row("SELECT body FROM header WHERE id = 1", [], |r| r.get(0))
            .optional()
            .map_err(db(DOING))?
    };
    let rotating: i64 = tx
        .query_row("SELECT count(*) FROM namespace_keys", [], |r| r.get(0))
        .map_err(db(DOING))?;
    if rotating > 0 {
        return Err(StoreError::Conflict(crate::snapshot::ROTATING));
    }
    if let Some(h) = header {
        visit(SnapshotRow::Header(h))?;
    }
    each(
        &tx,
        &format!(
            "SELECT {} FROM namespaces n ORDER BY n.id",
            row::NAMESPACE_COLUMNS
        ),
        |r| row::namespace(r, 0),
        |n| visit(SnapshotRow::Namespace(n)),
    )?;
    each(
        &tx,
        &format!(
            "SELECT {} FROM secrets s ORDER BY s.id",
            row::SECRET_COLUMNS
        ),
        |r| row::secret(r, 0),
        |s| visit(SnapshotRow::Secret(s)),
    )?;
    each(
        &tx,
        &format!(
            "SELECT v.secret, {} FROM versions v ORDER BY v.secret, v.version",
            row::VERSION_COLUMNS
        ),
        |r| {
            let id: Vec<u8> = r.get(0)?;
            let v = row::version(r, 1)?;
            Ok(<[u8; 16]>::try_from(id)
                .map_err(|_| StoreError::Malformed("a key column has the wrong length"))
                .and_then(|id| v.map(|v| (crate::SecretId(id), v))))
        },
        |(id, v)| visit(SnapshotRow::Version(id, v)),
    )?;
    let head = events::head(&tx)?;
    visit(SnapshotRow::EventHead(head))?;
    drop(tx);
    Ok(())
}

fn each<T>(
    c: &Connection,
    sql: &str,
    map: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<Result<T, StoreError>>,
    mut f: impl FnMut(T) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    const DOING: &str = "taking a snapshot";
    let mut st = c.prepare(sql).map_err(db(DOING))?;
    let mut rows = st.query([]).map_err(db(DOING))?;
    while let Some(r) = rows.next().map_err(db(DOING))? {
        f(map(r).map_err(db(DOING))??)?;
    }
    Ok(())
}

/// Writes `rows` into an empty store in one transaction; answers the counts and the event
/// head the feed goes on from.
pub(super) fn import(c: &mut Connection, rows: Rows<'_>) -> Result<(Counts, u64), StoreError> {
    const DOING: &str = "importing a snapshot";
    let tx = c
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db(DOING))?;
    let used: i64 = tx
        .query_row(
            "SELECT (SELECT COUNT(*) FROM header) + (SELECT COUNT(*) FROM namespaces)
                  + (SELECT COUNT(*) FROM secrets) + (SELECT COUNT(*) FROM events)",
            [],
            |r| r.get(0),
        )
        .map_err(db(DOING))?;
    if used != 0 {
        return Err(StoreError::Conflict(
            "the store is not empty: a snapshot is imported only into an empty store",
        ));
    }
    let mut check = ImportCheck::default();
    for row in rows {
        let row = row?;
        check.check(&row)?;
        match &row {
            SnapshotRow::Header(h) => {
                tx.execute("INSERT INTO header (id, body) VALUES (1, ?1)", params![h])
                    .map_err(db(DOING))?;
            }
            SnapshotRow::Namespace(n) => writer::create_namespace(&tx, n)?,
            SnapshotRow::Secret(s) => insert_secret(&tx, s)?,
            SnapshotRow::Version(id, v) => insert_version(&tx, id, v)?,
            SnapshotRow::EventHead(_) => {}
        }
    }
    let head = check.finish()?;
    // The index allocator: after the highest live slot, the gaps below it first.
    let slots = check.live_slots();
    let next = slots.iter().max().map_or(0, |m| m + 1);
    {
        let mut free = tx
            .prepare("INSERT INTO free_slots (slot) VALUES (?1)")
            .map_err(db(DOING))?;
        for slot in (0..next).filter(|s| !slots.contains(s)) {
            free.execute(params![slot]).map_err(db(DOING))?;
        }
    }
    let head_sql = i64::try_from(head).map_err(|_| StoreError::Malformed("a revision"))?;
    tx.execute(
        "UPDATE slot_counter SET next = ?1 WHERE id = 1",
        params![i64::from(next)],
    )
    .and_then(|_| {
        tx.execute(
            "UPDATE event_counter SET head = ?1, floor = ?1 WHERE id = 1",
            params![head_sql],
        )
    })
    .map_err(db(DOING))?;
    tx.commit().map_err(db(DOING))?;
    Ok((check.counts, head))
}

fn insert_secret(c: &Connection, s: &SecretRow) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO secrets (id, namespace, name_hash, name_ct, meta_ct, slot, current,
                              kind, created, updated, revoked)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .and_then(|mut st| {
        st.execute(params![
            &s.id.0[..],
            &s.namespace[..],
            &s.name_hash[..],
            s.name_ct,
            s.meta_ct,
            s.index.slot(),
            s.current.get(),
            s.kind.as_str(),
            s.created.as_millis(),
            s.updated.as_millis(),
            s.revoked.map(|t| t.as_millis()),
        ])
    })
    .map(drop)
    .map_err(db("importing a secret"))
}

fn insert_version(c: &Connection, id: &crate::SecretId, v: &VersionRow) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO versions (secret, version, kind, created, actor, key_version, ciphertext)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut st| {
        st.execute(params![
            &id.0[..],
            v.version.get(),
            v.kind.as_str(),
            v.created.as_millis(),
            v.actor,
            v.key_version,
            v.ciphertext,
        ])
    })
    .map(drop)
    .map_err(db("importing a version"))
}
