//! `coffer agent`: the real binary against a real daemon, writing real files on tmpfs
//! (/dev/shm), signalling real processes.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use coffer_crypto::SecretBytes;
use coffer_types::Kind;
use common::{BIN, Daemon, assert_absent, eventually};

/// A directory on tmpfs.
fn shm() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("coffer-agent-")
        .tempdir_in("/dev/shm")
        .expect("/dev/shm (tmpfs) is needed for the agent's tests")
}

fn set(d: &Daemon, name: &str, value: &str) {
    d.client()
        .set(None, name, &SecretBytes::copy_from(value.as_bytes()), None)
        .unwrap();
}

/// A running agent.
struct Agent {
    child: Option<Child>,
    config: PathBuf,
    log: PathBuf,
    status: PathBuf,
    socket: PathBuf,
}

impl Agent {
    /// Writes `body` as the configuration (with the status file in `dir`) and starts the
    /// agent; waits until its first status is written.
    fn start(d: &Daemon, dir: &Path, body: &str) -> Self {
        let (config, log, status) = config(dir, body);
        let err = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .args(["--socket", d.socket.to_str().unwrap(), "agent", "--config"])
            .arg(&config)
            .env("COFFER_LOG", "debug")
            .env_remove("COFFER_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        let agent = Self {
            child: Some(child),
            config,
            log,
            status,
            socket: d.socket.clone(),
        };
        let pid = agent.child.as_ref().unwrap().id();
        assert!(
            eventually(Duration::from_secs(20), || agent.state().is_some_and(|s| {
                s["agent"]["pid"] == pid
                    && s["sinks"]
                        .as_array()
                        .is_some_and(|a| a.iter().all(|s| s["renders"].as_u64() > Some(0)))
            })),
            "the agent did not render:\n{}",
            agent.log()
        );
        agent
    }

