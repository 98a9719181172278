//! The conformance suite every backend runs, written once (CONVENTIONS.md, Backends).
//!
//! A backend crate invokes [`conformance_suite!`](crate::conformance_suite) with an
//! expression that makes a fresh, empty backend and a guard that keeps its resources (a
//! temporary directory, a TPM simulator) alive; the macro expands to one `#[test]` per case.
//! Every case drives the data model through [`EncryptedStore`], so the cryptography is
//! exercised over each backend too, and a few cases use the raw [`Backend`] as an attacker
//! with write access to the rows would.

use std::any::Any;
use std::sync::Arc;

use coffer_crypto::{MasterKey, SecretBytes};
use coffer_types::{ErrorCode, Kind, Namespace, SecretName, Version};

use crate::backend::{Backend, Planned, VersionRow};
use crate::{Describe, EncryptedStore, ListQuery, SecretStore, StoreError, Write, WriteMode};

/// A fresh backend and whatever must outlive it.
pub type Made<B> = (Arc<B>, Box<dyn Any>);

/// Expands to the whole suite for the backend `$make` produces (an expression of type
/// `fn() -> Made<B>` or a closure).
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@cases $make;
            set_then_get,
            overwrite_creates_a_new_version,
            missing_names_are_not_found,
            delete_frees_the_name,
            list_returns_names_only,
            cleanup_leaves_the_list_empty,
            moved_ciphertext_fails_to_decrypt,
            concurrent_writers,
            namespaces_are_isolated,
            index_is_stable_and_unique,
            versions_record_time_and_actor,
            metadata_holds_no_value,
            reopening_with_the_master_key_reads_everything,
            kinds_are_checked_and_kept,
            write_modes_create_and_update,
            max_versions_keeps_the_newest,
            describe_writes_no_version,
            revoke_keeps_history_and_frees_the_name,
            destroy_erases_ciphertexts_for_good,
            list_pages_by_prefix_and_cursor,
            check_and_set_is_decided_in_the_transaction,
            soft_deletion_and_custom_metadata_live_in_the_metadata
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::conformance::$case(&$make);
            }
        )*
    };
}

fn name(s: &str) -> SecretName {
    SecretName::parse(s).expect("test names are valid")
}

fn default() -> Namespace {
    Namespace::default_namespace()
}

fn open<B: Backend>(backend: &Arc<B>) -> EncryptedStore<B> {
    let store = EncryptedStore::open(backend.clone(), MasterKey::generate().expect("random"))
        .expect("open");
    store
        .create_namespace(&default())
        .expect("default namespace");
    store
}

fn set<S: SecretStore + ?Sized>(store: &S, n: &str, value: &[u8]) -> crate::Written {
    let value = SecretBytes::copy_from(value);
    store
        .set(&default(), &name(n), Write::new(&value, "uid:0"))
        .expect("set")
}

fn write_with<S: SecretStore + ?Sized>(
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

fn names<S: SecretStore + ?Sized>(store: &S, query: &ListQuery) -> (Vec<String>, Option<String>) {
    let page = store.list(&default(), query).expect("list");
    (
        page.items.iter().map(|n| n.as_str().to_owned()).collect(),
        page.next.map(|n| n.as_str().to_owned()),
    )
}

fn get<S: SecretStore + ?Sized>(store: &S, n: &str) -> Vec<u8> {
    store
        .get(&default(), &name(n), None)
        .expect("get")
        .value
        .expose_secret()
        .to_vec()
}

fn code<T>(r: Result<T, StoreError>) -> ErrorCode {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.code(),
    }
}

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
        code(store.delete(&default(), &name("nope"))),
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
    store.delete(&default(), &name("k")).expect("delete");
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

/// `list` returns exactly the names, sorted, and never decrypts a value.
pub fn list_returns_names_only<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    for n in ["b/two", "a", "c.three"] {
        set(&store, n, b"value");
    }
    set(&store, "a", b"value 2");
    let (listed, next) = names(&store, &ListQuery::default());
    assert_eq!(listed, ["a", "b/two", "c.three"]);
    assert_eq!(next, None);
}

/// After every secret is deleted, the list is empty.
pub fn cleanup_leaves_the_list_empty<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    for i in 0..10 {
        set(&store, &format!("s{i}"), b"v");
    }
    for n in store
        .list(&default(), &ListQuery::default())
        .expect("list")
        .items
    {
        store.delete(&default(), &n).expect("delete");
    }
    assert!(names(&store, &ListQuery::default()).0.is_empty());
    let ns = &backend.namespaces().expect("namespaces")[0];
    assert!(backend.secrets(&ns.id).expect("rows").is_empty());
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
    store.create_namespace(&prod).expect("create");
    assert_eq!(
        store.create_namespace(&prod).err().map(|e| e.code()),
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
    store.delete(&default(), &name("db")).expect("delete");
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
    store.delete(&default(), &name("a")).expect("delete");
    let c = set(&store, "c", b"1").index;
    assert_eq!(c, a, "a freed index is reused");
}

