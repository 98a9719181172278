//! Snapshots and imports: a snapshot of a store with data imports into an empty store and
//! reads back identical; an import into a store that is not empty is refused.

use coffer_crypto::MasterKey;
use coffer_types::{ErrorCode, Namespace, Version};

use super::support::{Made, default, get, name, open_with, set};
use crate::backend::Backend;
use crate::snapshot::SnapshotRow;
use crate::{Change, SecretStore, StoreError};

fn snapshot<B: Backend>(backend: &B) -> Vec<SnapshotRow> {
    let mut rows = Vec::new();
    backend
        .snapshot(&mut |row| {
            rows.push(row);
            Ok(())
        })
        .expect("snapshot");
    rows
}

/// A store with two namespaces, versions, a revoked secret and a destroyed version.
fn fill<B: Backend>(backend: &std::sync::Arc<B>, master: &MasterKey) {
    backend.put_header(b"{\"test\":1}").expect("header");
    let store = open_with(backend, master.duplicate());
    let other = Namespace::parse("team/other").expect("a valid namespace");
    store
        .create_namespace(&other, Change::by("uid:0"))
        .expect("namespace");
    for i in 0..5 {
        set(&store, &format!("app/k{i}"), format!("one-{i}").as_bytes());
        set(&store, &format!("app/k{i}"), format!("two-{i}").as_bytes());
    }
    set(&store, "gone", b"revoked-value");
    store
        .revoke(&default(), &name("gone"), Change::by("uid:0"))
        .expect("revoke");
    store
        .destroy(
            &default(),
            &name("app/k0"),
            &[Version::new(1).expect("nonzero")],
            Change::by("uid:0"),
        )
        .expect("destroy");
    let value = coffer_crypto::SecretBytes::copy_from(b"elsewhere");
    store
        .set(&other, &name("x"), crate::Write::new(&value, "uid:0"))
        .expect("set");
}

/// Every row of a filled store comes out of a snapshot in order, and imported into an empty
/// store reads back identical: the same snapshot, every value, and a feed that goes on from
/// the snapshot's head (an older revision asks for a resync). A backend that cannot import
/// says `unsupported`.
pub fn a_snapshot_imports_into_an_empty_store<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let master = MasterKey::generate().expect("random");
    let (from, _g1) = make();
    fill(&from, &master);
    let rows = snapshot(&*from);
    let mut counts = crate::Counts::default();
    rows.iter().for_each(|r| counts.add(r));
    // Header, 2 namespaces, 5 + 1 revoked + 1 secrets, 10 + 1 + 1 versions, the head.
    assert_eq!(
        (
            counts.headers,
            counts.namespaces,
            counts.secrets,
            counts.versions,
            counts.event_heads
        ),
        (1, 2, 7, 12, 1),
        "{counts:?}"
    );
    assert!(matches!(rows[0], SnapshotRow::Header(_)));
    let head = match rows.last() {
        Some(SnapshotRow::EventHead(h)) => *h,
        other => panic!("the snapshot ends with {other:?}"),
    };
    assert_eq!(head, from.feed().head());
    let (to, _g2) = make();
    let mut iter = rows.clone().into_iter().map(Ok);
    match to.import(&mut iter) {
        Err(StoreError::Unsupported(_)) => return,
        Err(e) => panic!("import: {e}"),
        Ok(c) => assert_eq!(c, counts),
    }
    assert_eq!(snapshot(&*to), rows, "the import reads back identical");
    let store = open_with(&to, master.duplicate());
    assert_eq!(get(&store, "app/k3"), b"two-3");
    let old = store
        .get(&default(), &name("app/k3"), Version::new(1))
        .expect("an old version");
    assert_eq!(old.value.expose_secret(), b"one-3");
    assert_eq!(
        store
            .get(&default(), &name("app/k0"), Version::new(1))
            .map(|_| ())
            .expect_err("destroyed")
            .code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        store
            .revoked(&default(), &Default::default())
            .expect("revoked")
            .items
            .len(),
        1
    );
    // The feed goes on from the snapshot's head; an older revision is told to resync.
    assert_eq!(to.feed().head(), head);
    let page = to.events(0, 10).expect("events");
    assert_eq!((page.floor, page.head), (head, head));
    assert!(matches!(
        store.events(head - 1, 10),
        Err(StoreError::Resync { .. })
    ));
    // Writes go on: new names get free indices, revisions go up.
    let w = set(&store, "new", b"after-import");
    assert!(w.created);
    assert!(store.head() > head);
    assert_eq!(get(&store, "new"), b"after-import");
}

/// An import into a store with anything in it is refused and changes nothing.
pub fn an_import_into_a_store_with_data_is_refused<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let master = MasterKey::generate().expect("random");
    let (from, _g1) = make();
    fill(&from, &master);
    let rows = snapshot(&*from);
    let (to, _g2) = make();
    let store = open_with(&to, MasterKey::generate().expect("random"));
    set(&store, "mine", b"kept");
    let before = snapshot(&*to);
    let mut iter = rows.into_iter().map(Ok);
    let err = to.import(&mut iter).expect_err("refused");
    assert!(
        matches!(err.code(), ErrorCode::Conflict | ErrorCode::Unsupported),
        "{err}"
    );
    assert_eq!(snapshot(&*to), before, "nothing changed");
    assert_eq!(get(&store, "mine"), b"kept");
}
