//! Namespaces that lock, end to end: the real daemon, its socket, its HTTP API, the CLI, its
//! database file and its memory (read through /proc/PID/mem as root).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Duration;

use common::http::{curl, http_daemon};
use common::{Daemon, assert_absent, code, raw, set_in, stderr, stdout};
use serde_json::{Value, json};

const LOCKED: &str = "vault/locked";
const OPEN: &str = "vault/open";
const PASSPHRASE: &str = "pp-lock-4f1c9e27b3-correct";
const WRONG: &str = "pp-lock-wrong-88a1";
const NOBODY: u32 = 65534;

/// A value no other bytes in the daemon resemble.
fn distinctive(tag: &str) -> String {
    let mut r = [0u8; 12];
    getrandom(&mut r);
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    format!("lockval-{tag}-{hex}")
}

fn getrandom(buf: &mut [u8]) {
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(buf)
        .unwrap();
}

fn pass_file(daemon: &Daemon, name: &str, pass: &str) -> PathBuf {
    let path = daemon.root.path().join(name);
    std::fs::write(&path, format!("{pass}\n")).unwrap();
    path
}

fn req(daemon: &Daemon, request: Value) -> Value {
    raw(&daemon.socket, request.to_string().as_bytes())
}

/// A daemon with `vault/locked` (with a passphrase) and `vault/open` (without).
fn with_namespaces(args: &[&str]) -> Daemon {
    let daemon = Daemon::start(args);
    setup(&daemon);
    daemon
}

