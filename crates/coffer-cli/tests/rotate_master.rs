//! `coffer rotate-master` with the real daemon: a new master key, every slot and namespace
//! key re-wrapped in one transaction, a new recovery key printed once. The old recovery key
//! opens nothing afterwards; the key file and passphrase slots still open the store; a token
//! made before still works; the audit chain still verifies; and a daemon killed right after
//! the answer holds the new state.
#![allow(clippy::unwrap_used)]

mod common;

use coffer_crypto::SecretBytes;
use common::{Daemon, assert_absent, raw, run_cli, stderr, stdout};
use serde_json::{Value, json};

fn is_recovery_key(line: &str) -> bool {
    let groups: Vec<&str> = line.split('-').collect();
    groups.len() == 14 && groups.iter().all(|g| g.len() == 4)
}

fn request(daemon: &Daemon, body: Value) -> Value {
    raw(&daemon.socket, format!("{body}\n").as_bytes())
}

fn check(daemon: &Daemon, token: &str) {
    let client = daemon.client();
    for i in 0..40 {
        let v = client.get(None, &format!("k{i}"), None).unwrap();
        assert_eq!(v.expose_secret(), format!("second-{i}").as_bytes());
        let v = client
            .get(None, &format!("k{i}"), Some(coffer_types::Version::FIRST))
            .unwrap();
        assert_eq!(v.expose_secret(), format!("first-{i}").as_bytes());
    }
    let v = client.get(Some("team"), "db", None).unwrap();
    assert_eq!(v.expose_secret(), b"team-value");
    // The token made before the rotation still authenticates (its stored hash is keyed by
    // a key derived from the derivation root).
    let r = request(
        daemon,
        json!({"action": "get", "name": "k3", "token": token}),
    );
    assert_eq!(r["ok"], true, "{r}");
}

