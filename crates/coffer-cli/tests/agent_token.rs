//! `coffer agent` with a token of its own, as docs/agent.md tells operators to run it: `read`
//! and `meta` on its namespace are enough to render and follow changes; a token with less
//! fails at start with `denied`, naming the namespace, and writes nothing.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BIN, Daemon, assert_absent, code, eventually, raw};
use serde_json::json;

const POLICIES: &str = r#"
[policies.agent]
rules = [{ path = "apps/*", capabilities = ["read", "meta"] }]

[policies.one-secret]
rules = [{ path = "apps/db", capabilities = ["read", "meta"] }]
"#;

fn request(d: &Daemon, r: serde_json::Value) -> serde_json::Value {
    raw(&d.socket, r.to_string().as_bytes())
}

/// A token for `policy`, written to a file in `dir`.
fn token_file(d: &Daemon, dir: &Path, policy: &str) -> std::path::PathBuf {
    let r = request(
        d,
        json!({"action": "token_create", "policies": [policy], "ttl": 3600}),
    );
    assert_eq!(r["ok"], true, "{r}");
    let path = dir.join(format!("{policy}.token"));
    std::fs::write(&path, r["token"].as_str().unwrap()).unwrap();
    path
}

fn set(d: &Daemon, name: &str, value: &str) {
    common::set_in(d, "apps", name, value);
}

/// A child killed if the test fails before it ends it.
struct Killed(Option<std::process::Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn an_agent_token_with_read_and_meta_on_its_namespace_renders_and_follows() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies.toml");
    std::fs::write(&policies, POLICIES).unwrap();
    let daemon = Daemon::start(&["--policy-file", policies.to_str().unwrap()]);
    let r = request(
        &daemon,
        json!({"action": "namespace_create", "namespace": "apps"}),
    );
    assert_eq!(r["ok"], true, "{r}");
    set(&daemon, "db", "first-Value-1");
    set(&daemon, "other", "not-for-the-agent-2");

    let shm = tempfile::Builder::new()
        .prefix("coffer-agent-token-")
        .tempdir_in("/dev/shm")
        .expect("/dev/shm (tmpfs) is needed for the agent's tests");
    let dest = shm.path().join("db");
    let config = shm.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[[file]]\nsecret = \"db\"\nnamespace = \"apps\"\ndestination = \"{}\"\n",
            dest.display()
        ),
    )
    .unwrap();
    let log = shm.path().join("agent.log");

    // Less than the namespace: the watch is refused, the agent says so and writes nothing.
    let narrow = token_file(&daemon, dir.path(), "one-secret");
    let out = Command::new(BIN)
        .args(["--socket", daemon.socket.to_str().unwrap(), "agent"])
        .arg("--config")
        .arg(&config)
        .env("COFFER_TOKEN_FILE", &narrow)
        .env_remove("COFFER_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("apps") && err.contains("denied"),
        "the refusal should name the namespace and the code: {err}"
    );
    assert!(
        !dest.exists(),
        "nothing is written before the watch is open"
    );

    // read and meta on apps/*: renders, then follows a change pushed by the daemon.
    let token = token_file(&daemon, dir.path(), "agent");
    let agent = Command::new(BIN)
        .args(["--socket", daemon.socket.to_str().unwrap(), "agent"])
        .arg("--config")
        .arg(&config)
        .env("COFFER_TOKEN_FILE", &token)
        .env("COFFER_LOG", "debug")
        .env_remove("COFFER_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut agent = Killed(Some(agent));
    let read = || std::fs::read_to_string(&dest).unwrap_or_default();
    let agent_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(20), || read() == "first-Value-1"),
        "not rendered: {:?}\n{}",
        read(),
        agent_log()
    );
    set(&daemon, "db", "second-Value-3");
    assert!(
        eventually(Duration::from_secs(20), || read() == "second-Value-3"),
        "the change was not followed: {:?}\n{}",
        read(),
        agent_log()
    );
    // A secret the agent does not render changes: its name is visible to the agent's token
    // (read and meta on apps/*), its value never reaches the agent's files or log.
    set(&daemon, "other", "not-for-the-agent-4");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(read(), "second-Value-3");

    // The agent's requests ran as its token, not as root: the audit says so.
    let audit = daemon.audit();
    let as_token = audit
        .iter()
        .filter(|r| r["actor"]["token"].is_string() && r["action"] == "get")
        .count();
    assert!(
        as_token > 0,
        "no audit record names the agent's token: {audit:?}"
    );
    // The token reads nothing outside apps/.
    let r = request(
        &daemon,
        json!({"action": "get", "namespace": "default", "name": "db",
               "token": std::fs::read_to_string(&token).unwrap()}),
    );
    assert_eq!(code(&r), "denied", "{r}");

    let mut agent = agent.0.take().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(agent.wait().unwrap().success(), "{}", agent_log());
    let values = [
        "first-Value-1",
        "second-Value-3",
        "not-for-the-agent-2",
        "not-for-the-agent-4",
    ];
    assert_absent("the agent's log", agent_log().as_bytes(), &values);
    assert_absent("the daemon's log", daemon.log().as_bytes(), &values);
}
