//! The CLI verbs against a real daemon, callers of another uid, and the load generator.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::process::Command;

use common::{BIN, Daemon, assert_absent, run_cli, stderr, stdout};

#[test]
fn set_get_del_and_status() {
    let daemon = Daemon::start(&[]);
    let set = daemon.cli(&["set", "db/main/password"], b"s3cr3t-pw-001\n");
    assert!(set.status.success(), "{}", stderr(&set));
    assert!(stdout(&set).is_empty(), "set prints nothing on stdout");
    // A SQLite store has no TPM index to show.
    assert_eq!(
        stderr(&set).trim(),
        "stored db/main/password",
        "{}",
        stderr(&set)
    );

    // The value exactly, with no newline added when stdout is not a terminal.
    let get = daemon.cli(&["get", "db/main/password"], b"");
    assert_eq!(get.stdout, b"s3cr3t-pw-001");
    let kept = daemon.cli(&["set", "nl", "--keep-newline"], b"with-newline\n");
    assert!(kept.status.success());
    assert_eq!(daemon.cli(&["get", "nl"], b"").stdout, b"with-newline\n");

    // Versions: the newest by default, an older one by number.
    assert!(
        daemon
            .cli(&["set", "db/main/password"], b"s3cr3t-pw-002")
            .status
            .success()
    );
    assert_eq!(
        daemon.cli(&["get", "db/main/password"], b"").stdout,
        b"s3cr3t-pw-002"
    );
    assert_eq!(
        daemon
            .cli(&["get", "db/main/password", "--version", "1"], b"")
            .stdout,
        b"s3cr3t-pw-001"
    );
    let no_version = daemon.cli(&["get", "db/main/password", "--version", "9"], b"");
    assert_eq!(no_version.status.code(), Some(66));

    let del = daemon.cli(&["del", "db/main/password"], b"");
    assert!(del.status.success(), "{}", stderr(&del));
    let gone = daemon.cli(&["get", "db/main/password"], b"");
    assert_eq!(gone.status.code(), Some(66));
    assert_eq!(
        stderr(&gone).trim(),
        "coffer: no such secret \"db/main/password\" in namespace \"default\": see what is \
         there with `coffer secrets list -n default` (a revoked one: --revoked) (not_found)"
    );

    let bad = daemon.cli(&["set", "bad name"], b"v");
    assert_eq!(bad.status.code(), Some(65));
    assert!(stderr(&bad).contains("invalid_name"), "{}", stderr(&bad));

    let status = daemon.cli(&["status"], b"");
    assert!(status.status.success());
    let text = stdout(&status);
    assert!(
        text.contains("state:      unsealed") && text.contains("sqlite"),
        "{text}"
    );
    // The daemon's facts, to root: one secret is left (`nl`), the audit log is on.
    for line in [
        "secrets:    1",
        "audit:      on (",
        "listening:  socket ",
        "uptime:     ",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&daemon.cli(&["status", "--json"], b"").stdout).unwrap();
    assert_eq!(json["state"], "unsealed");
    assert_eq!(json["backend"], "sqlite");
    assert_eq!(json["cache"]["ttl_seconds"], 300);

    for out in [&set, &get, &kept, &del, &gone, &status] {
        assert_absent("CLI stderr", &out.stderr, &["s3cr3t-pw", "with-newline"]);
    }
    assert_absent(
        "the daemon log",
        daemon.log().as_bytes(),
        &["s3cr3t-pw", "with-newline"],
    );
}

