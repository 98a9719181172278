//! The CLI people expect (issue 17): a closed pipe is a clean end, an empty value is refused,
//! a person is asked for a value only once it can be stored, and a SQLite store shows no TPM
//! index.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use coffer_crypto::SecretBytes;
use common::{BIN, Daemon, stderr};

/// Runs `coffer <args>` with its standard output closed before it writes anything, and
/// answers (exit code, standard error).
fn with_closed_stdout(daemon: &Daemon, args: &[&str]) -> (Option<i32>, String) {
    // A pipe whose reading end is closed at once: every write fails with EPIPE.
    let mut child = Command::new(BIN)
        .arg("--socket")
        .arg(daemon_socket(daemon))
        .args(args)
        .env_remove("COFFER_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (out.status.code(), stderr(&out))
}

fn daemon_socket(daemon: &Daemon) -> String {
    daemon.client().socket().to_str().unwrap().to_owned()
}

#[test]
fn a_closed_pipe_ends_every_printing_command_cleanly() {
    let daemon = Daemon::start(&[]);
    let client = daemon.client();
    let data = daemon.data.to_str().unwrap().to_owned();
    for i in 0..300 {
        let value = SecretBytes::copy_from(format!("pipe-value-{i:04}").as_bytes());
        client
            .set(None, &format!("pipe/{i:04}"), &value, None)
            .unwrap();
    }
    for args in [
        &["secrets", "list"][..],
        &["secrets", "list", "--json"],
        &["secrets", "show", "pipe/0001"],
        &["secrets", "versions", "pipe/0001"],
        &["get", "pipe/0001"],
        &["status"],
        &["status", "--json"],
        &["namespaces", "list"],
        &["token", "list"],
        &["audit", "tail", "-n", "50", "--data-dir", &data],
    ] {
        let (code, err) = with_closed_stdout(&daemon, args);
        assert_eq!(code, Some(0), "coffer {args:?}: {err}");
        assert!(!err.contains("panicked"), "coffer {args:?}: {err}");
        assert!(!err.contains("Broken pipe"), "coffer {args:?}: {err}");
    }

    // As a person types it: read one line, then close the pipe.
    let mut child = Command::new(BIN)
        .args(["--socket", &daemon_socket(&daemon), "secrets", "list"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("NAME"), "{first}");
    let out = child.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(101), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));

    // And through a shell, the issue's own line.
    let shell = Command::new("bash")
        .args([
            "-c",
            &format!(
                "{BIN} --socket {} secrets list | head -1; exit ${{PIPESTATUS[0]}}",
                daemon_socket(&daemon)
            ),
        ])
        .output()
        .unwrap();
    assert_eq!(shell.status.code(), Some(0), "{}", stderr(&shell));
    assert!(!stderr(&shell).contains("panicked"));
}

