//! Issue 12, item 6: an impostor socket. A user without `XDG_RUNTIME_DIR` (after `su -`,
//! from cron, in a container) gets `/tmp/coffer-<uid>/coffer.sock` for the client and the
//! daemon; another local user who creates that directory first must receive nothing from
//! `coffer set`, and the victim's daemon must refuse to serve from a directory it does not
//! own or that others can write.
//!
//! The victim is a uid with no account and no runtime directory; the attacker is uid 65534.
//! Both run the real binary (and, for the attacker, a Node.js listener) through setpriv.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::BIN;

const ATTACKER: u32 = 65534;
const SECRET: &str = "TOP-SECRET-VALUE";

fn need_root_setpriv_node() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test runs processes as other uids with setpriv and must run as root (CI does)"
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "Node.js is missing: install it with `apt-get install -y nodejs` (the test script does)"
    );
}

/// A victim uid of its own for each test (no account: no home, no runtime directory), and
/// its fallback directory, removed before and after.
struct Victim {
    uid: u32,
    dir: PathBuf,
}

impl Victim {
    fn new(salt: u32) -> Self {
        let uid = 40_000 + (std::process::id() % 10_000) * 2 + salt;
        let dir = PathBuf::from(format!("/tmp/coffer-{uid}"));
        let _ = std::fs::remove_dir_all(&dir);
        Self { uid, dir }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("coffer.sock")
    }

    /// `coffer ARGS` as the victim, with the environment of a login without a session
    /// (no XDG_RUNTIME_DIR, no HOME), `stdin` fed in.
    fn command(&self, args: &[&str], extra: &[(&str, &str)]) -> Command {
        let mut c = Command::new("setpriv");
        let uid = self.uid.to_string();
        c.args(["--reuid", &uid, "--regid", &uid, "--clear-groups", BIN])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("COFFER_TPM_TCTI", "none")
            .env("COFFER_LOG", "info")
            .envs(extra.iter().copied());
        c
    }

