//! The row changes, each inside the caller's transaction (or savepoint): what the writer
//! thread applies. A port of the SQLite writer's statements; the same checks
//! ([`check_plan`], [`check_modification`]) decide what a plan may do.

use coffer_store::{
    Live, Modified, ModifyPlan, NameHash, NamespaceId, NamespaceRow, SecretId, SecretRow,
    StoreError, VersionRow, WritePlan, Written, check_modification, check_plan,
};
use coffer_types::{NvIndex, Version};
use postgres::Transaction;

use crate::{prepared, row};

pub(crate) fn db(doing: &'static str) -> impl Fn(postgres::Error) -> StoreError {
    move |e| StoreError::unavailable(doing, detail(&e))
}

/// What went wrong, as an operator needs it: the server's message and SQLSTATE, or the
/// client's error. Never the server's `DETAIL`, which may quote a row (a key's value).
pub(crate) fn detail(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({}): {}", db.severity(), db.code().code(), db.message()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

pub(crate) fn put_header(tx: &mut Transaction<'_>, body: &[u8]) -> Result<(), StoreError> {
    prepared::execute(
        tx,
        "INSERT INTO header (id, body) VALUES (1, $1)
         ON CONFLICT (id) DO UPDATE SET body = excluded.body",
        &[&body],
    )
    .map(drop)
    .map_err(db("writing the store header"))
}

/// Replaces the header only while it is `expected` (`None`: absent); answers whether it did.
pub(crate) fn swap_header(
    tx: &mut Transaction<'_>,
    expected: Option<&[u8]>,
    body: &[u8],
) -> Result<bool, StoreError> {
    let n = match expected {
        None => prepared::execute(
            tx,
            "INSERT INTO header (id, body) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
            &[&body],
        ),
        Some(old) => prepared::execute(
            tx,
            "UPDATE header SET body = $2 WHERE id = 1 AND body = $1",
            &[&old, &body],
        ),
    }
    .map_err(db("writing the store header"))?;
    Ok(n == 1)
}

pub(crate) fn create_namespace(
    tx: &mut Transaction<'_>,
    row: &NamespaceRow,
) -> Result<(), StoreError> {
    let inserted = prepared::execute(
        tx,
        "INSERT INTO namespaces (id, name_ct, key_version, wrapped_key, created, lock_wrap)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
        &[
            &&row.id[..],
            &row.name_ct,
            &i64::from(row.key_version),
            &row.wrapped_key,
            &row.created.as_millis(),
            &row.lock_wrap,
        ],
    )
    .map_err(db("creating a namespace"))?;
    if inserted == 0 {
        return Err(StoreError::Conflict("the namespace already exists"));
    }
    Ok(())
}

pub(crate) fn set_wraps(
    tx: &mut Transaction<'_>,
    id: &NamespaceId,
    from: &coffer_store::KeyWraps,
    to: &coffer_store::KeyWraps,
) -> Result<(), StoreError> {
    let doing = db("changing a namespace's key wraps");
    let updated = prepared::execute(
        tx,
        "UPDATE namespaces SET wrapped_key = $2, lock_wrap = $3
         WHERE id = $1 AND wrapped_key = $4 AND lock_wrap IS NOT DISTINCT FROM $5",
        &[
            &&id[..],
            &to.wrapped_key,
            &to.lock_wrap,
            &from.wrapped_key,
            &from.lock_wrap,
        ],
    )
    .map_err(&doing)?;
    if updated == 0 {
        let exists = prepared::query_opt(tx, "SELECT 1 FROM namespaces WHERE id = $1", &[&&id[..]])
            .map_err(&doing)?;
        return Err(match exists {
            Some(_) => StoreError::Conflict(coffer_store::WRAPS_CHANGED),
            None => StoreError::NotFound("namespace"),
        });
    }
    Ok(())
}

pub(crate) fn live_row(
    tx: &mut Transaction<'_>,
    namespace: &NamespaceId,
    name: &NameHash,
) -> Result<Option<SecretRow>, StoreError> {
    prepared::query_opt(
        tx,
        &format!(
            "SELECT {} FROM secrets s
             WHERE s.namespace = $1 AND s.name_hash = $2 AND s.revoked IS NULL",
            row::SECRET_COLUMNS
        ),
        &[&&namespace[..], &&name[..]],
    )
    .map_err(db("reading a secret"))?
    .map(|r| row::secret(&r, 0))
    .transpose()
}

fn take_slot(tx: &mut Transaction<'_>) -> Result<NvIndex, StoreError> {
    let freed = prepared::query_opt(
        tx,
        "DELETE FROM free_slots WHERE slot = (SELECT MIN(slot) FROM free_slots)
             RETURNING slot",
        &[],
    )
    .map_err(db("allocating an index"))?;
    let slot: i64 = match freed {
        Some(r) => row::get(&r, 0)?,
        None => prepared::query_one(
            tx,
            "UPDATE slot_counter SET next = next + 1 WHERE id = 1 RETURNING next - 1",
            &[],
        )
        .map_err(db("allocating an index"))?
        .get(0),
    };
    u32::try_from(slot)
        .ok()
        .and_then(NvIndex::from_slot)
        .ok_or(StoreError::Full)
}

fn free_slot(tx: &mut Transaction<'_>, index: NvIndex) -> Result<(), StoreError> {
    prepared::execute(
        tx,
        "INSERT INTO free_slots (slot) VALUES ($1)",
        &[&i64::from(index.slot())],
    )
    .map(drop)
    .map_err(db("freeing an index"))
}

/// One version of a secret, read inside the write's transaction.
pub(crate) fn version_row(
    tx: &mut Transaction<'_>,
    id: &SecretId,
    version: Version,
) -> Result<VersionRow, StoreError> {
    prepared::query_opt(
        tx,
        &format!(
            "SELECT {} FROM versions v WHERE v.secret = $1 AND v.version = $2",
            row::VERSION_COLUMNS
        ),
        &[&&id.0[..], &i64::from(version.get())],
    )
    .map_err(db("reading a version"))?
    .ok_or(StoreError::NotFound("version"))
    .and_then(|r| row::version(&r, 0))
}

pub(crate) fn write(
    tx: &mut Transaction<'_>,
    namespace: &NamespaceId,
    name: &NameHash,
    plan: WritePlan,
) -> Result<(Written, Vec<u8>), StoreError> {
    let current = live_row(tx, namespace, name)?;
    // The plan may ask for the newest version; the transaction is borrowed for it.
    let cell = std::cell::RefCell::new(&mut *tx);
    let newest = |row: &SecretRow| version_row(&mut cell.borrow_mut(), &row.id, row.current);
    let planned = plan(Live::new(current.as_ref(), &newest))?;
    check_plan(current.as_ref(), &planned)?;
    let version = planned.version.version;
    let v = &planned.version;
    let (id, index, created, name_ct) = match (&current, &planned.create) {
        (Some(row), _) => {
            prepared::execute(
                tx,
                "UPDATE secrets SET current = $2, kind = $3, updated = $4,
                 meta_ct = COALESCE($5, meta_ct) WHERE id = $1",
                &[
                    &&row.id.0[..],
                    &i64::from(version.get()),
                    &v.kind.as_str(),
                    &v.created.as_millis(),
                    &planned.meta_ct,
                ],
            )
            .map_err(db("updating a secret"))?;
            (row.id, row.index, false, row.name_ct.clone())
        }
        (None, Some(new)) => {
            let index = take_slot(tx)?;
            prepared::execute(
                tx,
                "INSERT INTO secrets (id, namespace, name_hash, name_ct, meta_ct, slot, current,
                                      kind, created, updated)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    &&new.id.0[..],
                    &&namespace[..],
                    &&name[..],
                    &new.name_ct,
                    &new.meta_ct,
                    &i64::from(index.slot()),
                    &i64::from(version.get()),
                    &v.kind.as_str(),
                    &new.created.as_millis(),
                    &v.created.as_millis(),
                ],
            )
            .map_err(db("creating a secret"))?;
            (new.id, index, true, new.name_ct.clone())
        }
        (None, None) => return Err(StoreError::Malformed("a write plan created nothing")),
    };
    insert_version(tx, &id, v)?;
    prune(tx, &id, planned.prune_before)?;
    Ok((
        Written {
            id,
            version,
            index,
            created,
        },
        name_ct,
    ))
}