#[test]
fn the_daemon_runs_without_core_dumps_and_seal_flushes_the_cache() {
    let daemon = Daemon::start(&[]);
    let limits =
        std::fs::read_to_string(format!("/proc/{}/limits", daemon.pid().unwrap())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    // The soft limit, which the kernel obeys.
    assert_eq!(core.split_whitespace().nth(4), Some("0"), "{core}");

    assert!(daemon.cli(&["set", "k"], b"cached-value").status.success());
    assert_eq!(daemon.cli(&["get", "k"], b"").stdout, b"cached-value");
    let entries = |d: &Daemon| -> u64 {
        let out = d.cli(&["status", "--json"], b"");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        json["cache"]["entries"].as_u64().unwrap()
    };
    assert_eq!(entries(&daemon), 1);
    assert!(daemon.cli(&["seal"], b"").status.success());
    assert_eq!(entries(&daemon), 0);
    assert!(daemon.cli(&["unseal", "--key-file"], b"").status.success());
    assert_eq!(daemon.cli(&["get", "k"], b"").stdout, b"cached-value");
}

#[test]
fn configuration_comes_from_flags_then_variables_then_the_file() {
    let mut daemon = Daemon::new(&[]);
    let config = daemon.root.path().join("coffer.toml");
    std::fs::write(&config, "ttl = \"5m\"\nmax_value_bytes = 16\n").unwrap();
    let config = config.to_str().unwrap().to_owned();
    daemon.env("COFFER_CONFIG", &config);
    daemon.env("COFFER_SECRET_TTL", "7");
    daemon.spawn();
    let out = daemon.cli(&["status", "--json"], b"");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The variable beats the file for the TTL; the file sets the value limit.
    assert_eq!(json["cache"]["ttl_seconds"], 7);
    let big = daemon.cli(&["set", "k"], &[b'x'; 17]);
    assert!(stderr(&big).contains("too_large"), "{}", stderr(&big));
    daemon.stop();

    let mut flagged = Daemon::new(&["--ttl", "0", "--config", &config]);
    flagged.env("COFFER_SECRET_TTL", "7");
    flagged.spawn();
    let out = flagged.cli(&["status", "--json"], b"");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["cache"]["ttl_seconds"], 0, "the flag wins");

    let bad = Daemon::new(&[]);
    let typo = bad.root.path().join("typo.toml");
    std::fs::write(&typo, "tll = 5\n").unwrap();
    let out = run_cli(
        &[
            "serve",
            "--config",
            typo.to_str().unwrap(),
            "--data-dir",
            bad.data.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unknown field"), "{}", stderr(&out));
}

#[test]
fn values_never_come_from_arguments() {
    // `set` takes no value argument at all: a second positional is refused by the parser.
    let out = run_cli(
        &["--socket", "/nonexistent", "set", "name", "value-on-argv"],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unexpected argument"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_missing_daemon_is_named_with_its_socket() {
    let out = run_cli(&["--socket", "/nonexistent/coffer.sock", "get", "x"], b"");
    assert_eq!(out.status.code(), Some(69));
    let err = stderr(&out);
    assert!(
        err.contains("/nonexistent/coffer.sock") && err.contains("coffer serve"),
        "{err}"
    );
}

#[test]
fn the_socket_admits_every_user_and_the_policy_gate_refuses_strangers() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test runs the client as uid 65534 with setpriv and must run as root"
    );
    let daemon = Daemon::start(&[]);
    let meta = std::fs::metadata(&daemon.socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o666);
    assert!(
        daemon
            .cli(&["set", "k"], b"root-only-value")
            .status
            .success()
    );

    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args([
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
                BIN,
                "--socket",
            ])
            .arg(&daemon.socket)
            .args(args)
            .env("COFFER_LOG", "trace")
            .output()
            .unwrap()
    };
    for args in [&["get", "k"][..], &["del", "k"], &["seal"]] {
        let out = as_nobody(args);
        assert_eq!(out.status.code(), Some(77), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("uid 65534") && err.contains("(denied)"),
            "{args:?}: {err}"
        );
        assert_absent("a refusal", &out.stderr, &["root-only-value"]);
    }
    // Status holds no secret and is open to every caller.
    assert!(as_nobody(&["status"]).status.success());
    // Nothing changed for root.
    assert_eq!(daemon.cli(&["get", "k"], b"").stdout, b"root-only-value");
}

