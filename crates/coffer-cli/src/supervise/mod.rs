//! A supervised child process: `coffer run --watch` and the agent's `[exec]` (issue 15).
//!
//! The child runs with extra environment variables (secret values: never logged). When
//! something it depends on changes, the supervisor sends it `reload_signal`, or restarts it:
//! `stop_signal`, up to `stop_timeout` for it to exit, then SIGKILL, then a new child with the
//! new environment. A random `splay` in `[0, splay]` before acting spreads the reloads of a
//! fleet that sees the same change at the same moment.
//!
//! The supervisor signals the child's process only (not a process group it may have made).
//! [`signals`] holds the process-wide side: catching the signals coffer forwards, and ending
//! coffer the way its child ended.

pub mod signals;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Deserialize;
use zeroize::Zeroize;

/// The variables that carry coffer's token, kept from the child unless asked.
pub const TOKEN_VARS: [&str; 2] = ["COFFER_TOKEN", "COFFER_TOKEN_FILE"];

/// How long a stop waits when `stop_timeout` is not given.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How to run and treat the child: from `run --watch` flags or the agent's `[exec]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecConfig {
    /// The program and its arguments (no shell).
    pub command: Vec<String>,
    /// On a change, send this signal (e.g. "HUP") instead of restarting.
    pub reload_signal: Option<String>,
    /// The signal that asks the child to stop before a restart [default: TERM].
    pub stop_signal: Option<String>,
    /// How long to wait after `stop_signal` before SIGKILL (humantime) [default: 30s].
    pub stop_timeout: Option<String>,
    /// A random delay in `[0, splay]` before acting on a change (humantime) [default: 0s].
    pub splay: Option<String>,
}

/// A checked [`ExecConfig`]: what the supervisor runs on.
#[derive(Debug, Clone)]
pub struct Exec {
    /// The program and its arguments; never empty.
    pub command: Vec<OsString>,
    /// Sent on a change instead of a restart.
    pub reload_signal: Option<Signal>,
    /// Sent to stop the child before a restart.
    pub stop_signal: Signal,
    /// How long a stop waits before SIGKILL.
    pub stop_timeout: Duration,
    /// The upper bound of the random delay before acting on a change.
    pub splay: Duration,
    /// Let the child inherit COFFER_TOKEN and COFFER_TOKEN_FILE (removed by default).
    pub pass_token: bool,
    /// The core-dump limit coffer started with, given back to the child only (coffer,
    /// which holds the values, keeps core dumps off).
    pub core_limit: Option<coffer_core::CoreLimit>,
}

impl ExecConfig {
    /// Checks every key; an error names the key and what it expects.
    pub fn check(&self) -> anyhow::Result<Exec> {
        if self.command.is_empty() {
            bail!(
                "`command` is empty: give the program and its arguments, e.g. [\"/usr/bin/app\", \"--serve\"]"
            );
        }
        if self.command[0].is_empty() {
            bail!("`command`: the program (its first element) is an empty string");
        }
        let signal = |key: &str, value: &Option<String>| {
            value
                .as_deref()
                .map(parse_signal)
                .transpose()
                .map_err(|e| anyhow::anyhow!("`{key}`: {e}"))
        };
        let duration = |key: &str, value: &Option<String>| {
            value
                .as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(|e| anyhow::anyhow!("`{key}`: {e}"))
        };
        let reload_signal = signal("reload_signal", &self.reload_signal)?;
        if let Some(s) = reload_signal {
            check_reload_signal(s).map_err(|e| anyhow::anyhow!("`reload_signal`: {e}"))?;
        }
        Ok(Exec {
            command: self.command.iter().map(OsString::from).collect(),
            reload_signal,
            stop_signal: signal("stop_signal", &self.stop_signal)?.unwrap_or(Signal::SIGTERM),
            stop_timeout: duration("stop_timeout", &self.stop_timeout)?
                .unwrap_or(DEFAULT_STOP_TIMEOUT),
            splay: duration("splay", &self.splay)?.unwrap_or(Duration::ZERO),
            pass_token: false,
            core_limit: None,
        })
    }
}

