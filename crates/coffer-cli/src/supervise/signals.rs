//! The process-wide side of supervising: catching the signals coffer passes on to its child,
//! and ending coffer the way the child ended.
//!
//! No signal handler is installed. [`catch`] blocks the signals in the calling thread (and so
//! in every thread started after it) and starts a thread that takes them from a signalfd and
//! sends them over a channel: the main loop then handles a signal as it handles any other
//! message. The supervisor starts its children with no signal blocked.
//!
//! A terminal's ^C or ^\\ is sent by the kernel to the whole foreground process group, which
//! the child shares with coffer: it already reached the child, and passing it on again would
//! deliver it twice (many programs take a second ^C as "stop now, skip the clean shutdown").
//! [`Caught::from_terminal`] tells them apart from a signal a process sent to coffer. (A
//! hangup is not among them: the kernel sends it to the session leader alone.)

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::mpsc::Sender;

use anyhow::Context;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// A signal coffer received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caught {
    /// The signal.
    pub signal: Signal,
    /// A terminal's ^C (SIGINT) or ^\\ (SIGQUIT): sent by the kernel (`SI_KERNEL`) to the
    /// whole foreground process group, not by a process's kill(2) to coffer alone.
    pub from_terminal: bool,
}

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
pub fn catch<T: Send + 'static>(tx: Sender<T>, wrap: fn(Caught) -> T) -> anyhow::Result<()> {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    set.thread_block()
        .context("cannot block the signals coffer passes on")?;
    let fd =
        // Close-on-exec: the command must not inherit it.
        SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC)
            .context("cannot open a signalfd for the signals coffer passes on")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            loop {
                let info = match fd.read_signal() {
                    Ok(Some(info)) => info,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot wait for signals");
                        return;
                    }
                };
                let Ok(signal) = i32::try_from(info.ssi_signo).map(Signal::try_from) else {
                    continue;
                };
                let Ok(signal) = signal else { continue };
                let caught = Caught {
                    signal,
                    from_terminal: info.ssi_code == SI_KERNEL
                        && matches!(signal, Signal::SIGINT | Signal::SIGQUIT),
                };
                if tx.send(wrap(caught)).is_err() {
                    return;
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// `si_code` of a signal the kernel sent (a terminal's to its foreground process group).
const SI_KERNEL: i32 = 0x80;

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