#[test]
fn rotate_master_rewraps_everything_and_retires_the_old_recovery_key() {
    let mut daemon = Daemon::new(&[]);
    let out = run_cli(&["init", "--data-dir", daemon.data.to_str().unwrap()], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let old_recovery = stdout(&out).trim().to_owned();
    assert!(is_recovery_key(&old_recovery));
    daemon.spawn();
    let client = daemon.client();
    for i in 0..40 {
        for round in ["first", "second"] {
            let v = SecretBytes::copy_from(format!("{round}-{i}").as_bytes());
            client.set(None, &format!("k{i}"), &v, None).unwrap();
        }
    }
    client.create_namespace("team").unwrap();
    client
        .set(
            Some("team"),
            "db",
            &SecretBytes::copy_from(b"team-value"),
            None,
        )
        .unwrap();
    let out = daemon.cli(&["slots", "add", "passphrase"], b"correct horse battery\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let made = request(
        &daemon,
        json!({"action": "token_create", "policies": ["root"], "ttl": "8h"}),
    );
    let token = made["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{made}"))
        .to_owned();
    // A token the store never made is refused, so the check after the rotation means
    // something.
    let bogus = request(
        &daemon,
        json!({"action": "get", "name": "k3", "token": "cft_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}),
    );
    assert_eq!(bogus["code"], "unauthenticated", "{bogus}");

    // Without the passphrase (and standard input empty) it refuses and changes nothing.
    let refused = daemon.cli(&["rotate-master"], b"");
    assert!(!refused.status.success());

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passphrases");
    std::fs::write(&file, "correct horse battery\n").unwrap();
    let out = daemon.cli(
        &["rotate-master", "--passphrase-file", file.to_str().unwrap()],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let new_recovery = stdout(&out).trim().to_owned();
    assert!(is_recovery_key(&new_recovery), "{new_recovery:?}");
    assert_ne!(new_recovery, old_recovery);
    assert!(!stderr(&out).contains(&new_recovery));
    // The running daemon switched at once.
    check(&daemon, &token);
    client.create_namespace("after").unwrap();
    client
        .set(
            Some("after"),
            "x",
            &SecretBytes::copy_from(b"after-value"),
            None,
        )
        .unwrap();

    // Killed right after the answer: the new state is what the store holds.
    daemon.kill9();
    daemon.spawn();
    check(&daemon, &token);
    let v = daemon.client().get(Some("after"), "x", None).unwrap();
    assert_eq!(v.expose_secret(), b"after-value");

    // The old recovery key opens nothing; the new one and the passphrase do.
    assert!(daemon.cli(&["seal"], b"").status.success());
    let old = daemon.cli(
        &["unseal", "--recovery"],
        format!("{old_recovery}\n").as_bytes(),
    );
    assert!(!old.status.success(), "the old recovery key still opens");
    let new = daemon.cli(
        &["unseal", "--recovery"],
        format!("{new_recovery}\n").as_bytes(),
    );
    assert!(new.status.success(), "{}", stderr(&new));
    check(&daemon, &token);
    assert!(daemon.cli(&["seal"], b"").status.success());
    let pass = daemon.cli(&["unseal"], b"correct horse battery\n");
    assert!(pass.status.success(), "{}", stderr(&pass));
    check(&daemon, &token);

    // A second rotation dropping the passphrase slot.
    let out = daemon.cli(&["rotate-master", "--drop-passphrase-slots"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("dropped passphrase slot"),
        "{}",
        stderr(&out)
    );
    let third_recovery = stdout(&out).trim().to_owned();
    check(&daemon, &token);
    let slots = daemon.client().slots().unwrap();
    assert!(slots.iter().all(|s| s.kind != "passphrase"), "{slots:?}");

    // The audit chain, MAC'd under a key derived from the root, still verifies.
    let verify = daemon.cli(&["audit", "verify"], b"");
    assert!(
        verify.status.success(),
        "{}{}",
        stdout(&verify),
        stderr(&verify)
    );
    assert!(
        daemon
            .audit()
            .iter()
            .filter(|r| r["action"] == "rotate_master")
            .count()
            >= 2
    );
    // Restarted: the key file slot opens the store by itself.
    daemon.stop();
    daemon.spawn();
    check(&daemon, &token);
    daemon.stop();
    let offline = run_cli(
        &[
            "audit",
            "verify",
            "--data-dir",
            daemon.data.to_str().unwrap(),
        ],
        b"",
    );
    assert!(
        offline.status.success(),
        "{}{}",
        stdout(&offline),
        stderr(&offline)
    );
    assert_absent(
        "the daemon log",
        daemon.log().as_bytes(),
        &[
            &old_recovery,
            &new_recovery,
            &third_recovery,
            "correct horse battery",
            "second-7",
        ],
    );
}

/// A TPM slot is re-wrapped by the daemon (it unseals its node key): after the rotation and
/// a restart the store opens unattended through the TPM, and the old recovery key opens
/// nothing.
#[test]
fn rotate_master_rewraps_the_tpm_slot() {
    let tpm = coffer_tpm::fixture::Swtpm::start();
    let mut daemon = Daemon::new(&[]);
    daemon.env("COFFER_TPM_TCTI", &tpm.tcti());
    let out = run_cli(
        &[
            "init",
            "--data-dir",
            daemon.data.to_str().unwrap(),
            "--tpm-tcti",
            &tpm.tcti(),
            "--slot",
            "tpm",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let old_recovery = stdout(&out).trim().to_owned();
    daemon.spawn();
    let value = SecretBytes::copy_from(b"tpm-bound-value");
    daemon.client().set(None, "k", &value, None).unwrap();
    let out = daemon.cli(&["rotate-master"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let new_recovery = stdout(&out).trim().to_owned();
    assert!(is_recovery_key(&new_recovery));
    daemon.stop();
    daemon.spawn();
    let status = daemon.client().status().unwrap();
    assert_eq!(
        serde_json::to_value(status.state).unwrap(),
        "unsealed",
        "the TPM slot did not open the store after the rotation:\n{}",
        daemon.log()
    );
    let v = daemon.client().get(None, "k", None).unwrap();
    assert_eq!(v.expose_secret(), b"tpm-bound-value");
    assert!(daemon.cli(&["seal"], b"").status.success());
    let old = daemon.cli(
        &["unseal", "--recovery"],
        format!("{old_recovery}\n").as_bytes(),
    );
    assert!(!old.status.success(), "the old recovery key still opens");
    let new = daemon.cli(
        &["unseal", "--recovery"],
        format!("{new_recovery}\n").as_bytes(),
    );
    assert!(new.status.success(), "{}", stderr(&new));
}
