//! Turning SQLite rows into backend rows. Columns are listed once here so every query that
//! reads a row selects them in the same order.

use coffer_types::{Kind, NvIndex, Timestamp, Version};
use rusqlite::Row;

use crate::StoreError;
use crate::backend::{NamespaceRow, SecretId, SecretRow, VersionRow};

/// The columns [`secret`] reads, from table alias `s`.
pub(super) const SECRET_COLUMNS: &str = "s.id, s.namespace, s.name_hash, s.name_ct, s.meta_ct, \
     s.slot, s.current, s.kind, s.created, s.updated, s.revoked";
/// The columns [`namespace`] reads, from table alias `n`.
pub(super) const NAMESPACE_COLUMNS: &str =
    "n.id, n.name_ct, n.key_version, n.wrapped_key, n.created, n.lock_wrap";
/// The columns [`version`] reads, from table alias `v`.
pub(super) const VERSION_COLUMNS: &str =
    "v.version, v.kind, v.created, v.actor, v.key_version, v.ciphertext";

fn array<const N: usize>(bytes: Vec<u8>) -> Result<[u8; N], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Malformed("a key column has the wrong length"))
}

/// A secret row starting at column `at`. The outer `Result` is SQLite's, the inner ours.
pub(super) fn secret(r: &Row<'_>, at: usize) -> rusqlite::Result<Result<SecretRow, StoreError>> {
    let id: Vec<u8> = r.get(at)?;
    let namespace: Vec<u8> = r.get(at + 1)?;
    let name_hash: Vec<u8> = r.get(at + 2)?;
    let name_ct: Vec<u8> = r.get(at + 3)?;
    let meta_ct: Vec<u8> = r.get(at + 4)?;
    let slot: u32 = r.get(at + 5)?;
    let current: u32 = r.get(at + 6)?;
    let kind: String = r.get(at + 7)?;
    let created: i64 = r.get(at + 8)?;
    let updated: i64 = r.get(at + 9)?;
    let revoked: Option<i64> = r.get(at + 10)?;
    Ok((|| {
        Ok(SecretRow {
            id: SecretId(array(id)?),
            namespace: array(namespace)?,
            name_hash: array(name_hash)?,
            name_ct,
            meta_ct,
            index: NvIndex::from_slot(slot)
                .ok_or(StoreError::Malformed("an index is out of range"))?,
            current: Version::new(current).ok_or(StoreError::Malformed("version 0"))?,
            kind: kind
                .parse::<Kind>()
                .map_err(|_| StoreError::Malformed("an unknown kind"))?,
            created: Timestamp::from_millis(created),
            updated: Timestamp::from_millis(updated),
            revoked: revoked.map(Timestamp::from_millis),
        })
    })())
}

/// A version row starting at column `at`.
pub(super) fn version(r: &Row<'_>, at: usize) -> rusqlite::Result<Result<VersionRow, StoreError>> {
    let version: u32 = r.get(at)?;
    let kind: String = r.get(at + 1)?;
    let created: i64 = r.get(at + 2)?;
    let actor: String = r.get(at + 3)?;
    let key_version: u32 = r.get(at + 4)?;
    let ciphertext: Option<Vec<u8>> = r.get(at + 5)?;
    Ok((|| {
        Ok(VersionRow {
            version: Version::new(version).ok_or(StoreError::Malformed("version 0"))?,
            kind: kind
                .parse::<Kind>()
                .map_err(|_| StoreError::Malformed("an unknown kind"))?,
            created: Timestamp::from_millis(created),
            actor,
            key_version,
            ciphertext,
        })
    })())
}

/// A namespace row starting at column `at`.
pub(super) fn namespace(
    r: &Row<'_>,
    at: usize,
) -> rusqlite::Result<Result<NamespaceRow, StoreError>> {
    let id: Vec<u8> = r.get(at)?;
    let name_ct: Vec<u8> = r.get(at + 1)?;
    let key_version: u32 = r.get(at + 2)?;
    let wrapped_key: Vec<u8> = r.get(at + 3)?;
    let created: i64 = r.get(at + 4)?;
    let lock_wrap: Option<Vec<u8>> = r.get(at + 5)?;
    Ok(array(id).map(|id| NamespaceRow {
        id,
        name_ct,
        key_version,
        wrapped_key,
        created: Timestamp::from_millis(created),
        lock_wrap,
    }))
}
