//! Rows bound to their names (issue 12, item 8), against the real daemon and its real
//! `coffer.db`: with the daemon stopped, rows are edited with SQLite as someone holding the
//! file would (two rows' `name_hash` swapped, `revoked` cleared, `current` rolled back); after
//! a restart, each of those names answers `integrity` and never a value.
#![allow(clippy::unwrap_used)]

mod common;

use coffer_crypto::SecretBytes;
use common::{Daemon, assert_absent, code, raw};
use rusqlite::{Connection, params};

fn get(daemon: &Daemon, name: &str) -> serde_json::Value {
    raw(
        &daemon.socket,
        format!(r#"{{"action":"get","name":"{name}"}}"#).as_bytes(),
    )
}

/// Writes `value` and answers the row's `slot` (its index less the NV base).
fn set(daemon: &Daemon, name: &str, value: &str) -> u32 {
    let index = daemon
        .client()
        .set(None, name, &SecretBytes::copy_from(value.as_bytes()), None)
        .unwrap()
        .to_string();
    u32::from_str_radix(index.trim_start_matches("0x"), 16).unwrap() - 0x0152_0000
}

#[test]
fn swapped_revived_and_rolled_back_rows_answer_integrity_never_a_value() {
    let mut daemon = Daemon::start(&[]);
    let slot_a = set(&daemon, "db-password", "VALUE-OF-DB-PASSWORD");
    let slot_b = set(&daemon, "api-token", "VALUE-OF-API-TOKEN");
    let slot_c = set(&daemon, "old-key", "VALUE-OF-REVOKED-KEY");
    let slot_d = set(&daemon, "rotated", "VALUE-OF-ROTATED-V1");
    assert_eq!(set(&daemon, "rotated", "VALUE-OF-ROTATED-V2"), slot_d);
    let slot_e = set(&daemon, "untouched", "VALUE-OF-UNTOUCHED");
    let revoke = daemon.cli(&["secrets", "revoke", "old-key"], b"");
    assert!(revoke.status.success(), "{}", common::stderr(&revoke));
    assert_eq!(code(&get(&daemon, "old-key")), "not_found");
    assert_eq!(get(&daemon, "db-password")["value"], "VALUE-OF-DB-PASSWORD");
    daemon.stop();

    let conn = Connection::open(daemon.data.join("coffer.db")).unwrap();
    let id = |slot: u32| -> Vec<u8> {
        conn.query_row(
            "SELECT id FROM secrets WHERE slot = ?1 ORDER BY revoked IS NULL DESC LIMIT 1",
            params![slot],
            |r| r.get(0),
        )
        .unwrap()
    };
    let (a, b, c, d) = (id(slot_a), id(slot_b), id(slot_c), id(slot_d));
    let hash = |id: &[u8]| -> Vec<u8> {
        conn.query_row(
            "SELECT name_hash FROM secrets WHERE id = ?1",
            params![id],
            |r| r.get(0),
        )
        .unwrap()
    };
    let (ha, hb) = (hash(&a), hash(&b));
    // The swap, in three steps (the live-name index is unique).
    for (row, to) in [(&a, vec![0u8]), (&b, ha), (&a, hb)] {
        conn.execute(
            "UPDATE secrets SET name_hash = ?2 WHERE id = ?1",
            params![row, to],
        )
        .unwrap();
    }
    let revived = conn
        .execute(
            "UPDATE secrets SET revoked = NULL WHERE id = ?1",
            params![c],
        )
        .unwrap();
    assert_eq!(revived, 1, "the revoked row was found");
    conn.execute("UPDATE secrets SET current = 1 WHERE id = ?1", params![d])
        .unwrap();
    drop(conn);

    daemon.spawn();
    let mut replies = Vec::new();
    for name in ["db-password", "api-token", "old-key", "rotated"] {
        let reply = get(&daemon, name);
        assert_eq!(code(&reply), "integrity", "{name}: {reply}");
        assert!(reply.get("value").is_none(), "{name}: {reply}");
        replies.push(reply.to_string());
    }
    // What no one touched is served as before.
    assert_eq!(get(&daemon, "untouched")["value"], "VALUE-OF-UNTOUCHED");
    let _ = slot_e;
    // Nothing of the tampered rows' values reached a reply or the log.
    let secrets = [
        "VALUE-OF-DB-PASSWORD",
        "VALUE-OF-API-TOKEN",
        "VALUE-OF-REVOKED-KEY",
        "VALUE-OF-ROTATED",
    ];
    assert_absent("replies", replies.concat().as_bytes(), &secrets);
    assert_absent("the daemon's log", daemon.log().as_bytes(), &secrets);
    // The operator is told, and the client gets the integrity exit status.
    assert!(
        daemon.log().contains("integrity"),
        "the log names the integrity failure"
    );
    let out = daemon.cli(&["get", "db-password"], b"");
    assert!(!out.status.success());
    assert_eq!(out.status.code(), Some(70), "{}", common::stderr(&out));
    assert_absent("coffer get", &out.stdout, &secrets);
}
