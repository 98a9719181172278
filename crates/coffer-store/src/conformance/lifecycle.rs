//! Conformance cases: versions, metadata, kinds, revocation and destruction, check-and-set,
//! derived writes (merge patches), and inputs at the edges of their types.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use coffer_crypto::SecretBytes;
use coffer_types::custom::CustomMetadataChange;
use coffer_types::{ErrorCode, Kind, Timestamp, Version};

use super::support::{Made, code, default, get, name, names, open, set, write_with};
use crate::backend::Backend;
use crate::{Describe, ListQuery, Mark, SecretStore, StoreError, Write, WriteMode};

/// Each version keeps its time and actor.
pub fn versions_record_time_and_actor<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    let before = Timestamp::now();
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
            crate::Change::by("uid:0"),
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
            crate::Change::by("uid:0"),
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
        .describe(
            &default(),
            &name("nope"),
            Describe::default(),
            crate::Change::by("uid:0"),
        )
        .expect_err("missing");
    assert_eq!(err.code(), ErrorCode::NotFound);
}

/// Revoke: unreadable at once, the name and its index free, the history kept.
pub fn revoke_keeps_history_and_frees_the_name<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    let first = set(&store, "k", b"one");
    set(&store, "k", b"two");
    store
        .revoke(&default(), &name("k"), crate::Change::by("uid:0"))
        .expect("revoke");
    assert_eq!(
        code(store.get(&default(), &name("k"), None)),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(store.revoke(&default(), &name("k"), crate::Change::by("uid:0"))),
        ErrorCode::NotFound
    );
    assert!(names(&store, &ListQuery::default()).0.is_empty());
    let again = set(&store, "k", b"three");
    assert_eq!(again.version, Version::FIRST);
    assert!(again.created);
    assert_eq!(again.index, first.index, "the freed index is reused");
    let revoked = store
        .revoked(&default(), &ListQuery::default())
        .expect("revoked")
        .items;
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
            .destroy(
                &default(),
                &name("k"),
                &[v(2), v(1), v(2)],
                crate::Change::by("uid:0")
            )
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
        code(store.destroy(&default(), &name("k"), &[v(9)], crate::Change::by("uid:0"))),
        ErrorCode::NotFound
    );
    // Destroying again is not an error.
    store
        .destroy(&default(), &name("k"), &[v(1)], crate::Change::by("uid:0"))
        .expect("again");
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
            crate::Change::by("uid:0"),
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
    let custom: BTreeMap<String, String> = [("owner".to_owned(), "ops".to_owned())].into();
    let change = |d: Describe| {
        store
            .describe(&default(), &name("k"), d, crate::Change::by("uid:0"))
            .expect("describe")
    };
    change(Describe {
        custom_metadata: Some(CustomMetadataChange::Replace(custom.clone())),
        mark: Some(Mark::DeleteLatest),
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
        mark: Some(Mark::Undelete(vec![Version::new(2).expect("2")])),
        ..Describe::default()
    });
    assert_eq!(get(&store, "k"), b"2");
    // Deleting a version that does not exist is passed over.
    change(Describe {
        mark: Some(Mark::Delete(vec![Version::new(9).expect("9")])),
        ..Describe::default()
    });
    assert_eq!(get(&store, "k"), b"2");
    // delete_version_after schedules deletion of new versions.
    change(Describe {
        delete_version_after: Some(3600),
        custom_metadata: Some(CustomMetadataChange::Replace(BTreeMap::new())),
        ..Describe::default()
    });
    set(&store, "k", b"3");
    let read = store
        .get(&default(), &name("k"), None)
        .expect("not yet deleted");
    assert!(read.deletion.is_some_and(|d| d > Timestamp::now()));
    assert!(read.custom_metadata.is_empty());
}

/// A derived write that appends `suffix` to the newest value, counting its calls.
fn append(suffix: &'static str, calls: &Arc<AtomicUsize>) -> crate::DeriveValue {
    let calls = calls.clone();
    Box::new(move |current: &SecretBytes, _kind: Kind| {
        calls.fetch_add(1, Ordering::SeqCst);
        let mut next = current.expose_secret().to_vec();
        next.extend_from_slice(suffix.as_bytes());
        Ok(SecretBytes::from_vec(next))
    })
}