    fn state(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(&self.status).ok()?).ok()
    }

    fn sink(&self, i: usize) -> serde_json::Value {
        self.state().unwrap()["sinks"][i].clone()
    }

    /// Asserts that sink `i`'s `key` in the status is `want`, allowing the agent a moment: it
    /// saves its status just after it writes the files a test watches.
    fn expect(&self, i: usize, key: &str, want: impl Into<serde_json::Value>, why: &str) {
        let want = want.into();
        eventually(Duration::from_secs(10), || self.sink(i)[key] == want);
        assert_eq!(self.sink(i)[key], want, "{why}\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `coffer agent status` (table).
    fn status_table(&self) -> String {
        let out = Command::new(BIN)
            .args(["agent", "status", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Ends it with SIGTERM; it must exit cleanly.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            )
            .unwrap();
            let status = c.wait().unwrap();
            assert!(
                status.success(),
                "the agent did not stop cleanly: {status}\n{}",
                self.log()
            );
        }
    }

    /// Fails if any value is in the agent's log or status files.
    fn assert_no_values(&self, values: &[&str]) {
        assert_absent("the agent's log", self.log().as_bytes(), values);
        let status = std::fs::read(&self.status).unwrap();
        assert_absent("the status file", &status, values);
        let prom = std::fs::read(self.status.with_extension("prom")).unwrap();
        assert_absent("the metrics file", &prom, values);
        let _ = &self.socket;
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Writes agent.toml into `dir`; answers (config, log, status) paths.
fn config(dir: &Path, body: &str) -> (PathBuf, PathBuf, PathBuf) {
    let config = dir.join("agent.toml");
    let status = dir.join("agent.status.json");
    std::fs::write(&config, body).unwrap();
    (config, dir.join("agent.log"), status)
}

/// `coffer agent --once`.
fn once(d: &Daemon, dir: &Path, body: &str) -> std::process::Output {
    let (config, _, _) = config(dir, body);
    Command::new(BIN)
        .args([
            "--socket",
            d.socket.to_str().unwrap(),
            "agent",
            "--once",
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap()
}

/// A Python process that prints `hup` on standard output at each SIGHUP; its pid is in
/// `pid_file`.
struct HupChild {
    child: Child,
    lines: Option<BufReader<ChildStdout>>,
}

impl HupChild {
    fn start(pid_file: &Path) -> Self {
        let script = "import signal, sys, os\n\
                      signal.signal(signal.SIGHUP, lambda *a: (sys.stdout.write('hup\\n'), sys.stdout.flush()))\n\
                      print('ready', flush=True)\n\
                      while True: signal.pause()\n";
        let mut child = Command::new("python3")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is needed (apt-get install -y python3)");
        let mut lines = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        lines.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");
        std::fs::write(pid_file, child.id().to_string()).unwrap();
        Self {
            child,
            lines: Some(lines),
        }
    }

    /// Waits for the next `hup`.
    fn next(&mut self) {
        let mut line = String::new();
        self.lines.as_mut().unwrap().read_line(&mut line).unwrap();
        assert_eq!(line, "hup\n");
    }

    /// How many `hup` lines arrive within `wait` (reads on a thread).
    fn count_within(&mut self, wait: Duration) -> usize {
        let n = Arc::new(AtomicUsize::new(0));
        let seen = n.clone();
        let mut lines = self.lines.take().unwrap();
        std::thread::spawn(move || {
            let mut line = String::new();
            while lines.read_line(&mut line).is_ok_and(|n| n > 0) {
                seen.fetch_add(1, Ordering::SeqCst);
                line.clear();
            }
        });
        std::thread::sleep(wait);
        let _ = self.child.kill();
        n.load(Ordering::SeqCst)
    }
}

impl Drop for HupChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[test]
fn change_to_signal_over_100_changes() {
    let d = Daemon::start(&[]);
    let dir = shm();
    let dest = dir.path().join("app/db");
    let pid_file = dir.path().join("app.pid");
    set(&d, "db", "value-000");
    let mut app = HupChild::start(&pid_file);
    let agent = Agent::start(
        &d,
        dir.path(),
        &format!(
            "[[file]]\nsecret = \"db\"\ndestination = \"{}\"\nkind = \"line\"\non_change = {{ signal = \"HUP\", pid_file = \"{}\" }}\n",
            dest.display(),
            pid_file.display()
        ),
    );
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "value-000\n");
    // The first write at start tells the application too.
    app.next();
    let mut times = Vec::new();
    let mut values = Vec::new();
    for i in 1..=100 {
        let value = format!("value-{i:03}");
        set(&d, "db", &value);
        let t0 = Instant::now();
        app.next();
        times.push(t0.elapsed());
        // The file was written before the signal.
        assert_eq!(
            std::fs::read_to_string(&dest).unwrap(),
            format!("{value}\n")
        );
        values.push(value);
    }
    times.sort();
    println!(
        "change-to-signal over {} changes (set's return to the child's SIGHUP): p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        times.len(),
        percentile(&times, 0.50),
        percentile(&times, 0.90),
        percentile(&times, 0.99),
        times[times.len() - 1]
    );
    agent.expect(0, "changes", 101, "");
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    agent.assert_no_values(&values);
}

#[test]
fn while_nothing_changes_the_agent_sends_no_requests() {
    let d = Daemon::start(&[]);
    let dir = shm();
    set(&d, "a", "alpha-value");
    set(&d, "b", "bravo-value");
    let agent = Agent::start(
        &d,
        dir.path(),
        &format!(
            "[[file]]\nsecret = \"a\"\ndestination = \"{0}/a\"\n[[template]]\ncontents = \"b={{{{ secret(\\\"b\\\") }}}}\"\ndestination = \"{0}/b\"\n",
            dir.path().display()
        ),
    );
    // Let the first render's requests land.
    std::thread::sleep(Duration::from_millis(500));
    let before = d.audit().len();
    std::thread::sleep(Duration::from_secs(4));
    let after = d.audit().len();
    assert_eq!(
        before, after,
        "the agent sent requests while nothing changed"
    );
    // And it does ask when something changes (the count above could move).
    set(&d, "a", "alpha-value-2");
    assert!(eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(dir.path().join("a")).unwrap() == "alpha-value-2"
    }));
    assert!(d.audit().len() > after + 1);
    agent.assert_no_values(&["alpha-value", "bravo-value"]);
}

#[test]
fn owner_group_and_mode_are_set_and_persistent_storage_is_refused() {
    let d = Daemon::start(&[]);
    let dir = shm();
    set(&d, "k", "owned-value");
    let out = once(
        &d,
        dir.path(),
        &format!(
            "[[file]]\nsecret = \"k\"\ndestination = \"{0}/by-name\"\nmode = \"0440\"\nowner = \"nobody\"\ngroup = \"nogroup\"\n\
             [[file]]\nsecret = \"k\"\ndestination = \"{0}/by-number\"\nmode = \"0640\"\nowner = 65534\ngroup = \"65534\"\n\
             [[file]]\nsecret = \"k\"\ndestination = \"{0}/default\"\n",
            dir.path().display()
        ),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (name, mode, uid) in [
        ("by-name", 0o440, 65534),
        ("by-number", 0o640, 65534),
        ("default", 0o400, 0),
    ] {
        let m = std::fs::metadata(dir.path().join(name)).unwrap();
        assert_eq!(m.mode() & 0o7777, mode, "{name}");
        assert_eq!((m.uid(), m.gid()), (uid, uid), "{name}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(name)).unwrap(),
            "owned-value"
        );
    }
    // /tmp is a persistent filesystem here.
    let persistent = tempfile::tempdir().unwrap();
    let body = format!(
        "[[file]]\nsecret = \"k\"\ndestination = \"{}/k\"\n",
        persistent.path().display()
    );
    let out = once(&d, dir.path(), &body);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("persistent filesystem")
            && err.contains("allow_persistent = true")
            && err.contains("[[file]] #1"),
        "{err}"
    );
    assert!(!persistent.path().join("k").exists());
    let out = once(&d, dir.path(), &format!("{body}allow_persistent = true\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(persistent.path().join("k")).unwrap(),
        "owned-value"
    );
    assert_absent("the agent's stderr", &out.stderr, &["owned-value"]);
    // ramfs counts as volatile too (a ramfs mounted under /tmp).
    if nix::unistd::geteuid().is_root() {
        let ram = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "ramfs", "none"])
            .arg(ram.path())
            .status()
            .unwrap();
        assert!(mounted.success(), "mount -t ramfs failed");
        let _mount = Bind(ram.path().to_owned());
        let out = once(
            &d,
            dir.path(),
            &format!(
                "[[file]]\nsecret = \"k\"\ndestination = \"{}/k\"\n",
                ram.path().display()
            ),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read_to_string(ram.path().join("k")).unwrap(),
            "owned-value"
        );
    }
}

/// The value of render `i`: its length varies with `i % 7` and is written into it, so a
/// reader can tell a whole value from a torn one.
fn sized(i: usize) -> String {
    format!("v{i:04}-{}-{}", i % 7, "x".repeat((i % 7) * 9))
}

/// Like `eventually`, checking every millisecond (for the 1,000 renders).
fn soon(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    f()
}

fn whole(text: &str) -> bool {
    let Some(line) = text.strip_suffix('\n') else {
        return false;
    };
    let mut parts = line.splitn(3, '-');
    let (Some(_), Some(n), Some(xs)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    n.parse::<usize>()
        .is_ok_and(|n| xs.len() == n * 9 && xs.bytes().all(|b| b == b'x'))
}

#[test]
fn a_reader_never_sees_a_partial_or_wrongly_owned_file_over_1000_renders() {
    let d = Daemon::start(&[]);
    let dir = shm();
    let dest = dir.path().join("db");
    set(&d, "db", &sized(0));
    let agent = Agent::start(
        &d,
        dir.path(),
        &format!(
            "[[file]]\nsecret = \"db\"\ndestination = \"{}\"\nkind = \"line\"\nmode = \"0440\"\nowner = \"nobody\"\ngroup = \"nogroup\"\n",
            dest.display()
        ),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, dest) = (stop.clone(), dest.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let mut f = std::fs::File::open(&dest).unwrap();
                let m = f.metadata().unwrap();
                let mut text = String::new();
                f.read_to_string(&mut text).unwrap();
                assert!(whole(&text), "read a partial file: {text:?}");
                assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o440, 65534, 65534));
                reads += 1;
            }
            reads
        })
    };
    for i in 1..=1000 {
        let value = sized(i);
        set(&d, "db", &value);
        let want = format!("{value}\n");
        assert!(
            soon(|| std::fs::read_to_string(&dest).unwrap() == want),
            "render {i} did not land:\n{}",
            agent.log()
        );
    }
    stop.store(true, Ordering::SeqCst);
    let reads = reader.join().unwrap();
    println!("{reads} whole reads during 1000 renders");
    agent.expect(0, "changes", 1001, "");
    // Stopped, so that no write of its own (the status files) is under way.
    let mut agent = agent;
    agent.stop();
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Unmounts a bind mount when dropped.
struct Bind(PathBuf);

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_bind_mounted_single_file_is_updated_in_place() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test bind-mounts a file and must run as root (CI does)"
    );
    let d = Daemon::start(&[]);
    let dir = shm();
    let (src, dst) = (dir.path().join("src"), dir.path().join("mnt"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::write(src.join("db"), "old\n").unwrap();
    std::fs::write(dst.join("db"), "").unwrap();
    let ok = Command::new("mount")
        .args(["--bind"])
        .arg(src.join("db"))
        .arg(dst.join("db"))
        .status()
        .unwrap();
    assert!(ok.success(), "mount --bind failed");
    let _bind = Bind(dst.join("db"));
    let inode = std::fs::metadata(src.join("db")).unwrap().ino();
    set(&d, "db", "first-bound");
    let sink = format!(
        "[[file]]\nsecret = \"db\"\ndestination = \"{}\"\nkind = \"line\"\n",
        dst.join("db").display()
    );
    // Atomic (the default) cannot rename over a mount point: the write fails, the file stays.
    let out = once(&d, dir.path(), &sink);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot rename"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(src.join("db")).unwrap(), "old\n");
    let agent = Agent::start(&d, dir.path(), &format!("{sink}write = \"in-place\"\n"));
    assert_eq!(
        std::fs::read_to_string(src.join("db")).unwrap(),
        "first-bound\n"
    );
    set(&d, "db", "second");
    assert!(eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(src.join("db")).unwrap() == "second\n"
    }));
    assert_eq!(std::fs::read_to_string(dst.join("db")).unwrap(), "second\n");
    assert_eq!(std::fs::metadata(src.join("db")).unwrap().ino(), inode);
    assert_eq!(std::fs::metadata(dst.join("db")).unwrap().ino(), inode);
    agent.assert_no_values(&["first-bound"]);
}