/// A signal by name, with or without `SIG`, in any case: `HUP`, `SIGHUP`, `usr1`.
pub fn parse_signal(name: &str) -> Result<Signal, String> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    if bare.is_empty() {
        return Err(format!(
            "`{name}` is not a signal name (such as HUP, TERM, USR1)"
        ));
    }
    format!("SIG{bare}")
        .parse::<Signal>()
        .map_err(|_| format!("`{name}` is not a signal name (such as HUP, TERM, USR1)"))
}

/// A signal fit to ask a running child to reload: not one that stops or kills it outright.
pub fn check_reload_signal(signal: Signal) -> Result<Signal, String> {
    match signal {
        Signal::SIGKILL | Signal::SIGSTOP => Err(format!(
            "{} cannot be caught, so it cannot ask for a reload (use HUP, USR1 or USR2)",
            signal.as_str()
        )),
        Signal::SIGCHLD => Err("SIGCHLD is not a reload signal (use HUP, USR1 or USR2)".into()),
        s => Ok(s),
    }
}

/// A humantime duration: `30s`, `1m30s`, `500ms`, `0s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration: {e} (write e.g. 30s, 500ms or 2m)"))
}

/// A running child and what to do with it. `Debug` shows the variables' names, never their
/// values.
pub struct Supervisor {
    exec: Exec,
    env: Vec<(String, OsString)>,
    /// The current child; none only after a restart failed to start a new one.
    child: Option<Child>,
    /// How the current child ended by itself, once reaped.
    ended: Option<ExitStatus>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("exec", &self.exec)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("pid", &self.child.as_ref().map(Child::id))
            .field("ended", &self.ended)
            .finish()
    }
}

impl Supervisor {
    /// Starts the child of a checked configuration.
    pub fn launch(exec: Exec, env: Vec<(String, OsString)>) -> anyhow::Result<Self> {
        let mut me = Self {
            exec,
            env,
            child: None,
            ended: None,
        };
        me.child = Some(me.spawn()?);
        Ok(me)
    }

