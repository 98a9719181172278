//! Bookkeeping records in the store's own namespace (AppRole's roles and secret-ids, wrapped
//! responses): written, read, listed and removed as single-version `kv` secrets, encrypted
//! like every secret. No change event names them: the audit record of the request that
//! changed them says what was done.

use std::sync::Arc;

use coffer_crypto::SecretBytes;
use coffer_store::{Change, ListQuery, SecretStore, StoreError, Write};
use coffer_types::{Kind, SecretName};
use serde::{Deserialize, Serialize};

use super::system::ensure_namespace;
use crate::CoreError;

fn name(text: &str) -> Result<SecretName, CoreError> {
    SecretName::parse(text).map_err(CoreError::from)
}

/// The error for a stored record that does not parse (logged with serde's reason, which
/// never quotes more than a position).
pub(crate) fn malformed(what: &'static str) -> impl Fn(serde_json::Error) -> CoreError {
    move |e| {
        tracing::error!(error = %e, "the stored {what} cannot be read");
        CoreError::Unavailable(format!("the stored {what} cannot be read"))
    }
}

/// `value` as JSON.
pub(crate) fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, CoreError> {
    serde_json::to_vec(value).map_err(|e| {
        tracing::error!(error = %e, "cannot encode {what}");
        CoreError::Unavailable(format!("cannot encode {what}"))
    })
}

/// Writes `value` at `at` (its only version), as `kind` (`kv` for a JSON record, whose
/// shape the store checks; `file` for any bytes).
pub(crate) fn put_bytes(
    store: &Arc<dyn SecretStore>,
    at: &str,
    value: &SecretBytes,
    kind: Kind,
) -> Result<(), CoreError> {
    put_bytes_over(store, at, value, kind, None)
}

/// [`put_bytes`] only over version `cas` of the record (0: only where there is none),
/// decided in the store's transaction: [`StoreError::Conflict`] when another writer (another
/// hub) changed it meanwhile.
pub(crate) fn put_bytes_over(
    store: &Arc<dyn SecretStore>,
    at: &str,
    value: &SecretBytes,
    kind: Kind,
    cas: Option<u32>,
) -> Result<(), CoreError> {
    let ns = ensure_namespace(store)?;
    let mut write = Write::new(value, "coffer");
    write.change = Change::by("coffer").quiet();
    write.kind = Some(kind);
    write.new_max_versions = Some(1);
    write.cas = cas;
    store.set(&ns, &name(at)?, write)?;
    Ok(())
}

/// Writes the JSON `json` at `at`.
pub(crate) fn put(store: &Arc<dyn SecretStore>, at: &str, json: Vec<u8>) -> Result<(), CoreError> {
    put_bytes(store, at, &SecretBytes::from_vec(json), Kind::Kv)
}

/// Removes the record at `at`; answers whether it existed.
pub(crate) fn remove(store: &Arc<dyn SecretStore>, at: &str) -> Result<bool, CoreError> {
    let ns = ensure_namespace(store)?;
    match store.delete(&ns, &name(at)?, Change::by("coffer").quiet()) {
        Ok(()) => Ok(true),
        Err(StoreError::NotFound(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The record at `at`, as stored.
pub(crate) fn get_bytes(
    store: &Arc<dyn SecretStore>,
    at: &str,
) -> Result<Option<SecretBytes>, CoreError> {
    Ok(get_versioned(store, at)?.map(|(value, _)| value))
}

/// The record at `at` and its version (for [`put_bytes_over`]).
pub(crate) fn get_versioned(
    store: &Arc<dyn SecretStore>,
    at: &str,
) -> Result<Option<(SecretBytes, u32)>, CoreError> {
    let ns = ensure_namespace(store)?;
    match store.get(&ns, &name(at)?, None) {
        Ok(secret) => Ok(Some((secret.value, secret.version.get()))),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The JSON record at `at`.
pub(crate) fn get<T: for<'de> Deserialize<'de>>(
    store: &Arc<dyn SecretStore>,
    at: &str,
    what: &'static str,
) -> Result<Option<T>, CoreError> {
    get_bytes(store, at)?
        .map(|bytes| serde_json::from_slice(bytes.expose_secret()).map_err(malformed(what)))
        .transpose()
}

/// Every name under `prefix` (the part after it).
pub(crate) fn names(store: &Arc<dyn SecretStore>, prefix: &str) -> Result<Vec<String>, CoreError> {
    let ns = ensure_namespace(store)?;
    let mut query = ListQuery {
        prefix: Some(prefix.to_owned()),
        ..ListQuery::default()
    };
    let mut all = Vec::new();
    loop {
        let page = store.list(&ns, &query)?;
        for entry in &page.items {
            if let Some(rest) = entry.as_str().strip_prefix(prefix) {
                all.push(rest.to_owned());
            }
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    Ok(all)
}
