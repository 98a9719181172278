//! Conformance cases: reads, writes and deletes, isolation, and writers racing.

use coffer_crypto::{MasterKey, SecretBytes};
use coffer_types::{ErrorCode, Kind, Namespace, Version};

use super::support::{Made, code, default, get, name, open, set, write_with};
use crate::backend::{Backend, Planned, VersionRow};
use crate::{EncryptedStore, ListQuery, SecretStore, StoreError, Write};

/// A value written is read back byte for byte, binary and empty values included.
pub fn set_then_get<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    set(&store, "third-party-api-key", b"sk_live_abc123xyz");
    assert_eq!(get(&store, "third-party-api-key"), b"sk_live_abc123xyz");
    let binary: Vec<u8> = (0..=255u8).collect();
    write_with(&store, "bin", &binary, |w| w.new_kind = Kind::File).expect("binary");
    assert_eq!(get(&store, "bin"), binary);
    set(&store, "empty", b"");
    assert_eq!(get(&store, "empty"), b"");
}

/// Writing a name again makes version 2; the latest is read unless a version is asked.
pub fn overwrite_creates_a_new_version<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    let first = set(&store, "k", b"one");
    let second = set(&store, "k", b"two");
    assert_eq!(first.version, Version::FIRST);
    assert!(first.created && !second.created);
    assert_eq!(second.version.get(), 2);
    assert_eq!(get(&store, "k"), b"two");
    let old = store
        .get(&default(), &name("k"), Version::new(1))
        .expect("version 1");
    assert_eq!(old.value.expose_secret(), b"one");
    assert_eq!(old.version, Version::FIRST);
    assert_eq!(
        code(store.get(&default(), &name("k"), Version::new(3))),
        ErrorCode::NotFound
    );
}

/// Get and delete of a missing name answer `not_found`.
pub fn missing_names_are_not_found<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    assert_eq!(
        code(store.get(&default(), &name("nope"), None)),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(store.delete(&default(), &name("nope"), crate::Change::by("uid:0"))),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(store.versions(&default(), &name("nope"))),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(store.metadata(&default(), &name("nope"))),
        ErrorCode::NotFound
    );
    let other = Namespace::parse("no/such").expect("valid");
    assert_eq!(
        code(store.get(&other, &name("x"), None)),
        ErrorCode::NotFound
    );
}

/// A deleted secret is gone; writing its name again starts over at version 1.
pub fn delete_frees_the_name<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    set(&store, "k", b"one");
    set(&store, "k", b"two");
    store
        .delete(&default(), &name("k"), crate::Change::by("uid:0"))
        .expect("delete");
    assert_eq!(
        code(store.get(&default(), &name("k"), None)),
        ErrorCode::NotFound
    );
    let again = set(&store, "k", b"three");
    assert_eq!(again.version, Version::FIRST);
    assert!(again.created);
    assert_eq!(get(&store, "k"), b"three");
    assert_eq!(
        store
            .versions(&default(), &name("k"))
            .expect("versions")
            .len(),
        1
    );
}

/// A ciphertext copied into another secret's row, or another version, fails to decrypt.
pub fn moved_ciphertext_fails_to_decrypt<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    set(&store, "a", b"value of a");
    set(&store, "b", b"value of b, 1");
    set(&store, "b", b"value of b, 2");
    // The attacker's view: rows and envelopes, no names, no keys.
    let ns = backend.namespaces().expect("namespaces")[0].id;
    let rows = backend.secrets(&ns).expect("rows");
    let a = rows.iter().find(|r| r.current.get() == 1).expect("a");
    let b = rows.iter().find(|r| r.current.get() == 2).expect("b");
    let (_, a_v1) = backend
        .read(&ns, &a.name_hash, None)
        .expect("read")
        .expect("a");
    let (_, b_v1) = backend
        .read(&ns, &b.name_hash, Version::new(1))
        .expect("read")
        .expect("b");
    for (stolen, version) in [(a_v1, 3), (b_v1, 4)] {
        backend
            .write(
                &ns,
                &b.name_hash,
                Box::new(move |_| {
                    Ok(Planned {
                        create: None,
                        version: VersionRow {
                            version: Version::new(version).expect("nonzero"),
                            ..stolen
                        },
                        meta_ct: None,
                        prune_before: None,
                    })
                }),
                None,
            )
            .expect("raw write");
        let err = store
            .get(&default(), &name("b"), None)
            .expect_err("a moved ciphertext must not decrypt");
        assert!(
            matches!(err, StoreError::Corrupt { .. }),
            "expected an integrity failure, got {err}"
        );
    }
    assert_eq!(get(&store, "a"), b"value of a");
}

/// Many threads writing one name and their own names: every write lands, versions have no
/// gaps or duplicates, and each name reads back its last value.
pub fn concurrent_writers<B: Backend>(make: &dyn Fn() -> Made<B>) {
    const THREADS: usize = 8;
    const WRITES: usize = 25;
    let (backend, _guard) = make();
    let store = open(&backend);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let store = &store;
            s.spawn(move || {
                for i in 0..WRITES {
                    set(store, "shared", format!("{t}-{i}").as_bytes());
                    set(store, &format!("own-{t}"), format!("{i}").as_bytes());
                }
            });
        }
    });
    let shared = store
        .versions(&default(), &name("shared"))
        .expect("versions");
    let numbers: Vec<u32> = shared.iter().map(|v| v.version.get()).collect();
    let expected: Vec<u32> = (1..=(THREADS * WRITES) as u32).collect();
    assert_eq!(numbers, expected);
    for t in 0..THREADS {
        let n = format!("own-{t}");
        assert_eq!(get(&store, &n), format!("{}", WRITES - 1).as_bytes());
        assert_eq!(
            store.versions(&default(), &name(&n)).expect("v").len(),
            WRITES
        );
    }
}

