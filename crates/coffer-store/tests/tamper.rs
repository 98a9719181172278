//! Rows bound to their names (issue 12, item 8), on a real SQLite file: the store is closed,
//! its columns are edited with SQLite directly, as someone holding the file would, and the
//! store opened again from disk. Every edit reads as an integrity error, never as another
//! secret's value, a revoked value, an older version or a destroyed one.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use coffer_crypto::{MasterKey, SecretBytes};
use coffer_store::{EncryptedStore, SecretStore, SqliteBackend, StoreError, Write};
use coffer_types::{ErrorCode, Namespace, SecretName, Version};
use rusqlite::{Connection, params};

fn name(s: &str) -> SecretName {
    SecretName::parse(s).unwrap()
}

fn open(path: &Path, master: &MasterKey) -> EncryptedStore<SqliteBackend> {
    EncryptedStore::open(
        Arc::new(SqliteBackend::open(path).unwrap()),
        master.duplicate(),
    )
    .unwrap()
}

fn set(store: &dyn SecretStore, n: &str, value: &str) {
    let v = SecretBytes::copy_from(value.as_bytes());
    store
        .set(&Namespace::default(), &name(n), Write::new(&v, "uid:0"))
        .unwrap();
}

fn get(store: &dyn SecretStore, n: &str) -> Result<String, StoreError> {
    store
        .get(&Namespace::default(), &name(n), None)
        .map(|s| s.value.expose_str().unwrap().to_owned())
}

/// Each secret's row id, by the value of its newest version (read before the edit).
fn row_id(conn: &Connection, current: u32, nth: usize) -> Vec<u8> {
    let mut st = conn
        .prepare("SELECT id FROM secrets WHERE current = ?1 ORDER BY created, id")
        .unwrap();
    let ids: Vec<Vec<u8>> = st
        .query_map(params![current], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    ids[nth].clone()
}

fn assert_integrity(result: Result<String, StoreError>, what: &str) {
    match result {
        Err(e) => assert_eq!(e.code(), ErrorCode::Integrity, "{what}: {e}"),
        Ok(v) => panic!(
            "{what}: the tampered row served a value ({} bytes)",
            v.len()
        ),
    }
}

/// The store, with `a` and `b` (one version each) written and closed; answers the master key.
fn made(path: &Path) -> MasterKey {
    let master = MasterKey::generate().unwrap();
    let store = open(path, &master);
    store
        .create_namespace(&Namespace::default(), coffer_store::Change::by("uid:0"))
        .unwrap();
    set(&store, "a", "value-of-a");
    std::thread::sleep(std::time::Duration::from_millis(5));
    set(&store, "b", "value-of-b");
    master
}

#[test]
fn swapping_name_hashes_is_an_integrity_error_for_both_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coffer.db");
    let master = made(&path);
    let conn = Connection::open(&path).unwrap();
    let (a, b) = (row_id(&conn, 1, 0), row_id(&conn, 1, 1));
    let hash = |id: &[u8]| -> Vec<u8> {
        conn.query_row(
            "SELECT name_hash FROM secrets WHERE id = ?1",
            params![id],
            |r| r.get(0),
        )
        .unwrap()
    };
    let (ha, hb) = (hash(&a), hash(&b));
    // Three steps, as the unique index on live names allows.
    conn.execute(
        "UPDATE secrets SET name_hash = X'00' WHERE id = ?1",
        params![a],
    )
    .unwrap();
    conn.execute(
        "UPDATE secrets SET name_hash = ?2 WHERE id = ?1",
        params![b, ha],
    )
    .unwrap();
    conn.execute(
        "UPDATE secrets SET name_hash = ?2 WHERE id = ?1",
        params![a, hb],
    )
    .unwrap();
    drop(conn);
    let store = open(&path, &master);
    assert_integrity(get(&store, "a"), "a after the swap");
    assert_integrity(get(&store, "b"), "b after the swap");
    // Nor is either row written on top of: a write plans on the row it finds.
    let v = SecretBytes::copy_from(b"new");
    let err = store
        .set(&Namespace::default(), &name("a"), Write::new(&v, "uid:0"))
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Integrity, "{err}");
    let err = store
        .metadata(&Namespace::default(), &name("b"))
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Integrity, "{err}");
}

