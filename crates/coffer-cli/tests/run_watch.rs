//! `coffer run --watch`: the real binary supervising a real shell script against a real
//! daemon. The script writes its pid and the value it sees to a file, and what signals reach
//! it; coffer's standard error and the daemon's log are searched for the values.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use common::{BIN, Daemon, assert_absent, eventually};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Long enough for anything that works; the tests assert what happens, not how fast.
const LIMIT: Duration = Duration::from_secs(30);

/// The child: notes each start (`start PID VALUE`) and each HUP (`hup PID`) in the file `$1`,
/// and ends when coffer (its parent) is gone, so a failed test leaves nothing running.
const CHILD: &str = r#"
f="$1"
trap 'echo "hup $$" >> "$f"' HUP
echo "start $$ $S" >> "$f"
while kill -0 "$PPID" 2>/dev/null; do sleep 0.05; done
"#;

/// As [`CHILD`], ignoring SIGTERM.
const STUBBORN: &str = r#"
f="$1"
trap '' TERM
echo "start $$ $S" >> "$f"
while kill -0 "$PPID" 2>/dev/null; do sleep 0.05; done
"#;

/// As [`CHILD`], exiting 42 on SIGTERM after noting it.
const POLITE: &str = r#"
f="$1"
trap 'echo "term $$" >> "$f"; exit 42' TERM
echo "start $$ $S" >> "$f"
while kill -0 "$PPID" 2>/dev/null; do sleep 0.05; done
"#;

/// `coffer run --watch` in the background, killed when dropped.
struct Watch {
    coffer: Option<Child>,
    /// What the child writes.
    notes: PathBuf,
    /// coffer's standard error.
    stderr: PathBuf,
}

impl Watch {
    fn start(daemon: &Daemon, flags: &[&str], script: &str) -> Self {
        let dir = daemon.root.path();
        let n = std::fs::read_dir(dir).unwrap().count();
        let notes = dir.join(format!("notes-{n}"));
        let stderr = dir.join(format!("stderr-{n}"));
        let coffer = Command::new(BIN)
            .args([
                "--socket",
                daemon.socket.to_str().unwrap(),
                "run",
                "--watch",
            ])
            .args(flags)
            .args(["--", "sh", "-c", script, "sh"])
            .arg(&notes)
            .env_remove("COFFER_SOCKET")
            .env("COFFER_LOG", "trace")
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Self {
            coffer: Some(coffer),
            notes,
            stderr,
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.coffer.as_ref().unwrap().id() as i32)
    }

