//! The PostgreSQL schema and its migrations, kept in `coffer_schema`.
//!
//! The same rows as SQLite's (crates/coffer-store/src/sqlite/schema.rs): nothing holds a name
//! or a value in the clear; rows are found by keyed hashes, names and metadata are encrypted,
//! values are AES-256-GCM envelopes. Numbers are `BIGINT` (versions and slots are `u32`).
//! Beside them: `leases` (singleton work, one holder at a time) and `hubs` (who serves the
//! store).
//!
//! Hubs may start together: migrations run under a transaction-scoped advisory lock, so one
//! migrates and the others find the schema current.

use postgres::Client;

use coffer_store::StoreError;

/// The advisory lock key migrations run under ("coffer" in ASCII).
const MIGRATION_LOCK: i64 = 0x636f_6666_6572;

/// Each entry moves the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE header (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    body BYTEA NOT NULL
);
CREATE TABLE namespaces (
    id          BYTEA PRIMARY KEY,
    name_ct     BYTEA NOT NULL,
    key_version BIGINT NOT NULL,
    wrapped_key BYTEA NOT NULL,
    created     BIGINT NOT NULL,
    lock_wrap   BYTEA
);
CREATE TABLE secrets (
    id        BYTEA PRIMARY KEY,
    namespace BYTEA NOT NULL REFERENCES namespaces(id),
    name_hash BYTEA NOT NULL,
    name_ct   BYTEA NOT NULL,
    meta_ct   BYTEA NOT NULL,
    slot      BIGINT NOT NULL,
    current   BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    created   BIGINT NOT NULL,
    updated   BIGINT NOT NULL,
    revoked   BIGINT
);
CREATE UNIQUE INDEX secrets_live_name ON secrets(namespace, name_hash) WHERE revoked IS NULL;
CREATE UNIQUE INDEX secrets_live_slot ON secrets(slot) WHERE revoked IS NULL;
CREATE INDEX secrets_namespace_id ON secrets(namespace, id);
CREATE TABLE free_slots (slot BIGINT PRIMARY KEY);
CREATE TABLE slot_counter (id INTEGER PRIMARY KEY CHECK (id = 1), next BIGINT NOT NULL);
INSERT INTO slot_counter (id, next) VALUES (1, 0);
CREATE TABLE versions (
    secret      BYTEA NOT NULL REFERENCES secrets(id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    created     BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    key_version BIGINT NOT NULL,
    ciphertext  BYTEA,
    PRIMARY KEY (secret, version)
);
CREATE TABLE events (
    revision BIGINT PRIMARY KEY,
    time     BIGINT NOT NULL,
    sealed   BYTEA NOT NULL
);
-- `head`: the newest revision; `floor`: events up to it were pruned. Every write
-- transaction locks this row first: writes from every hub are applied one batch at a time,
-- so revisions are handed out in commit order and the feed has no holes.
CREATE TABLE event_counter (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    head  BIGINT NOT NULL,
    floor BIGINT NOT NULL
);
INSERT INTO event_counter (id, head, floor) VALUES (1, 0, 0);
CREATE TABLE namespace_keys (
    namespace   BYTEA NOT NULL REFERENCES namespaces(id),
    key_version BIGINT NOT NULL,
    wrapped_key BYTEA NOT NULL,
    PRIMARY KEY (namespace, key_version)
);
-- Every committed change, numbered like events but kept for every change (quiet ones too)
-- and briefly: what another hub reads to drop what it has cached. Keyed hashes and the
-- sealed name only.
CREATE TABLE changes (
    seq       BIGSERIAL PRIMARY KEY,
    namespace BYTEA,
    secret    BYTEA,
    name_hash BYTEA,
    name_ct   BYTEA,
    hub       TEXT NOT NULL
);
-- Singleton work: one holder per lease, until `expires` (milliseconds since the epoch).
CREATE TABLE leases (
    name    TEXT PRIMARY KEY,
    holder  TEXT NOT NULL,
    term    BIGINT NOT NULL,
    expires BIGINT NOT NULL
);
-- The hubs serving this store: each process (`name@tag`), its name, where its API is, when
-- it was last seen.
CREATE TABLE hubs (
    member    TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    address   TEXT NOT NULL,
    started   BIGINT NOT NULL,
    seen      BIGINT NOT NULL
);
"#];

/// Brings the schema up to date; refuses a database from a newer coffer.
pub(crate) fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let doing = |e: postgres::Error| {
        StoreError::unavailable("migrating the schema", crate::ops::detail(&e))
    };
    let mut tx = client.transaction().map_err(doing)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(doing)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS coffer_schema (version BIGINT NOT NULL)")
        .map_err(doing)?;
    let at: Option<i64> = tx
        .query_opt("SELECT version FROM coffer_schema", &[])
        .map_err(doing)?
        .map(|r| r.get(0));
    let at = usize::try_from(at.unwrap_or(0)).unwrap_or(usize::MAX);
    if at > MIGRATIONS.len() {
        return Err(StoreError::unavailable(
            "opening the database",
            format!(
                "schema version {at} is newer than this coffer understands ({}); upgrade coffer",
                MIGRATIONS.len()
            ),
        ));
    }
    for step in MIGRATIONS.iter().skip(at) {
        tx.batch_execute(step).map_err(doing)?;
    }
    let now = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    tx.execute("DELETE FROM coffer_schema", &[])
        .and_then(|_| tx.execute("INSERT INTO coffer_schema (version) VALUES ($1)", &[&now]))
        .map_err(doing)?;
    tx.commit().map_err(doing)
}
