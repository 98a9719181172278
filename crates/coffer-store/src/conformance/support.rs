//! What every conformance case uses: opening a store over the backend under test, and
//! short forms of the calls the cases make.

use std::any::Any;
use std::sync::Arc;

use coffer_crypto::{MasterKey, SecretBytes};
use coffer_types::{ErrorCode, Namespace, SecretName};

use crate::backend::Backend;
use crate::{EncryptedStore, ListQuery, SecretStore, StoreError, Write};

/// A fresh backend and whatever must outlive it.
pub type Made<B> = (Arc<B>, Box<dyn Any>);

pub(super) fn name(s: &str) -> SecretName {
    SecretName::parse(s).expect("test names are valid")
}

pub(super) fn default() -> Namespace {
    Namespace::default_namespace()
}

pub(super) fn open<B: Backend>(backend: &Arc<B>) -> EncryptedStore<B> {
    open_with(backend, MasterKey::generate().expect("random"))
}

/// A store over `backend` with `master`, with the default namespace (created if missing).
pub(super) fn open_with<B: Backend>(backend: &Arc<B>, master: MasterKey) -> EncryptedStore<B> {
    let store = EncryptedStore::open(backend.clone(), master).expect("open");
    if !store.has_namespace(&default()) {
        store
            .create_namespace(&default(), crate::Change::by("uid:0"))
            .expect("default namespace");
    }
    store
}

pub(super) fn set<S: SecretStore + ?Sized>(store: &S, n: &str, value: &[u8]) -> crate::Written {
    let value = SecretBytes::copy_from(value);
    store
        .set(&default(), &name(n), Write::new(&value, "uid:0"))
        .expect("set")
}

pub(super) fn write_with<S: SecretStore + ?Sized>(
    store: &S,
    n: &str,
    value: &[u8],
    f: impl FnOnce(&mut Write<'_>),
) -> Result<crate::Written, StoreError> {
    let value = SecretBytes::copy_from(value);
    let mut w = Write::new(&value, "uid:0");
    f(&mut w);
    store.set(&default(), &name(n), w)
}

pub(super) fn names<S: SecretStore + ?Sized>(
    store: &S,
    query: &ListQuery,
) -> (Vec<String>, Option<String>) {
    let page = store.list(&default(), query).expect("list");
    (
        page.items.iter().map(|n| n.as_str().to_owned()).collect(),
        page.next.map(|n| n.as_str().to_owned()),
    )
}

/// Every name of the default namespace, read page by page (`limit` names a page).
pub(super) fn all_names<S: SecretStore + ?Sized>(store: &S, limit: usize) -> Vec<String> {
    let mut query = ListQuery {
        limit,
        ..ListQuery::default()
    };
    let mut all = Vec::new();
    loop {
        let page = store.list(&default(), &query).expect("list");
        assert!(page.items.len() <= limit);
        all.extend(page.items.iter().map(|n| n.as_str().to_owned()));
        match page.next {
            Some(next) => query.after = Some(next),
            None => return all,
        }
    }
}

pub(super) fn get<S: SecretStore + ?Sized>(store: &S, n: &str) -> Vec<u8> {
    store
        .get(&default(), &name(n), None)
        .expect("get")
        .value
        .expose_secret()
        .to_vec()
}

pub(super) fn code<T>(r: Result<T, StoreError>) -> ErrorCode {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.code(),
    }
}
