//! Conformance cases: lists, filters, folders, revoked secrets, and the name index under
//! concurrent changes.

use std::sync::Arc;

use coffer_crypto::MasterKey;
use coffer_types::Version;

use super::support::{Made, all_names, default, name, names, open, open_with, set};
use crate::backend::Backend;
use crate::{ListQuery, NameFilter, SecretStore, StoreError, WriteMode};

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
        store
            .delete(&default(), &n, crate::Change::by("uid:0"))
            .expect("delete");
    }
    assert!(names(&store, &ListQuery::default()).0.is_empty());
    let ns = &backend.namespaces().expect("namespaces")[0];
    assert!(backend.secrets(&ns.id).expect("rows").is_empty());
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
        filter: None,
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

fn filter(f: impl Fn(&str) -> bool + Send + Sync + 'static) -> NameFilter {
    Arc::new(move |n: &coffer_types::SecretName| f(n.as_str()))
}

/// A filter is applied while a page is filled: refused names are skipped, never returned and
/// never counted, and the cursor is the last name returned.
pub fn list_filter_fills_pages<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    for i in 1..=9 {
        set(&store, &format!("a{i}"), b"v");
    }
    set(&store, "b1", b"v");
    let odd = filter(|n| n.ends_with(['1', '3', '5', '7', '9']));
    let q = |after: Option<&str>, limit, f: &NameFilter| ListQuery {
        prefix: Some("a".to_owned()),
        after: after.map(name),
        limit,
        filter: Some(f.clone()),
    };
    let page = |after, limit| names(&store, &q(after, limit, &odd));
    assert_eq!(
        page(None, 2),
        (
            vec!["a1".to_owned(), "a3".to_owned()],
            Some("a3".to_owned())
        )
    );
    assert_eq!(
        page(Some("a3"), 2),
        (
            vec!["a5".to_owned(), "a7".to_owned()],
            Some("a7".to_owned())
        )
    );
    assert_eq!(page(Some("a7"), 2), (vec!["a9".to_owned()], None));
    // The last accepted name fills the page exactly: no cursor, no empty page after it.
    assert_eq!(
        page(Some("a5"), 2),
        (vec!["a7".to_owned(), "a9".to_owned()], None)
    );
    let none = filter(|_| false);
    assert_eq!(names(&store, &q(None, 5, &none)), (vec![], None));
    // A cursor that is not itself a name, and a limit past any size.
    assert_eq!(
        names(&store, &q(Some("a4"), usize::MAX, &odd)).0,
        ["a5", "a7", "a9"]
    );
    let summaries = store
        .summaries(&default(), &q(None, 3, &odd))
        .expect("summaries");
    let shown: Vec<&str> = summaries.items.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(shown, ["a1", "a3", "a5"]);
    assert_eq!(summaries.next.as_ref().map(|n| n.as_str()), Some("a5"));
    assert_eq!(summaries.items[0].current, Version::FIRST);
}

/// `keys` lists one level of a folder: names as their last segment, subfolders once each with
/// a trailing `/`, sorted; a subfolder shows when the filter accepts a name under it.
pub fn keys_list_one_level<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    for n in [
        "app/a",
        "app/b/c",
        "app/b/d",
        "app/e/f/g",
        "app/b",
        "app/b-x",
        "app/b0",
        "apple",
        "top",
    ] {
        set(&store, n, b"v");
    }
    // A folder with more names than one chunk of the index, most of them refused below.
    for i in 0..40 {
        set(&store, &format!("big/x/{i:02}"), b"v");
    }
    set(&store, "big/y", b"v");
    let keys =
        |prefix: &str, f: Option<&NameFilter>| store.keys(&default(), prefix, f).expect("keys");
    assert_eq!(keys("app/", None), ["a", "b", "b-x", "b/", "b0", "e/"]);
    assert_eq!(
        keys("app", None),
        keys("app/", None),
        "the trailing / is implied"
    );
    assert_eq!(keys("", None), ["app/", "apple", "big/", "top"]);
    assert_eq!(keys("app/b/", None), ["c", "d"]);
    assert_eq!(keys("app/e/", None), ["f/"]);
    assert!(keys("nope/", None).is_empty());
    let deep = filter(|n| n.ends_with('d') || n.ends_with('g'));
    assert_eq!(keys("app/", Some(&deep)), ["b/", "e/"]);
    assert_eq!(keys("", Some(&deep)), ["app/"]);
    let late = filter(|n| n == "big/x/39" || n == "big/y");
    assert_eq!(keys("big/", Some(&late)), ["x/", "y"]);
    assert_eq!(keys("big/x/", Some(&late)), ["39"]);
    assert_eq!(keys("big/x/", None).len(), 40);
    let nothing = filter(|_| false);
    assert!(keys("", Some(&nothing)).is_empty());
}

