//! Issue 15, the `yescrypt` computed value: the daemon hashes a password secret the way
//! libxcrypt's crypt(3) does (`$y$j9T$...`, what `mkpasswd -m yescrypt` prints and PAM
//! checks), so the agent never holds the password. The real daemon and socket, checked
//! against the system's crypt(3) through Perl and against `mkpasswd`.
//!
//! Needs perl and mkpasswd (`apt-get install whois`; scripts/test installs it).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use coffer_crypto::SecretBytes;
use common::{Daemon, assert_absent, code, raw, stdout};
use serde_json::{Value, json};

const POLICIES: &str = r#"
[policies.pw-read]
rules = [{ path = "default/pw-*", capabilities = ["read"] }]

[policies.pw-meta]
rules = [{ path = "default/pw-*", capabilities = ["meta"] }]

[policies.other-read]
rules = [{ path = "default/other/*", capabilities = ["read"] }]
"#;

/// What the system's crypt(3) returns for `password` and `setting`; the password goes
/// through the environment, not argv.
fn crypt(password: &[u8], setting: &str) -> String {
    use std::os::unix::ffi::OsStrExt;
    let out = Command::new("perl")
        .args([
            "-e",
            "my $h = crypt($ENV{PW}, $ARGV[0]); print defined $h ? $h : '(undef)'",
        ])
        .arg(setting)
        .env("PW", std::ffi::OsStr::from_bytes(password))
        .output()
        .expect("perl runs (apt-get install perl)");
    assert!(out.status.success(), "perl failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// `mkpasswd -m yescrypt` of `password`, read from standard input.
fn mkpasswd(password: &[u8]) -> String {
    let child = Command::new("mkpasswd")
        .args(["-s", "-m", "yescrypt"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = child.unwrap_or_else(|e| {
        panic!("mkpasswd is missing ({e}): apt-get install whois (scripts/test installs it)")
    });
    child.stdin.take().unwrap().write_all(password).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "mkpasswd failed: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}

/// 20 random passwords: printable ASCII and some UTF-8, 8 to 40 characters.
fn passwords() -> Vec<String> {
    const ALPHABET: &[char] = &[
        'a', 'b', 'c', 'x', 'y', 'z', 'A', 'Q', 'Z', '0', '5', '9', ' ', '!', '"', '#', '$', '%',
        '\'', '(', '*', '+', ',', '-', '.', '/', ':', ';', '<', '=', '>', '?', '@', '[', '\\', ']',
        '^', '_', '`', '{', '|', '}', '~', 'ä', 'ß', 'é', 'ж', '€', '😀',
    ];
    let mut random = vec![0u8; 20 * 41];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut random)
        .unwrap();
    random
        .chunks(41)
        .enumerate()
        .map(|(i, chunk)| {
            let len = 8 + usize::from(chunk[0]) % 33;
            // A marker keeps them distinct and searchable in the log.
            let mut pw = format!("pw{i}-");
            pw.extend(
                chunk[1..=len]
                    .iter()
                    .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()]),
            );
            pw
        })
        .collect()
}

/// The fields of `$y$params$salt$hash`.
fn fields(hash: &str) -> Vec<&str> {
    let parts: Vec<&str> = hash.split('$').collect();
    assert_eq!(parts.len(), 5, "not a $y$ hash: {hash}");
    assert_eq!((parts[0], parts[1]), ("", "y"), "{hash}");
    parts
}

fn request(daemon: &Daemon, request: Value) -> Value {
    raw(&daemon.socket, request.to_string().as_bytes())
}

#[test]
fn yescrypt_is_what_crypt3_computes_and_mkpasswd_writes() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies.toml");
    std::fs::write(&policies, POLICIES).unwrap();
    let daemon = Daemon::start(&["--policy-file", policies.to_str().unwrap()]);
    let client = daemon.client();

    // perl's crypt is libxcrypt's and knows yescrypt: mkpasswd's own hash checks out.
    let theirs = mkpasswd(b"sanity check");
    assert_eq!(crypt(b"sanity check", &theirs), theirs);
    let their_fields = fields(&theirs);
    assert_eq!(their_fields[2], "j9T", "{theirs}");

    let passwords = passwords();
    let mut hashes = Vec::new();
    for (i, pw) in passwords.iter().enumerate() {
        let name = format!("pw-{i}");
        client
            .set(None, &name, &SecretBytes::copy_from(pw.as_bytes()), None)
            .unwrap();
        let hash = client.yescrypt(None, &name, None).unwrap();
        // crypt(3) with coffer's string as the setting gives that string back.
        assert_eq!(crypt(pw.as_bytes(), &hash), hash, "password {i}");
        // A wrong password gives another.
        let wrong = format!("{pw}x");
        let other = crypt(wrong.as_bytes(), &hash);
        assert_ne!(other, hash, "password {i}");
        assert!(other.starts_with("$y$j9T$"), "{other}");
        // mkpasswd's form and cost: `$y$j9T$`, a 22-character salt, a 43-character hash.
        let ours = fields(&hash);
        let theirs = mkpasswd(pw.as_bytes());
        let theirs = fields(&theirs);
        assert_eq!(ours[2], theirs[2], "{hash}");
        assert_eq!(ours[3].len(), theirs[3].len(), "{hash}");
        assert_eq!(ours[4].len(), theirs[4].len(), "{hash}");
        hashes.push(hash);
    }
    // Every hash has its own salt.
    let mut salts: Vec<&str> = hashes.iter().map(|h| fields(h)[3]).collect();
    salts.sort_unstable();
    salts.dedup();
    assert_eq!(salts.len(), hashes.len());

    // The hash given back as the setting: the same string (no re-render churn); also the
    // `$y$params$salt` prefix alone, and through the CLI.
    let again = client.yescrypt(None, "pw-0", Some(&hashes[0])).unwrap();
    assert_eq!(again, hashes[0]);
    let prefix = hashes[0].rsplit_once('$').unwrap().0;
    assert_eq!(
        client.yescrypt(None, "pw-0", Some(prefix)).unwrap(),
        hashes[0]
    );
    let out = daemon.cli(&["yescrypt", "pw-0", "--setting", &hashes[0]], b"");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out).trim_end(), hashes[0]);
    let fresh = daemon.cli(&["yescrypt", "pw-0"], b"");
    assert!(fresh.status.success(), "{fresh:?}");
    let fresh = stdout(&fresh).trim_end().to_owned();
    assert_ne!(fresh, hashes[0], "a fresh salt each time");
    assert_eq!(crypt(passwords[0].as_bytes(), &fresh), fresh);
    // A changed password with the old setting: another hash, still crypt(3)'s.
    let changed = format!("{}-changed", passwords[0]);
    client
        .set(
            None,
            "pw-0",
            &SecretBytes::copy_from(changed.as_bytes()),
            None,
        )
        .unwrap();
    let after = client.yescrypt(None, "pw-0", Some(&hashes[0])).unwrap();
    assert_ne!(after, hashes[0]);
    assert_eq!(after.rsplit_once('$').unwrap().0, prefix);
    assert_eq!(crypt(changed.as_bytes(), &after), after);
    // Another libxcrypt cost (mkpasswd -R 7 writes jBT): recomputed with it.
    let heavier = client
        .yescrypt(None, "pw-1", Some("$y$jBT$FReuq46QgP0Fxoe86b4yC0"))
        .unwrap();
    assert!(
        heavier.starts_with("$y$jBT$FReuq46QgP0Fxoe86b4yC0$"),
        "{heavier}"
    );
    assert_eq!(crypt(passwords[1].as_bytes(), &heavier), heavier);

    // Several at once (more than the daemon computes at a time): all answered.
    let many: Vec<_> = (0..6)
        .map(|i| {
            let client = daemon.client();
            std::thread::spawn(move || client.yescrypt(None, &format!("pw-{i}"), None))
        })
        .collect();
    for (i, t) in many.into_iter().enumerate() {
        let hash = t.join().unwrap().unwrap();
        let pw = if i == 0 { &changed } else { &passwords[i] };
        assert_eq!(crypt(pw.as_bytes(), &hash), hash);
    }

    // Settings refused at validation, never computed.
    let salt = fields(&hashes[1])[3].to_owned();
    for setting in [
        "$6$saltsalt$".to_owned(),
        "not a setting".to_owned(),
        format!("$y$j9T${salt}$tooshort"),
        format!("$y$j9T${}", "a".repeat(5000)),
        // N = 2^18: 16 times libxcrypt's default memory.
        format!("$y$jFT${salt}"),
        // Classic scrypt flags.
        format!("$y$.9T${salt}"),
        // A salt that is not canonical.
        "$y$j9T$abcdefghijklmnopqrstuv".to_owned(),
    ] {
        let r = request(
            &daemon,
            json!({"action": "yescrypt", "name": "pw-1", "setting": setting}),
        );
        assert_eq!(code(&r), "invalid_request", "{setting}: {r}");
        let message = r["error"].as_str().unwrap_or_default();
        assert!(!message.contains(&passwords[1]), "{r}");
    }
    let r = request(
        &daemon,
        json!({"action": "yescrypt", "name": "pw-1", "setting": 7}),
    );
    assert_eq!(code(&r), "invalid_request", "{r}");
    let r = request(
        &daemon,
        json!({"action": "yescrypt", "name": "pw-1", "user": "a"}),
    );
    assert_eq!(code(&r), "invalid_request", "{r}");

    // `read` on the secret is what it takes: `meta` is not enough, nor `read` elsewhere.
    let token = |policy: &str| {
        let r = request(
            &daemon,
            json!({"action": "token_create", "policies": [policy], "ttl": 3600}),
        );
        assert_eq!(r["ok"], true, "{r}");
        r["token"].as_str().unwrap().to_owned()
    };
    let reader = token("pw-read");
    let r = request(
        &daemon,
        json!({"action": "yescrypt", "name": "pw-2", "token": reader}),
    );
    let hash = r["hash"].as_str().unwrap_or_else(|| panic!("{r}"));
    assert_eq!(crypt(passwords[2].as_bytes(), hash), hash);
    for policy in ["pw-meta", "other-read"] {
        let t = token(policy);
        let r = request(
            &daemon,
            json!({"action": "yescrypt", "name": "pw-2", "token": t}),
        );
        assert_eq!(code(&r), "denied", "{policy}: {r}");
        assert!(r.get("hash").is_none(), "{r}");
    }

    // Each call has its audit record; no password reaches the daemon's log or the audit.
    let audit = daemon.audit();
    assert!(
        audit.iter().any(|r| r["action"] == "yescrypt"),
        "no yescrypt audit record"
    );
    let mut all: Vec<&str> = passwords.iter().map(String::as_str).collect();
    all.push(&changed);
    assert_absent("the daemon log", daemon.log().as_bytes(), &all);
    let audit_text = serde_json::to_string(&audit).unwrap();
    assert_absent("the audit log", audit_text.as_bytes(), &all);
}