#[test]
fn a_template_of_three_secrets_renders_and_a_missing_one_keeps_the_old_file() {
    let d = Daemon::start(&[]);
    let dir = shm();
    set(&d, "user", "app-user");
    set(&d, "pass", "app-pass-1");
    let db = |host: &str| {
        let kv = serde_json::json!({ "host": host, "port": 5432 }).to_string();
        d.client()
            .set(
                None,
                "db",
                &SecretBytes::copy_from(kv.as_bytes()),
                Some(Kind::Kv),
            )
            .unwrap();
    };
    db("db.internal");
    std::fs::write(
        dir.path().join("app.conf.tmpl"),
        "url = postgres://{{ secret(\"user\") }}:{{ secret(\"pass\") | urlencode }}@{{ kv(\"db\", \"host\") }}:{{ kv(\"db\", \"port\") }}/app\n\
         pass_version = {{ version(\"pass\") }}\n",
    )
    .unwrap();
    let dest = dir.path().join("app.conf");
    let agent = Agent::start(
        &d,
        dir.path(),
        &format!(
            "[[template]]\nsource = \"app.conf.tmpl\"\ndestination = \"{}\"\nmode = \"0440\"\n",
            dest.display()
        ),
    );
    let first = "url = postgres://app-user:app-pass-1@db.internal:5432/app\npass_version = 1\n";
    assert_eq!(
        std::fs::read_to_string(&dest).unwrap(),
        first,
        "{}",
        agent.log()
    );
    let versions = agent.sink(0)["versions"].clone();
    assert_eq!(versions.as_array().unwrap().len(), 3, "{versions}");
    set(&d, "pass", "app-pass-2");
    let second = "url = postgres://app-user:app-pass-2@db.internal:5432/app\npass_version = 2\n";
    assert!(eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(&dest).unwrap() == second
    }));
    // A missing secret: the render is refused, the old file kept, the status says why.
    d.client().del(None, "db").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || !agent.sink(0)["last_error"]
            .is_null()),
        "{}",
        agent.log()
    );
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), second);
    let table = agent.status_table();
    assert!(
        table.contains("not_found") && table.contains("secret db is unavailable"),
        "{table}"
    );
    assert!(agent.log().contains("WARN"), "{}", agent.log());
    // Back again: it renders.
    db("db2.internal");
    assert!(eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(&dest)
            .unwrap()
            .contains("db2.internal")
    }));
    assert!(agent.sink(0)["last_error"].is_null());
    agent.assert_no_values(&["app-user", "app-pass-1", "app-pass-2", "db.internal"]);
}