pub(crate) fn insert_version(
    tx: &mut Transaction<'_>,
    id: &SecretId,
    v: &VersionRow,
) -> Result<(), StoreError> {
    prepared::execute(
        tx,
        "INSERT INTO versions (secret, version, kind, created, actor, key_version, ciphertext)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &&id.0[..],
            &i64::from(v.version.get()),
            &v.kind.as_str(),
            &v.created.as_millis(),
            &v.actor,
            &i64::from(v.key_version),
            &v.ciphertext,
        ],
    )
    .map(drop)
    .map_err(db("writing a version"))
}

fn prune(
    tx: &mut Transaction<'_>,
    id: &SecretId,
    before: Option<Version>,
) -> Result<(), StoreError> {
    let Some(before) = before else {
        return Ok(());
    };
    prepared::execute(
        tx,
        "DELETE FROM versions WHERE secret = $1 AND version < $2",
        &[&&id.0[..], &i64::from(before.get())],
    )
    .map(drop)
    .map_err(db("pruning old versions"))
}

fn version_numbers(tx: &mut Transaction<'_>, id: &SecretId) -> Result<Vec<Version>, StoreError> {
    prepared::query(
        tx,
        "SELECT version FROM versions WHERE secret = $1",
        &[&&id.0[..]],
    )
    .map_err(db("reading versions"))?
    .iter()
    .map(|r| {
        u32::try_from(r.get::<_, i64>(0))
            .ok()
            .and_then(Version::new)
            .ok_or(StoreError::Malformed("a version number"))
    })
    .collect()
}