/// The same name in two namespaces is two secrets.
pub fn namespaces_are_isolated<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    let prod = Namespace::parse("acme/prod").expect("valid");
    store
        .create_namespace(&prod, crate::Change::by("uid:0"))
        .expect("create");
    assert_eq!(
        store
            .create_namespace(&prod, crate::Change::by("uid:0"))
            .err()
            .map(|e| e.code()),
        Some(ErrorCode::Conflict)
    );
    set(&store, "db", b"default value");
    let v = SecretBytes::copy_from(b"prod value");
    let mut w = Write::new(&v, "uid:0");
    w.kind = Some(Kind::Line);
    store.set(&prod, &name("db"), w).expect("set");
    assert_eq!(get(&store, "db"), b"default value");
    let p = store.get(&prod, &name("db"), None).expect("get");
    assert_eq!(p.value.expose_secret(), b"prod value");
    assert_eq!(p.kind, Kind::Line);
    store
        .delete(&default(), &name("db"), crate::Change::by("uid:0"))
        .expect("delete");
    assert_eq!(
        store
            .list(&prod, &ListQuery::default())
            .expect("list")
            .items
            .len(),
        1
    );
    assert_eq!(store.namespaces(), vec![prod, default()]);
}

/// An index is stable across overwrites, unique among live secrets, and reused once freed.
pub fn index_is_stable_and_unique<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    let a = set(&store, "a", b"1").index;
    let b = set(&store, "b", b"1").index;
    assert_ne!(a, b);
    assert_eq!(set(&store, "a", b"2").index, a);
    assert_eq!(
        store.get(&default(), &name("a"), None).expect("get").index,
        a
    );
    assert!(a.to_string().starts_with("0x0152"));
    store
        .delete(&default(), &name("a"), crate::Change::by("uid:0"))
        .expect("delete");
    let c = set(&store, "c", b"1").index;
    assert_eq!(c, a, "a freed index is reused");
}

/// Another `EncryptedStore` over the same rows with the same master key reads everything.
pub fn reopening_with_the_master_key_reads_everything<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let master = MasterKey::generate().expect("random");
    let wrapped = {
        // Keep the master key across two opens by wrapping it in a recovery slot.
        let rk = coffer_crypto::RecoveryKey::generate().expect("random");
        let slot = coffer_crypto::SlotRecord::wrap(
            1,
            coffer_crypto::SlotParams::Recovery {},
            &coffer_crypto::SlotKey::from_recovery(&rk),
            &master,
        )
        .expect("wrap");
        (rk, slot)
    };
    let store = EncryptedStore::open(backend.clone(), master).expect("open");
    store
        .create_namespace(&default(), crate::Change::by("uid:0"))
        .expect("ns");
    set(&store, "k", b"persisted");
    drop(store);
    let (rk, slot) = wrapped;
    let master = slot
        .unwrap_master(&coffer_crypto::SlotKey::from_recovery(&rk))
        .expect("unwrap");
    let store = EncryptedStore::open(backend.clone(), master).expect("reopen");
    assert_eq!(get(&store, "k"), b"persisted");
    assert_eq!(store.namespaces(), vec![default()]);
}

/// The backend's delete answers the id of the secret it removed, and nothing when there was
/// none (the name index relies on it).
pub fn delete_answers_the_removed_id<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    let written = set(&store, "k", b"v");
    let ns = backend.namespaces().expect("namespaces")[0].id;
    let row = backend.secrets(&ns).expect("rows").remove(0);
    assert_eq!(row.id, written.id, "a write answers the secret's id");
    assert_eq!(set(&store, "k", b"v2").id, written.id);
    assert_eq!(
        backend.delete(&ns, &row.name_hash, None).expect("delete"),
        Some(row.id)
    );
    assert_eq!(
        backend.delete(&ns, &row.name_hash, None).expect("again"),
        None
    );
}

/// The count of live secrets follows writes, deletes and revocations in every namespace,
/// the store's own system namespace left out.
pub fn secret_count_follows_the_live_secrets<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    assert_eq!(store.secret_count().expect("count"), 0);
    let prod = Namespace::parse("acme/prod").expect("valid");
    store
        .create_namespace(&prod, crate::Change::by("uid:0"))
        .expect("create");
    for n in ["a", "b", "c"] {
        set(&store, n, b"v");
    }
    let v = SecretBytes::copy_from(b"prod value");
    store
        .set(&prod, &name("a"), Write::new(&v, "uid:0"))
        .expect("set");
    set(&store, "a", b"a new version, not a new secret");
    assert_eq!(store.secret_count().expect("count"), 4);
    store
        .delete(&default(), &name("b"), crate::Change::by("uid:0"))
        .expect("delete");
    store
        .revoke(&default(), &name("c"), crate::Change::by("uid:0"))
        .expect("revoke");
    assert_eq!(store.secret_count().expect("count"), 2);
    // The system namespace's records are not secrets of anyone's.
    let system = Namespace::system();
    store
        .create_namespace(&system, crate::Change::by("coffer"))
        .expect("create the system namespace");
    store
        .set(&system, &name("bookkeeping"), Write::new(&v, "coffer"))
        .expect("set");
    assert_eq!(store.secret_count().expect("count"), 2);
}