/// Each version keeps its time and actor.
pub fn versions_record_time_and_actor<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    let before = coffer_types::Timestamp::now();
    set(&store, "k", b"1");
    let v = SecretBytes::copy_from(b"2");
    store
        .set(&default(), &name("k"), Write::new(&v, "uid:1000"))
        .expect("set");
    let versions = store.versions(&default(), &name("k")).expect("versions");
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0].actor, "uid:0");
    assert_eq!(versions[1].actor, "uid:1000");
    assert!(versions.iter().all(|v| v.created >= before));
}

/// Metadata describes the secret and never carries its value.
pub fn metadata_holds_no_value<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    set(&store, "k", b"sk_live_metadata_probe");
    set(&store, "k", b"sk_live_metadata_probe_2");
    let meta = store.metadata(&default(), &name("k")).expect("meta");
    assert_eq!(meta.name.as_str(), "k");
    assert_eq!(meta.current.get(), 2);
    assert_eq!(meta.versions.len(), 2);
    let shown = format!("{meta:?}");
    assert!(!shown.contains("sk_live"), "{shown}");
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
    store.create_namespace(&default()).expect("ns");
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

/// A value that does not fit its kind is refused, saying why; a kind is kept by later writes.
pub fn kinds_are_checked_and_kept<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    let err = write_with(&store, "l", b"one\ntwo", |w| w.kind = Some(Kind::Line))
        .expect_err("a line with a newline");
    assert_eq!(err.code(), ErrorCode::InvalidRequest);
    assert!(err.to_string().contains("newline"), "{err}");
    write_with(&store, "l", b"one", |w| w.kind = Some(Kind::Line)).expect("line");
    // No kind given: the secret keeps `line`, so a newline is still refused.
    let err = write_with(&store, "l", b"a\nb", |_| {}).expect_err("kept kind");
    assert_eq!(err.code(), ErrorCode::InvalidRequest);
    write_with(&store, "e", b"A=1\nB=2", |w| w.kind = Some(Kind::Env)).expect("env");
    assert!(write_with(&store, "e", b"not env", |_| {}).is_err());
    write_with(&store, "j", br#"{"a":1}"#, |w| w.kind = Some(Kind::Kv)).expect("kv");
    assert!(write_with(&store, "j", b"[1]", |_| {}).is_err());
    write_with(&store, "f", &[0xff, 0], |w| w.new_kind = Kind::File).expect("file");
    let got = store.get(&default(), &name("f"), None).expect("get");
    assert_eq!(got.kind, Kind::File);
    // An explicit kind changes it.
    write_with(&store, "l", b"x\ny", |w| w.kind = Some(Kind::Text)).expect("text");
    assert_eq!(
        store.metadata(&default(), &name("l")).expect("meta").kind,
        Kind::Text
    );
}

/// `Create` refuses a taken name; `Update` refuses a missing one.
pub fn write_modes_create_and_update<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    let err = write_with(&store, "k", b"v", |w| w.mode = WriteMode::Update)
        .expect_err("update of nothing");
    assert_eq!(err.code(), ErrorCode::NotFound);
    write_with(&store, "k", b"v", |w| w.mode = WriteMode::Create).expect("create");
    let err =
        write_with(&store, "k", b"v", |w| w.mode = WriteMode::Create).expect_err("create twice");
    assert_eq!(err.code(), ErrorCode::Conflict);
    let w = write_with(&store, "k", b"v2", |w| w.mode = WriteMode::Update).expect("update");
    assert_eq!(w.version.get(), 2);
}

/// Past `max_versions`, the oldest versions go; lowering it prunes at once.
pub fn max_versions_keeps_the_newest<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    write_with(&store, "k", b"1", |w| w.max_versions = Some(3)).expect("set");
    for v in 2..=5 {
        set(&store, "k", format!("{v}").as_bytes());
    }
    let kept: Vec<u32> = store
        .versions(&default(), &name("k"))
        .expect("versions")
        .iter()
        .map(|v| v.version.get())
        .collect();
    assert_eq!(kept, [3, 4, 5]);
    assert_eq!(
        code(store.get(&default(), &name("k"), Version::new(2))),
        ErrorCode::NotFound
    );
    store
        .describe(
            &default(),
            &name("k"),
            Describe {
                max_versions: Some(1),
                ..Describe::default()
            },
        )
        .expect("describe");
    assert_eq!(store.versions(&default(), &name("k")).expect("v").len(), 1);
    assert_eq!(get(&store, "k"), b"5");
    // 0 is unlimited again.
    write_with(&store, "k", b"6", |w| w.max_versions = Some(0)).expect("set");
    set(&store, "k", b"7");
    assert_eq!(store.versions(&default(), &name("k")).expect("v").len(), 3);
}

