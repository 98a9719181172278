//! The SQLite schema and its migrations, keyed by `PRAGMA user_version`.
//!
//! Nothing here holds a name or a value in the clear: rows are found by keyed hashes, names
//! and metadata are encrypted, values are AES-256-GCM envelopes. What is plain is what the
//! store needs to keep order: version numbers, times, actors, kinds, indices.

use rusqlite::Connection;

use crate::StoreError;

/// Each entry moves the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE header (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    body BLOB NOT NULL
);
CREATE TABLE namespaces (
    id          BLOB PRIMARY KEY,
    name_ct     BLOB NOT NULL,
    key_version INTEGER NOT NULL,
    wrapped_key BLOB NOT NULL,
    created     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE secrets (
    id        BLOB PRIMARY KEY,
    namespace BLOB NOT NULL REFERENCES namespaces(id),
    name_hash BLOB NOT NULL,
    name_ct   BLOB NOT NULL,
    meta_ct   BLOB NOT NULL,
    slot      INTEGER NOT NULL,
    current   INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    created   INTEGER NOT NULL,
    updated   INTEGER NOT NULL,
    revoked   INTEGER
) WITHOUT ROWID;
CREATE UNIQUE INDEX secrets_live_name ON secrets(namespace, name_hash) WHERE revoked IS NULL;
CREATE UNIQUE INDEX secrets_live_slot ON secrets(slot) WHERE revoked IS NULL;
-- Index allocation in O(log n): freed slots wait here, lowest first; `next` is the first
-- slot never handed out.
CREATE TABLE free_slots (slot INTEGER PRIMARY KEY);
CREATE TABLE slot_counter (id INTEGER PRIMARY KEY CHECK (id = 1), next INTEGER NOT NULL);
INSERT INTO slot_counter (id, next) VALUES (1, 0);
CREATE TABLE versions (
    secret      BLOB NOT NULL REFERENCES secrets(id) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    created     INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    key_version INTEGER NOT NULL,
    ciphertext  BLOB,                -- NULL once the version is destroyed
    PRIMARY KEY (secret, version)
) WITHOUT ROWID;
"#,
    r#"
-- The event feed: one row per change, numbered in the change's own transaction. The revision
-- and time are plain (retention reads them); namespace, name, action and actor are sealed.
CREATE TABLE events (
    revision INTEGER PRIMARY KEY,
    time     INTEGER NOT NULL,
    sealed   BLOB NOT NULL
);
-- `head`: the newest revision; `floor`: events up to it were pruned.
CREATE TABLE event_counter (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    head  INTEGER NOT NULL,
    floor INTEGER NOT NULL
);
INSERT INTO event_counter (id, head, floor) VALUES (1, 0, 0);
"#,
    r#"
-- Older generations of namespace keys, kept while a key rotation still has versions (or
-- names and metadata) sealed under them; the current one stays in `namespaces`.
CREATE TABLE namespace_keys (
    namespace   BLOB NOT NULL REFERENCES namespaces(id),
    key_version INTEGER NOT NULL,
    wrapped_key BLOB NOT NULL,
    PRIMARY KEY (namespace, key_version)
) WITHOUT ROWID;
"#,
    r#"
-- Namespaces that lock: the namespace key wrapped under its passphrase and the master key
-- (NULL: the namespace has no passphrase). While the namespace is locked, `wrapped_key` is
-- empty (X''): the row then holds no wrap the master key alone opens.
ALTER TABLE namespaces ADD COLUMN lock_wrap BLOB;
"#,
];

/// Settings every connection gets.
pub(super) fn configure(conn: &Connection) -> Result<(), StoreError> {
    // WAL lets readers run beside the writer; synchronous=FULL syncs the WAL at every commit,
    // so an acknowledged write survives power loss, not only a killed process. secure_delete
    // overwrites freed pages so erased ciphertexts do not linger in the file.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA secure_delete = ON;
         PRAGMA busy_timeout = 10000;",
    )
    .map_err(|e| StoreError::unavailable("configuring the database", e))
}

/// Brings the schema up to date; refuses a database from a newer coffer.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let at: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| StoreError::unavailable("reading the schema version", e))?;
    let at = usize::try_from(at).unwrap_or(usize::MAX);
    if at > MIGRATIONS.len() {
        return Err(StoreError::unavailable(
            "opening the database",
            format!(
                "schema version {at} is newer than this coffer understands ({}); upgrade coffer",
                MIGRATIONS.len()
            ),
        ));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(at) {
        let tx = conn
            .transaction()
            .map_err(|e| StoreError::unavailable("migrating the schema", e))?;
        tx.execute_batch(step)
            .and_then(|()| tx.pragma_update(None, "user_version", (i + 1) as i64))
            .and_then(|()| tx.commit())
            .map_err(|e| StoreError::unavailable("migrating the schema", e))?;
    }
    Ok(())
}
