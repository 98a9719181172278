//! Namespace key rotation: a new generation for new writes, every older version
//! re-encrypted in the background, the older generation forgotten, and a rotation cut short
//! (the store closed mid-way) resumed by the next open. A backend that cannot rotate keys
//! answers `unsupported` and the case ends there.

use std::sync::Arc;
use std::time::Duration;

use coffer_crypto::MasterKey;
use coffer_types::{ErrorCode, Version};

use super::support::{Made, default, get, name, open_with, set};
use crate::backend::Backend;
use crate::{Change, EncryptedStore, SecretStore};

/// Waits until no rotation is in progress (the loop ends: a rotation that never completes
/// fails the case after a minute).
fn settle<B: Backend>(store: &EncryptedStore<B>) {
    for _ in 0..6000 {
        if store.key_rotations().is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!(
        "the key rotation did not complete: {:?}",
        store.key_rotations()
    );
}

/// Whether the backend rotates keys (TPM NV does not: it answers `unsupported`); probed
/// before a case writes its many secrets.
fn rotates<B: Backend>(backend: &Arc<B>) -> bool {
    match backend.rekey(Vec::new()) {
        Ok(_) => true,
        Err(e) if e.code() == ErrorCode::Unsupported => false,
        Err(e) => panic!("rekey of nothing: {e}"),
    }
}

/// Every version of every secret (live and revoked) in the default namespace, by generation.
fn generations<B: Backend>(backend: &Arc<B>, store: &EncryptedStore<B>) -> Vec<u32> {
    let id = store.namespace_row_id(&default());
    let mut rows = backend.secrets(&id).expect("secrets");
    rows.extend(backend.revoked(&id).expect("revoked"));
    let mut out = Vec::new();
    for row in rows {
        for v in backend.versions(&row.id).expect("versions") {
            if v.ciphertext.is_some() {
                out.push(v.key_version);
            }
        }
    }
    out
}

/// Rotates, writes meanwhile, and checks what the rotation leaves.
pub fn key_rotation_reencrypts_every_version<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    if !rotates(&backend) {
        return;
    }
    let master = MasterKey::generate().expect("random");
    let store = open_with(&backend, master.duplicate());
    for i in 0..300 {
        set(&store, &format!("k{i}"), format!("v{i}").as_bytes());
    }
    set(&store, "k0", b"v0-second");
    store
        .revoke(&default(), &name("k1"), Change::by("uid:0"))
        .expect("revoke");
    set(&store, "k2", b"v2-second");
    store
        .destroy(
            &default(),
            &name("k2"),
            &[Version::FIRST],
            Change::by("uid:0"),
        )
        .expect("destroy");
    let next = match store.rotate_key(&default(), Change::by("uid:0")) {
        Ok(next) => next,
        Err(e) if e.code() == ErrorCode::Unsupported => return,
        Err(e) => panic!("rotate: {e}"),
    };
    assert_eq!(next, 2);
    if !store.key_rotations().is_empty() {
        let again = store.rotate_key(&default(), Change::by("uid:0"));
        assert!(
            again.is_err() || store.key_rotations().is_empty(),
            "a second rotation while one runs must be refused"
        );
    }
    // Writes during the rotation use the new generation at once.
    set(&store, "during", b"written-during");
    set(&store, "k3", b"v3-second");
    settle(&store);
    assert_eq!(store.key_generations_in_use(&default()).expect("gens"), 1);
    // An event at the start and one at the completion.
    let actions: Vec<_> = store
        .events(0, 100_000)
        .expect("events")
        .iter()
        .map(|e| e.action)
        .collect();
    for action in [
        coffer_types::EventAction::NamespaceKeyRotating,
        coffer_types::EventAction::NamespaceKeyRotated,
    ] {
        assert!(actions.contains(&action), "no {action:?} event");
    }
    let gens = generations(&backend, &store);
    assert!(!gens.is_empty());
    assert!(gens.iter().all(|g| *g == next), "{gens:?}");
    assert!(backend.namespace_keys().expect("keys").is_empty());
    assert_eq!(get(&store, "k0"), b"v0-second");
    assert_eq!(get(&store, "k3"), b"v3-second");
    assert_eq!(get(&store, "during"), b"written-during");
    for i in 4..300 {
        assert_eq!(get(&store, &format!("k{i}")), format!("v{i}").as_bytes());
    }
    let old = store
        .get(&default(), &name("k0"), Some(Version::FIRST))
        .expect("old version");
    assert_eq!(old.value.expose_secret(), b"v0");
    // Names, metadata and the revoked secret open under the new generation alone.
    let reopened = {
        drop(store);
        open_with(&backend, master.duplicate())
    };
    assert_eq!(super::support::all_names(&reopened, 1000).len(), 300);
    let revoked = reopened
        .revoked(&default(), &crate::ListQuery::default())
        .expect("revoked");
    assert_eq!(revoked.items.len(), 1);
    assert_eq!(get(&reopened, "k299"), b"v299");
}