#[test]
fn on_delete_removes_and_an_unchanged_render_writes_nothing_and_signals_nobody() {
    let d = Daemon::start(&[]);
    let dir = shm();
    let pid_file = dir.path().join("app.pid");
    set(&d, "gone", "soon-gone");
    set(&d, "kept", "kept-value");
    let mut app = HupChild::start(&pid_file);
    let on_change = format!(
        "on_change = {{ signal = \"HUP\", pid_file = \"{}\" }}\n",
        pid_file.display()
    );
    let agent = Agent::start(
        &d,
        dir.path(),
        &format!(
            "[[file]]\nsecret = \"gone\"\ndestination = \"{0}/gone\"\n{on_change}\
             [[file]]\nsecret = \"kept\"\ndestination = \"{0}/kept\"\non_delete = \"keep\"\n",
            dir.path().display()
        ),
    );
    // The first write at start told the application.
    app.next();
    // The same value again: a new version, rendered, but nothing written.
    set(&d, "gone", "soon-gone");
    assert!(eventually(
        Duration::from_secs(10),
        || agent.sink(0)["renders"].as_u64() >= Some(2)
    ));
    agent.expect(0, "changes", 1, "");
    assert_eq!(agent.sink(0)["versions"][0]["version"], 2);
    // Revoked: removed, and the application told.
    d.client().revoke(None, "gone").unwrap();
    app.next();
    assert!(!dir.path().join("gone").exists());
    agent.expect(0, "changes", 2, "");
    // on_delete = "keep": the file stays.
    d.client().del(None, "kept").unwrap();
    assert!(eventually(Duration::from_secs(10), || {
        !agent.sink(1)["last_error"].is_null()
    }));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("kept")).unwrap(),
        "kept-value"
    );
    // Exactly one signal came: the removal's.
    assert_eq!(app.count_within(Duration::from_millis(500)), 0);
    agent.assert_no_values(&["soon-gone", "kept-value"]);
}

