//! The process-wide side of supervising: catching the signals coffer passes on to its child,
//! and ending coffer the way the child ended.
//!
//! No signal handler is installed. [`catch`] blocks the signals in the calling thread (and so
//! in every thread started after it) and starts a thread that takes them with `sigwait` and
//! sends them over a channel: the main loop then handles a signal as it handles any other
//! message. The supervisor starts its children with no signal blocked.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::mpsc::Sender;

use anyhow::Context;
use nix::sys::signal::{SigSet, Signal};

/// The signals coffer passes on to its child.
pub const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Blocks [`FORWARDED`] and SIGCHLD and starts a thread that sends each as it arrives,
/// wrapped by `wrap`.
///
/// Call it before starting any other thread: a thread started earlier keeps the signals
/// unblocked and would take them with their default action (TERM would end coffer).
pub fn catch<T: Send + 'static>(tx: Sender<T>, wrap: fn(Signal) -> T) -> anyhow::Result<()> {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    set.thread_block()
        .context("cannot block the signals coffer passes on")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            loop {
                match set.wait() {
                    Ok(signal) => {
                        if tx.send(wrap(signal)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot wait for signals");
                        return;
                    }
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// Ends coffer as the child ended: with its exit code, or killed by the same signal (as
/// plain `coffer run`, which becomes the command, does). A shell then shows the same status
/// it would for the command itself: `$?` is the code, or 128 + the signal's number.
///
/// No core is dumped for coffer itself (its memory holds the values) even when the signal
/// would dump one.
pub fn exit_like(status: ExitStatus) -> ! {
    if let Some(code) = status.code() {
        std::process::exit(code);
    }
    match status.signal().map(Signal::try_from) {
        Some(Ok(signal)) => die_by(signal),
        _ => std::process::exit(1),
    }
}

/// Ends coffer by `signal` with its default action; if that action does not end the
/// process, exits with 128 + its number as a shell reports a death by signal.
pub fn die_by(signal: Signal) -> ! {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    // The process is not dumpable, but an administrator's suid_dumpable=2 would still dump
    // it: a zero core limit keeps the values out of any core file.
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_CORE) {
        let _ = setrlimit(Resource::RLIMIT_CORE, 0, hard);
    }
    default_action(signal);
    let mut one = SigSet::empty();
    one.add(signal);
    // Unblocked in this thread only, then raised at this thread: the signal cannot be taken
    // by the signal thread's sigwait.
    let _ = one.thread_unblock();
    let _ = nix::sys::signal::raise(signal);
    std::process::exit(128 + signal as i32)
}

/// Restores the default action of `signal` (std ignores SIGPIPE in coffer).
#[allow(unsafe_code)]
fn default_action(signal: Signal) {
    use nix::sys::signal::SigHandler;
    // SAFETY: `signal(2)` is unsafe in nix because a handler function may do what a signal
    // handler must not; SIG_DFL installs no handler, and no handler of coffer's is replaced
    // (coffer installs none).
    let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) };
}
