//! Backups meet the other key work of issue 16: a locked namespace is backed up and restored
//! locked (the backup holds its passphrase wrap, not a key the master key alone opens), and
//! unlocks on the restored daemon with its passphrase; a backup made after `rotate-master`
//! opens with the new recovery key only; a namespace with a passphrase refuses key rotation.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{Daemon, code, raw, run_cli, stderr, stdout};

const PASSPHRASE: &str = "backup-keys-passphrase-7d1";
const VALUE: &str = "backup-keys-value-52aa";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{text}\n")).unwrap();
    path
}

fn ok(out: &std::process::Output) {
    assert!(out.status.success(), "{}", stderr(out));
}

fn get_code(d: &Daemon, ns: &str, name: &str) -> String {
    let reply = raw(
        &d.socket,
        serde_json::json!({"action": "get", "namespace": ns, "name": name})
            .to_string()
            .as_bytes(),
    );
    code(&reply).to_owned()
}

#[test]
fn a_locked_namespace_is_restored_locked_and_unlocks_with_its_passphrase() {
    let work = tempfile::tempdir().unwrap();
    let (identity, recipient) = common::age_keygen(work.path(), "id.txt");
    let pass = write(work.path(), "pass", PASSPHRASE);
    let d = Daemon::start(&[]);
    ok(&d.cli(
        &[
            "namespaces",
            "create",
            "safe",
            "--passphrase-file",
            s(&pass),
        ],
        b"",
    ));
    ok(&d.cli(&["set", "--namespace", "safe", "db"], VALUE.as_bytes()));
    ok(&d.cli(&["set", "plain"], b"plain-value"));
    ok(&d.cli(&["namespaces", "lock", "safe"], b""));
    let file = work.path().join("b.age");
    ok(&d.cli(
        &["backup", "--out", s(&file), "--recipient", &recipient],
        b"",
    ));

    let mut restored = Daemon::new(&[]);
    let key = d.data.join("coffer.key");
    ok(&run_cli(
        &[
            "restore",
            "--from",
            s(&file),
            "--identity",
            s(&identity),
            "--key-file",
            s(&key),
            "--data-dir",
            s(&restored.data),
        ],
        b"",
    ));
    restored.spawn();
    assert_eq!(get_code(&restored, "safe", "db"), "locked");
    assert_eq!(stdout(&restored.cli(&["get", "plain"], b"")), "plain-value");
    let wrong = write(work.path(), "wrong", "not-the-passphrase");
    let out = restored.cli(
        &[
            "namespaces",
            "unlock",
            "safe",
            "--passphrase-file",
            s(&wrong),
        ],
        b"",
    );
    assert!(!out.status.success());
    ok(&restored.cli(
        &[
            "namespaces",
            "unlock",
            "safe",
            "--passphrase-file",
            s(&pass),
        ],
        b"",
    ));
    assert_eq!(
        stdout(&restored.cli(&["get", "--namespace", "safe", "db"], b"")),
        VALUE
    );
    // A namespace with a passphrase keeps its key generation: rotating it is refused, and
    // so is replacing the master key while one exists.
    let out = restored.cli(&["namespaces", "rotate-key", "safe"], b"");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("passphrase"), "{}", stderr(&out));
    let out = restored.cli(&["rotate-master", "--drop-passphrase-slots"], b"");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("passphrase"), "{}", stderr(&out));
}

#[test]
fn a_backup_after_rotate_master_opens_with_the_new_recovery_key_only() {
    let work = tempfile::tempdir().unwrap();
    let (identity, recipient) = common::age_keygen(work.path(), "id.txt");
    let d = Daemon::start(&[]);
    let out = d.cli(&["slots", "add", "recovery"], b"");
    ok(&out);
    let old = write(work.path(), "old-recovery", stdout(&out).trim());
    ok(&d.cli(&["set", "app/db"], VALUE.as_bytes()));
    let out = d.cli(&["rotate-master"], b"");
    ok(&out);
    let new = write(work.path(), "new-recovery", stdout(&out).trim());
    let file = work.path().join("b.age");
    ok(&d.cli(
        &["backup", "--out", s(&file), "--recipient", &recipient],
        b"",
    ));
    let verify = |recovery: &Path| {
        run_cli(
            &[
                "backup",
                "verify",
                s(&file),
                "--identity",
                s(&identity),
                "--recovery-file",
                s(recovery),
            ],
            b"",
        )
    };
    assert!(!verify(&old).status.success());
    ok(&verify(&new));
    let mut restored = Daemon::new(&["--key-file", "/nonexistent/coffer.key"]);
    ok(&run_cli(
        &[
            "restore",
            "--from",
            s(&file),
            "--identity",
            s(&identity),
            "--recovery-file",
            s(&new),
            "--data-dir",
            s(&restored.data),
        ],
        b"",
    ));
    restored.spawn();
    let key = std::fs::read(&new).unwrap();
    ok(&restored.cli(&["unseal", "--recovery"], &key));
    assert_eq!(stdout(&restored.cli(&["get", "app/db"], b"")), VALUE);
}