#[test]
fn across_a_daemon_restart_files_stay_and_only_what_changed_renders() {
    let mut d = Daemon::start(&[]);
    let dir = shm();
    set(&d, "a", "a-value-1");
    set(&d, "b", "b-value-1");
    let mut agent = Agent::start(
        &d,
        dir.path(),
        &format!(
            "[[file]]\nsecret = \"a\"\ndestination = \"{0}/a\"\n[[file]]\nsecret = \"b\"\ndestination = \"{0}/b\"\n",
            dir.path().display()
        ),
    );
    let renders_b = agent.sink(1)["renders"].clone();
    d.stop();
    assert!(
        eventually(Duration::from_secs(20), || agent.state().unwrap()["agent"]
            ["connected"]
            == false),
        "{}",
        agent.log()
    );
    assert!(agent.status_table().contains("unreachable since"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("a")).unwrap(),
        "a-value-1"
    );
    std::thread::sleep(Duration::from_secs(2));
    d.spawn();
    assert!(
        eventually(Duration::from_secs(20), || agent.state().unwrap()["agent"]
            ["connected"]
            == true),
        "{}",
        agent.log()
    );
    set(&d, "a", "a-value-2");
    assert!(eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(dir.path().join("a")).unwrap() == "a-value-2"
    }));
    agent.expect(0, "changes", 2, "");
    agent.expect(1, "changes", 1, "b did not change and is not written again");
    agent.expect(1, "renders", renders_b, "b is not even rendered again");
    let warns = agent.log().matches("the daemon is unreachable").count();
    assert_eq!(warns, 1, "one WARN per outage:\n{}", agent.log());
    agent.assert_no_values(&["a-value-1", "a-value-2", "b-value-1"]);
    // SIGTERM ends it cleanly and leaves the files.
    agent.stop();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("a")).unwrap(),
        "a-value-2"
    );
    assert!(agent.status_table().contains("not running"));
}