#[test]
fn clearing_revoked_is_an_integrity_error_not_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coffer.db");
    let master = made(&path);
    {
        let store = open(&path, &master);
        store
            .revoke(
                &Namespace::default(),
                &name("a"),
                coffer_store::Change::by("uid:0"),
            )
            .unwrap();
        assert_eq!(
            get(&store, "a").unwrap_err().code(),
            ErrorCode::NotFound,
            "revoked"
        );
        // The revoked history still reads.
        let page = store
            .revoked(&Namespace::default(), &Default::default())
            .unwrap();
        assert_eq!(page.items.len(), 1);
    }
    let conn = Connection::open(&path).unwrap();
    let cleared = conn
        .execute(
            "UPDATE secrets SET revoked = NULL WHERE revoked IS NOT NULL",
            [],
        )
        .unwrap();
    assert_eq!(cleared, 1);
    drop(conn);
    let store = open(&path, &master);
    assert_integrity(get(&store, "a"), "a with revoked cleared");
    assert_eq!(
        get(&store, "b").unwrap(),
        "value-of-b",
        "the other row is intact"
    );
}

#[test]
fn rolling_back_the_current_version_or_the_metadata_is_an_integrity_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coffer.db");
    let master = made(&path);
    let old_meta: Vec<u8>;
    {
        let store = open(&path, &master);
        let conn = Connection::open(&path).unwrap();
        old_meta = conn
            .query_row(
                "SELECT meta_ct FROM secrets WHERE id = ?1",
                params![row_id(&conn, 1, 0)],
                |r| r.get(0),
            )
            .unwrap();
        set(&store, "a", "value-of-a-2");
        assert_eq!(get(&store, "a").unwrap(), "value-of-a-2");
    }
    // Back to version 1: the old ciphertext still opens under its own version, but the row
    // no longer matches what its metadata was sealed to.
    let conn = Connection::open(&path).unwrap();
    let a = row_id(&conn, 2, 0);
    conn.execute("UPDATE secrets SET current = 1 WHERE id = ?1", params![a])
        .unwrap();
    drop(conn);
    assert_integrity(get(&open(&path, &master), "a"), "current rolled back");
    // The metadata of version 1 put back as well (with the current version 1 it was sealed
    // to): `updated` still tells them apart.
    let conn = Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE secrets SET meta_ct = ?2 WHERE id = ?1",
        params![a, old_meta],
    )
    .unwrap();
    drop(conn);
    assert_integrity(get(&open(&path, &master), "a"), "metadata rolled back");
    // Only the metadata rolled back, the version kept: also refused.
    let conn = Connection::open(&path).unwrap();
    conn.execute("UPDATE secrets SET current = 2 WHERE id = ?1", params![a])
        .unwrap();
    drop(conn);
    assert_integrity(
        get(&open(&path, &master), "a"),
        "metadata alone rolled back",
    );
}

#[test]
fn a_destroyed_or_pruned_version_put_back_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coffer.db");
    let master = made(&path);
    let ns = Namespace::default();
    let v1 = Version::FIRST;
    let saved: Vec<u8>;
    {
        let store = open(&path, &master);
        set(&store, "a", "value-of-a-2");
        let conn = Connection::open(&path).unwrap();
        saved = conn
            .query_row(
                "SELECT ciphertext FROM versions WHERE version = 1 AND secret = ?1",
                params![row_id(&conn, 2, 0)],
                |r| r.get(0),
            )
            .unwrap();
        store
            .destroy(&ns, &name("a"), &[v1], coffer_store::Change::by("uid:0"))
            .unwrap();
        assert!(matches!(
            store.get(&ns, &name("a"), Some(v1)),
            Err(StoreError::Gone(_))
        ));
    }
    let conn = Connection::open(&path).unwrap();
    let a = row_id(&conn, 2, 0);
    conn.execute(
        "UPDATE versions SET ciphertext = ?2 WHERE secret = ?1 AND version = 1",
        params![a, saved],
    )
    .unwrap();
    drop(conn);
    let store = open(&path, &master);
    let err = store.get(&ns, &name("a"), Some(v1)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Integrity, "{err}");
    assert_eq!(get(&store, "a").unwrap(), "value-of-a-2");
    // Pruning: keep one version, then put version 2's row back.
    let saved2: Vec<u8> = Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT ciphertext FROM versions WHERE version = 2 AND secret = ?1",
            params![a],
            |r| r.get(0),
        )
        .unwrap();
    let change = coffer_store::Describe {
        max_versions: Some(1),
        ..Default::default()
    };
    set(&store, "a", "value-of-a-3");
    store
        .describe(&ns, &name("a"), change, coffer_store::Change::by("uid:0"))
        .unwrap();
    drop(store);
    let conn = Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO versions (secret, version, kind, created, actor, key_version, ciphertext)
         VALUES (?1, 2, 'text', 0, 'uid:0', 1, ?2)",
        params![a, saved2],
    )
    .unwrap();
    drop(conn);
    let store = open(&path, &master);
    let err = store
        .get(&ns, &name("a"), Some(Version::new(2).unwrap()))
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Integrity, "{err}");
    assert_eq!(get(&store, "a").unwrap(), "value-of-a-3");
}
