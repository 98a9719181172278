//! The agent's `[exec]`: one command kept in step with the files the agent renders, through
//! the supervisor `coffer run --watch` uses (crates/coffer-cli/src/supervise).
//!
//! The command starts once every sink has rendered (so every file it reads is there). After a
//! batch of changes that wrote or removed a file it is sent `reload_signal`, or restarted
//! (`stop_signal`, `stop_timeout`, SIGKILL), after its `splay`. The signals the agent receives
//! are passed on to it, and the agent ends as it ended. Its environment is the agent's, without
//! the token variables: the secrets are in the files, not in the environment.

use std::process::ExitStatus;

use nix::sys::signal::Signal;

use crate::supervise::signals::Caught;
use crate::supervise::{Exec, Supervisor};

/// The command and its state.
pub struct Command {
    exec: Exec,
    supervisor: Option<Supervisor>,
    /// A file changed since the command last heard of it.
    changed: bool,
}

/// What a signal did.
pub enum Signalled {
    /// Nothing more to do.
    Handled,
    /// The command ended by itself: the agent ends as it did.
    Ended(ExitStatus),
    /// No command runs yet: the agent handles the signal itself.
    NotRunning,
}

impl Command {
    /// A command not yet started.
    pub fn new(exec: Exec) -> Self {
        Self {
            exec,
            supervisor: None,
            changed: false,
        }
    }

    /// A file was written or removed.
    pub fn file_changed(&mut self) {
        self.changed = true;
    }

    /// Starts the command when `ready` (every sink rendered) and it has not started, or tells
    /// it of the changes since the last step. Answers its pid when it runs.
    pub fn step(&mut self, ready: bool) -> anyhow::Result<Option<u32>> {
        match &mut self.supervisor {
            None if ready => {
                tracing::info!("every sink rendered: starting the command");
                self.supervisor = Some(Supervisor::launch(self.exec.clone(), Vec::new())?);
                self.changed = false;
            }
            None => {}
            Some(supervisor) if std::mem::take(&mut self.changed) => supervisor.changed(None)?,
            Some(_) => {}
        }
        Ok(self.supervisor.as_ref().and_then(Supervisor::pid))
    }

    /// A signal the agent received: passed on to the command (SIGCHLD: did it end?).
    pub fn signal(&mut self, caught: Caught) -> anyhow::Result<Signalled> {
        let Some(supervisor) = &mut self.supervisor else {
            return Ok(Signalled::NotRunning);
        };
        let signal = caught.signal;
        if signal == Signal::SIGCHLD {
            return Ok(match supervisor.try_wait()? {
                Some(status) => {
                    tracing::info!(%status, "the command ended; the agent ends as it did");
                    Signalled::Ended(status)
                }
                None => Signalled::Handled,
            });
        }
        // The terminal sent it to the process group the command shares: it has it already.
        if !(caught.from_terminal && supervisor.shares_our_group()) {
            supervisor.forward(signal);
        }
        Ok(Signalled::Handled)
    }

    /// The agent ends for another reason: the command must not outlive it unsupervised.
    pub fn stop(&mut self) {
        if let Some(supervisor) = &mut self.supervisor
            && let Err(e) = supervisor.stop()
        {
            tracing::warn!(error = %format!("{e:#}"), "cannot stop the command");
        }
    }
}