fn derive<S: SecretStore + ?Sized>(
    store: &S,
    n: &str,
    derive: crate::DeriveValue,
    f: impl FnOnce(&mut Write<'_>),
) -> Result<crate::Written, StoreError> {
    let mut w = Write::derived(derive, "uid:0");
    f(&mut w);
    store.set(&default(), &name(n), w)
}

/// A derived write computes its value from the newest version inside the write's
/// transaction: racing derived writes lose no update, check-and-set still applies, and a
/// refusal from the closure writes nothing.
pub fn derived_writes_read_and_write_in_one_transaction<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    let calls = Arc::new(AtomicUsize::new(0));
    let err = derive(&store, "k", append("+", &calls), |_| {}).expect_err("no secret");
    assert_eq!(err.code(), ErrorCode::NotFound);
    let err = derive(&store, "k", append("+", &calls), |w| {
        w.mode = WriteMode::Upsert
    })
    .expect_err("no secret, whatever the mode");
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    write_with(&store, "k", b"1", |w| w.kind = Some(Kind::Line)).expect("set");
    let kinds = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = kinds.clone();
    let written = derive(
        &store,
        "k",
        Box::new(move |current, kind| {
            seen.lock().expect("lock").push(kind);
            let mut next = current.expose_secret().to_vec();
            next.push(b'+');
            Ok(SecretBytes::from_vec(next))
        }),
        |_| {},
    )
    .expect("derived");
    assert_eq!(written.version.get(), 2);
    assert!(!written.created);
    assert_eq!(get(&store, "k"), b"1+");
    assert_eq!(*kinds.lock().expect("lock"), [Kind::Line]);
    // Check-and-set applies before the value is derived.
    derive(&store, "k", append("2", &calls), |w| w.cas = Some(2)).expect("cas 2");
    let err = derive(&store, "k", append("x", &calls), |w| w.cas = Some(2)).expect_err("stale");
    assert_eq!(err.code(), ErrorCode::Conflict);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(get(&store, "k"), b"1+2");
    // The derived value is checked against the kind, and the closure's refusal stands.
    let err = derive(&store, "k", append("\nx", &calls), |_| {}).expect_err("a newline");
    assert_eq!(err.code(), ErrorCode::InvalidRequest);
    let err = derive(
        &store,
        "k",
        Box::new(|_, _| Err(StoreError::TooLarge { len: 10, max: 5 })),
        |_| {},
    )
    .expect_err("too large");
    assert_eq!(err.code(), ErrorCode::TooLarge);
    assert_eq!(
        err.to_string(),
        "the value is 10 bytes; the limit is 5 bytes"
    );
    assert_eq!(store.versions(&default(), &name("k")).expect("v").len(), 3);
    // Racing derived writes: each sees the one before, so no increment is lost.
    set(&store, "counter", b"0");
    const THREADS: usize = 4;
    const EACH: usize = 10;
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..EACH {
                    let increment: crate::DeriveValue = Box::new(|current, _| {
                        let n: usize = std::str::from_utf8(current.expose_secret())
                            .ok()
                            .and_then(|t| t.parse().ok())
                            .ok_or(StoreError::Invalid("not a number".to_owned()))?;
                        Ok(SecretBytes::from_vec((n + 1).to_string().into_bytes()))
                    });
                    derive(&store, "counter", increment, |_| {}).expect("increment");
                }
            });
        }
    });
    assert_eq!(
        get(&store, "counter"),
        (THREADS * EACH).to_string().as_bytes()
    );
}

/// A derived write over a newest version that cannot be read is refused as `get` refuses
/// it: soft-deleted or destroyed is `Gone`, and the closure is never called.
pub fn derived_writes_refuse_what_get_refuses<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    let calls = Arc::new(AtomicUsize::new(0));
    set(&store, "k", b"1");
    set(&store, "k", b"2");
    store
        .describe(
            &default(),
            &name("k"),
            Describe {
                mark: Some(Mark::DeleteLatest),
                ..Describe::default()
            },
            crate::Change::by("uid:0"),
        )
        .expect("soft delete");
    match derive(&store, "k", append("+", &calls), |_| {}) {
        Err(StoreError::Gone(g)) => assert!(!g.destroyed && g.version.get() == 2),
        other => panic!("expected Gone, got {other:?}"),
    }
    store
        .describe(
            &default(),
            &name("k"),
            Describe {
                mark: Some(Mark::Undelete(vec![Version::new(2).expect("2")])),
                ..Describe::default()
            },
            crate::Change::by("uid:0"),
        )
        .expect("undelete");
    derive(&store, "k", append("+", &calls), |_| {}).expect("readable again");
    assert_eq!(get(&store, "k"), b"2+");
    store
        .destroy(
            &default(),
            &name("k"),
            &[Version::new(3).expect("3")],
            crate::Change::by("uid:0"),
        )
        .expect("destroy");
    match derive(&store, "k", append("+", &calls), |_| {}) {
        Err(StoreError::Gone(g)) => assert!(g.destroyed && g.version.get() == 3),
        other => panic!("expected Gone, got {other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        store
            .metadata(&default(), &name("k"))
            .expect("meta")
            .current
            .get(),
        3
    );
}