fn setup(daemon: &Daemon) {
    let file = pass_file(daemon, "pass", PASSPHRASE);
    let out = daemon.cli(
        &[
            "namespaces",
            "create",
            LOCKED,
            "--passphrase-file",
            file.to_str().unwrap(),
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = daemon.cli(&["namespaces", "create", OPEN], b"");
    assert!(out.status.success(), "{}", stderr(&out));
}

fn lock(daemon: &Daemon) {
    let out = daemon.cli(&["namespaces", "lock", LOCKED], b"");
    assert!(out.status.success(), "{}", stderr(&out));
}

fn unlock(daemon: &Daemon, pass: &str) -> std::process::Output {
    let file = pass_file(daemon, "unlock-pass", pass);
    daemon.cli(
        &[
            "namespaces",
            "unlock",
            LOCKED,
            "--passphrase-file",
            file.to_str().unwrap(),
        ],
        b"",
    )
}

/// Every request kind in the locked namespace, over the socket.
fn every_request(ns: &str) -> Vec<Value> {
    let one = |action: &str| json!({"action": action, "namespace": ns, "name": "k0"});
    let mut all = vec![
        one("get"),
        json!({"action": "set", "namespace": ns, "name": "k0", "value": "x"}),
        json!({"action": "set", "namespace": ns, "name": "brand-new", "value": "x"}),
        json!({"action": "list", "namespace": ns}),
        one("meta"),
        one("versions"),
        json!({"action": "describe", "namespace": ns, "name": "k0", "description": "d"}),
        json!({"action": "generate", "namespace": ns, "name": "gen"}),
        json!({"action": "rotate", "namespace": ns, "name": "k0", "generate": true}),
        one("revoke"),
        json!({"action": "destroy", "namespace": ns, "name": "k0", "versions": [1]}),
        json!({"action": "hmac", "namespace": ns, "name": "k0", "data": "d"}),
        json!({"action": "basic_auth", "namespace": ns, "name": "k0", "user": "u"}),
        one("yescrypt"),
        one("del"),
        json!({"action": "watch", "namespace": ns}),
    ];
    all.push(json!({"action": "patch", "namespace": ns, "name": "k0", "value": "{}"}));
    all
}

#[test]
fn a_locked_namespace_answers_locked_until_unlocked_across_a_restart() {
    let mut daemon = with_namespaces(&[]);
    let values: Vec<String> = (0..4).map(|i| distinctive(&format!("s{i}"))).collect();
    for (i, v) in values.iter().enumerate() {
        set_in(&daemon, LOCKED, &format!("k{i}"), v);
        set_in(&daemon, OPEN, &format!("k{i}"), v);
    }
    // A namespace without a passphrase cannot be locked.
    let out = daemon.cli(&["namespaces", "lock", OPEN], b"");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no passphrase"), "{}", stderr(&out));

    // A watch of the namespace, open while it is locked, ends with `locked`.
    let mut watch = std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap();
    watch
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    watch
        .write_all(
            json!({"action": "watch", "namespace": LOCKED})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
    let mut lines = BufReader::new(watch).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["ok"], true, "{first}");

    // A caller without `sudo` on sys/namespaces can neither lock nor unlock.
    let refused = common::requests_as(
        NOBODY,
        &daemon.socket,
        &[
            json!({"action": "namespace_lock", "namespace": LOCKED}),
            json!({"action": "namespace_unlock", "namespace": LOCKED, "key": PASSPHRASE}),
        ],
    );
    for r in &refused {
        assert_eq!(code(r), "denied", "{r}");
    }

    lock(&daemon);
    let ended = loop {
        let line: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        if line.get("heartbeat").is_none() && line.get("action").is_none() {
            break line;
        }
    };
    assert_eq!(code(&ended), "locked", "{ended}");

    let check_locked = |daemon: &Daemon| {
        for request in every_request(LOCKED) {
            let reply = req(daemon, request.clone());
            assert_eq!(code(&reply), "locked", "{request} -> {reply}");
            let msg = reply["error"].as_str().unwrap();
            assert!(
                msg.contains(LOCKED) && msg.contains("coffer namespaces unlock"),
                "{msg}"
            );
        }
        // Other namespaces serve as usual.
        let r = req(
            daemon,
            json!({"action": "get", "namespace": OPEN, "name": "k1"}),
        );
        assert_eq!(r["value"], values[1].as_str(), "{r}");
        set_in(daemon, OPEN, "during-lock", "fine");
        // The CLI exits with the status of `locked` (69, as for a sealed store).
        let out = daemon.cli(&["get", "--namespace", LOCKED, "k0"], b"");
        assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
        // The list shows it locked.
        let out = daemon.cli(&["namespaces", "list"], b"");
        assert!(
            stdout(&out)
                .lines()
                .any(|l| l == format!("{LOCKED}\tlocked")),
            "{}",
            stdout(&out)
        );
    };
    check_locked(&daemon);

    // A wrong passphrase is refused (denied), and the namespace stays locked.
    let out = unlock(&daemon, WRONG);
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("passphrase does not open"),
        "{}",
        stderr(&out)
    );
    check_locked(&daemon);

    // A restart keeps it locked.
    daemon.stop();
    daemon.spawn();
    check_locked(&daemon);

    // The database holds no master-only wrap of its key: only the passphrase wrap.
    let db = rusqlite::Connection::open(daemon.data.join("coffer.db")).unwrap();
    let rows: Vec<(i64, bool)> = db
        .prepare("SELECT length(wrapped_key), lock_wrap IS NOT NULL FROM namespaces")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        rows.iter().filter(|(len, wrap)| *len == 0 && *wrap).count(),
        1,
        "exactly the locked namespace has no master-only wrap: {rows:?}"
    );
    drop(db);

    let out = unlock(&daemon, PASSPHRASE);
    assert!(out.status.success(), "{}", stderr(&out));
    for (i, v) in values.iter().enumerate() {
        let r = req(
            &daemon,
            json!({"action": "get", "namespace": LOCKED, "name": format!("k{i}")}),
        );
        assert_eq!(r["value"], v.as_str(), "{r}");
    }
    let r = req(&daemon, json!({"action": "list", "namespace": LOCKED}));
    assert_eq!(r["names"].as_array().unwrap().len(), values.len(), "{r}");
    let out = daemon.cli(&["namespaces", "list", "--json"], b"");
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["locked"], json!([]), "{listed}");

    // Lock and unlock are audited (the wrong passphrase too) and are events.
    let audit = daemon.audit();
    let actions = |a: &str| audit.iter().filter(|r| r["action"] == a).count();
    assert!(actions("namespace_lock") >= 3, "{audit:?}");
    assert!(actions("namespace_unlock") >= 3, "{audit:?}");
    assert!(
        audit
            .iter()
            .any(|r| r["action"] == "namespace_unlock" && r["code"] == "denied"),
        "the wrong passphrase is audited"
    );
    assert!(
        audit
            .iter()
            .any(|r| r["action"] == "get" && r["code"] == "locked"),
        "requests refused as locked are audited"
    );
    // The passphrase never reaches the daemon's log or the audit log.
    let audit_text: String = audit.iter().map(|r| format!("{r}\n")).collect();
    assert_absent(
        "the daemon's log",
        daemon.log().as_bytes(),
        &[PASSPHRASE, WRONG],
    );
    assert_absent("the audit log", audit_text.as_bytes(), &[PASSPHRASE, WRONG]);
    for dir_entry in std::fs::read_dir(daemon.data.join("audit")).unwrap() {
        let bytes = std::fs::read(dir_entry.unwrap().path()).unwrap();
        assert_absent("an audit file", &bytes, &[PASSPHRASE, WRONG]);
    }
}

