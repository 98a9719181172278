//! Snapshots of the PostgreSQL store (one repeatable-read transaction, rows streamed) and
//! imports into an empty one (one transaction holding the write lock).

use coffer_store::snapshot::{Rows, Visit};
use coffer_store::{Counts, ImportCheck, SecretId, SnapshotRow, StoreError};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, IsolationLevel, Transaction};

use crate::events::Pending;
use crate::ops::{self, db};
use crate::{events, row};

const DOING: &str = "taking a snapshot";

/// Every row of one state, in snapshot order, handed to `visit` as it is read.
pub(crate) fn visit(c: &mut Client, visit: Visit<'_>) -> Result<(), StoreError> {
    let mut tx = c
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(db(DOING))?;
    let header: Option<Vec<u8>> = tx
        .query_opt("SELECT body FROM header WHERE id = 1", &[])
        .map_err(db(DOING))?
        .map(|r| r.get(0));
    let rotating: i64 = tx
        .query_one("SELECT count(*) FROM namespace_keys", &[])
        .map_err(db(DOING))?
        .get(0);
    if rotating > 0 {
        return Err(StoreError::Conflict(coffer_store::snapshot::ROTATING));
    }
    if let Some(h) = header {
        visit(SnapshotRow::Header(h))?;
    }
    each(
        &mut tx,
        &format!(
            "SELECT {} FROM namespaces n ORDER BY n.id",
            row::NAMESPACE_COLUMNS
        ),
        &mut |r| visit(SnapshotRow::Namespace(row::namespace(r, 0)?)),
    )?;
    each(
        &mut tx,
        &format!(
            "SELECT {} FROM secrets s ORDER BY s.id",
            row::SECRET_COLUMNS
        ),
        &mut |r| visit(SnapshotRow::Secret(row::secret(r, 0)?)),
    )?;
    each(
        &mut tx,
        &format!(
            "SELECT v.secret, {} FROM versions v ORDER BY v.secret, v.version",
            row::VERSION_COLUMNS
        ),
        &mut |r| {
            let id = SecretId(row::array(r.try_get(0).map_err(db(DOING))?)?);
            visit(SnapshotRow::Version(id, row::version(r, 1)?))
        },
    )?;
    let head = events::head(&mut tx)?;
    visit(SnapshotRow::EventHead(head))?;
    tx.commit().map_err(db(DOING))
}

/// Streams a query's rows into `f`, without holding them all in memory.
fn each(
    tx: &mut Transaction<'_>,
    sql: &str,
    f: &mut dyn FnMut(&postgres::Row) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut rows = tx
        .query_raw(sql, std::iter::empty::<i64>())
        .map_err(db(DOING))?;
    while let Some(r) = rows.next().map_err(db(DOING))? {
        f(&r)?;
    }
    Ok(())
}

/// Writes `rows` into an empty store in one transaction; answers the counts and the event
/// head the feed goes on from.
pub(crate) fn import(
    c: &mut Client,
    rows: Rows<'_>,
    hub: &str,
) -> Result<(Counts, u64), StoreError> {
    const DOING: &str = "importing a snapshot";
    let mut tx = c.transaction().map_err(db(DOING))?;
    tx.execute(
        "SELECT head FROM event_counter WHERE id = 1 FOR UPDATE",
        &[],
    )
    .map_err(db(DOING))?;
    let used: i64 = tx
        .query_one(
            "SELECT (SELECT COUNT(*) FROM header) + (SELECT COUNT(*) FROM namespaces)
                  + (SELECT COUNT(*) FROM secrets) + (SELECT COUNT(*) FROM events)",
            &[],
        )
        .map_err(db(DOING))?
        .get(0);
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
            SnapshotRow::Header(h) => ops::put_header(&mut tx, h)?,
            SnapshotRow::Namespace(n) => ops::create_namespace(&mut tx, n)?,
            SnapshotRow::Secret(s) => {
                tx.execute(
                    "INSERT INTO secrets (id, namespace, name_hash, name_ct, meta_ct, slot,
                                          current, kind, created, updated, revoked)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    &[
                        &&s.id.0[..],
                        &&s.namespace[..],
                        &&s.name_hash[..],
                        &s.name_ct,
                        &s.meta_ct,
                        &i64::from(s.index.slot()),
                        &i64::from(s.current.get()),
                        &s.kind.as_str(),
                        &s.created.as_millis(),
                        &s.updated.as_millis(),
                        &s.revoked.map(|t| t.as_millis()),
                    ],
                )
                .map_err(db("importing a secret"))?;
            }
            SnapshotRow::Version(id, v) => ops::insert_version(&mut tx, id, v)?,
            SnapshotRow::EventHead(_) => {}
        }
    }
    let head = check.finish()?;
    // The index allocator: after the highest live slot, the gaps below it first.
    let slots = check.live_slots();
    let next = slots.iter().max().map_or(0, |m| m + 1);
    for slot in (0..next).filter(|s| !slots.contains(s)) {
        tx.execute(
            "INSERT INTO free_slots (slot) VALUES ($1)",
            &[&i64::from(slot)],
        )
        .map_err(db(DOING))?;
    }
    let head_sql = i64::try_from(head).map_err(|_| StoreError::Malformed("a revision"))?;
    tx.execute(
        "UPDATE slot_counter SET next = $1 WHERE id = 1",
        &[&i64::from(next)],
    )
    .and_then(|_| {
        tx.execute(
            "UPDATE event_counter SET head = $1, floor = $1 WHERE id = 1",
            &[&head_sql],
        )
    })
    .map_err(db(DOING))?;
    // The other hubs open every namespace again.
    let mut noted = Pending::new(head);
    noted.note(None, None);
    noted.flush(&mut tx, hub)?;
    tx.execute("SELECT pg_notify('coffer', '')", &[])
        .map_err(db(DOING))?;
    tx.commit().map_err(db(DOING))?;
    Ok((check.counts, head))
}
