//! Namespaces that lock: the row of a locked namespace holds no wrap the master key alone
//! opens, the lock lasts across a reopen, only the passphrase unlocks it, and unlocking
//! restores every value.

use coffer_crypto::{MasterKey, SecretBytes};
use coffer_types::{ErrorCode, Namespace};

use super::support::{Made, name};
use crate::backend::Backend;
use crate::{Change, EncryptedStore, SecretStore, StoreError, Write};

fn master_pair() -> (MasterKey, MasterKey) {
    let master = MasterKey::generate().expect("random");
    let copy = master.duplicate();
    (master, copy)
}

/// Locking removes the master-only wrap from the row, durably; a reopened store (the
/// master key and the database, nothing else) cannot read the namespace; a wrong passphrase
/// is refused and leaves it locked; the right one restores every value; other namespaces
/// serve throughout. A backend that cannot keep passphrase wraps refuses them plainly.
pub fn namespaces_lock_and_unlock<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let (master, copy) = master_pair();
    let store = EncryptedStore::open(backend.clone(), master).expect("open");
    let ns = Namespace::parse("vault/locked").expect("valid");
    let other = Namespace::parse("vault/open").expect("valid");
    let pass = SecretBytes::copy_from(b"namespace passphrase");
    let by = || Change::by("uid:0");
    if !backend.supports_locking() {
        let err = store
            .create_namespace_with(&ns, Some(&pass), by())
            .expect_err("no passphrase wraps here");
        assert_eq!(err.code(), ErrorCode::Unsupported, "{err}");
        assert!(!store.has_namespace(&ns), "nothing half made");
        return;
    }
    store
        .create_namespace_with(&ns, Some(&pass), by())
        .expect("create");
    store.create_namespace(&other, by()).expect("create");
    let value = |i: usize| SecretBytes::copy_from(format!("value-{i}").as_bytes());
    for i in 0..5 {
        let v = value(i);
        for n in [&ns, &other] {
            store
                .set(n, &name(&format!("k{i}")), Write::new(&v, "uid:0"))
                .expect("set");
        }
    }
    // A namespace without a passphrase cannot be locked.
    let err = store
        .lock_namespace(&other, by())
        .expect_err("no passphrase");
    assert_eq!(err.code(), ErrorCode::Conflict, "{err}");
    assert_eq!(store.key_generations_in_use(&ns).expect("exists"), 1);
    store.lock_namespace(&ns, by()).expect("lock");
    assert!(store.is_locked(&ns) && store.has_namespace(&ns));
    let err = store.get(&ns, &name("k0"), None).expect_err("locked");
    assert_eq!(err.code(), ErrorCode::Locked, "{err}");
    assert!(matches!(
        store.list(&ns, &Default::default()),
        Err(StoreError::Locked(_))
    ));
    let v = value(9);
    let err = store
        .set(&ns, &name("new"), Write::new(&v, "uid:0"))
        .expect_err("locked");
    assert_eq!(err.code(), ErrorCode::Locked);
    assert!(store.get(&other, &name("k0"), None).is_ok(), "others serve");
    // The row holds no master-only wrap, only the passphrase wrap.
    let rows = backend.namespaces().expect("rows");
    let locked: Vec<_> = rows.iter().filter(|r| r.locked()).collect();
    assert_eq!(locked.len(), 1);
    assert!(locked[0].wrapped_key.is_empty() && locked[0].lock_wrap.is_some());
    let states = store.namespace_states().expect("states");
    assert!(
        states
            .iter()
            .any(|s| s.namespace == ns && s.locked && s.passphrase)
    );
    assert!(
        states
            .iter()
            .any(|s| s.namespace == other && !s.locked && !s.passphrase)
    );
    // Reopened with the master key alone: still locked.
    drop(store);
    let store = EncryptedStore::open(backend.clone(), copy).expect("reopen");
    assert!(store.is_locked(&ns));
    let err = store.get(&ns, &name("k0"), None).expect_err("still locked");
    assert_eq!(err.code(), ErrorCode::Locked);
    let wrong = SecretBytes::copy_from(b"not the passphrase");
    let err = store
        .unlock_namespace(&ns, &wrong, by())
        .expect_err("wrong");
    assert!(matches!(err, StoreError::WrongPassphrase), "{err}");
    assert_eq!(err.code(), ErrorCode::Denied);
    assert!(store.is_locked(&ns));
    store.unlock_namespace(&ns, &pass, by()).expect("unlock");
    assert!(!store.is_locked(&ns));
    for i in 0..5 {
        let got = store.get(&ns, &name(&format!("k{i}")), None).expect("get");
        assert_eq!(got.value.expose_secret(), value(i).expose_secret());
    }
    let page = store.list(
        &ns,
        &crate::ListQuery {
            limit: 100,
            ..Default::default()
        },
    );
    assert_eq!(page.expect("list").items.len(), 5);
    // A new passphrase replaces the old one.
    let new = SecretBytes::copy_from(b"second passphrase");
    store
        .set_namespace_passphrase(&ns, &new, by())
        .expect("passphrase");
    store.lock_namespace(&ns, by()).expect("lock again");
    let err = store
        .unlock_namespace(&ns, &pass, by())
        .expect_err("old one");
    assert!(matches!(err, StoreError::WrongPassphrase));
    store.unlock_namespace(&ns, &new, by()).expect("new one");
    assert!(store.get(&ns, &name("k1"), None).is_ok());
}

/// A change of a namespace's key wraps applies only over the wraps it read: another daemon
/// sharing the store that locked the namespace meanwhile is not undone (conflict), and a
/// namespace that does not exist is not found.
pub fn key_wraps_change_only_over_what_was_read<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    if !backend.supports_locking() {
        return;
    }
    let store = EncryptedStore::open(backend.clone(), MasterKey::generate().expect("random"))
        .expect("open");
    let ns = Namespace::parse("vault/raced").expect("valid");
    let pass = SecretBytes::copy_from(b"namespace passphrase");
    store
        .create_namespace_with(&ns, Some(&pass), Change::by("uid:0"))
        .expect("create");
    let id = store.namespace_row_id(&ns);
    let row = backend
        .namespaces()
        .expect("rows")
        .into_iter()
        .find(|r| r.id == id)
        .expect("the namespace's row");
    let read = crate::KeyWraps::of(&row);
    let locked = crate::KeyWraps {
        wrapped_key: Vec::new(),
        lock_wrap: row.lock_wrap.clone(),
    };
    backend
        .set_namespace_wraps(&id, read.clone(), locked.clone(), None)
        .expect("locked over what was read");
    // A second writer still holding the wraps read before: refused, the lock stays.
    let err = backend
        .set_namespace_wraps(&id, read.clone(), read.clone(), None)
        .expect_err("a stale change is refused");
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let now = backend
        .namespaces()
        .expect("rows")
        .into_iter()
        .find(|r| r.id == id)
        .expect("the namespace's row");
    assert!(now.locked(), "the lock was undone");
    let err = backend
        .set_namespace_wraps(&[9u8; 32], locked.clone(), read, None)
        .expect_err("no such namespace");
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}