#[test]
fn lock_and_unlock_emit_events() {
    let daemon = with_namespaces(&[]);
    set_in(&daemon, LOCKED, "k", "v");
    lock(&daemon);
    let out = unlock(&daemon, PASSPHRASE);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut s = std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(
        json!({"action": "watch", "namespace": LOCKED, "since": 0})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let mut lines = BufReader::new(s).lines();
    let mut seen = Vec::new();
    while !seen.contains(&"namespace.unlocked".to_owned()) {
        let line: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        if let Some(a) = line["action"].as_str()
            && line["namespace"] == LOCKED
        {
            seen.push(a.to_owned());
        }
    }
    assert!(seen.contains(&"namespace.locked".to_owned()), "{seen:?}");
}

#[test]
fn over_http_a_locked_namespace_answers_503_and_unlocks() {
    let (daemon, url, token) = http_daemon(&[]);
    setup(&daemon);
    let secret = distinctive("http");
    let body = daemon.root.path().join("body.json");
    std::fs::write(&body, json!({"data": {"password": secret}}).to_string()).unwrap();
    let at = format!("@{}", body.display());
    let (status, text) = curl(
        &url,
        Some(&token),
        &[
            "-X",
            "POST",
            "--data-binary",
            &at,
            &format!("/v1/{LOCKED}/data/db"),
        ],
    );
    assert_eq!(status, 200, "{text}");
    set_in(&daemon, OPEN, "k", "open-value");

    let (status, text) = curl(
        &url,
        Some(&token),
        &[
            "-X",
            "POST",
            &format!("/v1/sys/coffer/namespaces/{LOCKED}/lock"),
        ],
    );
    assert_eq!(status, 204, "{text}");
    for path in [
        format!("/v1/{LOCKED}/data/db"),
        format!("/v1/{LOCKED}/metadata/db"),
        format!("/v1/{LOCKED}/metadata/?list=true"),
    ] {
        let (status, text) = curl(&url, Some(&token), &[&path]);
        assert_eq!(status, 503, "{path}: {text}");
        assert!(text.contains(LOCKED) && text.contains("unlock"), "{text}");
    }
    let (status, text) = curl(
        &url,
        Some(&token),
        &[
            "-X",
            "POST",
            "--data-binary",
            &at,
            &format!("/v1/{LOCKED}/data/db"),
        ],
    );
    assert_eq!(status, 503, "a write too: {text}");
    let (status, text) = curl(&url, Some(&token), &[&format!("/v1/{OPEN}/data/k")]);
    assert_eq!(status, 200, "other namespaces serve: {text}");
    let (status, text) = curl(&url, Some(&token), &["/v1/sys/coffer/namespaces"]);
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains(&format!("\"locked\":[\"{LOCKED}\"]")),
        "{text}"
    );

    // A wrong passphrase: denied (403), still locked.
    let wrong = daemon.root.path().join("wrong.json");
    std::fs::write(&wrong, json!({"passphrase": WRONG}).to_string()).unwrap();
    let (status, text) = curl(
        &url,
        Some(&token),
        &[
            "-X",
            "POST",
            "--data-binary",
            &format!("@{}", wrong.display()),
            &format!("/v1/sys/coffer/namespaces/{LOCKED}/unlock"),
        ],
    );
    assert_eq!(status, 403, "{text}");
    let (status, _) = curl(&url, Some(&token), &[&format!("/v1/{LOCKED}/data/db")]);
    assert_eq!(status, 503);

    let right = daemon.root.path().join("right.json");
    std::fs::write(&right, json!({"passphrase": PASSPHRASE}).to_string()).unwrap();
    let (status, text) = curl(
        &url,
        Some(&token),
        &[
            "-X",
            "POST",
            "--data-binary",
            &format!("@{}", right.display()),
            &format!("/v1/sys/coffer/namespaces/{LOCKED}/unlock"),
        ],
    );
    assert_eq!(status, 204, "{text}");
    let (status, text) = curl(&url, Some(&token), &[&format!("/v1/{LOCKED}/data/db")]);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(&secret), "{text}");
    assert_absent(
        "the daemon's log",
        daemon.log().as_bytes(),
        &[PASSPHRASE, WRONG],
    );
}