#[test]
fn env_files_read_back_through_the_shell() {
    let d = Daemon::start(&[]);
    let dir = shm();
    let tricky = "it's \"quoted\" $HOME `id` back\\slash\nsecond line";
    let kv = serde_json::json!({ "DB_PASS": tricky, "PORT": 5432 }).to_string();
    d.client()
        .set(
            None,
            "app",
            &SecretBytes::copy_from(kv.as_bytes()),
            Some(Kind::Kv),
        )
        .unwrap();
    set(&d, "token", tricky);
    let out = once(
        &d,
        dir.path(),
        &format!(
            "[[file]]\nsecret = \"app\"\ndestination = \"{0}/app.env\"\nkind = \"env\"\n\
             [[file]]\nsecret = \"token\"\ndestination = \"{0}/token.env\"\nkind = \"env\"\nenv_name = \"TOKEN\"\n",
            dir.path().display()
        ),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |file: &str, var: &str| {
        let out = Command::new("sh")
            .args(["-c", &format!(". \"$1\"; printf %s \"${var}\""), "sh"])
            .arg(dir.path().join(file))
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(read("app.env", "DB_PASS"), tricky);
    assert_eq!(read("app.env", "PORT"), "5432");
    assert_eq!(read("token.env", "TOKEN"), tricky);
}

#[test]
fn a_burst_of_changes_renders_a_template_once_and_runs_its_command_once() {
    let d = Daemon::start(&[]);
    let dir = shm();
    let dest = dir.path().join("burst.conf");
    let ran = dir.path().join("ran");
    set(&d, "burst", "burst-0");
    let agent = Agent::start(
        &d,
        dir.path(),
        &format!(
            "[[template]]\ncontents = \"v={{{{ secret(\\\"burst\\\") }}}}\"\ndestination = \"{}\"\n\
             wait = {{ min = \"3s\", max = \"30s\" }}\n\
             on_change = {{ command = [\"/bin/sh\", \"-c\", \"echo ran >> '{}'\"] }}\n",
            dest.display(),
            ran.display()
        ),
    );
    // The first write ran the command once.
    let runs = || {
        std::fs::read_to_string(&ran)
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert!(eventually(Duration::from_secs(10), || runs() == 1));
    for i in 1..=5 {
        set(&d, "burst", &format!("burst-{i}"));
    }
    assert!(eventually(Duration::from_secs(40), || {
        std::fs::read_to_string(&dest).unwrap() == "v=burst-5"
    }));
    assert!(eventually(Duration::from_secs(10), || runs() == 2));
    agent.expect(0, "changes", 2, "five changes, one write");
    agent.expect(0, "renders", 2, "five changes, one render");
    assert_eq!(runs(), 2);
    agent.assert_no_values(&["burst-0", "burst-5"]);
}

#[test]
fn a_name_the_template_computed_is_not_shown() {
    let d = Daemon::start(&[]);
    let dir = shm();
    set(&d, "user-eu", "computed-value");
    set(&d, "plain", "plain-value");
    let agent = Agent::start(
        &d,
        dir.path(),
        &format!(
            "[[template]]\ncontents = '''{{% set n = \"user-\" ~ \"eu\" %}}{{{{ secret(n) }}}} {{{{ secret(\"plain\") }}}}'''\ndestination = \"{}/t\"\n",
            dir.path().display()
        ),
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("t")).unwrap(),
        "computed-value plain-value"
    );
    let versions = agent.sink(0)["versions"].clone();
    let names: Vec<&str> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["(a name the template computed)", "plain"],
        "{versions}"
    );
    assert!(!agent.log().contains("user-eu"), "{}", agent.log());
    // Its changes still re-render the file.
    set(&d, "user-eu", "computed-value-2");
    assert!(eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(dir.path().join("t")).unwrap() == "computed-value-2 plain-value"
    }));
    agent.assert_no_values(&["computed-value", "plain-value"]);
}

