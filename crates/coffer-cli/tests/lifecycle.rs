//! The operator lifecycle through the binary and the socket: versions, generate, rotate,
//! describe, revoke, destroy, kinds, namespaces, computed values (checked against the real
//! `openssl` and `base64`), and `coffer run`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};

use coffer_types::{DigestEncoding, Encoding, GeneratorSpec, HmacAlgorithm};
use common::{BIN, Daemon, assert_absent, code, raw, stderr, stdout};
use serde_json::Value;

fn is_base64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn decode_b64url(s: &str) -> Vec<u8> {
    // Standard base64 with padding restored, decoded by coreutils: an independent decoder.
    let std: String = s
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    let padded = format!("{std}{}", "=".repeat((4 - std.len() % 4) % 4));
    let out = Command::new("base64")
        .arg("-d")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(padded.as_bytes())?;
            c.wait_with_output()
        })
        .expect("coreutils base64");
    assert!(out.status.success());
    out.stdout
}

#[test]
fn generate_prints_43_base64url_characters_and_nothing_else() {
    let daemon = Daemon::start(&[]);
    let out = daemon.cli(
        &["secrets", "generate", "webhook-hmac", "--byte-len", "32"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let value = stdout(&out);
    assert_eq!(value.len(), 43, "{value:?}");
    assert!(is_base64url(&value), "{value:?}");
    assert_eq!(decode_b64url(&value).len(), 32);
    assert!(!stderr(&out).contains(&value), "shown once, on stdout only");
    // Stored as the secret's value.
    assert_eq!(
        daemon.cli(&["get", "webhook-hmac"], b"").stdout,
        value.as_bytes()
    );

    // 4097 is refused by the CLI and by the daemon.
    let big = daemon.cli(&["secrets", "generate", "x", "--byte-len", "4097"], b"");
    assert_eq!(big.status.code(), Some(2));
    assert!(stderr(&big).contains("4097"), "{}", stderr(&big));
    let reply = raw(
        &daemon.socket,
        br#"{"action":"generate","name":"x","byte_len":4097}"#,
    );
    assert_eq!(code(&reply), "invalid_request");
    assert_eq!(
        reply["error"],
        "byte_len must be between 1 and 4096, got 4097"
    );

    // A name in use: rotate instead.
    let again = daemon.cli(&["secrets", "generate", "webhook-hmac"], b"");
    assert_eq!(again.status.code(), Some(73));
    assert_eq!(
        stderr(&again),
        "coffer: a secret by that name exists; rotate it instead (conflict)\n"
    );
    assert!(again.stdout.is_empty());

    // Other encodings.
    let hex = daemon.cli(
        &[
            "secrets",
            "generate",
            "h",
            "--byte-len",
            "16",
            "--encoding",
            "hex",
        ],
        b"",
    );
    let hex = stdout(&hex);
    assert_eq!(hex.len(), 32);
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
    let an = daemon.cli(&["secrets", "generate", "a", "--encoding", "alnum"], b"");
    assert!(stdout(&an).bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(stdout(&an).len(), 43);
    let shown = daemon.cli(&["secrets", "show", "h", "--json"], b"");
    let meta: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(meta["generated"]["encoding"], "hex");
    assert_eq!(meta["kind"], "line");
    assert_absent("the daemon log", daemon.log().as_bytes(), &[&value, &hex]);
}

#[test]
fn ten_thousand_generated_values_are_distinct_and_the_asked_length() {
    let daemon = Daemon::start(&[]);
    let spec = GeneratorSpec::new(24, Encoding::Base64Url).unwrap();
    let values: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let client = daemon.client();
                s.spawn(move || {
                    (0..2500)
                        .map(|i| {
                            let w = client
                                .generate(
                                    None,
                                    &format!("gen/{t}/{i}"),
                                    Some(spec),
                                    &Default::default(),
                                )
                                .unwrap();
                            w.value.unwrap().expose_str().unwrap().to_owned()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(values.len(), 10_000);
    let distinct: HashSet<&String> = values.iter().collect();
    assert_eq!(distinct.len(), 10_000);
    for v in &values {
        assert_eq!(v.len(), 32, "24 bytes are 32 base64url characters: {v}");
        assert!(is_base64url(v));
    }
    // Spot-check the decoding with an independent decoder.
    for v in values.iter().step_by(1000) {
        assert_eq!(decode_b64url(v).len(), 24);
    }
}

#[test]
fn versions_keep_time_and_actor_and_reads_pick_one() {
    let daemon = Daemon::start(&[]);
    assert!(
        daemon
            .cli(
                &["secrets", "set", "api", "--description", "vendor key"],
                b"value-one"
            )
            .status
            .success()
    );
    let r1 = daemon.cli(&["secrets", "rotate", "api"], b"value-two");
    assert!(r1.status.success(), "{}", stderr(&r1));
    assert_eq!(stderr(&r1), "rotated api to version 2\n");
    assert!(
        daemon
            .cli(&["secrets", "rotate", "api"], b"value-three")
            .status
            .success()
    );

    let out = daemon.cli(&["secrets", "versions", "api", "--json"], b"");
    let versions: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(versions.len(), 3);
    for (i, v) in versions.iter().enumerate() {
        assert_eq!(v["version"], i + 1);
        assert_eq!(v["actor"], "uid:0");
        assert!(v["created"].as_str().unwrap().ends_with('Z'), "{v}");
        assert_eq!(v["destroyed"], false);
    }
    let table = stdout(&daemon.cli(&["secrets", "versions", "api"], b""));
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(
        table
            .lines()
            .all(|l| l.starts_with("VERSION") || l.contains("uid:0")),
        "{table}"
    );

    assert_eq!(daemon.cli(&["get", "api"], b"").stdout, b"value-three");
    assert_eq!(
        daemon.cli(&["get", "api", "--version", "1"], b"").stdout,
        b"value-one"
    );
    assert_eq!(
        daemon.cli(&["get", "api", "--version", "2"], b"").stdout,
        b"value-two"
    );

    // Rotating something that does not exist is refused; so is a rotate with no value.
    let missing = daemon.cli(&["secrets", "rotate", "nope"], b"v");
    assert!(
        stderr(&missing).starts_with("coffer: no such secret \"nope\" in namespace \"default\""),
        "{}",
        stderr(&missing)
    );
    // Rotate --generate reuses the generator of a generated secret.
    let g = daemon.cli(
        &[
            "secrets",
            "generate",
            "tok",
            "--byte-len",
            "16",
            "--encoding",
            "hex",
        ],
        b"",
    );
    assert_eq!(stdout(&g).len(), 32);
    let r = daemon.cli(&["secrets", "rotate", "tok", "--generate"], b"");
    assert_eq!(stdout(&r).len(), 32, "same generator: {}", stdout(&r));
    assert_ne!(stdout(&r), stdout(&g));
    assert_eq!(daemon.cli(&["get", "tok"], b"").stdout, r.stdout);
}

#[test]
fn show_and_list_never_contain_the_value() {
    let daemon = Daemon::start(&[]);
    let value = "VALUE-never-shown-8231";
    assert!(
        daemon
            .cli(
                &[
                    "secrets",
                    "set",
                    "db/main/password",
                    "--description",
                    "main db"
                ],
                value.as_bytes()
            )
            .status
            .success()
    );
    assert!(
        daemon
            .cli(&["secrets", "set", "db/replica/password"], value.as_bytes())
            .status
            .success()
    );
    let runs = [
        daemon.cli(&["secrets", "show", "db/main/password"], b""),
        daemon.cli(&["secrets", "show", "db/main/password", "--json"], b""),
        daemon.cli(&["secrets", "list"], b""),
        daemon.cli(&["secrets", "list", "--json"], b""),
        daemon.cli(&["secrets", "versions", "db/main/password"], b""),
        daemon.cli(&["secrets", "list", "--prefix", "db/main/"], b""),
    ];
    for out in &runs {
        assert!(out.status.success(), "{}", stderr(out));
        assert_absent("show/list output", &out.stdout, &[value]);
        assert_absent("show/list errors", &out.stderr, &[value]);
    }
    let show = stdout(&runs[0]);
    assert!(show.contains("name:         db/main/password"), "{show}");
    assert!(show.contains("description:  main db"), "{show}");
    assert!(show.contains("generated:    no"), "{show}");
    let list = stdout(&runs[2]);
    assert!(list.starts_with("NAME"), "{list}");
    assert!(list.contains("db/main/password") && list.contains("db/replica/password"));
    let json: Value = serde_json::from_slice(&runs[3].stdout).unwrap();
    assert_eq!(json["secrets"].as_array().unwrap().len(), 2);
    assert_eq!(stdout(&runs[5]).lines().count(), 2);

    // Describe changes the description, not the version.
    assert!(
        daemon
            .cli(
                &[
                    "secrets",
                    "describe",
                    "db/main/password",
                    "--description",
                    "primary"
                ],
                b""
            )
            .status
            .success()
    );
    let meta: Value = serde_json::from_slice(
        &daemon
            .cli(&["secrets", "show", "db/main/password", "--json"], b"")
            .stdout,
    )
    .unwrap();
    assert_eq!(meta["description"], "primary");
    assert_eq!(meta["current"], 1);
    assert_absent("the daemon log", daemon.log().as_bytes(), &[value]);
}

#[test]
fn revoke_frees_the_name_and_keeps_the_history() {
    let daemon = Daemon::start(&[]);
    daemon.cli(&["secrets", "set", "STRIPE_API_KEY"], b"sk_live_1");
    daemon.cli(&["secrets", "rotate", "STRIPE_API_KEY"], b"sk_live_2");
    let revoke = daemon.cli(&["secrets", "revoke", "STRIPE_API_KEY"], b"");
    assert!(revoke.status.success(), "{}", stderr(&revoke));
    let get = daemon.cli(&["get", "STRIPE_API_KEY"], b"");
    assert_eq!(get.status.code(), Some(66));
    assert!(stderr(&get).contains("not_found"));
    assert_eq!(
        raw(
            &daemon.socket,
            br#"{"action":"get","name":"STRIPE_API_KEY"}"#
        )["rc"],
        "0x18b"
    );
    // The name is free: a new identity at version 1.
    assert!(
        daemon
            .cli(&["secrets", "set", "STRIPE_API_KEY"], b"sk_live_3")
            .status
            .success()
    );
    let versions: Vec<Value> = serde_json::from_slice(
        &daemon
            .cli(&["secrets", "versions", "STRIPE_API_KEY", "--json"], b"")
            .stdout,
    )
    .unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0]["version"], 1);
    // The revoked identity's history is still listed.
    let revoked: Vec<Value> = serde_json::from_slice(
        &daemon
            .cli(&["secrets", "list", "--revoked", "--json"], b"")
            .stdout,
    )
    .unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["name"], "STRIPE_API_KEY");
    assert!(revoked[0]["revoked"].is_string());
    assert_eq!(revoked[0]["versions"].as_array().unwrap().len(), 2);
    let human = stdout(&daemon.cli(&["secrets", "list", "--revoked"], b""));
    assert!(human.starts_with("STRIPE_API_KEY (revoked "), "{human}");
    assert_eq!(human.lines().count(), 4, "{human}");
    assert_absent("output", human.as_bytes(), &["sk_live"]);
}

#[test]
fn destroy_erases_chosen_versions_and_max_versions_prunes() {
    let daemon = Daemon::start(&[]);
    for v in ["v1", "v2", "v3"] {
        daemon.cli(&["secrets", "set", "k"], v.as_bytes());
    }
    let out = daemon.cli(&["secrets", "destroy", "k", "--versions", "1,2"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "destroyed version 1, 2 of k for good\n");
    let old = daemon.cli(&["get", "k", "--version", "1"], b"");
    assert_eq!(
        stderr(&old),
        "coffer: that version was destroyed (not_found)\n"
    );
    assert_eq!(daemon.cli(&["get", "k"], b"").stdout, b"v3");
    let table = stdout(&daemon.cli(&["secrets", "versions", "k"], b""));
    assert_eq!(table.matches("destroyed").count(), 2, "{table}");
    let missing = daemon.cli(&["secrets", "destroy", "k", "--versions", "9"], b"");
    assert_eq!(missing.status.code(), Some(66));

    assert!(
        daemon
            .cli(&["secrets", "set", "m", "--max-versions", "2"], b"1")
            .status
            .success()
    );
    daemon.cli(&["secrets", "set", "m"], b"2");
    daemon.cli(&["secrets", "set", "m"], b"3");
    let kept: Vec<Value> = serde_json::from_slice(
        &daemon
            .cli(&["secrets", "versions", "m", "--json"], b"")
            .stdout,
    )
    .unwrap();
    let numbers: Vec<u64> = kept
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [2, 3]);
}

#[test]
fn kinds_refuse_values_that_do_not_fit_and_say_why() {
    let daemon = Daemon::start(&[]);
    let line = daemon.cli(
        &["secrets", "set", "l", "--kind", "line", "--keep-newline"],
        b"abc\n",
    );
    assert_eq!(line.status.code(), Some(65));
    assert_eq!(
        stderr(&line),
        "coffer: a `line` secret holds no newline, but there is one at byte 3; use kind `text` for multi-line values (invalid_request)\n"
    );
    let env = daemon.cli(
        &["secrets", "set", "e", "--kind", "env"],
        b"A=1\nnot-a-pair",
    );
    assert!(
        stderr(&env).contains("line 2 of an `env` secret is not KEY=VALUE"),
        "{}",
        stderr(&env)
    );
    assert!(
        daemon
            .cli(&["secrets", "set", "e", "--kind", "env"], b"A=1\nB=2")
            .status
            .success()
    );
    let kv = daemon.cli(&["secrets", "set", "j", "--kind", "kv"], b"[1,2]");
    assert!(stderr(&kv).contains("JSON object"), "{}", stderr(&kv));
    assert!(
        daemon
            .cli(
                &["secrets", "set", "j", "--kind", "kv"],
                br#"{"user":"app"}"#
            )
            .status
            .success()
    );
    // Binary bytes travel as base64; a new secret written with them is a `file`, a text
    // secret keeps refusing them until its kind is changed.
    let bin = [0u8, 255, 10, 13];
    assert!(
        daemon
            .cli(&["secrets", "set", "b"], b"text first")
            .status
            .success()
    );
    let text = daemon.cli(&["secrets", "set", "b", "--keep-newline"], &bin);
    assert!(stderr(&text).contains("UTF-8"), "{}", stderr(&text));
    let new = daemon.cli(&["secrets", "set", "nb", "--keep-newline"], &bin);
    assert!(new.status.success(), "{}", stderr(&new));
    let meta: Value =
        serde_json::from_slice(&daemon.cli(&["secrets", "show", "nb", "--json"], b"").stdout)
            .unwrap();
    assert_eq!(meta["kind"], "file");
    let file = daemon.cli(
        &["secrets", "set", "b", "--kind", "file", "--keep-newline"],
        &bin,
    );
    assert!(file.status.success(), "{}", stderr(&file));
    assert_eq!(daemon.cli(&["get", "b"], b"").stdout, bin);
    assert_eq!(
        raw(&daemon.socket, br#"{"action":"get","name":"b"}"#)["value_b64"],
        "AP8KDQ=="
    );
}

#[test]
fn namespaces_have_their_own_secrets() {
    let daemon = Daemon::start(&[]);
    let create = daemon.cli(&["namespaces", "create", "acme/prod"], b"");
    assert!(create.status.success(), "{}", stderr(&create));
    let again = daemon.cli(&["namespaces", "create", "acme/prod"], b"");
    assert_eq!(again.status.code(), Some(73));
    assert_eq!(
        stdout(&daemon.cli(&["namespaces", "list"], b"")),
        "acme/prod\ndefault\n"
    );
    daemon.cli(&["secrets", "set", "db", "-n", "acme/prod"], b"prod-pw");
    daemon.cli(&["secrets", "set", "db"], b"default-pw");
    assert_eq!(
        daemon.cli(&["get", "db", "-n", "acme/prod"], b"").stdout,
        b"prod-pw"
    );
    assert_eq!(daemon.cli(&["get", "db"], b"").stdout, b"default-pw");
    let missing = daemon.cli(&["get", "db", "-n", "acme/dev"], b"");
    assert_eq!(
        stderr(&missing),
        "coffer: no such namespace \"acme/dev\": create it with `coffer namespaces create \
         acme/dev` (not_found)\n"
    );
    let bad = daemon.cli(&["namespaces", "create", "../x"], b"");
    assert!(stderr(&bad).contains("invalid_name"), "{}", stderr(&bad));
    // Paging over the socket.
    for n in ["p/a", "p/b", "p/c"] {
        daemon.cli(&["secrets", "set", n], b"v");
    }
    let page = raw(
        &daemon.socket,
        br#"{"action":"list","prefix":"p/","limit":2}"#,
    );
    assert_eq!(
        page,
        serde_json::json!({"ok": true, "names": ["p/a", "p/b"], "next": "p/b"})
    );
    let rest = raw(
        &daemon.socket,
        br#"{"action":"list","prefix":"p/","after":"p/b"}"#,
    );
    assert_eq!(rest, serde_json::json!({"ok": true, "names": ["p/c"]}));
}

fn openssl_hmac(alg: &str, key: &str, data: &[u8], binary: bool) -> Vec<u8> {
    let mut cmd = Command::new("openssl");
    cmd.args(["dgst", &format!("-{alg}"), "-hmac", key]);
    if binary {
        cmd.arg("-binary");
    }
    let out = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(data)?;
            c.wait_with_output()
        })
        .expect("openssl is missing: apt-get install -y openssl");
    assert!(out.status.success());
    out.stdout
}

#[test]
fn computed_values_match_openssl_and_base64() {
    let daemon = Daemon::start(&[]);
    let key = "whsec-key-31415";
    daemon.cli(
        &["secrets", "set", "webhook", "--kind", "line"],
        key.as_bytes(),
    );
    let data = b"{\"id\":\"evt_1\",\"amount\":4200}";
    // hex, through the CLI, against `openssl dgst -sha256 -hmac KEY`.
    let ours = daemon.cli(&["hmac", "webhook"], data);
    assert!(ours.status.success(), "{}", stderr(&ours));
    let theirs = String::from_utf8(openssl_hmac("sha256", key, data, false)).unwrap();
    let theirs = theirs.rsplit(' ').next().unwrap().trim().to_owned();
    assert_eq!(stdout(&ours).trim(), theirs);
    // sha512 in base64, through the client, against openssl's binary digest in base64.
    let client = daemon.client();
    let ours = client
        .hmac(
            None,
            "webhook",
            HmacAlgorithm::Sha512,
            data,
            DigestEncoding::Base64,
        )
        .unwrap();
    let raw_digest = openssl_hmac("sha512", key, data, true);
    let b64 = Command::new("base64")
        .args(["-w", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(&raw_digest)?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(ours, String::from_utf8(b64.stdout).unwrap());

    // basic_auth: "Basic " + base64("user:password").
    daemon.cli(&["secrets", "set", "pw"], b"open sesame");
    let header = client.basic_auth(None, "pw", "Aladdin").unwrap();
    let expected = Command::new("sh")
        .args(["-c", "printf '%s' 'Aladdin:open sesame' | base64 -w 0"])
        .output()
        .unwrap();
    assert_eq!(
        header.expose_str().unwrap(),
        format!("Basic {}", String::from_utf8(expected.stdout).unwrap())
    );
    let bad = raw(
        &daemon.socket,
        br#"{"action":"basic_auth","name":"pw","user":"a:b"}"#,
    );
    assert_eq!(code(&bad), "invalid_request");
    assert_absent(
        "the daemon log",
        daemon.log().as_bytes(),
        &[key, "open sesame"],
    );
}

fn coffer_run(daemon: &Daemon, args: &[&str], stdin: &[u8]) -> std::process::Output {
    daemon.cli(&[&["run"], args].concat(), stdin)
}

#[test]
fn run_puts_secrets_in_the_environment_only_and_passes_everything_through() {
    let daemon = Daemon::start(&[]);
    let value = "run-secret-value-5513";
    daemon.cli(&["secrets", "set", "db/password"], value.as_bytes());
    daemon.cli(&["namespaces", "create", "acme/prod"], b"");
    daemon.cli(
        &["secrets", "set", "token", "-n", "acme/prod"],
        b"prod-token-77",
    );

    // The child sees the value (it prints only a hash of it) and its exit code comes back.
    let out = coffer_run(
        &daemon,
        &[
            "--env",
            "DB_PASSWORD=db/password",
            "--",
            "sh",
            "-c",
            "printf %s \"$DB_PASSWORD\" | sha256sum; exit 7",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let expected = Command::new("sh")
        .args(["-c", &format!("printf %s '{value}' | sha256sum")])
        .output()
        .unwrap();
    assert_eq!(out.stdout, expected.stdout);

    // stdin and stdout pass through; an env file with references.
    let env_file = daemon.root.path().join("app.env");
    std::fs::write(
        &env_file,
        "# the app's secrets\nDB=coffer://default/db/password\n\nTOKEN=coffer://acme%2Fprod/token\n",
    )
    .unwrap();
    let out = coffer_run(
        &daemon,
        &[
            "--env-file",
            env_file.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "cat; test -n \"$DB\" && test \"${#TOKEN}\" = 13 && echo ok",
        ],
        b"piped through\n",
    );
    assert_eq!(stdout(&out), "piped through\nok\n", "{}", stderr(&out));

    // A missing secret fails before the command starts, naming the variable and the secret.
    let marker = daemon.root.path().join("ran");
    let out = coffer_run(
        &daemon,
        &[
            "--env",
            "DB=db/password",
            "--env",
            "API_KEY=no/such",
            "--",
            "touch",
            marker.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(66));
    let err = stderr(&out);
    assert!(
        err.contains("API_KEY") && err.contains("default/no/such"),
        "{err}"
    );
    assert!(!marker.exists(), "the command must not start");

    // A signal that ends the command ends `coffer run` the same way.
    use std::os::unix::process::ExitStatusExt;
    let out = coffer_run(
        &daemon,
        &["--env", "X=db/password", "--", "sh", "-c", "kill -TERM $$"],
        b"",
    );
    assert_eq!(out.status.signal(), Some(15));
    let mut child = Command::new(BIN)
        .args([
            "--socket",
            daemon.socket.to_str().unwrap(),
            "run",
            "--env",
            "X=db/password",
            "--",
            "sleep",
            "30",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(2));

    // A command that does not exist.
    let out = coffer_run(&daemon, &["--", "/nonexistent/program"], b"");
    assert!(
        stderr(&out).contains("cannot run /nonexistent/program"),
        "{}",
        stderr(&out)
    );

    // The value reached no output and no log.
    assert_absent(
        "the daemon log",
        daemon.log().as_bytes(),
        &[value, "prod-token-77"],
    );
}

#[test]
fn the_secret_value_never_reaches_run_output() {
    let daemon = Daemon::start(&[]);
    let value = "never-printed-8841";
    daemon.cli(&["secrets", "set", "s"], value.as_bytes());
    for args in [
        &["--env", "S=s", "--", "true"][..],
        &["--env", "S=s", "--", "sh", "-c", "exit 3"],
        &["--env", "S=s", "--env", "T=missing", "--", "true"],
        &["--env", "1BAD=s", "--", "true"],
    ] {
        let out = coffer_run(&daemon, args, b"");
        assert_absent("run stdout", &out.stdout, &[value]);
        assert_absent("run stderr", &out.stderr, &[value]);
    }
}
