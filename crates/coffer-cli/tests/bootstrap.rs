//! Making and opening stores through the binary (reference 004, section 1): `coffer init`
//! and its refusals, the recovery key shown once, first boot of `coffer serve`, key files
//! that are wrong, passphrase stores that start sealed.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::{Daemon, assert_absent, eventually, run_cli, stderr, stdout};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn is_recovery_key(line: &str) -> bool {
    let groups: Vec<&str> = line.split('-').collect();
    groups.len() == 14
        && groups.iter().all(|g| {
            g.len() == 4
                && g.chars()
                    .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c))
        })
}

fn init(data: &Path, extra: &[&str], stdin: &[u8]) -> std::process::Output {
    run_cli(
        &[&["init", "--data-dir", data.to_str().unwrap()], extra].concat(),
        stdin,
    )
}

#[test]
fn init_prints_the_recovery_key_alone_and_refuses_to_overwrite() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("nested/data");
    let out = init(&data, &[], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "stdout holds only the recovery key: {printed:?}"
    );
    assert!(is_recovery_key(lines[0]), "{printed:?}");
    assert!(
        !stderr(&out).contains(lines[0]),
        "the key is shown once, on stdout only"
    );
    assert!(stderr(&out).contains("recovery key"), "{}", stderr(&out));
    let key = data.join("coffer.key");
    assert_eq!(mode(&key), 0o600);
    assert_eq!(fs::metadata(&key).unwrap().len(), 32);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&root.path().join("nested")), 0o700);
    let key_before = fs::read(&key).unwrap();

    // Again without --force: refused, nothing changed.
    let again = init(&data, &[], b"");
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("refusing to overwrite"),
        "{}",
        stderr(&again)
    );
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    assert!(stdout(&again).is_empty());
    assert_eq!(fs::read(&key).unwrap(), key_before);

    // --force needs the typed confirmation.
    let wrong = init(&data, &["--force"], b"yes\n");
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("not confirmed"),
        "{}",
        stderr(&wrong)
    );
    assert_eq!(fs::read(&key).unwrap(), key_before);

    let forced = init(&data, &["--force"], b"overwrite\n");
    assert!(forced.status.success(), "{}", stderr(&forced));
    let new_key = stdout(&forced);
    assert!(is_recovery_key(new_key.trim()));
    assert_ne!(new_key.trim(), lines[0]);
    assert_ne!(fs::read(&key).unwrap(), key_before);
}

#[test]
fn init_refuses_a_key_file_path_that_is_a_directory() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("keys");
    fs::create_dir(&dir).unwrap();
    let out = init(
        &root.path().join("data"),
        &["--key-file", dir.to_str().unwrap()],
        b"",
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("is a directory") && err.contains("coffer.key"),
        "{err}"
    );
    assert!(stdout(&out).is_empty());
}

#[test]
fn a_key_file_elsewhere_opens_the_store_and_the_data_directory_never_holds_it() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let key = root.path().join("secrets/coffer-master.key");
    let out = init(&data, &["--key-file", key.to_str().unwrap()], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&root.path().join("secrets")), 0o700);
    assert!(!data.join("coffer.key").exists());
    let mut daemon = Daemon::new(&[]);
    fs::remove_dir_all(&daemon.data).ok();
    fs::rename(&data, &daemon.data).unwrap();
    daemon.spawn();
    let status = daemon.cli(&["status", "--json"], b"");
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(report["state"], "unsealed", "{report}");
    assert_eq!(report["slots"][0]["path"], key.to_str().unwrap());
    assert_eq!(report["slots"][1]["kind"], "recovery");
}

#[test]
fn first_boot_mints_a_key_file_and_says_to_back_it_up() {
    let mut daemon = Daemon::start(&[]);
    let key = daemon.data.join("coffer.key");
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&daemon.data), 0o700);
    let log = daemon.log();
    assert!(
        log.contains("BACK IT UP") && log.contains(key.to_str().unwrap()),
        "{log}"
    );
    let set = daemon.cli(&["set", "first"], b"boot-value-xyz\n");
    assert!(set.status.success(), "{}", stderr(&set));
    // A restart opens the same store with no person present, and mints nothing new.
    let before = fs::read(&key).unwrap();
    daemon.stop();
    daemon.spawn();
    assert_eq!(fs::read(&key).unwrap(), before);
    let got = daemon.cli(&["get", "first"], b"");
    assert_eq!(got.stdout, b"boot-value-xyz");
    assert_eq!(daemon.log().matches("BACK IT UP").count(), 1);
    assert_absent(
        "the daemon log",
        daemon.log().as_bytes(),
        &["boot-value-xyz"],
    );
}

