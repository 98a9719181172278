//! Namespace key generations in SQLite: starting a key rotation, the rotation's conditional
//! re-encryptions, forgetting an older generation, and re-wrapping every key under a new
//! master key. Each runs on the writer thread ([`super::writer::Job::Run`]) in one savepoint.

use coffer_types::ChangeEvent;
use rusqlite::{Connection, OptionalExtension, params};

use super::events;
use crate::StoreError;
use crate::backend::{KeyRotation, NamespaceId, NamespaceKeyRow, Rekey, Rewrapped};
use crate::events::EventPlan;

fn db(doing: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::unavailable(doing, e)
}

/// Every kept older generation.
pub(super) fn namespace_keys(c: &Connection) -> Result<Vec<NamespaceKeyRow>, StoreError> {
    let mut st = c
        .prepare_cached("SELECT namespace, key_version, wrapped_key FROM namespace_keys")
        .map_err(db("listing namespace keys"))?;
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })
        .map_err(db("listing namespace keys"))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, key_version, wrapped_key) = row.map_err(db("listing namespace keys"))?;
        out.push(NamespaceKeyRow {
            namespace: id
                .try_into()
                .map_err(|_| StoreError::Malformed("a namespace id has the wrong length"))?,
            key_version,
            wrapped_key,
        });
    }
    Ok(out)
}

/// Moves the namespace's current key to `namespace_keys` and makes the new one current.
pub(super) fn rotate(
    c: &Connection,
    r: &KeyRotation,
    event: Option<EventPlan>,
) -> Result<Option<ChangeEvent>, StoreError> {
    let moved = c
        .execute(
            "INSERT INTO namespace_keys (namespace, key_version, wrapped_key)
             SELECT id, key_version, wrapped_key FROM namespaces
             WHERE id = ?1 AND key_version = ?2",
            params![&r.namespace[..], r.from],
        )
        .map_err(db("rotating a namespace key"))?;
    if moved == 0 {
        return Err(StoreError::Conflict(
            "the namespace's key changed meanwhile; try again",
        ));
    }
    c.execute(
        "UPDATE namespaces SET key_version = ?2, wrapped_key = ?3 WHERE id = ?1",
        params![&r.namespace[..], r.to, r.wrapped_key],
    )
    .map_err(db("rotating a namespace key"))?;
    event.map(|e| events::record(c, e, None)).transpose()
}

/// Applies each change whose row still holds what it names; answers how many applied.
pub(super) fn rekey(c: &Connection, changes: &[Rekey]) -> Result<u64, StoreError> {
    let doing = db("re-encrypting under a new namespace key");
    let mut applied = 0u64;
    for change in changes {
        let n = match change {
            Rekey::Version {
                secret,
                version,
                from,
                old,
                to,
                new,
            } => c
                .prepare_cached(
                    "UPDATE versions SET ciphertext = ?5, key_version = ?6
                     WHERE secret = ?1 AND version = ?2 AND key_version = ?3 AND ciphertext = ?4",
                )
                .and_then(|mut st| {
                    st.execute(params![&secret.0[..], version.get(), from, old, new, to])
                }),
            Rekey::Name { secret, old, new } => c
                .prepare_cached("UPDATE secrets SET name_ct = ?3 WHERE id = ?1 AND name_ct = ?2")
                .and_then(|mut st| st.execute(params![&secret.0[..], old, new])),
            Rekey::Meta { secret, old, new } => c
                .prepare_cached("UPDATE secrets SET meta_ct = ?3 WHERE id = ?1 AND meta_ct = ?2")
                .and_then(|mut st| st.execute(params![&secret.0[..], old, new])),
        }
        .map_err(&doing)?;
        applied += n as u64;
    }
    Ok(applied)
}

/// Versions with a ciphertext per key generation of a namespace.
pub(super) fn counts(
    c: &Connection,
    namespace: &NamespaceId,
) -> Result<Vec<(u32, u64)>, StoreError> {
    let mut st = c
        .prepare_cached(
            "SELECT v.key_version, count(*) FROM versions v JOIN secrets s ON s.id = v.secret
             WHERE s.namespace = ?1 AND v.ciphertext IS NOT NULL GROUP BY v.key_version",
        )
        .map_err(db("counting versions"))?;
    let rows = st
        .query_map(params![&namespace[..]], |r| {
            Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)?))
        })
        .map_err(db("counting versions"))?;
    rows.map(|r| {
        r.map(|(k, n)| (k, u64::try_from(n).unwrap_or(0)))
            .map_err(db("counting versions"))
    })
    .collect()
}

/// Deletes an older generation no version names any more.
pub(super) fn drop_key(
    c: &Connection,
    namespace: &NamespaceId,
    key_version: u32,
    event: Option<EventPlan>,
) -> Result<Option<ChangeEvent>, StoreError> {
    let used: Option<i64> = c
        .query_row(
            "SELECT 1 FROM versions v JOIN secrets s ON s.id = v.secret
             WHERE s.namespace = ?1 AND v.key_version = ?2 AND v.ciphertext IS NOT NULL LIMIT 1",
            params![&namespace[..], key_version],
            |r| r.get(0),
        )
        .optional()
        .map_err(db("forgetting a namespace key"))?;
    if used.is_some() {
        return Err(StoreError::Conflict(
            "a version is still encrypted under that key generation",
        ));
    }
    c.execute(
        "DELETE FROM namespace_keys WHERE namespace = ?1 AND key_version = ?2",
        params![&namespace[..], key_version],
    )
    .map_err(db("forgetting a namespace key"))?;
    event.map(|e| events::record(c, e, None)).transpose()
}

/// Replaces the header and every namespace's sealed path and keys.
pub(super) fn rewrap(
    c: &Connection,
    header: &[u8],
    namespaces: &[Rewrapped],
) -> Result<(), StoreError> {
    let doing = db("re-wrapping the namespace keys");
    let stored: i64 = c
        .query_row("SELECT count(*) FROM namespaces", [], |r| r.get(0))
        .map_err(&doing)?;
    let older: i64 = c
        .query_row("SELECT count(*) FROM namespace_keys", [], |r| r.get(0))
        .map_err(&doing)?;
    let given_older: usize = namespaces.iter().map(|n| n.older.len()).sum();
    if usize::try_from(stored).ok() != Some(namespaces.len())
        || usize::try_from(older).ok() != Some(given_older)
    {
        return Err(StoreError::Conflict(
            "the namespaces changed while the master key was being replaced; try again",
        ));
    }
    for ns in namespaces {
        let n = c
            .execute(
                "UPDATE namespaces SET name_ct = ?2, wrapped_key = ?3 WHERE id = ?1",
                params![&ns.namespace[..], ns.name_ct, ns.wrapped_key],
            )
            .map_err(&doing)?;
        let mut done = n;
        for (key_version, wrapped) in &ns.older {
            done += c
                .execute(
                    "UPDATE namespace_keys SET wrapped_key = ?3
                     WHERE namespace = ?1 AND key_version = ?2",
                    params![&ns.namespace[..], key_version, wrapped],
                )
                .map_err(&doing)?;
        }
        if done != 1 + ns.older.len() {
            return Err(StoreError::Conflict(
                "the namespaces changed while the master key was being replaced; try again",
            ));
        }
    }
    c.execute(
        "INSERT INTO header (id, body) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET body = excluded.body",
        params![header],
    )
    .map_err(&doing)?;
    Ok(())
}
