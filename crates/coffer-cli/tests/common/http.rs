//! Helpers for tests of the HTTP API: a daemon on a free loopback port with a root token,
//! and `curl`.

use std::net::TcpListener;
use std::process::Command;

use super::{Daemon, eventually, stderr, stdout};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn need(tool: &str, install: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is missing: {install} (scripts/test installs it)"
    );
}

/// A daemon serving HTTP on a free loopback port, and a root token.
pub fn http_daemon(extra: &[&str]) -> (Daemon, String, String) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec!["--http", addr.as_str()];
    args.extend_from_slice(extra);
    let daemon = Daemon::start(&args);
    let url = format!("http://{addr}");
    assert!(
        eventually(std::time::Duration::from_secs(10), || {
            curl(&url, None, &["/v1/sys/health"]).0 == 200
        }),
        "the HTTP API did not answer:\n{}",
        daemon.log()
    );
    let token = root_token(&daemon);
    (daemon, url, token)
}

pub fn root_token(daemon: &Daemon) -> String {
    let out = daemon.cli(&["token", "create", "--policy", "root", "--ttl", "1h"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_owned()
}

/// `curl` against `base` with a token; the last argument is the path. Answers the status
/// and the body.
pub fn curl(base: &str, token: Option<&str>, args: &[&str]) -> (u16, String) {
    let (path, rest) = args.split_last().unwrap();
    let mut c = Command::new("curl");
    c.args(["-sS", "-o", "-", "-w", "\n%{http_code}"]);
    if let Some(t) = token {
        c.args(["-H", &format!("X-Vault-Token: {t}")]);
    }
    c.args(rest).arg(format!("{base}{path}"));
    let out = c.output().expect("curl runs (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}