/// A description changes without a new version and never shows in a value.
pub fn describe_writes_no_version<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    write_with(&store, "k", b"v", |w| w.description = Some("first".into())).expect("set");
    store
        .describe(
            &default(),
            &name("k"),
            Describe {
                description: Some("Stripe live key".into()),
                ..Describe::default()
            },
        )
        .expect("describe");
    let meta = store.metadata(&default(), &name("k")).expect("meta");
    assert_eq!(meta.description.as_deref(), Some("Stripe live key"));
    assert_eq!(meta.current, Version::FIRST);
    // A later write keeps the description unless it gives one.
    set(&store, "k", b"v2");
    let meta = store.metadata(&default(), &name("k")).expect("meta");
    assert_eq!(meta.description.as_deref(), Some("Stripe live key"));
    let err = store
        .describe(&default(), &name("nope"), Describe::default())
        .expect_err("missing");
    assert_eq!(err.code(), ErrorCode::NotFound);
}

/// Revoke: unreadable at once, the name and its index free, the history kept.
pub fn revoke_keeps_history_and_frees_the_name<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    let first = set(&store, "k", b"one");
    set(&store, "k", b"two");
    store.revoke(&default(), &name("k")).expect("revoke");
    assert_eq!(
        code(store.get(&default(), &name("k"), None)),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(store.revoke(&default(), &name("k"))),
        ErrorCode::NotFound
    );
    assert!(names(&store, &ListQuery::default()).0.is_empty());
    let again = set(&store, "k", b"three");
    assert_eq!(again.version, Version::FIRST);
    assert!(again.created);
    assert_eq!(again.index, first.index, "the freed index is reused");
    let revoked = store.revoked(&default()).expect("revoked");
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].name.as_str(), "k");
    assert!(revoked[0].revoked.is_some());
    assert_eq!(revoked[0].versions.len(), 2);
    // The rows stay with their history (a backend short of space, TPM NV, may erase the
    // ciphertexts of what can never be read again).
    let ns = backend.namespaces().expect("ns")[0].id;
    let rows = backend.revoked(&ns).expect("rows");
    assert!(rows[0].revoked.is_some());
    assert_eq!(backend.versions(&rows[0].id).expect("versions").len(), 2);
}

/// Destroy erases chosen ciphertexts; the versions stay listed as destroyed.
pub fn destroy_erases_ciphertexts_for_good<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    for v in ["1", "2", "3"] {
        set(&store, "k", v.as_bytes());
    }
    let v = |n| Version::new(n).expect("nonzero");
    assert_eq!(
        store
            .destroy(&default(), &name("k"), &[v(2), v(1), v(2)])
            .expect("destroy"),
        [v(1), v(2)]
    );
    let err = store
        .get(&default(), &name("k"), Some(v(1)))
        .expect_err("destroyed");
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert!(err.to_string().contains("destroyed"), "{err}");
    assert_eq!(get(&store, "k"), b"3");
    let states: Vec<bool> = store
        .versions(&default(), &name("k"))
        .expect("versions")
        .iter()
        .map(|i| i.destroyed)
        .collect();
    assert_eq!(states, [true, true, false]);
    let ns = backend.namespaces().expect("ns")[0].id;
    let row = &backend.secrets(&ns).expect("rows")[0];
    let raw = backend.versions(&row.id).expect("versions");
    assert!(raw[0].ciphertext.is_none() && raw[1].ciphertext.is_none());
    assert_eq!(
        code(store.destroy(&default(), &name("k"), &[v(9)])),
        ErrorCode::NotFound
    );
    // Destroying again is not an error.
    store
        .destroy(&default(), &name("k"), &[v(1)])
        .expect("again");
}