    /// The current child's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        match (&self.child, self.ended) {
            (Some(child), None) => Some(child.id()),
            _ => None,
        }
    }

    /// The environment the child was (or will next be) started with.
    pub fn env(&self) -> &[(String, OsString)] {
        &self.env
    }

    fn spawn(&self) -> anyhow::Result<Child> {
        let (program, args) = self
            .exec
            .command
            .split_first()
            .context("no command to run")?;
        let mut command = Command::new(program);
        command.args(args);
        if !self.exec.pass_token {
            // The token let coffer read the secrets; the child gets the secrets it was
            // given, not the power to read others.
            for var in TOKEN_VARS {
                command.env_remove(var);
            }
        }
        unblock_signals_in_child(&mut command, self.exec.core_limit);
        let child = command
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .spawn()
            .with_context(|| format!("cannot run {}", program.to_string_lossy()))?;
        tracing::info!(pid = child.id(), "started the command");
        Ok(child)
    }

    /// Something it depends on changed: send `reload_signal`, or restart it (`stop_signal`,
    /// wait `stop_timeout`, SIGKILL, start again with `env` when given, else the old env),
    /// after the splay. Blocks for the splay and the stop.
    ///
    /// A child that already ended by itself is not started again: [`Supervisor::try_wait`]
    /// reports its exit.
    pub fn changed(&mut self, env: Option<Vec<(String, OsString)>>) -> anyhow::Result<()> {
        if let Some(env) = env {
            forget(std::mem::replace(&mut self.env, env));
        }
        if self.try_wait()?.is_some() {
            return Ok(());
        }
        let splay = random_below(self.exec.splay);
        if !splay.is_zero() {
            tracing::debug!(delay = ?splay, "splay before acting on the change");
            std::thread::sleep(splay);
            if self.try_wait()?.is_some() {
                return Ok(());
            }
        }
        match self.exec.reload_signal {
            Some(signal) => {
                tracing::info!(signal = signal.as_str(), "asking the command to reload");
                self.signal(signal);
                Ok(())
            }
            None => self.restart(),
        }
    }

    /// Stops the child and starts a new one with the current environment.
    fn restart(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.stop_child()? {
            tracing::info!(%status, "stopped the command to restart it");
        }
        self.child = None;
        self.ended = None;
        self.child = Some(self.spawn()?);
        Ok(())
    }

    /// Sends `stop_signal`, waits up to `stop_timeout`, then SIGKILL; answers how the child
    /// ended (none if it had already been reaped).
    fn stop_child(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        if self.ended.is_some() {
            return Ok(None);
        }
        let pid = child_pid(child);
        send(pid, self.exec.stop_signal);
        let deadline = Instant::now() + self.exec.stop_timeout;
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(status) = child.try_wait().context("cannot wait for the command")? {
                return Ok(Some(status));
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(100));
        }
        tracing::warn!(
            pid = child.id(),
            signal = self.exec.stop_signal.as_str(),
            timeout = %humantime::format_duration(self.exec.stop_timeout),
            "the command did not stop within the stop timeout; killed it with SIGKILL"
        );
        send(pid, Signal::SIGKILL);
        let status = child.wait().context("cannot wait for the command")?;
        Ok(Some(status))
    }

    /// Stops the child for good (as before a restart, without starting another); answers
    /// how it ended when it was still running.
    pub fn stop(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        let status = self.stop_child()?;
        if let Some(status) = status {
            self.ended = Some(status);
        }
        Ok(status)
    }

    /// The child's exit when it ended by itself (not by a restart we caused).
    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if self.ended.is_some() {
            return Ok(self.ended);
        }
        let Some(child) = self.child.as_mut() else {
            bail!("the command is not running: it could not be started again");
        };
        self.ended = child.try_wait().context("cannot wait for the command")?;
        Ok(self.ended)
    }

    /// Passes a signal coffer received (TERM, INT, HUP, QUIT, USR1, USR2) on to the child.
    pub fn forward(&self, signal: Signal) {
        tracing::debug!(
            signal = signal.as_str(),
            "passing the signal to the command"
        );
        self.signal(signal);
    }

    /// Whether the running child is in coffer's process group (so a signal the terminal sends
    /// to that group reaches it without coffer).
    pub fn shares_our_group(&self) -> bool {
        match (&self.child, self.ended) {
            (Some(child), None) => {
                nix::unistd::getpgid(Some(child_pid(child))).ok() == Some(nix::unistd::getpgrp())
            }
            _ => false,
        }
    }

    /// Signals the child while it has not been reaped (so its pid cannot name another
    /// process).
    fn signal(&self, signal: Signal) {
        if self.ended.is_some() {
            return;
        }
        if let Some(child) = &self.child {
            send(child_pid(child), signal);
        }
    }
}

/// Starts the child with no signal blocked, and with the core-dump limit coffer started
/// with (when given).
///
/// A child inherits the signal mask of the thread that starts it, and std leaves the mask
/// alone: coffer blocks the signals it forwards (see [`signals::catch`]), and a child started
/// with them blocked would never receive them (a HUP to reload, a TERM to stop). std does
/// restore SIGPIPE's default action itself. The core limit is set in the child only: coffer
/// keeps running with the values in its memory and must not dump them.
#[allow(unsafe_code)]
fn unblock_signals_in_child(command: &mut Command, core_limit: Option<coffer_core::CoreLimit>) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe functions may be called: it calls sigprocmask(2) (async-signal-safe,
    // and the child has one thread) on a set built on the stack, and setrlimit(2) (a bare
    // system call) on a copied value, allocating nothing and taking no lock.
    unsafe {
        command.pre_exec(move || {
            nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&nix::sys::signal::SigSet::empty()),
                None,
            )
            .map_err(std::io::Error::from)?;
            if let Some(limit) = core_limit {
                limit.restore().map_err(std::io::Error::from)?;
            }
            Ok(())
        });
    }
}