/// Every readable private mapping of `pid` (heap, stacks, anonymous memory, the binary's
/// writable data), read through /proc/PID/mem; mappings that fail to read are skipped.
fn memory_of(pid: u32) -> Vec<u8> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem"))
        .expect("reading another process's memory needs root (the suite runs as root)");
    let mut out = Vec::new();
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let (Some(range), Some(perms)) = (parts.next(), parts.next()) else {
            continue;
        };
        let name = line.split_whitespace().nth(5).unwrap_or("");
        if !perms.starts_with('r')
            || !perms.ends_with('p')
            || name == "[vvar]"
            || name == "[vsyscall]"
        {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let (start, end) = (
            u64::from_str_radix(start, 16).unwrap(),
            u64::from_str_radix(end, 16).unwrap(),
        );
        // Read in pieces: a piece that fails (a guard page) is skipped, not the mapping.
        let mut at = start;
        while at < end {
            let len = (end - at).min(1 << 20) as usize;
            let mut buf = vec![0u8; len];
            if mem.seek(SeekFrom::Start(at)).is_ok() && mem.read_exact(&mut buf).is_ok() {
                out.extend_from_slice(&buf);
            }
            at += len as u64;
        }
    }
    out
}

fn found(memory: &[u8], values: &[String]) -> Vec<String> {
    values
        .iter()
        .filter(|v| memory.windows(v.len()).any(|w| w == v.as_bytes()))
        .cloned()
        .collect()
}

/// The must-show: after the namespace's values were read (so they are cached) and it was
/// locked, none of them is anywhere in the daemon's memory; before locking they are (the
/// control, proving the search finds them).
#[test]
fn locking_leaves_none_of_its_values_in_the_daemons_memory() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "reading the daemon's memory through /proc/PID/mem needs root (the suite runs as root)"
    );
    let mut daemon = with_namespaces(&[]);
    let values: Vec<String> = (0..8).map(|i| distinctive(&format!("m{i}"))).collect();
    // Written through the CLI's stdin (no argv), then the daemon restarted: what is
    // measured is what reading and locking leave, not what the write path left in the old
    // process.
    for (i, v) in values.iter().enumerate() {
        let out = daemon.cli(
            &["set", "--namespace", LOCKED, &format!("m{i}")],
            v.as_bytes(),
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    daemon.stop();
    daemon.spawn();
    for _ in 0..3 {
        for (i, v) in values.iter().enumerate() {
            let r = req(
                &daemon,
                json!({"action": "get", "namespace": LOCKED, "name": format!("m{i}")}),
            );
            assert_eq!(r["value"], v.as_str(), "{r}");
        }
    }
    let pid = daemon.pid().unwrap();
    let before = found(&memory_of(pid), &values);
    assert_eq!(
        before.len(),
        values.len(),
        "the control: the search finds the cached values before locking"
    );
    lock(&daemon);
    let after = found(&memory_of(pid), &values);
    assert!(
        after.is_empty(),
        "{} of {} values of the locked namespace are still in the daemon's memory",
        after.len(),
        values.len()
    );
    // Still locked, still serving others; unlocking brings them back.
    let r = req(
        &daemon,
        json!({"action": "get", "namespace": LOCKED, "name": "m0"}),
    );
    assert_eq!(code(&r), "locked");
    let out = unlock(&daemon, PASSPHRASE);
    assert!(out.status.success(), "{}", stderr(&out));
    let r = req(
        &daemon,
        json!({"action": "get", "namespace": LOCKED, "name": "m0"}),
    );
    assert_eq!(r["value"], values[0].as_str());
}

/// The same, with the values written over the socket by this daemon (no restart between):
/// what writing them left (request buffers, the parsed request, the write's plaintext) is
/// gone after the lock too.
#[test]
fn locking_leaves_none_of_its_values_even_those_written_by_this_process() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "reading the daemon's memory through /proc/PID/mem needs root (the suite runs as root)"
    );
    let daemon = with_namespaces(&[]);
    let values: Vec<String> = (0..8).map(|i| distinctive(&format!("w{i}"))).collect();
    for (i, v) in values.iter().enumerate() {
        set_in(&daemon, LOCKED, &format!("w{i}"), v);
    }
    for _ in 0..3 {
        for (i, v) in values.iter().enumerate() {
            let r = req(
                &daemon,
                json!({"action": "get", "namespace": LOCKED, "name": format!("w{i}")}),
            );
            assert_eq!(r["value"], v.as_str(), "{r}");
        }
    }
    let pid = daemon.pid().unwrap();
    assert_eq!(
        found(&memory_of(pid), &values).len(),
        values.len(),
        "the control"
    );
    lock(&daemon);
    let after = found(&memory_of(pid), &values);
    assert!(
        after.is_empty(),
        "{} of {} values written and read by this daemon are still in its memory",
        after.len(),
        values.len()
    );
}