/// Lists are sorted, filtered by prefix, and paged with a cursor.
pub fn list_pages_by_prefix_and_cursor<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    for n in ["app/a", "app/b", "app/c", "db/a", "db/b", "zz"] {
        set(&store, n, b"v");
    }
    let q = |prefix: Option<&str>, after: Option<&str>, limit| ListQuery {
        prefix: prefix.map(str::to_owned),
        after: after.map(name),
        limit,
    };
    assert_eq!(
        names(&store, &q(Some("app/"), None, 2)),
        (
            vec!["app/a".to_owned(), "app/b".to_owned()],
            Some("app/b".to_owned())
        )
    );
    assert_eq!(
        names(&store, &q(Some("app/"), Some("app/b"), 2)),
        (vec!["app/c".to_owned()], None)
    );
    assert_eq!(names(&store, &q(None, Some("db/b"), 10)).0, ["zz"]);
    let summaries = store
        .summaries(&default(), &q(Some("db/"), None, 10))
        .expect("summaries");
    assert_eq!(summaries.items.len(), 2);
    assert_eq!(summaries.items[0].name.as_str(), "db/a");
    assert_eq!(summaries.items[0].current, Version::FIRST);
}

/// `cas`: 0 writes only a new secret, N only over version N; `cas_required` makes it mandatory.
pub fn check_and_set_is_decided_in_the_transaction<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    write_with(&store, "k", b"1", |w| w.cas = Some(0)).expect("cas 0 on a new secret");
    let err = write_with(&store, "k", b"x", |w| w.cas = Some(0)).expect_err("cas 0 again");
    assert_eq!(err.code(), ErrorCode::Conflict);
    assert!(err.to_string().contains("check-and-set"), "{err}");
    write_with(&store, "k", b"2", |w| w.cas = Some(1)).expect("cas 1");
    let err = write_with(&store, "k", b"x", |w| w.cas = Some(1)).expect_err("stale cas");
    assert_eq!(err.code(), ErrorCode::Conflict);
    assert_eq!(get(&store, "k"), b"2");
    store
        .describe(
            &default(),
            &name("k"),
            Describe {
                cas_required: Some(true),
                ..Describe::default()
            },
        )
        .expect("describe");
    let err = write_with(&store, "k", b"x", |_| {}).expect_err("cas required");
    assert!(err.to_string().contains("required"), "{err}");
    write_with(&store, "k", b"3", |w| w.cas = Some(2)).expect("cas 2");
    assert!(
        store
            .metadata(&default(), &name("k"))
            .expect("meta")
            .cas_required
    );
}

/// Soft deletion marks versions unreadable and undeletion restores them; custom metadata is
/// kept, replaced whole, and shown with a read. No version is written by either.
pub fn soft_deletion_and_custom_metadata_live_in_the_metadata<B: Backend>(
    make: &dyn Fn() -> Made<B>,
) {
    let (backend, _guard) = make();
    let store = open(&backend);
    set(&store, "k", b"1");
    set(&store, "k", b"2");
    let custom: std::collections::BTreeMap<String, String> =
        [("owner".to_owned(), "ops".to_owned())].into();
    let change = |d: Describe| store.describe(&default(), &name("k"), d).expect("describe");
    change(Describe {
        custom_metadata: Some(custom.clone()),
        mark: Some(crate::Mark::DeleteLatest),
        ..Describe::default()
    });
    let gone = store
        .get(&default(), &name("k"), None)
        .expect_err("deleted");
    match gone {
        StoreError::Gone(g) => {
            assert_eq!(g.version.get(), 2);
            assert!(!g.destroyed && g.deletion.is_some());
            assert_eq!(g.custom_metadata, custom);
        }
        other => panic!("expected Gone, got {other}"),
    }
    let one = store
        .get(&default(), &name("k"), Version::new(1))
        .expect("v1");
    assert_eq!(one.value.expose_secret(), b"1");
    assert_eq!(one.custom_metadata, custom);
    let meta = store.metadata(&default(), &name("k")).expect("meta");
    assert_eq!(meta.current.get(), 2, "no version written");
    assert!(meta.versions[1].deleted.is_some() && meta.versions[0].deleted.is_none());
    change(Describe {
        mark: Some(crate::Mark::Undelete(vec![Version::new(2).expect("2")])),
        ..Describe::default()
    });
    assert_eq!(get(&store, "k"), b"2");
    // Deleting a version that does not exist is passed over.
    change(Describe {
        mark: Some(crate::Mark::Delete(vec![Version::new(9).expect("9")])),
        ..Describe::default()
    });
    assert_eq!(get(&store, "k"), b"2");
    // delete_version_after schedules deletion of new versions.
    change(Describe {
        delete_version_after: Some(3600),
        custom_metadata: Some(Default::default()),
        ..Describe::default()
    });
    set(&store, "k", b"3");
    let read = store
        .get(&default(), &name("k"), None)
        .expect("not yet deleted");
    assert!(
        read.deletion
            .is_some_and(|d| d > coffer_types::Timestamp::now())
    );
    assert!(read.custom_metadata.is_empty());
}
