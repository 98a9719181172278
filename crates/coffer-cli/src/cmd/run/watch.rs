//! `coffer run --watch`: the command under coffer's supervision, restarted (or signalled)
//! when a value it was given changes.
//!
//! Order of work: block the forwarded signals (before any thread exists), follow the
//! namespaces of the bindings until each watch is open, read every secret (so no change made
//! after the read is missed, and a missing secret fails before the command starts), start the
//! command. Then one loop takes, in arrival order, the signals coffer receives (passed on to
//! the command; SIGCHLD: did it end?) and the change events (an event that names a bound
//! secret: read its value again; if a value differs, [`Supervisor::changed`]). Events
//! already queued are handled together, so a burst of changes causes one restart.
//!
//! An event that carries a new version (a write, a rotation) is answered by reading that
//! version: the daemon may still serve the newest value from its cache for a moment after it
//! publishes the event, while a version read goes to the store.
//!
//! A secret that can no longer be read (revoked, deleted, the daemon gone) leaves the command
//! running with the value it has: a warning names the secret, never the value.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::process::ExitStatus;
use std::sync::mpsc::{self, Receiver};

use anyhow::Context;
use coffer_client::Client;
use coffer_types::{EventAction, Version};
use nix::sys::signal::Signal;

use super::Binding;
use crate::follow::{self, Followed};
use crate::supervise::signals::Caught;
use crate::supervise::{Exec, Supervisor, forget, signals};

/// What the main loop waits for.
enum Msg {
    /// A signal coffer received.
    Signal(Caught),
    /// What a follower reports.
    Follow(Followed),
}

/// Supervises the command until it ends by itself; answers how it ended.
pub(super) fn run(client: &Client, bindings: &[Binding], exec: Exec) -> anyhow::Result<ExitStatus> {
    let (tx, rx) = mpsc::channel();
    // First: every thread started later inherits the blocked signals.
    signals::catch(tx.clone(), Msg::Signal)?;
    let namespaces: BTreeSet<String> = bindings.iter().map(|b| b.namespace().to_owned()).collect();
    if !namespaces.is_empty() {
        let (follow_tx, follow_rx) = mpsc::channel();
        follow::spawn(client, namespaces.iter().cloned(), None, &follow_tx)
            .context("cannot start following changes")?;
        drop(follow_tx);
        std::thread::Builder::new()
            .name("follow bridge".into())
            .spawn(move || {
                for followed in follow_rx {
                    if tx.send(Msg::Follow(followed)).is_err() {
                        return;
                    }
                }
            })
            .context("cannot start following changes")?;
        until_following(&rx, namespaces)?;
    } else {
        drop(tx);
    }

    let mut env = Vec::with_capacity(bindings.len());
    for b in bindings {
        env.push((b.var.clone(), b.read(client, None)?));
    }
    // The command dumps core as it would have without coffer: `exec.core_limit` is given back
    // in the child only (coffer itself, holding the values, keeps core dumps off).
    let mut supervisor = Supervisor::launch(exec, env)?;
    let result = supervise(client, bindings, &mut supervisor, &rx);
    if result.is_err() {
        // coffer is about to fail: the command must not outlive it unsupervised.
        let _ = supervisor.stop();
    }
    result
}

/// Waits until the watch on every namespace is open. A signal that would have ended the
/// command ends coffer the same way; a watch that cannot open is an error.
fn until_following(rx: &Receiver<Msg>, mut pending: BTreeSet<String>) -> anyhow::Result<()> {
    while !pending.is_empty() {
        match rx.recv().context("the signal thread ended")? {
            Msg::Follow(Followed::Up { namespace, .. }) => {
                pending.remove(&namespace);
            }
            Msg::Follow(Followed::Down {
                namespace,
                error,
                code,
            }) => match code {
                Some(code) => {
                    anyhow::bail!(
                        "cannot follow changes in namespace {namespace}: {error} ({code})"
                    )
                }
                None => anyhow::bail!("cannot follow changes in namespace {namespace}: {error}"),
            },
            Msg::Follow(Followed::Event(_) | Followed::Resync { .. }) => {}
            Msg::Signal(Caught {
                signal: Signal::SIGCHLD,
                ..
            }) => {}
            Msg::Signal(caught) => signals::die_by(caught.signal),
        }
    }
    Ok(())
}

