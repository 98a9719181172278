//! Namespace key generations in PostgreSQL: starting a key rotation, the rotation's
//! conditional re-encryptions, forgetting an older generation, and re-wrapping every key
//! under a new master key. Each runs on the writer thread in its own savepoint.

use coffer_store::{KeyRotation, NamespaceId, NamespaceKeyRow, Rekey, Rewrapped, StoreError};
use postgres::{GenericClient, Transaction};

use crate::ops::db;
use crate::row::{array, get};

fn u32_of(n: i64) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| StoreError::Malformed("a key generation is out of range"))
}

/// Every kept older generation.
pub(crate) fn namespace_keys(
    c: &mut impl GenericClient,
) -> Result<Vec<NamespaceKeyRow>, StoreError> {
    c.query(
        "SELECT namespace, key_version, wrapped_key FROM namespace_keys",
        &[],
    )
    .map_err(db("listing namespace keys"))?
    .into_iter()
    .map(|r| {
        Ok(NamespaceKeyRow {
            namespace: array(get(&r, 0)?)?,
            key_version: u32_of(get(&r, 1)?)?,
            wrapped_key: get(&r, 2)?,
        })
    })
    .collect()
}

/// Moves the namespace's current key to `namespace_keys` and makes the new one current.
pub(crate) fn rotate(tx: &mut Transaction<'_>, r: &KeyRotation) -> Result<(), StoreError> {
    let moved = tx
        .execute(
            "INSERT INTO namespace_keys (namespace, key_version, wrapped_key)
             SELECT id, key_version, wrapped_key FROM namespaces
             WHERE id = $1 AND key_version = $2",
            &[&&r.namespace[..], &i64::from(r.from)],
        )
        .map_err(db("rotating a namespace key"))?;
    if moved == 0 {
        return Err(StoreError::Conflict(
            "the namespace's key changed meanwhile; try again",
        ));
    }
    tx.execute(
        "UPDATE namespaces SET key_version = $2, wrapped_key = $3 WHERE id = $1",
        &[&&r.namespace[..], &i64::from(r.to), &r.wrapped_key],
    )
    .map(drop)
    .map_err(db("rotating a namespace key"))
}

/// Applies each change whose row still holds what it names; answers how many applied.
pub(crate) fn rekey(tx: &mut Transaction<'_>, changes: &[Rekey]) -> Result<u64, StoreError> {
    let doing = db("re-encrypting under a new namespace key");
    let mut applied = 0u64;
    for change in changes {
        applied += match change {
            Rekey::Version {
                secret,
                version,
                from,
                old,
                to,
                new,
            } => tx.execute(
                "UPDATE versions SET ciphertext = $5, key_version = $6
                 WHERE secret = $1 AND version = $2 AND key_version = $3 AND ciphertext = $4",
                &[
                    &&secret.0[..],
                    &i64::from(version.get()),
                    &i64::from(*from),
                    old,
                    new,
                    &i64::from(*to),
                ],
            ),
            Rekey::Name { secret, old, new } => tx.execute(
                "UPDATE secrets SET name_ct = $3 WHERE id = $1 AND name_ct = $2",
                &[&&secret.0[..], old, new],
            ),
            Rekey::Meta { secret, old, new } => tx.execute(
                "UPDATE secrets SET meta_ct = $3 WHERE id = $1 AND meta_ct = $2",
                &[&&secret.0[..], old, new],
            ),
        }
        .map_err(&doing)?;
    }
    Ok(applied)
}

/// Versions with a ciphertext per key generation of a namespace.
pub(crate) fn counts(
    c: &mut impl GenericClient,
    namespace: &NamespaceId,
) -> Result<Vec<(u32, u64)>, StoreError> {
    c.query(
        "SELECT v.key_version, count(*) FROM versions v JOIN secrets s ON s.id = v.secret
         WHERE s.namespace = $1 AND v.ciphertext IS NOT NULL GROUP BY v.key_version",
        &[&&namespace[..]],
    )
    .map_err(db("counting versions"))?
    .into_iter()
    .map(|r| {
        Ok((
            u32_of(get(&r, 0)?)?,
            u64::try_from(get::<i64>(&r, 1)?).unwrap_or(0),
        ))
    })
    .collect()
}

/// Deletes an older generation no version names any more.
pub(crate) fn drop_key(
    tx: &mut Transaction<'_>,
    namespace: &NamespaceId,
    key_version: u32,
) -> Result<(), StoreError> {
    let used = tx
        .query_opt(
            "SELECT 1 FROM versions v JOIN secrets s ON s.id = v.secret
             WHERE s.namespace = $1 AND v.key_version = $2 AND v.ciphertext IS NOT NULL
             LIMIT 1",
            &[&&namespace[..], &i64::from(key_version)],
        )
        .map_err(db("forgetting a namespace key"))?;
    if used.is_some() {
        return Err(StoreError::Conflict(
            "a version is still encrypted under that key generation",
        ));
    }
    tx.execute(
        "DELETE FROM namespace_keys WHERE namespace = $1 AND key_version = $2",
        &[&&namespace[..], &i64::from(key_version)],
    )
    .map(drop)
    .map_err(db("forgetting a namespace key"))
}

/// Replaces the header and every namespace's sealed path and keys.
pub(crate) fn rewrap(
    tx: &mut Transaction<'_>,
    header: &[u8],
    namespaces: &[Rewrapped],
) -> Result<(), StoreError> {
    let doing = db("re-wrapping the namespace keys");
    let changed = || {
        StoreError::Conflict(
            "the namespaces changed while the master key was being replaced; try again",
        )
    };
    let stored: i64 = tx
        .query_one("SELECT count(*) FROM namespaces", &[])
        .map_err(&doing)?
        .get(0);
    let older: i64 = tx
        .query_one("SELECT count(*) FROM namespace_keys", &[])
        .map_err(&doing)?
        .get(0);
    let given_older: usize = namespaces.iter().map(|n| n.older.len()).sum();
    if usize::try_from(stored).ok() != Some(namespaces.len())
        || usize::try_from(older).ok() != Some(given_older)
    {
        return Err(changed());
    }
    for ns in namespaces {
        let mut done = tx
            .execute(
                "UPDATE namespaces SET name_ct = $2, wrapped_key = $3 WHERE id = $1",
                &[&&ns.namespace[..], &ns.name_ct, &ns.wrapped_key],
            )
            .map_err(&doing)?;
        for (key_version, wrapped) in &ns.older {
            done += tx
                .execute(
                    "UPDATE namespace_keys SET wrapped_key = $3
                     WHERE namespace = $1 AND key_version = $2",
                    &[&&ns.namespace[..], &i64::from(*key_version), wrapped],
                )
                .map_err(&doing)?;
        }
        if usize::try_from(done).ok() != Some(1 + ns.older.len()) {
            return Err(changed());
        }
    }
    crate::ops::put_header(tx, header)
}