/// Revoked secrets page by name, prefix and filter; the secrets sharing a name stay together.
pub fn revoked_pages_by_prefix_and_cursor<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    for n in ["app/a", "app/a", "app/b", "app/c", "db/d"] {
        set(&store, n, b"v");
        store
            .revoke(&default(), &name(n), crate::Change::by("uid:0"))
            .expect("revoke");
    }
    set(&store, "app/live", b"v");
    let q = |after: Option<&str>, limit, f: Option<NameFilter>| ListQuery {
        prefix: Some("app/".to_owned()),
        after: after.map(name),
        limit,
        filter: f,
    };
    let page = |query: &ListQuery| {
        let page = store.revoked(&default(), query).expect("revoked");
        assert!(page.items.iter().all(|m| m.revoked.is_some()));
        (
            page.items
                .iter()
                .map(|m| m.name.as_str().to_owned())
                .collect::<Vec<_>>(),
            page.next.map(|n| n.as_str().to_owned()),
        )
    };
    let first = store
        .revoked(&default(), &q(None, 1, None))
        .expect("revoked");
    assert_eq!(first.items.len(), 2, "both revoked app/a on one page");
    assert!(first.items[0].revoked <= first.items[1].revoked);
    assert_eq!(first.next.as_ref().map(|n| n.as_str()), Some("app/a"));
    assert_eq!(
        page(&q(Some("app/a"), 1, None)),
        (vec!["app/b".to_owned()], Some("app/b".to_owned()))
    );
    assert_eq!(
        page(&q(Some("app/b"), 1, None)),
        (vec!["app/c".to_owned()], None)
    );
    let not_b = filter(|n| n != "app/b");
    assert_eq!(
        page(&q(Some("app/a"), 1, Some(not_b))),
        (vec!["app/c".to_owned()], None)
    );
    assert_eq!(page(&ListQuery::default()).0.len(), 5);
    assert_eq!(
        page(&q(None, usize::MAX, None)).0,
        ["app/a", "app/a", "app/b", "app/c"]
    );
}

/// The name index stays exact while threads create, delete, revoke and re-create the same
/// few names, both while it is being built and after: its listing equals a fresh scan. The
/// stores under test read 3 rows at a time when they build their index, so a build spans
/// many pages, each its own transaction, with the changes landing between them.
pub fn index_stays_exact_under_concurrent_changes<B: Backend>(make: &dyn Fn() -> Made<B>) {
    const NAMES: [&str; 4] = ["s/a", "s/b", "t", "u/v/w"];
    const THREADS: u64 = 8;
    const OPS: usize = 40;
    let (backend, _guard) = make();
    let master = MasterKey::generate().expect("random");
    {
        let first = open_with(&backend, master.duplicate());
        for i in 0..40 {
            set(&first, &format!("pre/{i:02}"), b"v");
        }
        for n in &NAMES[..3] {
            set(&first, n, b"v");
        }
    }
    let churn = |store: &crate::EncryptedStore<B>, round: u64| {
        std::thread::scope(|s| {
            for t in 0..THREADS {
                s.spawn(move || {
                    // xorshift: a different, repeatable sequence per thread and round.
                    let mut x = (t + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ round;
                    for _ in 0..OPS {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let n = name(NAMES[(x % NAMES.len() as u64) as usize]);
                        let value = coffer_crypto::SecretBytes::copy_from(b"v");
                        let result = match (x >> 8) % 5 {
                            0 | 1 => store
                                .set(&default(), &n, crate::Write::new(&value, "uid:0"))
                                .map(drop),
                            2 => store.delete(&default(), &n, crate::Change::by("uid:0")),
                            3 => store.revoke(&default(), &n, crate::Change::by("uid:0")),
                            _ => {
                                let mut w = crate::Write::new(&value, "uid:0");
                                w.mode = WriteMode::Create;
                                store.set(&default(), &n, w).map(drop)
                            }
                        };
                        match result {
                            Ok(()) | Err(StoreError::NotFound(_) | StoreError::Conflict(_)) => {}
                            Err(e) => panic!("unexpected failure: {e}"),
                        }
                        if x.is_multiple_of(7) {
                            store.list(&default(), &ListQuery::default()).expect("list");
                        }
                    }
                });
            }
        });
    };
    // Round 1 starts at once, racing the build; round 2 runs on the built index.
    let store = crate::EncryptedStore::open_with_scan_page(backend.clone(), master.duplicate(), 3)
        .expect("open");
    churn(&store, 1);
    let fresh = open_with(&backend, master.duplicate());
    assert_eq!(
        all_names(&store, 3),
        all_names(&fresh, 1000),
        "after round 1"
    );
    drop(fresh);
    churn(&store, 2);
    let listed = all_names(&store, 3);
    let fresh = open_with(&backend, master.duplicate());
    assert_eq!(
        listed,
        all_names(&fresh, 1000),
        "the index equals a fresh scan"
    );
    assert_eq!(
        store.keys(&default(), "", None).expect("keys"),
        fresh.keys(&default(), "", None).expect("keys")
    );
    let ns = backend.namespaces().expect("namespaces")[0].id;
    assert_eq!(listed.len(), backend.secrets(&ns).expect("rows").len());
    assert_eq!(listed.iter().filter(|n| n.starts_with("pre/")).count(), 40);
}

/// [`Backend::names`] pages through every live secret once, in id order, with its sealed
/// name, and leaves revoked secrets out.
pub fn name_pages_cover_every_live_secret<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open_with(&backend, MasterKey::generate().expect("random"));
    for i in 0..20 {
        set(&store, &format!("n/{i:02}"), b"v");
    }
    store
        .revoke(&default(), &name("n/05"), crate::Change::by("uid:0"))
        .expect("revoke");
    store
        .delete(&default(), &name("n/06"), crate::Change::by("uid:0"))
        .expect("delete");
    let ns = backend.namespaces().expect("namespaces")[0].id;
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = backend.names(&ns, after.as_ref(), 3).expect("names");
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(*last);
        paged.extend(page);
    }
    assert!(
        paged.windows(2).all(|w| w[0].0 < w[1].0),
        "in id order, once each"
    );
    let mut rows: Vec<_> = backend
        .secrets(&ns)
        .expect("rows")
        .into_iter()
        .map(|r| (r.id, r.name_ct))
        .collect();
    rows.sort_unstable_by_key(|(id, _)| *id);
    assert_eq!(paged, rows);
    assert_eq!(paged.len(), 18);
}
