//! The event feed: every change numbered in its own transaction, in order, without a value,
//! readable again from the kept rows, pruned by the retention window.

use coffer_types::EventAction;

use super::support::{Made, default, name, open, open_with, set, write_with};
use crate::backend::Backend;
use crate::{Change, Describe, Mark, Retention, SecretStore, StoreError};

fn actions<S: SecretStore + ?Sized>(store: &S, after: u64) -> Vec<(u64, EventAction)> {
    store
        .events(after, 1000)
        .expect("events")
        .iter()
        .map(|e| (e.revision, e.action))
        .collect()
}

/// Each change gets the next revision and an event naming what changed, by whom; a refused
/// change gets neither; the events read back from memory and from the kept rows alike.
pub fn every_change_is_numbered_in_order<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let master = coffer_crypto::MasterKey::generate().expect("random");
    let store = open_with(&backend, master.duplicate());
    let start = store.head();
    let created = store.events(start - 1, 1).expect("the first event");
    assert_eq!(
        created[0].action,
        EventAction::NamespaceCreated,
        "creating the default namespace is the first change"
    );
    let first = set(&store, "app/db", b"hunter2-value");
    set(&store, "app/db", b"second-value");
    // A refused write (create over an existing name) is not an event.
    let refused = write_with(&store, "app/db", b"x", |w| {
        w.mode = crate::WriteMode::Create
    });
    assert!(matches!(refused, Err(StoreError::Conflict(_))));
    let by = Change::by("token:abc");
    store
        .describe(
            &default(),
            &name("app/db"),
            Describe {
                description: Some("the db".into()),
                ..Describe::default()
            },
            by,
        )
        .expect("describe");
    store
        .describe(
            &default(),
            &name("app/db"),
            Describe {
                mark: Some(Mark::Delete(vec![first.version])),
                ..Describe::default()
            },
            by,
        )
        .expect("mark");
    store
        .destroy(&default(), &name("app/db"), &[first.version], by)
        .expect("destroy");
    store
        .revoke(&default(), &name("app/db"), by)
        .expect("revoke");
    set(&store, "gone", b"v");
    store
        .delete(&default(), &name("gone"), by.named(EventAction::Removed))
        .expect("delete");
    // A quiet change is not an event.
    let value = coffer_crypto::SecretBytes::copy_from(b"v");
    let mut quiet = crate::Write::new(&value, "coffer");
    quiet.change = quiet.change.quiet();
    store.set(&default(), &name("quiet"), quiet).expect("quiet");
    // A failed change to a missing secret is not an event either.
    assert!(store.revoke(&default(), &name("nope"), by).is_err());

    let got = actions(&store, start);
    use EventAction::*;
    let want = [
        Written, Written, Described, Deleted, Destroyed, Revoked, Written, Removed,
    ];
    assert_eq!(
        got.iter().map(|(_, a)| *a).collect::<Vec<_>>(),
        want,
        "{got:?}"
    );
    let revs: Vec<u64> = got.iter().map(|(r, _)| *r).collect();
    assert_eq!(revs, (start + 1..=start + 8).collect::<Vec<_>>());
    assert_eq!(store.head(), start + 8);

    let all = store.events(start, 1000).expect("events");
    assert_eq!(all[0].name.as_deref(), Some("app/db"));
    assert_eq!(all[0].version, Some(1));
    assert_eq!(all[1].version, Some(2));
    assert_eq!(all[2].actor, "token:abc");
    assert_eq!(all[3].versions, vec![1]);
    assert_eq!(all[4].versions, vec![1]);
    for e in &all {
        let text = serde_json::to_string(&**e).expect("json");
        assert!(
            !text.contains("hunter2"),
            "an event carries no value: {text}"
        );
        assert_eq!(e.namespace, default().as_str());
    }
    // Paging.
    assert_eq!(store.events(start, 2).expect("page").len(), 2);
    assert!(store.events(store.head(), 10).expect("none").is_empty());
    // The same events from the kept rows: sealing drops the store, and with it the ring.
    drop(store);
    assert!(
        backend.feed().after(start, 10).is_none(),
        "the ring was cleared"
    );
    let store = open_with(&backend, master);
    assert_eq!(actions(&store, start), got);
}

/// A consumer may resume from any kept revision; one asking for a pruned or a future
/// revision is told to resync.
pub fn pruned_events_ask_for_a_resync<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    // Where this store's numbering starts (0, or a base above an earlier start's).
    let before = store.head();
    let first = backend.events(0, 1).expect("events").rows[0].revision;
    for i in 0..10 {
        set(&store, &format!("k{i}"), b"v");
    }
    let head = store.head();
    assert_eq!(head, before + 10);
    let keep_three = Retention {
        max_age_ms: u64::MAX,
        max_events: 3,
    };
    let mut pruned = 0;
    loop {
        let n = store.prune_events(keep_three).expect("prune");
        pruned += n;
        if n == 0 {
            break;
        }
    }
    assert_eq!(pruned, head - 3 - (first - 1));
    backend.feed().clear();
    let rest = store.events(head - 3, 100).expect("the kept three");
    assert_eq!(rest.len(), 3);
    for asked in [0, head - 4, head + 1] {
        match store.events(asked, 100) {
            Err(StoreError::Resync {
                oldest, head: h, ..
            }) => {
                assert_eq!((oldest, h), (head - 3, head));
            }
            other => panic!("asked {asked}: {other:?}"),
        }
    }
}