/// Custom metadata is merged or replaced in the transaction; a result outside the limits
/// is refused as invalid and changes nothing; racing merges of different keys all land.
pub fn custom_metadata_merges_in_the_transaction<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    set(&store, "k", b"v");
    let change = |c: CustomMetadataChange| {
        store.describe(
            &default(),
            &name("k"),
            Describe {
                custom_metadata: Some(c),
                ..Describe::default()
            },
            crate::Change::by("uid:0"),
        )
    };
    let custom = || {
        store
            .metadata(&default(), &name("k"))
            .expect("meta")
            .custom_metadata
    };
    let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    change(CustomMetadataChange::Replace(map(&[
        ("a", "1"),
        ("b", "2"),
    ])))
    .expect("replace");
    change(CustomMetadataChange::Merge(BTreeMap::from([
        ("a".to_owned(), None),
        ("c".to_owned(), Some("3".to_owned())),
    ])))
    .expect("merge");
    assert_eq!(custom(), map(&[("b", "2"), ("c", "3")]));
    let err = change(CustomMetadataChange::Merge(BTreeMap::from([(
        "d".to_owned(),
        Some("v".repeat(coffer_types::custom::MAX_VALUE_LEN + 1)),
    )])))
    .expect_err("too long");
    assert_eq!(err.code(), ErrorCode::InvalidRequest);
    assert!(!err.to_string().contains("vvvv"), "{err}");
    assert_eq!(custom(), map(&[("b", "2"), ("c", "3")]), "unchanged");
    std::thread::scope(|s| {
        for t in 0..4 {
            let change = &change;
            s.spawn(move || {
                for i in 0..3 {
                    change(CustomMetadataChange::Merge(BTreeMap::from([(
                        format!("t{t}-{i}"),
                        Some("x".to_owned()),
                    )])))
                    .expect("merge");
                }
            });
        }
    });
    assert_eq!(custom().len(), 2 + 4 * 3);
    assert_eq!(
        store
            .metadata(&default(), &name("k"))
            .expect("meta")
            .current,
        Version::FIRST,
        "no version written"
    );
}

/// Numbers at the ends of their types are refused or handled, never a panic, and the store
/// stays usable.
pub fn extreme_values_are_refused_or_handled<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    let store = open(&backend);
    let last = Version::new(u32::MAX).expect("nonzero");
    write_with(&store, "k", b"1", |w| w.max_versions = Some(u32::MAX)).expect("max_versions");
    let describe =
        |d: Describe| store.describe(&default(), &name("k"), d, crate::Change::by("uid:0"));
    describe(Describe {
        delete_version_after: Some(u64::MAX),
        max_versions: Some(u32::MAX),
        ..Describe::default()
    })
    .expect("delete_version_after");
    set(&store, "k", b"2");
    let read = store
        .get(&default(), &name("k"), None)
        .expect("far from deleted");
    assert_eq!(read.value.expose_secret(), b"2");
    assert_eq!(read.deletion, Some(Timestamp::MAX));
    let meta = store.metadata(&default(), &name("k")).expect("meta");
    assert_eq!(meta.delete_version_after, Some(u64::MAX));
    assert_eq!(meta.versions.len(), 2);
    let err = write_with(&store, "k", b"x", |w| w.cas = Some(u32::MAX)).expect_err("cas");
    assert_eq!(err.code(), ErrorCode::Conflict);
    assert_eq!(
        code(store.get(&default(), &name("k"), Some(last))),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(store.destroy(&default(), &name("k"), &[last], crate::Change::by("uid:0"))),
        ErrorCode::NotFound
    );
    describe(Describe {
        mark: Some(Mark::Delete(vec![last])),
        ..Describe::default()
    })
    .expect("a version past the newest is passed over");
    describe(Describe {
        mark: Some(Mark::Undelete(vec![last])),
        delete_version_after: Some(0),
        max_versions: Some(1),
        ..Describe::default()
    })
    .expect("undelete");
    assert_eq!(store.versions(&default(), &name("k")).expect("v").len(), 1);
    let all = ListQuery {
        limit: usize::MAX,
        ..ListQuery::default()
    };
    assert_eq!(names(&store, &all).0, ["k"]);
    assert!(
        store
            .revoked(&default(), &all)
            .expect("revoked")
            .items
            .is_empty()
    );
    // Still usable.
    set(&store, "after", b"fine");
    assert_eq!(get(&store, "after"), b"fine");
    assert_eq!(get(&store, "k"), b"2");
}