#[test]
fn help_explains_each_command() {
    let help = run_cli(&["--help"], b"");
    let text = stdout(&help);
    for verb in [
        "serve", "init", "set", "get", "del", "status", "seal", "unseal", "bench",
    ] {
        assert!(
            text.contains(&format!("  {verb} ")),
            "{verb} missing:\n{text}"
        );
    }
    let serve = stdout(&run_cli(&["serve", "--help"], b""));
    for flag in [
        "--data-dir",
        "--socket",
        "--config",
        "--ttl",
        "--compat-socket",
        "COFFER_DATA_DIR",
        "COFFER_SOCKET",
        "COFFER_SECRET_TTL",
    ] {
        assert!(serve.contains(flag), "{flag} missing:\n{serve}");
    }
}

#[test]
fn bench_measures_coffer_and_the_floor_in_one_run() {
    let out = run_cli(
        &[
            "bench",
            "--duration",
            "300ms",
            "--warmup",
            "0s",
            "--rounds",
            "1",
            "--clients",
            "4",
            "--keys",
            "20",
            "--workloads",
            "get-conn,get-keepalive,set-keepalive,mix-keepalive",
            "--json",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let targets: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["workload"].as_str().unwrap().to_owned(),
                r["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(targets.contains(&("get-conn".into(), "floor".into())));
    assert!(targets.contains(&("get-conn".into(), "coffer".into())));
    assert!(targets.contains(&("set-keepalive".into(), "coffer".into())));
    for row in &rows {
        assert!(row["ops"].as_u64().unwrap() > 0, "{row}");
        assert_eq!(row["errors"].as_u64().unwrap(), 0, "{row}");
        assert!(row["p99_us"].as_u64().unwrap() >= row["p50_us"].as_u64().unwrap());
    }
}

/// `bench --target` on a live store never touches its secrets: it works in a scratch
/// namespace of its own and deletes what it wrote there; `--no-fill` without `--namespace`
/// is refused.
#[test]
fn bench_on_a_live_store_works_in_a_scratch_namespace() {
    let daemon = Daemon::start(&[]);
    assert!(daemon.cli(&["set", "live"], b"keep-me").status.success());
    let socket = daemon.socket.to_str().unwrap();
    let bench = |extra: &[&str]| {
        let mut args = vec![
            "bench",
            "--target",
            socket,
            "--duration",
            "200ms",
            "--warmup",
            "0s",
            "--rounds",
            "1",
            "--clients",
            "2",
            "--keys",
            "10",
            "--workloads",
            "get-keepalive,set-keepalive",
            "--json",
        ];
        args.extend_from_slice(extra);
        run_cli(&args, b"")
    };
    let out = bench(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(rows.iter().all(|r| r["errors"] == 0), "{rows:?}");
    // The live namespace holds what it held; the scratch one is empty.
    let names = |ns: &str| -> Vec<String> {
        let out = daemon.cli(&["secrets", "list", "--json", "-n", ns], b"");
        assert!(out.status.success(), "{}", stderr(&out));
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        listed
            .as_array()
            .or_else(|| listed["secrets"].as_array())
            .unwrap_or_else(|| panic!("{listed}"))
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names("default"), ["live"]);
    let namespaces = stdout(&daemon.cli(&["namespaces", "list"], b""));
    let scratch = namespaces
        .lines()
        .find(|l| l.starts_with("bench-scratch-"))
        .unwrap_or_else(|| panic!("no scratch namespace: {namespaces}"))
        .trim()
        .to_owned();
    assert!(
        names(&scratch).is_empty(),
        "bench left secrets in {scratch}"
    );
    assert_eq!(stdout(&daemon.cli(&["get", "live"], b"")), "keep-me");
    // --no-fill must say where bench-0..N are.
    let refused = bench(&["--no-fill"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("--namespace"),
        "{}",
        stderr(&refused)
    );
}