/// The same over HTTP: values written and read through the Vault API (hyper's buffers,
/// the JSON bodies) are gone from the daemon's memory once the namespace is locked.
#[test]
fn locking_leaves_none_of_its_values_read_over_http() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "reading the daemon's memory through /proc/PID/mem needs root (the suite runs as root)"
    );
    let (daemon, url, token) = http_daemon(&[]);
    setup(&daemon);
    let values: Vec<String> = (0..6).map(|i| distinctive(&format!("h{i}"))).collect();
    for (i, v) in values.iter().enumerate() {
        let body = daemon.root.path().join(format!("h{i}.json"));
        std::fs::write(&body, json!({"data": {"password": v}}).to_string()).unwrap();
        let (status, text) = curl(
            &url,
            Some(&token),
            &[
                "-X",
                "POST",
                "--data-binary",
                &format!("@{}", body.display()),
                &format!("/v1/{LOCKED}/data/h{i}"),
            ],
        );
        assert_eq!(status, 200, "{text}");
        std::fs::remove_file(&body).unwrap();
    }
    for _ in 0..3 {
        for (i, v) in values.iter().enumerate() {
            let (status, text) = curl(&url, Some(&token), &[&format!("/v1/{LOCKED}/data/h{i}")]);
            assert_eq!(status, 200, "{text}");
            assert!(text.contains(v.as_str()));
        }
    }
    let pid = daemon.pid().unwrap();
    assert_eq!(
        found(&memory_of(pid), &values).len(),
        values.len(),
        "the control"
    );
    let (status, text) = curl(
        &url,
        Some(&token),
        &[
            "-X",
            "POST",
            &format!("/v1/sys/coffer/namespaces/{LOCKED}/lock"),
        ],
    );
    assert_eq!(status, 204, "{text}");
    let memory = memory_of(pid);
    let after = found(&memory, &values);
    for v in &after {
        for (at, w) in memory.windows(v.len()).enumerate() {
            if w == v.as_bytes() {
                let from = at.saturating_sub(300);
                let to = (at + v.len() + 200).min(memory.len());
                eprintln!(
                    "LINGER {v} at {at}: {:?}",
                    String::from_utf8_lossy(&memory[from..to])
                );
            }
        }
    }
    assert!(
        after.is_empty(),
        "{} of {} values read over HTTP are still in the daemon's memory",
        after.len(),
        values.len()
    );
}

/// The rotation scheduler skips a secret of a locked namespace without an error at each
/// tick, keeps rotating the others, and rotates it again once it is unlocked.
#[test]
fn the_rotation_scheduler_skips_a_locked_namespace_quietly() {
    let daemon = with_namespaces(&[]);
    for ns in [LOCKED, OPEN] {
        let r = req(
            &daemon,
            json!({"action": "generate", "namespace": ns, "name": "rot", "rotate_every": "1s"}),
        );
        assert_eq!(r["ok"], true, "{r}");
    }
    lock(&daemon);
    let from = daemon.log().len();
    let current = |ns: &str| {
        let r = req(
            &daemon,
            json!({"action": "meta", "namespace": ns, "name": "rot"}),
        );
        r["meta"]["current"].as_u64().unwrap_or(0)
    };
    assert!(
        common::eventually(Duration::from_secs(30), || current(OPEN) >= 4),
        "the open namespace's secret kept rotating"
    );
    let since = daemon.log()[from..].to_owned();
    for line in since.lines() {
        assert!(
            !(line.contains(" WARN ") || line.contains(" ERROR ")),
            "the scheduler complained about the locked namespace: {line}"
        );
    }
    let out = unlock(&daemon, PASSPHRASE);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        common::eventually(Duration::from_secs(30), || current(LOCKED) >= 2),
        "rotated again once unlocked"
    );
}