    fn run(&self, args: &[&str], extra: &[(&str, &str)], stdin: &[u8]) -> Output {
        let mut child = self
            .command(args, extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("setpriv runs (apt-get install -y util-linux)");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The attacker's listener in the victim's fallback directory, recording every byte.
struct Impostor {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Impostor {
    fn start(dir: &Path) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/impostor.js");
        let uid = ATTACKER.to_string();
        let mut child = Command::new("setpriv")
            .args(["--reuid", &uid, "--regid", &uid, "--clear-groups", "node"])
            .arg(&script)
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("setpriv and node run (apt-get install -y util-linux nodejs)");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the impostor did not start");
        Self { child, out }
    }

    /// Stops it and answers what each connection it accepted received.
    fn connections(mut self) -> Vec<serde_json::Value> {
        // Give a closing connection's line time to be written.
        std::thread::sleep(Duration::from_millis(300));
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.out, &mut rest).unwrap();
        rest.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn coffer_set_sends_nothing_to_an_impostor_socket() {
    need_root_setpriv_node();
    let victim = Victim::new(0);
    let impostor = Impostor::start(&victim.dir);
    assert_eq!(
        std::fs::metadata(&victim.dir).unwrap().uid(),
        ATTACKER,
        "the attacker made the victim's fallback directory"
    );

    // The victim, with no runtime directory, stores a secret through the default socket.
    let out = victim.run(
        &["set", "db-password"],
        &[("COFFER_TOKEN", "cft_victims-token")],
        SECRET.as_bytes(),
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "coffer set reported success: {err}");
    assert_eq!(out.status.code(), Some(77), "{err}");
    let socket = victim.socket();
    for expected in [
        "refusing to talk to",
        socket.to_str().unwrap(),
        &format!("uid {ATTACKER}"),
        &format!("uid {}", victim.uid),
        &format!("COFFER_SERVER_UID={ATTACKER}"),
        "nothing was sent",
    ] {
        assert!(err.contains(expected), "{expected:?} not in: {err}");
    }
    common::assert_absent(
        "the refusal",
        err.as_bytes(),
        &[SECRET, "cft_victims-token"],
    );

    let seen = impostor.connections();
    assert!(
        !seen.is_empty(),
        "the victim's client never reached the impostor, so this test shows nothing"
    );
    for c in &seen {
        assert_eq!(c["bytes"], 0, "the impostor received {c}");
    }

    // The same impostor, trusted on purpose: it would have received the value (so the
    // refusal above is what kept it out).
    let _ = std::fs::remove_dir_all(&victim.dir);
    let impostor = Impostor::start(&victim.dir);
    let uid = ATTACKER.to_string();
    let out = victim.run(
        &["set", "db-password"],
        &[("COFFER_SERVER_UID", uid.as_str())],
        SECRET.as_bytes(),
    );
    let seen = impostor.connections();
    let received: String = seen
        .iter()
        .map(|c| c["received"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        received.contains(SECRET),
        "a trusted listener receives the request: {seen:?} ({})",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `coffer serve` as the victim on its defaults; answers its exit once it stops, or
/// `None` while it runs (then it serves, and is stopped).
fn serve(victim: &Victim) -> (Option<Output>, String) {
    let mut child = victim
        .command(&["serve"], &[])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            return (Some(out), err);
        }
        // Served: the victim's own socket answers (not the impostor's, which may be there).
        let own = std::fs::symlink_metadata(victim.socket()).is_ok_and(|m| m.uid() == victim.uid);
        if own && std::os::unix::net::UnixStream::connect(victim.socket()).is_ok() {
            return (None, stop(child));
        }
        assert!(
            Instant::now() < deadline,
            "the daemon neither served nor exited"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop(child: Child) -> String {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_daemon_refuses_a_socket_directory_it_does_not_own_or_others_can_write() {
    need_root_setpriv_node();
    let victim = Victim::new(1);

    // Owned by the attacker (made first, open to all).
    let impostor = Impostor::start(&victim.dir);
    let (exit, err) = serve(&victim);
    let exit = exit.unwrap_or_else(|| panic!("served from the attacker's directory: {err}"));
    assert!(!exit.status.success());
    assert!(
        err.contains("refusing the socket directory")
            && err.contains(victim.dir.to_str().unwrap())
            && err.contains(&format!("owned by uid {ATTACKER}")),
        "{err}"
    );
    // Refused before anything was made in it (the default data directory is beside it).
    assert!(!victim.dir.join("data").exists());
    drop(impostor);

    // The victim's own, but writable by others.
    let _ = std::fs::remove_dir_all(&victim.dir);
    std::fs::create_dir(&victim.dir).unwrap();
    let owner = Some(nix::unistd::Uid::from_raw(victim.uid));
    nix::unistd::chown(&victim.dir, owner, None).unwrap();
    for mode in [0o777, 0o770, 0o1777] {
        std::fs::set_permissions(
            &victim.dir,
            std::os::unix::fs::PermissionsExt::from_mode(mode),
        )
        .unwrap();
        let (exit, err) = serve(&victim);
        assert!(
            exit.is_some(),
            "served from a directory of mode {mode:o}: {err}"
        );
        assert!(
            err.contains("refusing the socket directory") && err.contains("lets others write"),
            "{mode:o}: {err}"
        );
    }

    // A symbolic link to a directory of the victim's.
    let _ = std::fs::remove_dir_all(&victim.dir);
    let real = tempfile::tempdir().unwrap();
    nix::unistd::chown(real.path(), owner, None).unwrap();
    std::os::unix::fs::symlink(real.path(), &victim.dir).unwrap();
    let (exit, err) = serve(&victim);
    assert!(exit.is_some(), "served through a link: {err}");
    assert!(err.contains("symbolic link"), "{err}");
    std::fs::remove_file(&victim.dir).unwrap();

    // Missing: the daemon makes it, 0700 and its own, and the victim's client talks to it.
    let (exit, err) = {
        let mut child = victim
            .command(&["serve"], &[])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(victim.socket()).is_err() {
            if child.try_wait().unwrap().is_some() {
                let out = child.wait_with_output().unwrap();
                panic!(
                    "the daemon exited: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert!(Instant::now() < deadline, "the daemon did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let meta = std::fs::symlink_metadata(&victim.dir).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.uid(), victim.uid);
        assert_eq!(meta.mode() & 0o7777, 0o700);
        let sock = std::fs::symlink_metadata(victim.socket()).unwrap();
        assert_eq!(sock.mode() & 0o777, 0o666);
        let set = victim.run(&["set", "db-password"], &[], SECRET.as_bytes());
        let get = victim.run(&["get", "db-password"], &[], b"");
        (Some((set, get)), stop(child))
    };
    let (set, get) = exit.unwrap();
    assert!(
        set.status.success(),
        "{}\n{err}",
        String::from_utf8_lossy(&set.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&get.stdout).trim_end(),
        SECRET,
        "{err}"
    );
    common::assert_absent("the daemon's log", err.as_bytes(), &[SECRET]);
}