/// The main loop, until the command ends by itself.
fn supervise(
    client: &Client,
    bindings: &[Binding],
    supervisor: &mut Supervisor,
    rx: &Receiver<Msg>,
) -> anyhow::Result<ExitStatus> {
    let mut down = BTreeSet::new();
    loop {
        let first = rx.recv().context("the signal thread ended")?;
        let mut stale = BTreeMap::new();
        handle(first, bindings, supervisor, &mut stale, &mut down);
        // What is already queued is handled together: a burst is one change.
        while let Ok(msg) = rx.try_recv() {
            handle(msg, bindings, supervisor, &mut stale, &mut down);
        }
        if let Some(status) = supervisor.try_wait()? {
            return Ok(status);
        }
        if !stale.is_empty() {
            refresh(client, bindings, supervisor, &stale)?;
        }
        if let Some(status) = supervisor.try_wait()? {
            return Ok(status);
        }
    }
}

/// Acts on one message; adds to `stale` the bindings whose value must be read again.
fn handle(
    msg: Msg,
    bindings: &[Binding],
    supervisor: &Supervisor,
    stale: &mut BTreeMap<usize, Option<Version>>,
    down: &mut BTreeSet<String>,
) {
    let in_namespace = |namespace: &str| {
        bindings
            .iter()
            .enumerate()
            .filter(move |(_, b)| b.namespace() == namespace)
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
    };
    match msg {
        // Whether it ended is asked after the queue is drained.
        Msg::Signal(Caught {
            signal: Signal::SIGCHLD,
            ..
        }) => {}
        // The terminal sent it to the process group the command shares: it has it already.
        Msg::Signal(caught) if caught.from_terminal && supervisor.shares_our_group() => {
            tracing::debug!(
                signal = caught.signal.as_str(),
                "the terminal signalled the command too; not passed on again"
            );
        }
        Msg::Signal(caught) => supervisor.forward(caught.signal),
        Msg::Follow(Followed::Event(event)) => {
            if !event.action.is_secret() {
                return;
            }
            let Some(name) = event.name.as_deref() else {
                return;
            };
            let version = event.version.and_then(Version::new);
            for (i, b) in bindings.iter().enumerate() {
                if b.namespace() != event.namespace || b.name != name {
                    continue;
                }
                match event.action {
                    // A new value, at this version.
                    EventAction::Written
                    | EventAction::Patched
                    | EventAction::Generated
                    | EventAction::Rotated => {
                        stale.insert(i, version);
                    }
                    // The value did not change: the current version, unless an earlier
                    // event of this batch said which to read.
                    EventAction::Described | EventAction::RotationFailed => {
                        stale.entry(i).or_insert(version);
                    }
                    // Versions removed or restored: whatever is newest now.
                    _ => {
                        stale.insert(i, None);
                    }
                }
            }
        }
        Msg::Follow(Followed::Resync { namespace }) => {
            tracing::warn!(
                "missed changes in namespace {namespace} (the daemon no longer holds them): \
                 reading its secrets again"
            );
            stale.extend(in_namespace(&namespace).into_iter().map(|i| (i, None)));
        }
        Msg::Follow(Followed::Down {
            namespace, error, ..
        }) => {
            if down.insert(namespace.clone()) {
                tracing::warn!(
                    "lost the watch on namespace {namespace} ({error}); the command keeps \
                     running and coffer follows again when the daemon answers"
                );
            }
        }
        Msg::Follow(Followed::Up {
            namespace,
            revision,
            resumed,
        }) => {
            if down.remove(&namespace) {
                tracing::warn!(
                    "following namespace {namespace} again, after revision {revision}{}",
                    if resumed { " (nothing missed)" } else { "" }
                );
            }
        }
    }
}

/// Reads the stale bindings again; when a value differs, tells the supervisor.
fn refresh(
    client: &Client,
    bindings: &[Binding],
    supervisor: &mut Supervisor,
    stale: &BTreeMap<usize, Option<Version>>,
) -> anyhow::Result<()> {
    let mut env: Vec<(String, OsString)> = supervisor.env().to_vec();
    let mut changed = Vec::new();
    for (&i, &version) in stale {
        let b = &bindings[i];
        match b.read(client, version) {
            Ok(value) => {
                if env[i].1 != value {
                    env[i].1 = value;
                    changed.push(b.var.as_str());
                } else {
                    forget(vec![(String::new(), value)]);
                }
            }
            Err(e) => tracing::warn!(
                "{e:#}; the command keeps running with the value of {} it has",
                b.shown()
            ),
        }
    }
    if changed.is_empty() {
        tracing::debug!("no value changed; nothing to do");
        forget(env);
        return Ok(());
    }
    tracing::info!(variables = ?changed, "values changed");
    supervisor.changed(Some(env))
}
