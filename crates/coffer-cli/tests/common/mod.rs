//! Test harness: the real `coffer` binary as a daemon in a temporary directory, talked to over
//! its real socket, with its log captured so tests can prove no secret reached it.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use coffer_client::Client;

pub mod http;
pub mod openbao;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_coffer");

/// A daemon under test.
pub struct Daemon {
    child: Option<Child>,
    /// The temporary root (mode 0755 so other uids can reach the socket).
    pub root: tempfile::TempDir,
    /// The data directory.
    pub data: PathBuf,
    /// The main socket.
    pub socket: PathBuf,
    /// Where its stderr goes.
    pub log: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    starts: usize,
    /// Run the daemon as this uid (and gid) instead of root.
    user: Option<u32>,
}

impl Daemon {
    /// A daemon not yet started, with extra `serve` arguments.
    pub fn new(args: &[&str]) -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = root.path().join("data");
        let socket = root.path().join("run/coffer.sock");
        let log = root.path().join("daemon.log");
        Self {
            child: None,
            data,
            socket,
            log,
            root,
            args: args.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            starts: 0,
            user: None,
        }
    }

    /// Runs the daemon as `uid` (its data and socket directories are made for it).
    pub fn as_user(&mut self, uid: u32) {
        assert!(
            nix::unistd::geteuid().is_root(),
            "running the daemon as another user needs root (CI runs the suite as root)"
        );
        for dir in [self.data.clone(), self.socket.parent().unwrap().to_owned()] {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
            nix::unistd::chown(
                &dir,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(uid)),
            )
            .unwrap();
        }
        self.user = Some(uid);
    }

    /// Every audit record written so far, in order.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        let dir = self.data.join("audit");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "jsonl"));
        files.sort();
        files
            .iter()
            .flat_map(|f| {
                // In the readable form `coffer audit tail` prints (full field names).
                std::fs::read_to_string(f)
                    .unwrap()
                    .lines()
                    .map(|l| {
                        let mut out = Vec::new();
                        coffer_audit::tail::expand(l.as_bytes(), &mut out);
                        serde_json::from_slice(&out).unwrap()
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Starts a daemon with extra `serve` arguments and waits until it answers.
    pub fn start(args: &[&str]) -> Self {
        let mut d = Self::new(args);
        d.spawn();
        d
    }

    /// Adds `serve` arguments for the next start.
    pub fn args(&mut self, extra: &[&str]) {
        self.args.extend(extra.iter().map(|s| s.to_string()));
    }

    /// Sets a variable for the next start.
    pub fn env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts (or restarts) the process, appending to the same log.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut command = match self.user {
            Some(uid) => {
                let mut c = Command::new("setpriv");
                c.args([
                    "--reuid",
                    &uid.to_string(),
                    "--regid",
                    &uid.to_string(),
                    "--clear-groups",
                    BIN,
                ]);
                c
            }
            None => Command::new(BIN),
        };
        let child = command
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--socket")
            .arg(&self.socket)
            .args(&self.args)
            .env("COFFER_LOG", "trace")
            .env_remove("COFFER_SOCKET")
            // No TPM unless a test gives one: the key-file defaults are under test here.
            .env("COFFER_TPM_TCTI", "none")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.starts += 1;
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "the daemon exited ({status}) before listening:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the daemon did not listen within 20 s:\n{}", self.log());
    }

    /// Stops with SIGTERM and waits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "the daemon did not stop cleanly: {status}\n{}",
                self.log()
            );
        }
    }

    /// Kills with SIGKILL, as a crash or power cut would end it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// A client for the main socket (trusting the daemon's uid when it runs as another user).
    pub fn client(&self) -> Client {
        let client = Client::new(&self.socket);
        match self.user {
            Some(uid) => client.trust_server_uid(uid),
            None => client,
        }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `coffer --socket <socket> <args>` with `stdin` fed in.
    pub fn cli(&self, args: &[&str], stdin: &[u8]) -> Output {
        let uid = self.user.map(|u| u.to_string());
        let env: Vec<(&str, &str)> = uid
            .as_deref()
            .map(|u| ("COFFER_SERVER_UID", u))
            .into_iter()
            .collect();
        run_cli_env(
            &[&["--socket", self.socket.to_str().unwrap()], args].concat(),
            &env,
            stdin,
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `coffer <args>` with `stdin`, capturing its output.
pub fn run_cli(args: &[&str], stdin: &[u8]) -> Output {
    run_cli_env(args, &[], stdin)
}

/// Runs `coffer <args>` with `stdin` and extra variables, capturing its output.
pub fn run_cli_env(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("COFFER_SOCKET")
        .env_remove("COFFER_SERVER_UID")
        .envs(env.iter().copied())
        .env("COFFER_LOG", "trace")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// Standard error of a run, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Standard output of a run, as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sends raw bytes as one request on a fresh connection and reads the reply to the end,
/// without half-closing first (as the reference Node.js client does).
pub fn raw(socket: &Path, request: &[u8]) -> serde_json::Value {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    serde_json::from_slice(&reply).unwrap_or_else(|e| {
        panic!(
            "reply is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&reply)
        )
    })
}

/// Stores `value` as `ns/name` through the socket as the test's own uid (root), asserting
/// it was stored; answers the reply.
pub fn set_in(daemon: &Daemon, ns: &str, name: &str, value: &str) -> serde_json::Value {
    let r = raw(
        &daemon.socket,
        serde_json::json!({"action": "set", "namespace": ns, "name": name, "value": value})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r["ok"], true, "{r}");
    r
}

/// The `code` of an error reply.
pub fn code(reply: &serde_json::Value) -> &str {
    reply["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error reply: {reply}"))
}

/// Fails if any of `secrets` occurs in `text`.
pub fn assert_absent(what: &str, text: &[u8], secrets: &[&str]) {
    for s in secrets {
        assert!(
            !text.windows(s.len()).any(|w| w == s.as_bytes()),
            "{what} contains the secret {s:?}"
        );
    }
}

/// Fails unless `f` turns true within `limit`.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Runs Node.js with `/run` replaced, in a private mount namespace, by `run_dir`, so the
/// reference client's hard-coded `/run/tpmd.sock` reaches the daemon's compat socket.
pub fn node_in_namespace(run_dir: &Path, script: &Path) -> std::process::Output {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "Node.js is missing: install it with `apt-get install -y nodejs` (the test script does)"
    );
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test binds /run/tpmd.sock in a private mount namespace and must run as root \
         (CI does; run the suite with sudo)"
    );
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount --bind "$1" /run && exec node "$2""#)
        .arg("sh")
        .arg(run_dir)
        .arg(script)
        .output()
        .unwrap()
}

/// Runs the reference Node.js client (tests/node/device_client.js) against the daemon's
/// compat socket `run_dir/tpmd.sock` and answers what its workflows returned.
pub fn node_device_client(run_dir: &Path, daemon: &Daemon) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/device_client.js");
    let out = node_in_namespace(run_dir, &script);
    assert!(
        out.status.success(),
        "node failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Checks the four documented workflows of reference 000 answered as the device daemon does;
/// answers the index `set` returned.
pub fn check_device_workflows(results: &serde_json::Value) -> String {
    use serde_json::json;
    // Workflow 1: {"ok":true,"index":"0x0152XXXX"}, nothing else.
    let set = results["set"].as_object().unwrap();
    assert_eq!(set.len(), 2, "{set:?}");
    assert_eq!(set["ok"], json!(true));
    let index = set["index"].as_str().unwrap();
    assert!(
        index.len() == 10
            && index.starts_with("0x0152")
            && index[6..].chars().all(|c| c.is_ascii_hexdigit()),
        "{index}"
    );
    // Workflow 2: the value.
    assert_eq!(results["get"], json!("sk_live_abc123xyz"));
    // Workflow 3: rotation keeps the index.
    assert_eq!(results["rotate"], json!({"ok": true, "index": index}));
    assert_eq!(results["getRotated"], json!("sk_live_new_key_456"));
    // Workflow 4: {"ok":true}.
    assert_eq!(results["del"], json!({"ok": true}));
    // After deletion: no value, and an error shaped as the device daemon's.
    assert!(results.get("getDeleted").is_none(), "{results}");
    let gone = &results["delDeleted"];
    assert_eq!(gone["code"], json!("not_found"));
    assert_eq!(gone["rc"], json!("0x18b"));
    assert!(gone["error"].as_str().is_some_and(|e| !e.is_empty()));
    index.to_owned()
}

/// Sends each request on its own connection as peer `uid` (through setpriv and the Node.js
/// helper tests/node/requests.js), in order; answers the replies.
pub fn requests_as(
    uid: u32,
    socket: &Path,
    requests: &[serde_json::Value],
) -> Vec<serde_json::Value> {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test sends requests as another uid with setpriv and must run as root"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/requests.js");
    let mut child = Command::new("setpriv")
        .args([
            "--reuid",
            &uid.to_string(),
            "--regid",
            &uid.to_string(),
            "--clear-groups",
            "node",
        ])
        .arg(&script)
        .arg(socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "setpriv and node run (apt-get install -y util-linux nodejs; the test script does)",
        );
    let input: String = requests.iter().map(|r| format!("{r}\n")).collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// An age identity made by the real `age-keygen` in `dir/name`: its file and its recipient.
pub fn age_keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    http::need("age-keygen", "apt-get install age");
    let path = dir.join(name);
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&path).unwrap();
    let recipient = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_owned();
    (path, recipient)
}

/// A self-signed P-256 certificate for `subject` (`/CN=...`), made by the real `openssl`,
/// with `extra` arguments (e.g. `-addext`); written to `cert` and `key`.
pub fn self_signed_p256(cert: &Path, key: &Path, subject: &str, extra: &[&str]) {
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args([
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            subject,
        ])
        .args(extra)
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .output()
        .expect("openssl runs (apt-get install openssl; scripts/test installs it)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
}