#[test]
fn a_key_file_with_wrong_permissions_or_size_leaves_the_daemon_up_but_unavailable() {
    let mut daemon = Daemon::start(&[]);
    assert!(daemon.cli(&["set", "k"], b"v-123\n").status.success());
    daemon.stop();
    let key = daemon.data.join("coffer.key");
    let good = fs::read(&key).unwrap();

    for (what, damage) in [
        (
            "mode 0644",
            Box::new(|k: &Path| fs::set_permissions(k, fs::Permissions::from_mode(0o644)).unwrap())
                as Box<dyn Fn(&Path)>,
        ),
        (
            "31 bytes",
            Box::new(|k: &Path| fs::write(k, [1u8; 31]).unwrap()),
        ),
        (
            "another store's key",
            Box::new(|k: &Path| fs::write(k, [9u8; 32]).unwrap()),
        ),
    ] {
        damage(&key);
        daemon.spawn();
        // The daemon starts and says, at WARN, which file is wrong.
        let log = daemon.log();
        let warn = log
            .lines()
            .rev()
            .find(|l| l.contains("WARN") && l.contains("unavailable"))
            .unwrap_or_else(|| panic!("{what}: no WARN line:\n{log}"));
        assert!(warn.contains(key.to_str().unwrap()), "{what}: {warn}");
        let get = daemon.cli(&["get", "k"], b"");
        assert_eq!(get.status.code(), Some(69), "{what}: {}", stderr(&get));
        assert!(
            stderr(&get).contains("store_unavailable"),
            "{what}: {}",
            stderr(&get)
        );
        let status = daemon.cli(&["status", "--json"], b"");
        let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        assert_eq!(report["state"], "unavailable", "{what}");
        // Fixed while running: served again without a restart.
        fs::write(&key, &good).unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(
            eventually(Duration::from_secs(5), || {
                daemon.cli(&["get", "k"], b"").stdout == b"v-123"
            }),
            "{what}: not served after the fix"
        );
        daemon.stop();
    }
}

#[test]
fn a_passphrase_store_starts_sealed_and_opens_with_the_passphrase_or_recovery_key() {
    let mut daemon = Daemon::new(&[]);
    let config = daemon.root.path().join("coffer.toml");
    // Cheap Argon2id so the test is quick; the defaults are m=64 MiB, t=3.
    fs::write(
        &config,
        "[argon2]\nmemory_kib = 1024\niterations = 1\nparallelism = 1\n",
    )
    .unwrap();
    let out = init(
        &daemon.data,
        &["--slot", "passphrase", "--config", config.to_str().unwrap()],
        b"correct horse battery\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let recovery = stdout(&out).trim().to_owned();
    assert!(is_recovery_key(&recovery));
    assert!(!daemon.data.join("coffer.key").exists());
    daemon.spawn();

    let status = daemon.cli(&["status", "--json"], b"");
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(report["state"], "sealed");
    let get = daemon.cli(&["get", "k"], b"");
    assert!(stderr(&get).contains("(sealed)"), "{}", stderr(&get));

    let wrong = daemon.cli(&["unseal"], b"wrong horse\n");
    assert!(!wrong.status.success());
    assert!(stderr(&wrong).contains("denied"), "{}", stderr(&wrong));

    let ok = daemon.cli(&["unseal"], b"correct horse battery\n");
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(
        daemon
            .cli(&["set", "k"], b"sealed-value-42")
            .status
            .success()
    );
    assert!(daemon.cli(&["seal"], b"").status.success());
    assert!(stderr(&daemon.cli(&["get", "k"], b"")).contains("(sealed)"));

    let mistyped = recovery.replacen(
        &recovery[0..1],
        if &recovery[0..1] == "A" { "B" } else { "A" },
        1,
    );
    let typo = daemon.cli(
        &["unseal", "--recovery"],
        format!("{mistyped}\n").as_bytes(),
    );
    assert!(stderr(&typo).contains("mistyped"), "{}", stderr(&typo));
    let rec = daemon.cli(
        &["unseal", "--recovery"],
        format!("{}\n", recovery.to_lowercase()).as_bytes(),
    );
    assert!(rec.status.success(), "{}", stderr(&rec));
    assert_eq!(daemon.cli(&["get", "k"], b"").stdout, b"sealed-value-42");

    // Restart: sealed again (a passphrase slot never opens by itself).
    daemon.stop();
    daemon.spawn();
    assert!(stderr(&daemon.cli(&["get", "k"], b"")).contains("(sealed)"));
    assert_absent(
        "the daemon log",
        daemon.log().as_bytes(),
        &["correct horse battery", "sealed-value-42", &recovery],
    );
}