    /// The lines the child wrote.
    fn notes(&self) -> Vec<String> {
        std::fs::read_to_string(&self.notes)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Each start: (pid, value).
    fn starts(&self) -> Vec<(i32, String)> {
        self.notes()
            .iter()
            .filter_map(|l| {
                let mut words = l.splitn(3, ' ');
                (words.next() == Some("start")).then(|| {
                    (
                        words.next().unwrap().parse().unwrap(),
                        words.next().unwrap_or("").to_owned(),
                    )
                })
            })
            .collect()
    }

    /// Waits for the start that saw `value`; answers its pid.
    fn started_with(&self, value: &str) -> i32 {
        assert!(
            eventually(LIMIT, || self.starts().iter().any(|(_, v)| v == value)),
            "no start with the expected value; notes: {:?}\n{}",
            self.notes(),
            self.stderr()
        );
        self.starts().iter().find(|(_, v)| v == value).unwrap().0
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits for coffer to end.
    fn wait(&mut self) -> ExitStatus {
        let mut coffer = self.coffer.take().unwrap();
        let mut status = None;
        let ended = eventually(LIMIT, || {
            status = coffer.try_wait().unwrap();
            status.is_some()
        });
        if !ended {
            let _ = coffer.kill();
            let _ = coffer.wait();
            panic!("coffer did not end; stderr:\n{}", self.stderr());
        }
        status.unwrap()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(mut c) = self.coffer.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

fn set(daemon: &Daemon, name: &str, value: &str) {
    let out = daemon.cli(&["set", name], value.as_bytes());
    assert!(out.status.success(), "{}", common::stderr(&out));
}

/// How many values the daemon handed out.
fn gets(daemon: &Daemon) -> usize {
    daemon
        .audit()
        .iter()
        .filter(|r| r["action"] == "get")
        .count()
}

fn no_value_leaked(daemon: &Daemon, watch: &Watch, values: &[&str]) {
    assert_absent("coffer's stderr", watch.stderr().as_bytes(), values);
    assert_absent("the daemon log", daemon.log().as_bytes(), values);
}

#[test]
fn a_reload_signal_reaches_the_same_process_and_term_ends_both() {
    let daemon = Daemon::start(&[]);
    set(&daemon, "app/key", "reload-v1-8841");
    let mut watch = Watch::start(
        &daemon,
        &[
            "--env",
            "S=app/key",
            "--reload-signal",
            "sighup",
            "--splay",
            "300ms",
        ],
        CHILD,
    );
    let pid = watch.started_with("reload-v1-8841");

    set(&daemon, "app/key", "reload-v2-8842");
    let hup = format!("hup {pid}");
    assert!(
        eventually(LIMIT, || watch.notes().contains(&hup)),
        "no HUP reached {pid}: {:?}\n{}",
        watch.notes(),
        watch.stderr()
    );
    // Signalled, not restarted.
    assert_eq!(watch.starts().len(), 1, "{:?}", watch.notes());
    assert!(alive(pid));

    // SIGTERM to coffer reaches the child (which dies of it), and coffer ends the same way.
    kill(watch.pid(), Signal::SIGTERM).unwrap();
    let status = watch.wait();
    assert_eq!(status.signal(), Some(15), "{status}\n{}", watch.stderr());
    assert!(eventually(LIMIT, || !alive(pid)));
    no_value_leaked(&daemon, &watch, &["reload-v1-8841", "reload-v2-8842"]);
}

#[test]
fn a_changed_value_restarts_the_command_and_nothing_else_does() {
    let daemon = Daemon::start(&[]);
    set(&daemon, "app/key", "restart-v1-5521");
    set(&daemon, "app/other", "unbound-5520");
    let mut watch = Watch::start(&daemon, &["--env", "S=app/key"], POLITE);
    let first = watch.started_with("restart-v1-5521");

    // A new value: a new process that sees it; the old one was stopped.
    set(&daemon, "app/key", "restart-v2-5522");
    let second = watch.started_with("restart-v2-5522");
    assert_ne!(first, second);
    assert!(
        watch.notes().contains(&format!("term {first}")),
        "{:?}",
        watch.notes()
    );
    assert!(!alive(first));

    // A description changes no value: coffer reads it again (the audit shows the read) and
    // restarts nothing. A secret it does not use is not even read.
    let before = gets(&daemon);
    set(&daemon, "app/other", "unbound-5523");
    let out = daemon.cli(
        &["secrets", "describe", "app/key", "--description", "the key"],
        b"",
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        eventually(LIMIT, || gets(&daemon) > before),
        "coffer did not read the described secret again\n{}",
        watch.stderr()
    );
    assert_eq!(gets(&daemon), before + 1, "only the bound secret is read");
    // Events are handled in order: once the next value's start is seen, a restart caused by
    // the description would be seen too.
    set(&daemon, "app/key", "restart-v3-5524");
    let third = watch.started_with("restart-v3-5524");
    assert_eq!(
        watch.starts().len(),
        3,
        "the description restarted the command: {:?}",
        watch.notes()
    );

    // A revoked secret: a warning naming it, and the command keeps running.
    let out = daemon.cli(&["secrets", "revoke", "app/key"], b"");
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        eventually(LIMIT, || watch.stderr().contains("app/key")
            && watch.stderr().contains("keeps running")),
        "no warning naming the revoked secret:\n{}",
        watch.stderr()
    );
    assert!(alive(third));
    assert_eq!(watch.starts().len(), 3, "{:?}", watch.notes());

    // SIGTERM to coffer reaches the command, and its exit status is coffer's.
    kill(watch.pid(), Signal::SIGTERM).unwrap();
    let status = watch.wait();
    assert_eq!(status.code(), Some(42), "{status}\n{}", watch.stderr());
    assert!(
        watch.notes().contains(&format!("term {third}")),
        "{:?}",
        watch.notes()
    );
    no_value_leaked(
        &daemon,
        &watch,
        &[
            "restart-v1-5521",
            "restart-v2-5522",
            "restart-v3-5524",
            "unbound-5520",
            "unbound-5523",
        ],
    );
}

#[test]
fn a_command_that_ignores_the_stop_signal_is_killed_after_the_stop_timeout() {
    let daemon = Daemon::start(&[]);
    set(&daemon, "app/key", "stubborn-v1-7731");
    let mut watch = Watch::start(
        &daemon,
        &["--env", "S=app/key", "--stop-timeout", "1s"],
        STUBBORN,
    );
    let first = watch.started_with("stubborn-v1-7731");
    set(&daemon, "app/key", "stubborn-v2-7732");
    let second = watch.started_with("stubborn-v2-7732");
    assert_ne!(first, second);
    assert!(!alive(first));
    assert!(
        watch.stderr().contains("SIGKILL"),
        "no word of the kill:\n{}",
        watch.stderr()
    );

    // Killed by a signal: coffer ends by the same signal.
    kill(Pid::from_raw(second), Signal::SIGKILL).unwrap();
    let status = watch.wait();
    assert_eq!(status.signal(), Some(9), "{status}\n{}", watch.stderr());
    no_value_leaked(&daemon, &watch, &["stubborn-v1-7731", "stubborn-v2-7732"]);
}

/// `coffer run --watch` to the end, with `stdin` fed in.
fn run_to_end(daemon: &Daemon, args: &[&str], stdin: &[u8]) -> std::process::Output {
    common::run_cli(
        &[
            &[
                "--socket",
                daemon.socket.to_str().unwrap(),
                "run",
                "--watch",
            ],
            args,
        ]
        .concat(),
        stdin,
    )
}

#[test]
fn the_exit_status_and_standard_streams_pass_through() {
    let daemon = Daemon::start(&[]);
    set(&daemon, "app/key", "streams-5190");
    let env = ["--env", "S=app/key", "--"];

    // Standard input and output are the command's; so is its exit code.
    let script = r#"read x; echo "got $x"; [ "$S" = streams-5190 ] && exit 7; exit 1"#;
    let out = run_to_end(
        &daemon,
        &[&env[..], &["sh", "-c", script]].concat(),
        b"hello\n",
    );
    assert_eq!(out.status.code(), Some(7), "{}", common::stderr(&out));
    assert_eq!(common::stdout(&out), "got hello\n");

    // Killed by a signal: coffer ends by that signal, as a shell shows it (128 + n).
    for signal in [Signal::SIGUSR1, Signal::SIGPIPE] {
        let script = format!("kill -{} $$", &signal.as_str()[3..]);
        let out = run_to_end(&daemon, &[&env[..], &["sh", "-c", &script]].concat(), b"");
        assert_eq!(
            out.status.signal(),
            Some(signal as i32),
            "{signal}: {:?} {}",
            out.status,
            common::stderr(&out)
        );
        let shown = Command::new("sh")
            .args(["-c", r#""$@"; echo $?"#, "sh", BIN])
            .args([
                "--socket",
                daemon.socket.to_str().unwrap(),
                "run",
                "--watch",
            ])
            .args(env)
            .args(["sh", "-c", &script])
            .output()
            .unwrap();
        assert_eq!(
            common::stdout(&shown).trim(),
            (128 + signal as i32).to_string()
        );
    }

    // The token is coffer's, not the command's, unless --pass-token.
    let out = daemon.cli(&["token", "create", "--policy", "root", "--ttl", "1h"], b"");
    assert!(out.status.success(), "{}", common::stderr(&out));
    let token = common::stdout(&out).trim().to_owned();
    let show = r#"printf '%s|%s' "$S" "$COFFER_TOKEN""#;
    for (extra, expected) in [
        (&[][..], "streams-5190|".to_owned()),
        (&["--pass-token"][..], format!("streams-5190|{token}")),
    ] {
        let out = common::run_cli_env(
            &[
                &[
                    "--socket",
                    daemon.socket.to_str().unwrap(),
                    "run",
                    "--watch",
                ],
                extra,
                &env[..],
                &["sh", "-c", show],
            ]
            .concat(),
            &[("COFFER_TOKEN", &token)],
            b"",
        );
        assert_eq!(common::stdout(&out), expected, "{}", common::stderr(&out));
    }

    // A missing secret fails before the command starts, naming the secret.
    let marker = daemon.root.path().join("ran");
    let out = run_to_end(
        &daemon,
        &[
            "--env",
            "S=app/missing",
            "--",
            "touch",
            marker.to_str().unwrap(),
        ],
        b"",
    );
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("default/app/missing"),
        "{}",
        common::stderr(&out)
    );
    assert!(!Path::new(&marker).exists());
    assert_absent("the daemon log", daemon.log().as_bytes(), &["streams-5190"]);
}

#[test]
fn the_command_keeps_running_while_the_daemon_is_away_and_changes_apply_after() {
    let mut daemon = Daemon::start(&[]);
    set(&daemon, "app/key", "away-v1-3301");
    let mut watch = Watch::start(&daemon, &["--env", "S=app/key"], CHILD);
    let first = watch.started_with("away-v1-3301");

    daemon.stop();
    assert!(
        eventually(LIMIT, || watch.stderr().contains("lost the watch")),
        "no warning of the lost watch:\n{}",
        watch.stderr()
    );
    daemon.spawn();
    assert!(
        eventually(LIMIT, || watch
            .stderr()
            .contains("following namespace default again")),
        "did not follow again:\n{}",
        watch.stderr()
    );
    // One warning for the outage, however many times the follower retried; the command ran
    // throughout.
    assert_eq!(
        watch.stderr().matches("lost the watch").count(),
        1,
        "{}",
        watch.stderr()
    );
    assert!(alive(first));
    assert_eq!(watch.starts().len(), 1, "{:?}", watch.notes());

    // A change made after the daemon came back is applied.
    set(&daemon, "app/key", "away-v2-3302");
    let second = watch.started_with("away-v2-3302");
    assert_ne!(first, second);

    kill(watch.pid(), Signal::SIGTERM).unwrap();
    assert_eq!(watch.wait().signal(), Some(15), "{}", watch.stderr());
    no_value_leaked(&daemon, &watch, &["away-v1-3301", "away-v2-3302"]);
}

/// The soft core-dump limit of process `pid`, in bytes (`/proc/PID/limits`).
fn core_limit(pid: u32) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    line.split_whitespace().nth(4).unwrap().to_owned()
}

#[test]
fn the_supervisor_keeps_core_dumps_off_while_the_command_gets_its_limit_back() {
    let daemon = Daemon::start(&[]);
    set(&daemon, "app/key", "core-limit-6620");
    let dir = daemon.root.path();
    let notes = dir.join("notes-core");
    // The child notes its soft core limit (in 1024-byte blocks) and its pid.
    let script = r#"
f="$1"
echo "core $$ $(ulimit -c)" >> "$f"
echo "start $$ $S" >> "$f"
while kill -0 "$PPID" 2>/dev/null; do sleep 0.05; done
"#;
    let mut coffer = Command::new("sh")
        .args(["-c", "ulimit -c 2048 && exec \"$@\"", "sh", BIN])
        .args([
            "--socket",
            daemon.socket.to_str().unwrap(),
            "run",
            "--watch",
            "--env",
            "S=app/key",
            "--",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(&notes)
        .env_remove("COFFER_SOCKET")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&notes).unwrap_or_default();
    let started = eventually(LIMIT, || read().contains("start "));
    let coffer_limit = core_limit(coffer.id());
    let _ = coffer.kill();
    let _ = coffer.wait();
    assert!(started, "the command did not start: {}", read());
    // The command is given the limit coffer was started with, as plain `coffer run` gives it.
    let child = read();
    let child_limit = child
        .lines()
        .find_map(|l| l.strip_prefix("core "))
        .and_then(|l| l.split(' ').nth(1))
        .unwrap()
        .to_owned();
    assert_eq!(child_limit, "2048", "{child}");
    // coffer, which holds the values while it supervises, dumps no core.
    assert_eq!(coffer_limit, "0", "coffer's own core limit was restored");
}

/// Runs argv under a new pseudo-terminal (its controlling terminal, the foreground process
/// group), types ^C once the child noted its start, then sends SIGUSR1 to coffer (which
/// passes it on after anything it passed before), and prints the notes once USR1 arrived.
const UNDER_A_TERMINAL: &str = r#"
import os, pty, signal, sys, time
notes = sys.argv[1]
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
os.set_blocking(fd, False)
def read():
    try:
        with open(notes) as f:
            return f.read()
    except FileNotFoundError:
        return ""
def until(word):
    end = time.time() + 30
    while word not in read():
        try:
            os.read(fd, 65536)
        except OSError:
            pass
        if time.time() > end:
            sys.exit("no %r in the notes: %r" % (word, read()))
        time.sleep(0.02)
until("start")
os.write(fd, b"\x03")
until("int")
os.kill(pid, signal.SIGUSR1)
until("usr1")
os.kill(pid, signal.SIGKILL)
os.waitpid(pid, 0)
print(read(), end="")
"#;

/// The child, in Perl (whose deferred signals count every delivery): notes each INT and
/// USR1, and ends when coffer is gone.
const COUNTING: &str = r#"
my $f = $ARGV[0];
sub note { open(my $h, ">>", $f) or die; print $h "$_[0]\n"; close $h }
$SIG{INT} = sub { note("int") };
$SIG{USR1} = sub { note("usr1") };
# What coffer's descriptors the command inherited (none of its signalfd).
for my $fd (glob("/proc/$$/fd/*")) { my $t = readlink($fd) // ""; note("fd $t") if $t =~ /signalfd/ }
note("start $$");
my $parent = getppid();
while (kill(0, $parent)) { select(undef, undef, undef, 0.05) }
"#;

#[test]
fn a_terminals_ctrl_c_reaches_the_command_once() {
    let daemon = Daemon::start(&[]);
    set(&daemon, "app/key", "ctrl-c-3307");
    let notes = daemon.root.path().join("notes-ctrl-c");
    let out = Command::new("python3")
        .args(["-c", UNDER_A_TERMINAL])
        .arg(&notes)
        .args([
            BIN,
            "--socket",
            daemon.socket.to_str().unwrap(),
            "run",
            "--watch",
            "--env",
            "S=app/key",
            "--",
            "perl",
            "-e",
            COUNTING,
        ])
        .arg(&notes)
        .env_remove("COFFER_SOCKET")
        .output()
        .expect("python3 runs (scripts/test installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The terminal sent ^C to the process group coffer and the command share: coffer must
    // not send it a second time (a second ^C means "stop now" to many programs).
    let ints = text.lines().filter(|l| *l == "int").count();
    assert_eq!(ints, 1, "{text}");
    // A signal sent to coffer alone is still passed on.
    assert!(text.lines().any(|l| l == "usr1"), "{text}");
    assert!(
        !text.contains("signalfd"),
        "the command inherited coffer's signalfd: {text}"
    );
}
