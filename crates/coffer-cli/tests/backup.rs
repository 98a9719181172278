//! Backups end to end (issue 16): made through the daemon's socket, over HTTP and offline;
//! opened by the real `age` CLI (whose plaintext shows no name or value); verified and
//! restored into a new data directory whose daemon serves every value, version and token;
//! refused, leaving the target empty, when damaged, truncated, altered, foreign or
//! misaddressed.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use coffer_crypto::SecretBytes;
use coffer_types::Version;
use common::http::{curl, http_daemon, need, root_token};
use common::{Daemon, assert_absent, run_cli, stderr, stdout};

const INSTALL_AGE: &str = "apt-get install age";

/// The store's recovery key, from a recovery slot added now.
fn add_recovery(daemon: &Daemon, dir: &Path) -> PathBuf {
    let out = daemon.cli(&["slots", "add", "recovery"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let path = dir.join("recovery.txt");
    std::fs::write(&path, stdout(&out).trim()).unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn set(d: &Daemon, ns: Option<&str>, name: &str, value: &str) {
    d.client()
        .set(ns, name, &SecretBytes::copy_from(value.as_bytes()), None)
        .unwrap();
}

fn get(d: &Daemon, ns: Option<&str>, name: &str, version: Option<u32>) -> Result<String, String> {
    d.client()
        .get(ns, name, version.and_then(Version::new))
        .map(|v| String::from_utf8(v.expose_secret().to_vec()).unwrap())
        .map_err(|e| e.code().to_string())
}

/// What every round trip writes: two namespaces, versions, a revoked secret, a destroyed
/// version, a policy and a token bound to it.
const VALUES: &[&str] = &[
    "VAL-db-one-7f3a",
    "VAL-db-two-9c1e",
    "VAL-api-4d2b",
    "VAL-team-5e6f",
    "VAL-revoked-0a8c",
];
const NAMES: &[&str] = &["app/db-password", "app/api-key", "team-secret", "gone-soon"];

fn fill(d: &Daemon, dir: &Path) -> PathBuf {
    set(d, None, "app/db-password", VALUES[0]);
    set(d, None, "app/db-password", VALUES[1]);
    set(d, None, "app/api-key", "VAL-api-destroyed-v1");
    set(d, None, "app/api-key", VALUES[2]);
    d.client()
        .destroy(None, "app/api-key", &[Version::new(1).unwrap()])
        .unwrap();
    d.client().create_namespace("team/a").unwrap();
    set(d, Some("team/a"), "team-secret", VALUES[3]);
    set(d, None, "gone-soon", VALUES[4]);
    d.client().revoke(None, "gone-soon").unwrap();
    let policy = dir.join("reader.toml");
    std::fs::write(
        &policy,
        "rules = [{ path = \"default/app/*\", capabilities = [\"read\"] }]\n",
    )
    .unwrap();
    let out = d.cli(&["policy", "put", "reader", s(&policy)], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = d.cli(
        &["token", "create", "--policy", "reader", "--ttl", "1h"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let token = dir.join("token");
    std::fs::write(&token, stdout(&out).trim()).unwrap();
    token
}

/// The restored daemon serves everything `fill` wrote, and its token.
fn check_restored(d: &Daemon, token: &Path) {
    assert_eq!(get(d, None, "app/db-password", None).unwrap(), VALUES[1]);
    assert_eq!(get(d, None, "app/db-password", Some(1)).unwrap(), VALUES[0]);
    assert_eq!(get(d, None, "app/api-key", None).unwrap(), VALUES[2]);
    assert_eq!(
        get(d, None, "app/api-key", Some(1)).unwrap_err(),
        "not_found"
    );
    assert_eq!(
        get(d, Some("team/a"), "team-secret", None).unwrap(),
        VALUES[3]
    );
    assert_eq!(get(d, None, "gone-soon", None).unwrap_err(), "not_found");
    let revoked = d.client().list_revoked(None).unwrap();
    assert_eq!(revoked.len(), 1);
    // The token made before the backup reads what its policy allows, and only that.
    let out = d.cli(&["--token-file", s(token), "get", "app/db-password"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), VALUES[1]);
    let out = d.cli(
        &[
            "--token-file",
            s(token),
            "get",
            "team-secret",
            "-n",
            "team/a",
        ],
        b"",
    );
    assert!(!out.status.success());
}

/// The backup file, its age plaintext (decrypted by the real `age`), and everything the CLI
/// printed hold no name or value.
fn check_opaque(file: &Path, identity: &Path, printed: &[u8]) {
    need("age", INSTALL_AGE);
    let bytes = std::fs::read(file).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    assert_absent("the backup file", &bytes, VALUES);
    let out = Command::new("age")
        .args(["-d", "-i", s(identity), s(file)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "age -d: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.starts_with(b"\x0a\x00\x00\x00") || out.stdout.len() > 100);
    assert_absent("the backup's plaintext", &out.stdout, VALUES);
    assert_absent("the backup's plaintext", &out.stdout, NAMES);
    assert_absent("the backup's plaintext", &out.stdout, &["team/a", "reader"]);
    assert_absent("what the CLI printed", printed, VALUES);
}

/// Restores `file` into `daemon`'s (missing) data directory and starts it with no key file:
/// it opens with the recovery key only, as on another machine.
fn restore_and_open(file: &Path, identity: &Path, recovery: &Path) -> Daemon {
    let mut d = Daemon::new(&["--key-file", "/nonexistent/coffer.key"]);
    let out = run_cli(
        &[
            "restore",
            "--from",
            s(file),
            "--identity",
            s(identity),
            "--recovery-file",
            s(recovery),
            "--data-dir",
            s(&d.data),
        ],
        b"",
    );
    assert!(out.status.success(), "restore: {}", stderr(&out));
    assert!(stderr(&out).contains("restored store "), "{}", stderr(&out));
    assert_absent(
        "restore's output",
        &[out.stdout, out.stderr].concat(),
        VALUES,
    );
    d.spawn();
    let key = std::fs::read(recovery).unwrap();
    let out = d.cli(&["unseal", "--recovery"], &key);
    assert!(
        out.status.success(),
        "unseal: {}\n{}",
        stderr(&out),
        d.log()
    );
    d
}

#[test]
fn a_backup_through_the_socket_restores_every_value_version_and_token() {
    let work = tempfile::tempdir().unwrap();
    let (identity, recipient) = common::age_keygen(work.path(), "id.txt");
    let mut d = Daemon::start(&[]);
    let recovery = add_recovery(&d, work.path());
    let token = fill(&d, work.path());
    let file = work.path().join("store.age");
    let out = d.cli(
        &["backup", "--out", s(&file), "--recipient", &recipient],
        b"",
    );
    assert!(out.status.success(), "backup: {}", stderr(&out));
    assert!(
        stderr(&out).contains("backup written to"),
        "{}",
        stderr(&out)
    );
    check_opaque(&file, &identity, &[out.stdout, out.stderr].concat());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The backup is audited, and the daemon's log holds no value.
    assert!(
        d.audit()
            .iter()
            .any(|r| r["action"] == "backup" && r["outcome"] == "ok"),
        "{:?}",
        d.audit().last()
    );
    // ... and it is an event of the store's own namespace, by the caller.
    let mut lines = d
        .client()
        .watch(&coffer_client::WatchFrom {
            namespace: Some("*"),
            since: Some(0),
            ..coffer_client::WatchFrom::default()
        })
        .unwrap();
    lines
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let made = loop {
        match lines.next() {
            Some(Ok(coffer_types::WatchLine::Event { event, .. }))
                if event.action == coffer_types::EventAction::BackupMade =>
            {
                break event;
            }
            Some(Ok(_)) => {}
            other => panic!("no backup.made event: {other:?}"),
        }
    };
    assert_eq!(
        (made.namespace.as_str(), made.actor.as_str()),
        ("@coffer", "uid:0")
    );
    drop(lines);
    let out = run_cli(
        &[
            "backup",
            "verify",
            s(&file),
            "--identity",
            s(&identity),
            "--recovery-file",
            s(&recovery),
        ],
        b"",
    );
    assert!(out.status.success(), "verify: {}", stderr(&out));
    assert!(stdout(&out).starts_with("ok: store "), "{}", stdout(&out));
    d.stop();
    std::fs::remove_file(d.data.join("coffer.key")).unwrap();
    let restored = restore_and_open(&file, &identity, &recovery);
    check_restored(&restored, &token);
    assert_absent(
        "the daemons' logs",
        [d.log(), restored.log()].concat().as_bytes(),
        VALUES,
    );
}

#[test]
fn a_backup_over_http_and_one_offline_restore_alike() {
    let work = tempfile::tempdir().unwrap();
    let (identity, recipient) = common::age_keygen(work.path(), "id.txt");
    let (mut d, url, root) = http_daemon(&[]);
    let recovery = add_recovery(&d, work.path());
    let token = fill(&d, work.path());
    let file = work.path().join("http.age");
    let body = format!("{{\"recipients\":[\"{recipient}\"]}}");
    let out = Command::new("curl")
        .args(["-sS", "-f", "-X", "POST", "-d", &body, "-o", s(&file)])
        .args(["-H", &format!("X-Vault-Token: {root}")])
        .arg(format!("{url}/v1/sys/coffer/backup"))
        .output()
        .unwrap();
    assert!(
        out.status.success() && file.exists(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    check_opaque(&file, &identity, b"");
    // A token without sudo on sys/backup is refused, and so is a bad recipient.
    let reader = std::fs::read_to_string(&token).unwrap();
    let (status, _) = curl(
        &url,
        Some(reader.trim()),
        &["-X", "POST", "-d", &body, "/v1/sys/coffer/backup"],
    );
    assert_eq!(status, 403);
    let (status, text) = curl(
        &url,
        Some(&root),
        &[
            "-X",
            "POST",
            "-d",
            r#"{"recipients":["age1nope"]}"#,
            "/v1/sys/coffer/backup",
        ],
    );
    assert_eq!(status, 400, "{text}");
    d.stop();
    // Offline, from the stopped daemon's data directory (its key file opens it).
    let offline = work.path().join("offline.age");
    let out = run_cli(
        &[
            "backup",
            "--data-dir",
            s(&d.data),
            "--tpm-tcti",
            "none",
            "--out",
            s(&offline),
            "--recipient",
            &recipient,
        ],
        b"",
    );
    assert!(out.status.success(), "offline backup: {}", stderr(&out));
    check_opaque(&offline, &identity, &[out.stdout, out.stderr].concat());
    std::fs::rename(d.data.join("coffer.key"), work.path().join("old.key")).unwrap();
    for f in [&file, &offline] {
        let restored = restore_and_open(f, &identity, &recovery);
        check_restored(&restored, &token);
    }
    let _ = root_token;
}

fn refused(file: &Path, identity: &Path, recovery: &Path, target: &Path) -> (i32, String) {
    let out = run_cli(
        &[
            "restore",
            "--from",
            s(file),
            "--identity",
            s(identity),
            "--recovery-file",
            s(recovery),
            "--data-dir",
            s(target),
        ],
        b"",
    );
    assert!(!out.status.success(), "restored a bad backup");
    let empty = std::fs::read_dir(target).map_or(true, |mut d| d.next().is_none());
    assert!(
        empty,
        "{} is not empty after a refused restore",
        target.display()
    );
    (out.status.code().unwrap(), stderr(&out))
}

#[test]
fn damaged_altered_foreign_and_misaddressed_backups_are_refused_leaving_nothing() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let (identity, recipient) = common::age_keygen(w, "id.txt");
    let (other_id, _) = common::age_keygen(w, "other.txt");
    let d = Daemon::start(&[]);
    let recovery = add_recovery(&d, w);
    set(&d, None, "app/db-password", VALUES[0]);
    let good = w.join("good.age");
    let out = d.cli(
        &["backup", "--out", s(&good), "--recipient", &recipient],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(&good).unwrap();
    let target = w.join("target");

    let flipped = w.join("flipped.age");
    let mut b = bytes.clone();
    let at = b.len() / 2 + 200;
    b[at] ^= 0x10;
    std::fs::write(&flipped, &b).unwrap();
    let (code, msg) = refused(&flipped, &identity, &recovery, &target);
    assert_eq!(code, 70, "{msg}");
    assert!(msg.contains("damaged"), "{msg}");

    let truncated = w.join("truncated.age");
    std::fs::write(&truncated, &bytes[..bytes.len() - 300]).unwrap();
    let (code, msg) = refused(&truncated, &identity, &recovery, &target);
    assert_eq!(code, 70, "{msg}");

    let (code, msg) = refused(&good, &other_id, &recovery, &target);
    assert_eq!(code, 77, "{msg}");
    assert!(msg.contains("identity"), "{msg}");

    // Altered and encrypted again to the same recipient by someone holding the identity but
    // not the master key: the real `age` takes it apart and puts it back together.
    let plain = Command::new("age")
        .args(["-d", "-i", s(&identity), s(&good)])
        .output()
        .unwrap();
    assert!(plain.status.success());
    let mut p = plain.stdout.clone();
    let at = p.len() / 2;
    p[at] ^= 0x01;
    let altered = w.join("altered.age");
    let mut enc = Command::new("age")
        .args(["-r", &recipient, "-o", s(&altered)])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(enc.stdin.as_mut().unwrap(), &p).unwrap();
    drop(enc.stdin.take());
    assert!(enc.wait().unwrap().success());
    let (code, msg) = refused(&altered, &identity, &recovery, &target);
    assert_eq!(code, 70, "{msg}");

    // A backup of another store, encrypted to the same recipient.
    let other = Daemon::start(&[]);
    set(&other, None, "app/db-password", "VAL-other-store");
    let foreign = w.join("foreign.age");
    let out = other.cli(
        &["backup", "--out", s(&foreign), "--recipient", &recipient],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (code, msg) = refused(&foreign, &identity, &recovery, &target);
    assert_eq!(code, 77, "{msg}");
    assert!(msg.contains("another store"), "{msg}");

    // The same refusals from `backup verify`.
    let out = run_cli(
        &[
            "backup",
            "verify",
            s(&altered),
            "--identity",
            s(&identity),
            "--recovery-file",
            s(&recovery),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(70), "{}", stderr(&out));

    // A target with something in it is refused, and keeps what it had.
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("mine"), b"kept").unwrap();
    let out = run_cli(
        &[
            "restore",
            "--from",
            s(&good),
            "--identity",
            s(&identity),
            "--recovery-file",
            s(&recovery),
            "--data-dir",
            s(&target),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(73), "{}", stderr(&out));
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
    assert_eq!(std::fs::read(target.join("mine")).unwrap(), b"kept");
    // And the good one restores into an empty one.
    std::fs::remove_file(target.join("mine")).unwrap();
    let out = run_cli(
        &[
            "restore",
            "--from",
            s(&good),
            "--identity",
            s(&identity),
            "--recovery-file",
            s(&recovery),
            "--data-dir",
            s(&target),
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_backup_taken_while_a_writer_runs_holds_one_consistent_state() {
    let work = tempfile::tempdir().unwrap();
    let (identity, recipient) = common::age_keygen(work.path(), "id.txt");
    let d = Daemon::start(&[]);
    let recovery = add_recovery(&d, work.path());
    for i in 0..300 {
        set(&d, None, &format!("base-{i}"), &format!("VAL-base-{i}"));
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (client, stop) = (d.client(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 50 {
                let v = SecretBytes::copy_from(format!("VAL-live-{n}").as_bytes());
                client
                    .set(None, &format!("live-{}", n % 40), &v, None)
                    .unwrap();
                n += 1;
            }
            n
        })
    };
    let file = work.path().join("live.age");
    let out = d.cli(
        &["backup", "--out", s(&file), "--recipient", &recipient],
        b"",
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = writer.join().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(writes >= 50);
    let out = run_cli(
        &[
            "backup",
            "verify",
            s(&file),
            "--identity",
            s(&identity),
            "--recovery-file",
            s(&recovery),
        ],
        b"",
    );
    assert!(out.status.success(), "verify: {}", stderr(&out));
    let restored = restore_and_open(&file, &identity, &recovery);
    // Every secret and every version in the backup reads back.
    let options = coffer_client::ListOptions {
        limit: Some(10_000),
        ..Default::default()
    };
    let names = restored.client().list(None, &options).unwrap().items;
    assert!(names.len() >= 300, "{}", names.len());
    for name in &names {
        let versions = restored.client().versions(None, name).unwrap();
        for v in versions {
            let value = restored.client().get(None, name, Some(v.version)).unwrap();
            assert!(
                value.expose_secret().starts_with(b"VAL-"),
                "{name} v{}",
                v.version
            );
        }
    }
}

fn backup_through(d: &Daemon, file: &Path, recipient: &str) {
    let out = d.cli(&["backup", "--out", s(file), "--recipient", recipient], b"");
    assert!(
        out.status.success(),
        "backup: {}\n{}",
        stderr(&out),
        d.log()
    );
}

fn restore_into(file: &Path, identity: &Path, recovery: &Path, dir: &Path) {
    let out = run_cli(
        &[
            "restore",
            "--from",
            s(file),
            "--identity",
            s(identity),
            "--recovery-file",
            s(recovery),
            "--data-dir",
            s(dir),
        ],
        b"",
    );
    assert!(out.status.success(), "restore: {}", stderr(&out));
}

fn state(d: &Daemon) -> String {
    serde_json::to_value(d.client().status().unwrap().state)
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

/// A store sealed to one machine's TPM, restored on a machine with another TPM: its TPM slot
/// is reported once as sealed by another TPM (not as an error at every start), the recovery
/// key opens it, and `slots add tpm` binds it to the new TPM, which then opens it alone.
#[test]
fn a_tpm_store_restored_under_another_tpm_opens_by_recovery_and_binds_to_it() {
    use coffer_tpm::fixture::Swtpm;
    let work = tempfile::tempdir().unwrap();
    let (identity, recipient) = common::age_keygen(work.path(), "id.txt");
    let first = Swtpm::start();
    let mut d = Daemon::new(&[]);
    d.env("COFFER_TPM_TCTI", &first.tcti());
    let out = run_cli(
        &[
            "init",
            "--data-dir",
            s(&d.data),
            "--tpm-tcti",
            &first.tcti(),
            "--slot",
            "tpm",
        ],
        b"",
    );
    assert!(out.status.success(), "init: {}", stderr(&out));
    let recovery = work.path().join("recovery.txt");
    std::fs::write(&recovery, stdout(&out).trim()).unwrap();
    d.spawn();
    assert_eq!(state(&d), "unsealed");
    set(&d, None, "app/db-password", VALUES[0]);
    let file = work.path().join("tpm.age");
    backup_through(&d, &file, &recipient);
    d.stop();

    let second = Swtpm::start();
    let mut r = Daemon::new(&[]);
    r.env("COFFER_TPM_TCTI", &second.tcti());
    restore_into(&file, &identity, &recovery, &r.data);
    r.spawn();
    assert_eq!(state(&r), "sealed");
    let log = r.log();
    assert!(log.contains("sealed by another TPM"), "{log}");
    let slots = r.cli(&["slots", "list"], b"");
    assert!(stdout(&slots).contains("another TPM"), "{}", stdout(&slots));
    let out = r.cli(
        &["unseal", "--recovery"],
        &std::fs::read(&recovery).unwrap(),
    );
    assert!(
        out.status.success(),
        "unseal: {}\n{}",
        stderr(&out),
        r.log()
    );
    assert_eq!(get(&r, None, "app/db-password", None).unwrap(), VALUES[0]);
    let out = r.cli(&["slots", "add", "tpm"], b"");
    assert!(out.status.success(), "slots add tpm: {}", stderr(&out));
    r.stop();
    r.spawn();
    assert_eq!(state(&r), "unsealed", "{}", r.log());
    assert_eq!(get(&r, None, "app/db-password", None).unwrap(), VALUES[0]);
}

/// The TPM NV store backs up through the same snapshot and restores into a SQLite data
/// directory (restoring into NV is refused as unsupported).
#[test]
fn a_tpm_nv_store_restores_into_sqlite() {
    use coffer_tpm::fixture::Swtpm;
    let work = tempfile::tempdir().unwrap();
    let (identity, recipient) = common::age_keygen(work.path(), "id.txt");
    let tpm = Swtpm::start();
    let mut d = Daemon::new(&["--store", "tpm-nv"]);
    d.env("COFFER_TPM_TCTI", &tpm.tcti());
    d.spawn();
    let recovery = add_recovery(&d, work.path());
    set(&d, None, "app/db-password", VALUES[0]);
    set(&d, None, "app/db-password", VALUES[1]);
    set(&d, None, "app/api-key", VALUES[2]);
    let file = work.path().join("nv.age");
    backup_through(&d, &file, &recipient);
    d.stop();
    let r = restore_and_open(&file, &identity, &recovery);
    assert_eq!(r.client().status().unwrap().backend, "sqlite");
    assert_eq!(get(&r, None, "app/db-password", None).unwrap(), VALUES[1]);
    assert_eq!(
        get(&r, None, "app/db-password", Some(1)).unwrap(),
        VALUES[0]
    );
    assert_eq!(get(&r, None, "app/api-key", None).unwrap(), VALUES[2]);
}

/// A backup to a passphrase (age's scrypt recipient) through the daemon opens with that
/// passphrase and a slot; a recipients file works as --recipient does; a passphrase with a
/// recipient is refused.
#[test]
fn passphrase_and_recipients_file_backups() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let (identity, recipient) = common::age_keygen(w, "id.txt");
    let d = Daemon::start(&[]);
    let recovery = add_recovery(&d, w);
    set(&d, None, "app/db-password", VALUES[0]);
    let pass = w.join("pass.txt");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let file = w.join("pass.age");
    let out = d.cli(
        &["backup", "--out", s(&file), "--passphrase-file", s(&pass)],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_absent(
        "the backup",
        &std::fs::read(&file).unwrap(),
        &["correct horse", VALUES[0]],
    );
    assert_absent(
        "the daemon's log",
        d.log().as_bytes(),
        &["correct horse", VALUES[0]],
    );
    let verify = |extra: &[&str]| {
        run_cli(
            &[
                &[
                    "backup",
                    "verify",
                    s(&file),
                    "--recovery-file",
                    s(&recovery),
                ],
                extra,
            ]
            .concat(),
            b"",
        )
    };
    let out = verify(&["--backup-passphrase-file", s(&pass)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let wrong = w.join("wrong.txt");
    std::fs::write(&wrong, "wrong").unwrap();
    let out = verify(&["--backup-passphrase-file", s(&wrong)]);
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));

    let list = w.join("recipients.txt");
    std::fs::write(&list, format!("# the offsite key\n{recipient}\n")).unwrap();
    let file = w.join("list.age");
    let out = d.cli(
        &["backup", "--out", s(&file), "--recipients-file", s(&list)],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run_cli(
        &[
            "backup",
            "verify",
            s(&file),
            "--identity",
            s(&identity),
            "--recovery-file",
            s(&recovery),
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let out = d.cli(
        &[
            "backup",
            "--out",
            s(&file),
            "--passphrase-file",
            s(&pass),
            "--recipient",
            &recipient,
        ],
        b"",
    );
    assert!(!out.status.success());
}