pub(crate) fn modify(
    tx: &mut Transaction<'_>,
    namespace: &NamespaceId,
    name: &NameHash,
    plan: ModifyPlan,
) -> Result<Option<Modified>, StoreError> {
    let Some(mut row) = live_row(tx, namespace, name)? else {
        return Ok(None);
    };
    let m = plan(&row)?;
    check_modification(&row, &version_numbers(tx, &row.id)?, &m)?;
    for v in &m.destroy {
        prepared::execute(
            tx,
            "UPDATE versions SET ciphertext = NULL WHERE secret = $1 AND version = $2",
            &[&&row.id.0[..], &i64::from(v.get())],
        )
        .map_err(db("destroying a version"))?;
    }
    prune(tx, &row.id, m.prune_before)?;
    if let Some(meta) = &m.meta_ct {
        prepared::execute(
            tx,
            "UPDATE secrets SET meta_ct = $2 WHERE id = $1",
            &[&&row.id.0[..], meta],
        )
        .map_err(db("updating metadata"))?;
        row.meta_ct.clone_from(meta);
    }
    if let Some(at) = m.revoke {
        prepared::execute(
            tx,
            "UPDATE secrets SET revoked = $2 WHERE id = $1",
            &[&&row.id.0[..], &at.as_millis()],
        )
        .map_err(db("revoking a secret"))?;
        free_slot(tx, row.index)?;
        row.revoked = Some(at);
    }
    Ok(Some(Modified {
        row,
        destroyed: m.destroy,
    }))
}

/// Removes the live secret; answers its row (its id and sealed name).
pub(crate) fn delete(
    tx: &mut Transaction<'_>,
    namespace: &NamespaceId,
    name: &NameHash,
) -> Result<Option<SecretRow>, StoreError> {
    let Some(row) = live_row(tx, namespace, name)? else {
        return Ok(None);
    };
    prepared::execute(tx, "DELETE FROM secrets WHERE id = $1", &[&&row.id.0[..]])
        .map_err(db("deleting a secret"))?;
    free_slot(tx, row.index)?;
    Ok(Some(row))
}