/// What the system's crypt(3) (libxcrypt, through perl) returns for `password` and
/// `setting`; the password goes through the environment.
fn crypt(password: &str, setting: &str) -> String {
    let out = Command::new("perl")
        .args([
            "-e",
            "my $h = crypt($ENV{PW}, $ARGV[0]); print defined $h ? $h : '(undef)'",
        ])
        .arg(setting)
        .env("PW", password)
        .output()
        .expect("perl runs (apt-get install perl)");
    assert!(out.status.success(), "perl failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_yescrypt_sink_holds_the_daemons_hash_and_keeps_its_salt_while_the_password_stays() {
    let d = Daemon::start(&[]);
    let dir = shm();
    let dest = dir.path().join("admin.hash");
    set(&d, "admin", "correct horse battery");
    let body = format!(
        "[[file]]\nsecret = \"admin\"\ndestination = \"{}\"\npost = \"yescrypt\"\nmode = \"0444\"\n",
        dest.display()
    );
    let mut agent = Agent::start(&d, dir.path(), &body);
    let first = std::fs::read_to_string(&dest).unwrap();
    let hash = first.strip_suffix('\n').unwrap();
    assert!(hash.starts_with("$y$j9T$"), "{hash}");
    assert_eq!(crypt("correct horse battery", hash), hash);
    assert_ne!(crypt("wrong horse battery", hash), hash);
    // The agent asked for the hash, never for the password.
    let audit = d.audit();
    assert!(audit.iter().any(|r| r["action"] == "yescrypt"));
    assert!(
        !audit.iter().any(|r| r["action"] == "get"),
        "the agent read the value"
    );
    // A restarted agent recomputes with the same salt: nothing changes.
    agent.stop();
    let agent = Agent::start(&d, dir.path(), &body);
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), first);
    agent.expect(0, "changes", 0, "");
    // A new password: a new hash, with a new salt.
    set(&d, "admin", "new password here");
    assert!(eventually(Duration::from_secs(20), || {
        std::fs::read_to_string(&dest).unwrap() != first
    }));
    let second = std::fs::read_to_string(&dest).unwrap();
    let hash2 = second.strip_suffix('\n').unwrap();
    assert_eq!(crypt("new password here", hash2), hash2);
    assert_ne!(
        hash2.rsplit('$').nth(1),
        hash.rsplit('$').nth(1),
        "a new salt"
    );
    agent.assert_no_values(&["correct horse battery", "new password here"]);
}