#[test]
fn yescrypt_over_http_is_the_same_operation() {
    common::http::need("curl", "apt-get install curl");
    let (daemon, url, token) = common::http::http_daemon(&[]);
    let pw = "http password ✓ 1234";
    daemon
        .client()
        .set(None, "app/pw", &SecretBytes::copy_from(pw.as_bytes()), None)
        .unwrap();
    let post = |body: &str| {
        let (status, text) = common::http::curl(
            &url,
            Some(&token),
            &["-X", "POST", "-d", body, "/v1/secret/yescrypt/app/pw"],
        );
        (
            status,
            serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
        )
    };
    let (status, r) = post("{}");
    assert_eq!(status, 200, "{r}");
    let hash = r["data"]["hash"].as_str().unwrap().to_owned();
    assert!(hash.starts_with("$y$j9T$"), "{hash}");
    assert_eq!(crypt(pw.as_bytes(), &hash), hash);
    let (status, r) = post(&json!({ "setting": hash }).to_string());
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["data"]["hash"], hash.as_str());
    let heavy = format!("$y$jFT${}", fields(&hash)[3]);
    let (status, r) = post(&json!({ "setting": heavy }).to_string());
    assert_eq!(status, 400, "{r}");
    assert_absent("the daemon log", daemon.log().as_bytes(), &[pw]);
}
