//! Policies, bindings and tokens kept in the store's own namespace ([`Namespace::SYSTEM`],
//! which no request can name), encrypted like every secret and carried by every backend:
//!
//! - `access/policies`: the run-time policies and bindings, one JSON document (kind `kv`);
//! - `tokens/<hex of the token's keyed hash>`: one token record each (kind `kv`).

use std::sync::Arc;

use coffer_crypto::SecretBytes;
use coffer_store::{Change, ListQuery, SecretStore, StoreError, Write, WriteMode};
use coffer_types::{EventAction, Kind, Namespace, SecretName};

use super::policy::{PolicySet, PolicySetText};
use super::token::{TokenRecord, Tokens};
use crate::CoreError;

const POLICIES: &str = "access/policies";
const TOKENS: &str = "tokens/";

fn name(text: &str) -> Result<SecretName, CoreError> {
    SecretName::parse(text).map_err(CoreError::from)
}

fn malformed(what: &'static str) -> impl Fn(serde_json::Error) -> CoreError {
    move |e| {
        tracing::error!(error = %e, "the stored {what} cannot be read");
        CoreError::Unavailable(format!("the stored {what} cannot be read"))
    }
}

/// The store's own namespace, made when missing (webhooks and rotation records live there
/// too).
pub(crate) fn ensure_namespace(store: &Arc<dyn SecretStore>) -> Result<Namespace, CoreError> {
    let ns = Namespace::system();
    if !store.has_namespace(&ns) {
        // The store's own namespace is bookkeeping, not a change anyone watches.
        match store.create_namespace(&ns, Change::by("coffer").quiet()) {
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(ns)
}

/// Reads the stored policies (checked against `known` policy names of the file) and tokens.
/// A store that cannot be read is the error; policies that were read but do not load (not
/// JSON, a bad rule, a binding to a policy that no longer exists) are the inner error, with
/// what names the policy, so tokens still load and the caller can fail closed.
pub(super) fn load(
    store: &Arc<dyn SecretStore>,
    known: &dyn Fn(&str) -> bool,
) -> Result<(Result<PolicySet, String>, Tokens), CoreError> {
    let ns = ensure_namespace(store)?;
    let (policies, _) = load_policies(store, known)?;
    let mut tokens = Tokens::default();
    let mut query = ListQuery {
        prefix: Some(TOKENS.to_owned()),
        ..ListQuery::default()
    };
    loop {
        let page = store.list(&ns, &query)?;
        for entry in &page.items {
            let Some(hex) = entry.as_str().strip_prefix(TOKENS) else {
                continue;
            };
            let Ok(bytes) = data_encoding::HEXLOWER.decode(hex.as_bytes()) else {
                continue;
            };
            let Ok(hash) = <[u8; 32]>::try_from(bytes.as_slice()) else {
                continue;
            };
            let secret = store.get(&ns, entry, None)?;
            let record: TokenRecord =
                serde_json::from_slice(secret.value.expose_secret()).map_err(malformed("token"))?;
            tokens.insert(hash, record);
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    Ok((policies, tokens))
}

/// Writes the record `at` (keeping `keep` versions), as `how` sets the write up (its
/// mode, its check-and-set).
fn put(
    store: &Arc<dyn SecretStore>,
    at: &str,
    json: Vec<u8>,
    change: Change<'_>,
    keep: u32,
    how: impl FnOnce(&mut Write<'_>),
) -> Result<(), CoreError> {
    let ns = ensure_namespace(store)?;
    let value = SecretBytes::from_vec(json);
    let mut write = Write::new(&value, change.actor);
    write.change = change;
    write.kind = Some(Kind::Kv);
    write.new_max_versions = Some(keep);
    how(&mut write);
    store.set(&ns, &name(at)?, write)?;
    Ok(())
}

/// The stored policies as [`load`] reads them, with the version of their record (0: none
/// is stored), for [`save_policies`]' check-and-set.
pub(super) fn load_policies(
    store: &Arc<dyn SecretStore>,
    known: &dyn Fn(&str) -> bool,
) -> Result<(Result<PolicySet, String>, u32), CoreError> {
    let ns = ensure_namespace(store)?;
    Ok(match store.get(&ns, &name(POLICIES)?, None) {
        Ok(secret) => {
            let version = secret.version.get();
            let set = match serde_json::from_slice::<PolicySetText>(secret.value.expose_secret()) {
                Ok(text) => PolicySet::from_text(&text, known).map_err(|e| e.to_string()),
                // serde's message may quote the text; the position is enough to find it.
                Err(e) => Err(format!(
                    "the stored policy set ({}, {POLICIES}) is not valid JSON (line {}, column {})",
                    Namespace::SYSTEM,
                    e.line(),
                    e.column()
                )),
            };
            (set, version)
        }
        Err(StoreError::NotFound(_)) => (Ok(PolicySet::default()), 0),
        Err(e) => return Err(e.into()),
    })
}

/// Writes the run-time policies and bindings over version `cas` of their record (0: only
/// where none is stored): [`StoreError::Conflict`] when another writer (another hub sharing
/// the store) changed them since they were read.
pub(super) fn save_policies(
    store: &Arc<dyn SecretStore>,
    set: &PolicySet,
    actor: &str,
    cas: u32,
) -> Result<(), CoreError> {
    let json = serde_json::to_vec(&set.to_text()).map_err(|e| {
        tracing::error!(error = %e, "cannot encode policies");
        CoreError::Unavailable("cannot encode policies".to_owned())
    })?;
    // A few versions stay, as a record of recent policy changes.
    let change = Change::by(actor)
        .named(EventAction::PolicyChanged)
        .about("policies");
    put(store, POLICIES, json, change, 10, |w| w.cas = Some(cas))
}

/// Whether the record `name` of the store's own namespace is a token or the policies.
pub(crate) fn holds_access(name: &str) -> bool {
    name == POLICIES || name.starts_with(TOKENS)
}

fn token_name(hash: &[u8; 32]) -> String {
    format!("{TOKENS}{}", data_encoding::HEXLOWER.encode(hash))
}

/// Writes a token's record: a new token's is a `token.created` event (naming its accessor,
/// never the token); a renewal is bookkeeping and no event, and only updates a record that
/// is there: a token revoked meanwhile (on another hub sharing the store) stays revoked
/// ([`StoreError::NotFound`]).
pub(super) fn save_token(
    store: &Arc<dyn SecretStore>,
    hash: &[u8; 32],
    record: &TokenRecord,
    actor: &str,
    created: bool,
) -> Result<(), CoreError> {
    let json = serde_json::to_vec(record).map_err(|e| {
        tracing::error!(error = %e, "cannot encode a token record");
        CoreError::Unavailable("cannot encode a token record".to_owned())
    })?;
    let (change, mode) = match created {
        true => (
            Change::by(actor)
                .named(EventAction::TokenCreated)
                .about(&record.accessor),
            WriteMode::Create,
        ),
        false => (Change::by(actor).quiet(), WriteMode::Update),
    };
    put(store, &token_name(hash), json, change, 1, |w| w.mode = mode)
}

/// Deletes a token's record for good: a revocation (`token.revoked`, naming the accessor) when
/// `revoked` says by whom, else bookkeeping (an expired token's record).
pub(super) fn delete_token(
    store: &Arc<dyn SecretStore>,
    hash: &[u8; 32],
    revoked: Option<(&str, &str)>,
) -> Result<(), CoreError> {
    let ns = ensure_namespace(store)?;
    let change = match revoked {
        Some((actor, accessor)) => Change::by(actor)
            .named(EventAction::TokenRevoked)
            .about(accessor),
        None => Change::by("coffer").quiet(),
    };
    match store.delete(&ns, &name(&token_name(hash))?, change) {
        Ok(()) | Err(StoreError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