#[test]
fn exec_starts_once_every_file_is_there_restarts_on_a_change_and_the_agent_ends_as_it_did() {
    use std::os::unix::process::ExitStatusExt;
    let d = Daemon::start(&[]);
    let dir = shm();
    let dest = dir.path().join("db");
    let log = dir.path().join("starts");
    let agent_log = dir.path().join("agent.log");
    // The secret does not exist yet: the command must wait for it.
    let mut agent = Agent::start(
        &d,
        dir.path(),
        &format!(
            "[[file]]\nsecret = \"db\"\ndestination = \"{}\"\n\
             [exec]\ncommand = [\"/bin/sh\", \"-c\", \"echo \\\"start $(cat '{}')\\\" >> '{}'; exec sleep 1000\"]\nstop_timeout = \"5s\"\n",
            dest.display(),
            dest.display(),
            log.display()
        ),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !log.exists(),
        "the command started before its file was there"
    );
    assert!(agent.state().unwrap()["agent"]["exec_pid"].is_null());
    set(&d, "db", "exec-1");
    assert!(
        eventually(Duration::from_secs(10), || std::fs::read_to_string(&log)
            .unwrap_or_default()
            == "start exec-1\n"),
        "{}",
        agent.log()
    );
    assert!(eventually(Duration::from_secs(10), || agent
        .state()
        .unwrap()["agent"]["exec_pid"]
        .is_u64()));
    let first_pid = agent.state().unwrap()["agent"]["exec_pid"].clone();
    // A change restarts it with the new file in place.
    set(&d, "db", "exec-2");
    assert!(
        eventually(Duration::from_secs(20), || std::fs::read_to_string(&log)
            .unwrap_or_default()
            == "start exec-1\nstart exec-2\n"),
        "{}",
        agent.log()
    );
    assert!(eventually(Duration::from_secs(10), || {
        let pid = &agent.state().unwrap()["agent"]["exec_pid"];
        pid.is_u64() && *pid != first_pid
    }));
    assert!(agent.status_table().contains("command: pid"));
    // SIGTERM goes to the command; the agent ends as the command did (killed by TERM).
    let mut child = agent.child.take().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(15), "{status}\n{}", agent.log());
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "exec-2");
    assert_absent(
        "the agent's log",
        std::fs::read_to_string(agent_log).unwrap().as_bytes(),
        &["exec-1", "exec-2"],
    );
    agent.stop();
}

#[test]
fn a_restarted_agent_resumes_after_its_last_revision_and_rewrites_only_what_changed() {
    let d = Daemon::start(&[]);
    let dir = shm();
    set(&d, "a", "resume-a-1");
    set(&d, "b", "resume-b-1");
    let body = format!(
        "[[file]]\nsecret = \"a\"\ndestination = \"{0}/a\"\n[[file]]\nsecret = \"b\"\ndestination = \"{0}/b\"\n",
        dir.path().display()
    );
    let mut agent = Agent::start(&d, dir.path(), &body);
    let revision = agent.state().unwrap()["agent"]["revision"]
        .as_u64()
        .unwrap();
    agent.stop();
    // While the agent is away, a changes.
    set(&d, "a", "resume-a-2");
    let agent = Agent::start(&d, dir.path(), &body);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("a")).unwrap(),
        "resume-a-2"
    );
    agent.expect(0, "changes", 1, "");
    agent.expect(1, "changes", 0, "b is as it was: not written again");
    // It followed on from where it was: the revision moved on past the change it missed.
    assert!(eventually(Duration::from_secs(10), || {
        agent.state().unwrap()["agent"]["revision"].as_u64() > Some(revision)
    }));
    let out = Command::new(BIN)
        .args(["agent", "status", "--json", "--config"])
        .arg(&agent.config)
        .output()
        .unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["agent"]["connected"], true);
    assert_eq!(json["sinks"][0]["versions"][0]["version"], 2);
    agent.assert_no_values(&["resume-a-1", "resume-a-2", "resume-b-1"]);
}
