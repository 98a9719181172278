//! Turning PostgreSQL rows into backend rows. Columns are listed once here so every query
//! that reads a row selects them in the same order.

use coffer_store::{NamespaceRow, SecretId, SecretRow, StoreError, VersionRow};
use coffer_types::{Kind, NvIndex, Timestamp, Version};
use postgres::Row;

/// The columns [`secret`] reads, from table alias `s`.
pub(crate) const SECRET_COLUMNS: &str = "s.id, s.namespace, s.name_hash, s.name_ct, \
     s.meta_ct, s.slot, s.current, s.kind, s.created, s.updated, s.revoked";
/// The columns [`namespace`] reads, from table alias `n`.
pub(crate) const NAMESPACE_COLUMNS: &str =
    "n.id, n.name_ct, n.key_version, n.wrapped_key, n.created, n.lock_wrap";
/// The columns [`version`] reads, from table alias `v`.
pub(crate) const VERSION_COLUMNS: &str =
    "v.version, v.kind, v.created, v.actor, v.key_version, v.ciphertext";

/// What a row that does not parse says (a column of the wrong type or length).
fn malformed(_: impl std::fmt::Debug) -> StoreError {
    StoreError::Malformed("a row does not have coffer's columns")
}

pub(crate) fn array<const N: usize>(bytes: Vec<u8>) -> Result<[u8; N], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Malformed("a key column has the wrong length"))
}

/// Column `at` of `r`: a column of another type (or an unexpected NULL) is an error, never a
/// panic.
pub(crate) fn get<'a, T: postgres::types::FromSql<'a>>(
    r: &'a Row,
    at: usize,
) -> Result<T, StoreError> {
    r.try_get(at).map_err(malformed)
}

fn u32_at(r: &Row, at: usize) -> Result<u32, StoreError> {
    u32::try_from(get::<i64>(r, at)?).map_err(|_| StoreError::Malformed("a number is out of range"))
}

/// A secret row starting at column `at`.
pub(crate) fn secret(r: &Row, at: usize) -> Result<SecretRow, StoreError> {
    Ok(SecretRow {
        id: SecretId(array(get(r, at)?)?),
        namespace: array(get(r, at + 1)?)?,
        name_hash: array(get(r, at + 2)?)?,
        name_ct: get(r, at + 3)?,
        meta_ct: get(r, at + 4)?,
        index: NvIndex::from_slot(u32_at(r, at + 5)?)
            .ok_or(StoreError::Malformed("an index is out of range"))?,
        current: Version::new(u32_at(r, at + 6)?).ok_or(StoreError::Malformed("version 0"))?,
        kind: get::<String>(r, at + 7)?
            .parse::<Kind>()
            .map_err(|_| StoreError::Malformed("an unknown kind"))?,
        created: Timestamp::from_millis(get(r, at + 8)?),
        updated: Timestamp::from_millis(get(r, at + 9)?),
        revoked: get::<Option<i64>>(r, at + 10)?.map(Timestamp::from_millis),
    })
}

/// A version row starting at column `at`.
pub(crate) fn version(r: &Row, at: usize) -> Result<VersionRow, StoreError> {
    Ok(VersionRow {
        version: Version::new(u32_at(r, at)?).ok_or(StoreError::Malformed("version 0"))?,
        kind: get::<String>(r, at + 1)?
            .parse::<Kind>()
            .map_err(|_| StoreError::Malformed("an unknown kind"))?,
        created: Timestamp::from_millis(get(r, at + 2)?),
        actor: get(r, at + 3)?,
        key_version: u32_at(r, at + 4)?,
        ciphertext: get(r, at + 5)?,
    })
}

/// A namespace row starting at column `at`.
pub(crate) fn namespace(r: &Row, at: usize) -> Result<NamespaceRow, StoreError> {
    Ok(NamespaceRow {
        id: array(get(r, at)?)?,
        name_ct: get(r, at + 1)?,
        key_version: u32_at(r, at + 2)?,
        wrapped_key: get(r, at + 3)?,
        created: Timestamp::from_millis(get(r, at + 4)?),
        lock_wrap: get(r, at + 5)?,
    })
}
