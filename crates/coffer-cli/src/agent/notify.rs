//! `on_change`: telling the application its file changed. A signal to the process named by a
//! pid file, a command, or a systemctl verb; never through a shell, never with a value in an
//! argument or the environment (coffer's own token variables are removed from a command's).

use std::process::{Command, Stdio};

use nix::sys::signal::kill;
use nix::unistd::Pid;

use super::config::OnChange;

/// Runs `action` for `destination`'s change; a failure is logged (WARN), not fatal.
pub fn fire(action: &OnChange, destination: &str) {
    match action {
        OnChange::Signal { signal, pid_file } => {
            let pid = std::fs::read_to_string(pid_file)
                .map_err(|e| format!("cannot read the pid file {}: {e}", pid_file.display()))
                .and_then(|t| {
                    t.trim()
                        .parse::<i32>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| format!("the pid file {} holds no pid", pid_file.display()))
                });
            match pid.and_then(|p| {
                kill(Pid::from_raw(p), *signal)
                    .map(|()| p)
                    .map_err(|e| format!("cannot signal pid {p}: {e}"))
            }) {
                Ok(pid) => tracing::info!(destination, pid, signal = %signal, "signalled"),
                Err(e) => {
                    tracing::warn!(destination, error = %e, "on_change: the signal was not sent")
                }
            }
        }
        OnChange::Command(argv) => {
            // config.rs refuses an empty command.
            if let Some((program, args)) = argv.split_first() {
                run(program, args, destination);
            }
        }
        OnChange::Systemd(words) => run("systemctl", words, destination),
    }
}

/// Starts a command and reports its exit on a thread of its own, so the agent never waits.
fn run(program: &str, args: &[String], destination: &str) {
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null());
    for var in crate::supervise::TOKEN_VARS {
        command.env_remove(var);
    }
    let spawned = command.spawn();
    let line = std::iter::once(program)
        .chain(args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    match spawned {
        Ok(mut child) => {
            tracing::info!(destination, command = %line, pid = child.id(), "on_change started");
            let destination = destination.to_owned();
            let spawned = std::thread::Builder::new()
                .name("on_change".into())
                .spawn(move || match child.wait() {
                    Ok(s) if s.success() => {}
                    Ok(s) => tracing::warn!(destination, command = %line, status = %s, "on_change failed"),
                    Err(e) => tracing::warn!(destination, command = %line, error = %e, "on_change: cannot wait"),
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "on_change: cannot start a thread to wait for the command");
            }
        }
        Err(e) => {
            tracing::warn!(destination, command = %line, error = %e, "on_change: cannot start")
        }
    }
}