/// A store closed during a rotation resumes it when opened again.
pub fn an_interrupted_key_rotation_resumes_at_open<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    if !rotates(&backend) {
        return;
    }
    let master = MasterKey::generate().expect("random");
    let store = open_with(&backend, master.duplicate());
    for i in 0..2000 {
        set(&store, &format!("k{i}"), format!("v{i}").as_bytes());
    }
    match store.rotate_key(&default(), Change::by("uid:0")) {
        Ok(_) => {}
        Err(e) if e.code() == ErrorCode::Unsupported => return,
        Err(e) => panic!("rotate: {e}"),
    }
    // Closed at once: the rotation stops wherever it was.
    drop(store);
    let store = open_with(&backend, master.duplicate());
    for i in (0..2000).step_by(97) {
        assert_eq!(get(&store, &format!("k{i}")), format!("v{i}").as_bytes());
    }
    settle(&store);
    let gens = generations(&backend, &store);
    assert_eq!(gens.len(), 2000);
    assert!(gens.iter().all(|g| *g == 2), "{gens:?}");
    assert!(backend.namespace_keys().expect("keys").is_empty());
    for i in 0..2000 {
        assert_eq!(get(&store, &format!("k{i}")), format!("v{i}").as_bytes());
    }
}

/// A new master key: every namespace key and path re-wrapped with the header in one
/// transaction; the old master key opens nothing, the new one (with the derivation root)
/// opens every value, and names are still found (row lookups come from the root).
pub fn rewrap_master_moves_every_key_under_the_new_master<B: Backend>(make: &dyn Fn() -> Made<B>) {
    let (backend, _guard) = make();
    if !rotates(&backend) {
        return;
    }
    let master = MasterKey::generate().expect("random");
    let store = open_with(&backend, master.duplicate());
    for i in 0..1500 {
        set(&store, &format!("k{i}"), format!("v{i}").as_bytes());
    }
    // A namespace key rotation under way: its older generation is re-wrapped too.
    store
        .rotate_key(&default(), Change::by("uid:0"))
        .expect("rotate");
    let next = MasterKey::generate().expect("random");
    store
        .rewrap_master(&next, b"{\"new\":1}", Change::by("uid:0"))
        .expect("rewrap");
    // The retired store makes no more namespace keys under the old master.
    let refused = store.create_namespace(
        &coffer_types::Namespace::parse("later").expect("valid"),
        Change::by("uid:0"),
    );
    assert_eq!(super::support::code(refused), ErrorCode::Conflict);
    drop(store);
    assert_eq!(
        backend.header().expect("header").as_deref(),
        Some(&b"{\"new\":1}"[..])
    );
    assert!(
        EncryptedStore::open(backend.clone(), master.duplicate()).is_err(),
        "the old master key still opens the namespace keys"
    );
    let reopened = EncryptedStore::open_rooted(backend.clone(), next, master.duplicate())
        .expect("the new master opens");
    settle(&reopened);
    assert!(backend.namespace_keys().expect("keys").is_empty());
    for i in 0..1500 {
        assert_eq!(get(&reopened, &format!("k{i}")), format!("v{i}").as_bytes());
    }
}