fn child_pid(child: &Child) -> Pid {
    // A pid always fits: the kernel's pid_max is at most 2^22.
    Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX))
}

/// Sends a signal; a child that just exited (not yet reaped: a zombie) ignores it.
fn send(pid: Pid, signal: Signal) {
    match kill(pid, signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => {
            tracing::warn!(%pid, signal = signal.as_str(), error = %e, "cannot signal the command")
        }
    }
}

/// Wipes the values of an environment no longer used.
pub(crate) fn forget(env: Vec<(String, OsString)>) {
    for (_, value) in env {
        value.into_vec().zeroize();
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        forget(std::mem::take(&mut self.env));
    }
}

/// A uniformly random duration in `[0, max]` (at millisecond grain).
fn random_below(max: Duration) -> Duration {
    let millis = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    if millis == 0 {
        return Duration::ZERO;
    }
    let mut bytes = [0u8; 8];
    // Without randomness the splay is the whole bound: still bounded, only less spread.
    if getrandom::fill(&mut bytes).is_err() {
        return max;
    }
    let r = u64::from_le_bytes(bytes);
    Duration::from_millis(r % millis.saturating_add(1))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config(toml_text: &str) -> Result<Exec, String> {
        let parsed: ExecConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        parsed.check().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let e = config(r#"command = ["/bin/app", "--serve"]"#).unwrap();
        assert_eq!(
            e.command,
            vec![OsString::from("/bin/app"), "--serve".into()]
        );
        assert_eq!(e.reload_signal, None);
        assert_eq!(e.stop_signal, Signal::SIGTERM);
        assert_eq!(e.stop_timeout, Duration::from_secs(30));
        assert_eq!(e.splay, Duration::ZERO);
        assert!(!e.pass_token);
    }

    #[test]
    fn every_key() {
        let e = config(
            r#"
            command = ["app"]
            reload_signal = "hup"
            stop_signal = "SIGINT"
            stop_timeout = "1m30s"
            splay = "500ms"
            "#,
        )
        .unwrap();
        assert_eq!(e.reload_signal, Some(Signal::SIGHUP));
        assert_eq!(e.stop_signal, Signal::SIGINT);
        assert_eq!(e.stop_timeout, Duration::from_secs(90));
        assert_eq!(e.splay, Duration::from_millis(500));
    }

    #[test]
    fn debug_shows_no_value() {
        let env = vec![("S".to_owned(), OsString::from("debug-value-4471"))];
        let mut s = Supervisor::launch(exec("exit 0", None), env).unwrap();
        let shown = format!("{s:?}");
        assert!(shown.contains("\"S\""), "{shown}");
        assert!(!shown.contains("debug-value-4471"), "{shown}");
        let _ = s.stop();
    }

    #[test]
    fn signals_with_or_without_sig() {
        for (name, signal) in [
            ("HUP", Signal::SIGHUP),
            ("SIGHUP", Signal::SIGHUP),
            ("usr1", Signal::SIGUSR1),
            ("SigUsr2", Signal::SIGUSR2),
            ("TERM", Signal::SIGTERM),
            (" QUIT ", Signal::SIGQUIT),
            ("KILL", Signal::SIGKILL),
        ] {
            assert_eq!(parse_signal(name), Ok(signal), "{name}");
        }
        for bad in ["", "SIG", "HUPP", "SIGSIGHUP", "1", "-HUP"] {
            let e = parse_signal(bad).unwrap_err();
            assert!(e.contains("is not a signal name"), "{bad}: {e}");
        }
    }

    #[test]
    fn clear_errors() {
        let cases = [
            (r#"command = []"#, "`command` is empty"),
            (r#"command = [""]"#, "`command`: the program"),
            (
                "command = [\"a\"]\nreload_signal = \"HUPP\"",
                "`reload_signal`: `HUPP` is not a signal name",
            ),
            (
                "command = [\"a\"]\nreload_signal = \"KILL\"",
                "`reload_signal`: SIGKILL cannot be caught",
            ),
            (
                "command = [\"a\"]\nstop_signal = \"NOPE\"",
                "`stop_signal`: `NOPE` is not a signal name",
            ),
            (
                "command = [\"a\"]\nstop_timeout = \"30\"",
                "`stop_timeout`: `30` is not a duration",
            ),
            (
                "command = [\"a\"]\nsplay = \"soon\"",
                "`splay`: `soon` is not a duration",
            ),
            (
                "command = [\"a\"]\nsignal = \"HUP\"",
                "unknown field `signal`",
            ),
            ("reload_signal = \"HUP\"", "missing field `command`"),
            ("command = \"/bin/app\"", "invalid type"),
        ];
        for (text, expected) in cases {
            let e = config(text).unwrap_err();
            assert!(e.contains(expected), "{text:?}: {e}");
        }
    }

    fn exec(script: &str, reload: Option<Signal>) -> Exec {
        Exec {
            command: ["sh", "-c", script].map(OsString::from).to_vec(),
            reload_signal: reload,
            stop_signal: Signal::SIGTERM,
            stop_timeout: Duration::from_secs(30),
            splay: Duration::ZERO,
            pass_token: false,
            core_limit: None,
        }
    }

    fn wait_for_exit(s: &mut Supervisor) -> ExitStatus {
        loop {
            if let Some(status) = s.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_restart_is_not_an_exit_and_an_exit_is_not_restarted() {
        use std::os::unix::process::ExitStatusExt;
        let env = |v: &str| vec![("V".to_owned(), OsString::from(v))];
        // Runs until told, through a file, to exit with the code it holds.
        let dir = tempfile::tempdir().unwrap();
        let stop = dir.path().join("stop");
        let script = format!(
            "while [ ! -e '{0}' ]; do sleep 0.02; done; exit $(cat '{0}')",
            stop.display()
        );
        let mut s = Supervisor::launch(exec(&script, None), env("one")).unwrap();
        let first = s.pid().unwrap();
        s.changed(Some(env("two"))).unwrap();
        let second = s.pid().unwrap();
        assert_ne!(first, second);
        // The child we stopped is not reported: the new one runs.
        assert_eq!(s.try_wait().unwrap(), None);
        assert_eq!(s.env()[0].1, "two");

        std::fs::write(&stop, "3").unwrap();
        assert_eq!(wait_for_exit(&mut s).code(), Some(3));
        // Once it ended by itself, a change starts nothing.
        s.changed(Some(env("three"))).unwrap();
        assert_eq!(s.pid(), None);
        assert_eq!(s.try_wait().unwrap().map(|e| e.code()), Some(Some(3)));

        // With a reload signal the same process gets it (here: it dies of it).
        let mut s = Supervisor::launch(
            exec("while :; do sleep 0.02; done", Some(Signal::SIGUSR1)),
            env("one"),
        )
        .unwrap();
        let pid = s.pid().unwrap();
        s.changed(None).unwrap();
        let status = wait_for_exit(&mut s);
        assert_eq!(
            status.signal(),
            Some(Signal::SIGUSR1 as i32),
            "{pid}: {status}"
        );
    }

    #[test]
    fn a_command_that_cannot_start_says_which() {
        let e = Supervisor::launch(
            Exec {
                command: vec!["/nonexistent/app".into()],
                ..exec("", None)
            },
            Vec::new(),
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("cannot run /nonexistent/app"),
            "{e:#}"
        );
    }

    #[test]
    fn splay_stays_within_its_bound() {
        assert_eq!(random_below(Duration::ZERO), Duration::ZERO);
        let max = Duration::from_millis(20);
        for _ in 0..200 {
            assert!(random_below(max) <= max);
        }
    }
}