#[test]
fn an_empty_value_is_refused_unless_allowed() {
    let daemon = Daemon::start(&[]);
    for args in [
        &["set", "empty"][..],
        &["secrets", "set", "empty"],
        // A lone newline is dropped, leaving nothing.
        &["set", "empty", "--kind", "text"],
    ] {
        for input in [&b""[..], b"\n"] {
            let out = daemon.cli(args, input);
            assert_eq!(out.status.code(), Some(65), "{args:?}: {}", stderr(&out));
            let err = stderr(&out);
            assert!(
                err.contains("the value for empty is empty")
                    && err.contains("--allow-empty")
                    && err.contains("(invalid_request)"),
                "{err}"
            );
        }
    }
    assert_eq!(
        daemon.cli(&["get", "empty"], b"").status.code(),
        Some(66),
        "nothing was stored"
    );

    // Rotate refuses the same way, and the secret keeps its version.
    assert!(daemon.cli(&["set", "r"], b"v1").status.success());
    let out = daemon.cli(&["secrets", "rotate", "r"], b"");
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert_eq!(daemon.cli(&["get", "r"], b"").stdout, b"v1");

    // Asked for, it is stored.
    let out = daemon.cli(&["set", "empty", "--allow-empty"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let got = daemon.cli(&["get", "empty"], b"");
    assert!(got.status.success() && got.stdout.is_empty());
    let out = daemon.cli(&["secrets", "rotate", "r", "--allow-empty"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_sqlite_store_shows_no_tpm_index() {
    let daemon = Daemon::start(&[]);
    let out = daemon.cli(&["set", "plain"], b"v");
    assert!(out.status.success());
    assert_eq!(stderr(&out).lines().last(), Some("stored plain"));
    let out = daemon.cli(&["secrets", "generate", "minted"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("index"), "{}", stderr(&out));
    assert!(stderr(&out).contains("(version 1)"), "{}", stderr(&out));
    let show = daemon.cli(&["secrets", "show", "plain"], b"");
    assert!(!common::stdout(&show).contains("index"));
}

/// Runs `coffer <args>` on a pseudo-terminal (util-linux `script`) with nothing typed, and
/// answers what appeared on the terminal and the exit status.
fn on_a_terminal(args: &[&str]) -> (Option<i32>, String) {
    let line = std::iter::once(BIN)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("timeout")
        .args(["20", "script", "-qec", &line, "/dev/null"])
        .env_remove("COFFER_SOCKET")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

#[test]
fn the_value_is_asked_for_only_once_it_can_be_stored() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = dir.path().join("nobody.sock");
    let nowhere = nowhere.to_str().unwrap();

    // No daemon: refused before any prompt.
    for verb in [&["set", "x"][..], &["secrets", "rotate", "x"]] {
        let (code, text) = on_a_terminal(&[&["--socket", nowhere], verb].concat());
        assert!(!text.contains("Value for"), "{verb:?}: {text}");
        assert!(text.contains("cannot reach coffer"), "{verb:?}: {text}");
        assert_eq!(code, Some(69), "{verb:?}: {text}");
    }

    let daemon = Daemon::start(&[]);
    let socket = daemon_socket(&daemon);
    // A name outside the grammar: refused before any prompt.
    let (code, text) = on_a_terminal(&["--socket", &socket, "set", "bad..name/"]);
    assert_eq!(code, Some(65), "{text}");
    assert!(!text.contains("Value for"), "{text}");
    // Rotating a secret that does not exist: refused before any prompt, naming it.
    let (code, text) = on_a_terminal(&["--socket", &socket, "secrets", "rotate", "missing"]);
    assert_eq!(code, Some(66), "{text}");
    assert!(!text.contains("Value for"), "{text}");
    // With everything in order the prompt comes (and, with nothing typed, nothing is stored).
    daemon
        .client()
        .set(None, "there", &SecretBytes::copy_from(b"v"), None)
        .unwrap();
    let (_, text) = on_a_terminal(&["--socket", &socket, "secrets", "rotate", "there"]);
    assert!(text.contains("Value for there"), "{text}");
}

#[test]
fn completions_man_pages_and_version() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = common::run_cli(&["completions", shell], b"");
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        assert!(common::stdout(&out).contains("secrets"), "{shell}");
    }
    let bash = common::run_cli(&["completions", "bash"], b"");
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("coffer.bash");
    std::fs::write(&script, &bash.stdout).unwrap();
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));

    let pages = dir.path().join("man");
    let out = common::run_cli(&["man", "--out", pages.to_str().unwrap()], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    for page in [
        "coffer",
        "coffer-serve",
        "coffer-secrets",
        "coffer-secrets-set",
        "coffer-namespaces-create",
        "coffer-token-create",
        "coffer-completions",
    ] {
        let text = std::fs::read_to_string(pages.join(format!("{page}.1")))
            .unwrap_or_else(|e| panic!("{page}.1: {e}"));
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!(".TH {page} 1"))),
            "{page}: {text}"
        );
        assert!(text.contains(".SH NAME"), "{page}");
    }
    // The hidden command documents nothing of itself.
    assert!(!pages.join("coffer-man.1").exists());

    let version = common::stdout(&common::run_cli(&["--version"], b""));
    let version = version.trim();
    // `coffer 0.1.0 (abc1234 2026-12-01)`, or `(unknown)` built outside git.
    assert!(
        version.starts_with("coffer ") && version.contains(" (") && version.ends_with(')'),
        "{version}"
    );
}

#[test]
fn json_logs_are_json_objects_without_values() {
    let mut daemon = Daemon::new(&[]);
    daemon.env("COFFER_LOG_FORMAT", "json");
    daemon.spawn();
    let canary = "json-log-canary-8c1f";
    assert!(
        daemon
            .cli(&["set", "logged"], canary.as_bytes())
            .status
            .success()
    );
    assert_eq!(
        daemon.cli(&["get", "logged"], b"").stdout,
        canary.as_bytes()
    );
    let log = daemon.log();
    let mut lines = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
        assert!(v["fields"].is_object(), "{line}");
        assert!(v["target"].is_string(), "{line}");
        lines += 1;
    }
    assert!(lines > 0, "the daemon logged nothing");
    assert!(!log.contains(canary));

    // A bad format is refused by name.
    let out = common::run_cli(&["--log-format", "xml", "status"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("json"), "{}", stderr(&out));
}
