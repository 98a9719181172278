//! The agent's loop: render every sink at start, then follow the daemon's change events and
//! re-render only the sinks a change touches (after their `wait`), firing `on_change` for
//! those whose file changed (after their `splay`). It never polls the daemon: while nothing
//! changes it sends nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitStatus;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::Context;
use coffer_client::Client;
use coffer_types::{ChangeEvent, ErrorCode, EventAction, Timestamp};
use nix::sys::signal::{SigSet, Signal};

use super::config::{AgentConfig, Sink};
use super::exec::{Command, Signalled};
use super::notify;
use super::sink::{COMPUTED, Output, SinkError, Used, ns_name, render_file, render_template};
use super::status::{ErrorState, SinkState, State};
use super::template::Template;
use super::write::{self, Outcome, Target};
use crate::follow::{self, Followed};
use crate::supervise::signals::Caught;

/// How long the agent waits at start for its watches to open before rendering anyway.
const FOLLOW_WAIT: Duration = Duration::from_secs(5);

/// What the loop receives.
pub enum Msg {
    /// From a follower.
    Followed(Followed),
    /// A signal: TERM and INT end the agent, HUP re-renders everything (with `[exec]`, they
    /// are the command's once it runs).
    Signal(Caught),
}

/// One sink at run time.
struct Live {
    sink: Sink,
    target: Target,
    template: Option<Template>,
    /// The (namespace, name) pairs it depends on.
    deps: BTreeSet<(String, String)>,
    /// Its namespaces (followed).
    namespaces: BTreeSet<String>,
    state: SinkState,
    /// When to render next.
    due: Option<Instant>,
    /// The first change of a burst not yet rendered (for `wait.max`).
    first_change: Option<Instant>,
    /// When to run `on_change`.
    fire_at: Option<Instant>,
    /// The last render failed because the daemon could not answer.
    stale: bool,
    /// The newest version a change event named for a file sink's secret since its last
    /// render: read at least that one.
    hint: Option<u32>,
}

/// The agent.
pub struct Engine {
    client: Client,
    config: AgentConfig,
    sinks: Vec<Live>,
    state: State,
    /// The namespaces followed, and whether each watch is open.
    up: BTreeMap<String, bool>,
    /// Namespaces whose watch was open when everything was last rendered.
    covered: BTreeSet<String>,
    dirty: bool,
    /// The last status write failed (its WARN is said once).
    save_failing: bool,
    once: bool,
    /// `[exec]`.
    command: Option<Command>,
    /// How the `[exec]` command ended by itself (the agent then ends as it did).
    command_exit: Option<ExitStatus>,
}

impl Engine {
    /// Checks every destination and compiles every template; a problem is a startup error.
    pub fn new(client: Client, config: AgentConfig, once: bool) -> anyhow::Result<Self> {
        let previous = State::load(&config.status_file).ok();
        let file = config.path.display().to_string();
        let mut sinks = Vec::new();
        for (sink, label) in config.sinks.iter().zip(&config.labels) {
            write::prepare(sink.common()).with_context(|| format!("{file}: {label}"))?;
            let destination = sink.common().destination.display().to_string();
            let old = previous
                .as_ref()
                .and_then(|p| p.sinks.iter().find(|s| s.destination == destination));
            let (template, mut deps, mut namespaces, kind) = match sink {
                Sink::File(f) => {
                    let ns = ns_name(f.namespace.as_deref());
                    let deps = BTreeSet::from([(ns.clone(), f.secret.clone())]);
                    (None, deps, BTreeSet::from([ns]), "file")
                }
                Sink::Template(t) => {
                    let compiled = Template::compile(&t.origin, &t.text)
                        .with_context(|| format!("{file}: {label}"))?;
                    let ns = ns_name(t.namespace.as_deref());
                    (
                        Some(compiled),
                        BTreeSet::new(),
                        BTreeSet::from([ns]),
                        "template",
                    )
                }
            };
            if template.is_some()
                && let Some(old) = old
            {
                // What the template used last time, so its namespaces are followed from the
                // start.
                for u in old.versions.iter().filter(|u| u.name != COMPUTED) {
                    deps.insert((u.namespace.clone(), u.name.clone()));
                    namespaces.insert(u.namespace.clone());
                }
            }
            sinks.push(Live {
                target: Target::of(sink.common()),
                sink: sink.clone(),
                template,
                deps,
                namespaces,
                state: SinkState {
                    sink: kind.into(),
                    destination,
                    ..SinkState::default()
                },
                due: None,
                first_change: None,
                fire_at: None,
                stale: false,
                hint: None,
            });
        }
        let mut state = State::default();
        state.agent.pid = std::process::id();
        state.agent.config = file;
        state.agent.started_at = Some(Timestamp::now());
        state.agent.revision = previous.and_then(|p| p.agent.revision);
        let command = if once {
            None
        } else {
            config.exec.clone().map(Command::new)
        };
        Ok(Self {
            client,
            config,
            sinks,
            state,
            up: BTreeMap::new(),
            covered: BTreeSet::new(),
            dirty: true,
            save_failing: false,
            command,
            command_exit: None,
            once,
        })
    }

    /// `--once`: renders everything and answers the sinks that failed.
    pub fn once(mut self) -> anyhow::Result<()> {
        self.render_all(false);
        self.state.agent.stopped = true;
        self.save();
        let failed: Vec<String> = self
            .sinks
            .iter()
            .zip(&self.config.labels)
            .filter_map(|(s, label)| {
                s.state
                    .last_error
                    .as_ref()
                    .map(|e| format!("{label}: {} ({})", e.message, e.code))
            })
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            anyhow::bail!(
                "{} of {} sinks failed:\n  {}",
                failed.len(),
                self.sinks.len(),
                failed.join("\n  ")
            )
        }
    }

    /// Follows the daemon until SIGTERM or SIGINT, or until the `[exec]` command ends (then
    /// answers how it ended).
    pub fn run(
        mut self,
        tx: &Sender<Msg>,
        rx: &Receiver<Msg>,
    ) -> anyhow::Result<Option<ExitStatus>> {
        let namespaces: BTreeSet<String> = self
            .sinks
            .iter()
            .flat_map(|s| s.namespaces.clone())
            .collect();
        self.follow(namespaces, tx)?;
        // Render once every watch is open (or failed), so no change falls between the render
        // and the start of the stream.
        let mut early = Vec::new();
        let deadline = Instant::now() + FOLLOW_WAIT;
        let mut answered = BTreeSet::new();
        while answered.len() < self.up.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Msg::Followed(f)) => {
                    if let Followed::Down {
                        namespace,
                        error,
                        code: Some(code),
                    } = &f
                        && follow::refused_for_good(*code)
                    {
                        // Not an outage: a token or a configuration to fix. Waiting for the
                        // daemon would never end.
                        let hint = match code {
                            ErrorCode::Denied | ErrorCode::Unauthenticated => format!(
                                "; the agent's token needs `meta` or `list` on {namespace}/* \
                                 (docs/agent.md)"
                            ),
                            _ => String::new(),
                        };
                        let e = anyhow::anyhow!(
                            "cannot follow changes in namespace {namespace}: {error} ({code}){hint}"
                        );
                        return self.fail(e);
                    }
                    if let Followed::Up { namespace, .. } | Followed::Down { namespace, .. } = &f {
                        answered.insert(namespace.clone());
                    }
                    early.push(Msg::Followed(f));
                }
                Ok(m) => early.push(m),
                Err(_) => break,
            }
        }
        for m in early {
            match self.handle(m, tx) {
                Ok(false) => {}
                Ok(true) => return self.stop(),
                Err(e) => return self.fail(e),
            }
        }
        self.covered = self
            .up
            .iter()
            .filter(|(_, up)| **up)
            .map(|(n, _)| n.clone())
            .collect();
        self.render_all(false);
        // That render covers whatever the early messages scheduled.
        for s in &mut self.sinks {
            s.due = None;
            s.first_change = None;
        }
        self.follow_new(tx)?;
        loop {
            self.run_due();
            if let Err(e) = self.step_command() {
                return self.fail(e);
            }
            if self.dirty {
                self.save();
            }
            let next = self
                .sinks
                .iter()
                .flat_map(|s| [s.due, s.fire_at])
                .flatten()
                .min();
            let first = match next {
                Some(t) => rx.recv_timeout(t.saturating_duration_since(Instant::now())),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            let mut batch = match first {
                Ok(m) => vec![m],
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return self.stop(),
            };
            // Take whatever else is already there, so a burst renders once.
            batch.extend(rx.try_iter());
            for m in batch {
                match self.handle(m, tx) {
                    Ok(false) => {}
                    Ok(true) => return self.stop(),
                    Err(e) => return self.fail(e),
                }
            }
        }
    }

    /// Ends on an error: the command (if any) is stopped first, so it does not outlive the
    /// agent unsupervised.
    fn fail(self, e: anyhow::Error) -> anyhow::Result<Option<ExitStatus>> {
        let _ = self.stop();
        Err(e)
    }

    fn stop(mut self) -> anyhow::Result<Option<ExitStatus>> {
        if self.command_exit.is_none()
            && let Some(command) = &mut self.command
        {
            command.stop();
        }
        tracing::info!("stopping; files are left in place");
        self.state.agent.stopped = true;
        self.state.agent.connected = false;
        self.state.agent.exec_pid = None;
        self.save();
        Ok(self.command_exit)
    }

    /// Starts the `[exec]` command once every sink rendered, or tells it of changes.
    fn step_command(&mut self) -> anyhow::Result<()> {
        let ready = self.sinks.iter().all(|s| s.state.rendered_at.is_some());
        if let Some(command) = &mut self.command {
            let pid = command.step(ready)?;
            if self.state.agent.exec_pid != pid {
                self.state.agent.exec_pid = pid;
                self.save();
            }
        }
        Ok(())
    }

    /// Starts followers for `namespaces` not yet followed.
    fn follow(&mut self, namespaces: BTreeSet<String>, tx: &Sender<Msg>) -> anyhow::Result<()> {
        let new: Vec<String> = namespaces
            .into_iter()
            .filter(|n| !self.up.contains_key(n))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let (ftx, frx) = std::sync::mpsc::channel();
        follow::spawn(&self.client, new.clone(), self.state.agent.revision, &ftx)
            .context("cannot start following the daemon's changes")?;
        let tx = tx.clone();
        std::thread::Builder::new()
            .name("follow forward".into())
            .spawn(move || {
                for f in frx {
                    if tx.send(Msg::Followed(f)).is_err() {
                        return;
                    }
                }
            })
            .context("cannot start a thread")?;
        for n in new {
            self.up.insert(n, false);
        }
        Ok(())
    }

    /// Follows the namespaces templates turned out to use.
    fn follow_new(&mut self, tx: &Sender<Msg>) -> anyhow::Result<()> {
        let all: BTreeSet<String> = self
            .sinks
            .iter()
            .flat_map(|s| s.namespaces.clone())
            .collect();
        self.follow(all, tx)
    }

    /// Handles one message; answers whether to stop.
    fn handle(&mut self, m: Msg, tx: &Sender<Msg>) -> anyhow::Result<bool> {
        let now = Instant::now();
        match m {
            Msg::Signal(caught) if self.command.is_some() => {
                let signal = caught.signal;
                let command = self
                    .command
                    .as_mut()
                    .map(|c| c.signal(caught))
                    .transpose()?;
                match command {
                    Some(Signalled::Handled) => {}
                    Some(Signalled::Ended(status)) => {
                        self.command_exit = Some(status);
                        return Ok(true);
                    }
                    // Before the command starts, the agent's own meaning.
                    Some(Signalled::NotRunning) | None => match signal {
                        Signal::SIGCHLD => {}
                        Signal::SIGTERM | Signal::SIGINT => return Ok(true),
                        _ => tracing::info!(signal = %signal, "no command runs yet: ignored"),
                    },
                }
            }
            Msg::Signal(Caught {
                signal: Signal::SIGHUP,
                ..
            }) => {
                tracing::info!("SIGHUP: rendering everything again");
                for i in 0..self.sinks.len() {
                    self.schedule(i, now);
                }
            }
            Msg::Signal(Caught { signal, .. }) => {
                tracing::info!(signal = %signal, "signal received");
                return Ok(true);
            }
            Msg::Followed(Followed::Up {
                namespace,
                revision,
                resumed,
            }) => {
                self.up.insert(namespace.clone(), true);
                self.seen(revision);
                if !self.state.agent.connected && self.up.values().all(|u| *u) {
                    if self.state.agent.unreachable_since.is_some() {
                        tracing::info!("the daemon is back; following its changes again");
                    }
                    self.state.agent.connected = true;
                    self.state.agent.unreachable_since = None;
                    self.state.agent.unreachable_error = None;
                    self.dirty = true;
                }
                let missed = !resumed && !self.covered.contains(&namespace);
                for i in 0..self.sinks.len() {
                    let s = &self.sinks[i];
                    if s.stale || (missed && s.namespaces.contains(&namespace)) {
                        self.schedule(i, now);
                    }
                }
                self.covered.insert(namespace);
            }
            Msg::Followed(Followed::Down {
                namespace,
                error,
                code,
            }) => {
                let error = match code {
                    Some(code) => format!("{error} ({code})"),
                    None => error,
                };
                self.up.insert(namespace, false);
                if self.state.agent.connected || self.state.agent.unreachable_since.is_none() {
                    if code.is_some_and(follow::refused_for_good) {
                        tracing::warn!(
                            error = %error,
                            "the daemon refused the watch; files are kept as they are, and the \
                             agent asks again"
                        );
                    } else {
                        tracing::warn!(
                            error = %error,
                            "the daemon is unreachable; files are kept as they are until it \
                             returns"
                        );
                    }
                    self.state.agent.connected = false;
                    self.state.agent.unreachable_since = Some(Timestamp::now());
                    self.state.agent.unreachable_error = Some(error);
                    self.dirty = true;
                } else if self.state.agent.unreachable_error.as_ref() != Some(&error) {
                    // Still down, for another reason now (the status says the latest).
                    self.state.agent.unreachable_error = Some(error);
                    self.dirty = true;
                }
            }
            Msg::Followed(Followed::Resync { namespace }) => {
                tracing::warn!(
                    namespace,
                    "changes were missed (the daemon no longer holds them); rendering again"
                );
                for i in 0..self.sinks.len() {
                    if self.sinks[i].namespaces.contains(&namespace) {
                        self.schedule(i, now);
                    }
                }
            }
            Msg::Followed(Followed::Event(e)) => {
                self.seen(e.revision);
                self.event(&e, now);
            }
        }
        self.follow_new(tx)?;
        Ok(false)
    }

    fn seen(&mut self, revision: u64) {
        if self.state.agent.revision.is_none_or(|r| r < revision) {
            self.state.agent.revision = Some(revision);
            self.dirty = true;
        }
    }

    /// Schedules the sinks a change touches.
    fn event(&mut self, e: &ChangeEvent, now: Instant) {
        let Some(name) = e.name.as_deref() else {
            return;
        };
        if !e.action.is_secret() || e.action == EventAction::RotationFailed {
            return;
        }
        let key = (e.namespace.clone(), name.to_owned());
        for i in 0..self.sinks.len() {
            let s = &self.sinks[i];
            let touched = match &s.sink {
                // Metadata alone does not change a file sink's content.
                Sink::File(_) => e.action != EventAction::Described && s.deps.contains(&key),
                // A template that never rendered does not know all it uses yet.
                Sink::Template(_) => {
                    s.deps.contains(&key)
                        || (s.state.rendered_at.is_none() && s.namespaces.contains(&e.namespace))
                }
            };
            if touched && let Sink::File(_) = s.sink {
                let named = match e.action {
                    EventAction::Written
                    | EventAction::Patched
                    | EventAction::Generated
                    | EventAction::Rotated => e.version,
                    _ => None,
                };
                let s = &mut self.sinks[i];
                s.hint = s.hint.max(named);
            }
            let s = &self.sinks[i];
            if touched {
                tracing::debug!(revision = e.revision, destination = %s.state.destination, "change");
                self.schedule(i, now);
            }
        }
    }

    /// Renders sink `i` after its wait: `min` after the last change, at most `max` after the
    /// first of a burst.
    fn schedule(&mut self, i: usize, now: Instant) {
        let s = &mut self.sinks[i];
        let (min, max) = match &s.sink {
            Sink::Template(t) => (t.wait_min, t.wait_max),
            Sink::File(_) => (Duration::ZERO, Duration::ZERO),
        };
        let first = *s.first_change.get_or_insert(now);
        s.due = Some((now + min).min(first + max));
    }

    /// Renders what is due and fires what is due.
    fn run_due(&mut self) {
        let now = Instant::now();
        for i in 0..self.sinks.len() {
            if self.sinks[i].due.is_some_and(|d| d <= now) {
                self.sinks[i].due = None;
                self.sinks[i].first_change = None;
                self.render(i, true);
            }
        }
        // The status says a file changed before the application hears of it.
        if self.dirty {
            self.save();
        }
        let now = Instant::now();
        for s in &mut self.sinks {
            if s.fire_at.is_some_and(|f| f <= now) {
                s.fire_at = None;
                if let Some(action) = &s.sink.common().on_change {
                    notify::fire(action, &s.state.destination);
                }
            }
        }
    }

    fn render_all(&mut self, after_change: bool) {
        for i in 0..self.sinks.len() {
            self.render(i, after_change);
        }
    }

    /// Renders sink `i` and writes it when it changed. `after_change`: a change event asked
    /// (a secret gone then removes the file when `on_delete = "remove"`; at start it is kept).
    fn render(&mut self, i: usize, after_change: bool) {
        self.dirty = true;
        let client = &self.client;
        let s = &mut self.sinks[i];
        s.state.renders += 1;
        let existing = match &s.sink {
            Sink::File(f) if f.post == super::config::Post::Yescrypt => {
                write::current(&s.target.path)
            }
            _ => None,
        };
        let mut template_deps = None;
        let mut wrote = false;
        let result: Result<Output, SinkError> = match (&s.sink, &s.template) {
            (Sink::File(f), _) => render_file(
                client,
                f,
                existing.as_deref().map(|v| &v[..]),
                s.hint.take(),
            ),
            (Sink::Template(t), Some(compiled)) => {
                let (result, deps) = render_template(client, t, compiled);
                s.namespaces.extend(deps.iter().map(|(ns, _)| ns.clone()));
                // Until a render succeeds, everything asked for so far (a missing one
                // included) re-renders it.
                s.deps.extend(deps.iter().cloned());
                template_deps = Some(deps);
                result
            }
            (Sink::Template(_), None) => return,
        };
        let destination = s.state.destination.clone();
        match result {
            Ok(out) => {
                s.stale = false;
                match write::write(&s.target, &out.content) {
                    Ok(outcome) => {
                        s.state.rendered_at = Some(Timestamp::now());
                        s.state.last_error = None;
                        if let Some(deps) = template_deps.take() {
                            // What this render used, and nothing it no longer uses.
                            s.deps = deps;
                        }
                        let versions = describe(&out.used);
                        s.state.versions = out.used;
                        if outcome == Outcome::Written {
                            wrote = true;
                            tracing::info!(destination, from = %versions, "written");
                            s.state.changes += 1;
                            s.state.changed_at = Some(Timestamp::now());
                            if !self.once {
                                s.fire_at = Some(Instant::now() + splay(s.sink.common().splay));
                            }
                        } else {
                            tracing::debug!(destination, from = %versions, "unchanged");
                        }
                    }
                    Err(e) => {
                        let message = format!("{e:#}");
                        tracing::warn!(destination, error = %message, "cannot write; the old file is kept");
                        fail(&mut s.state, "write", message);
                    }
                }
            }
            Err(e) => {
                s.stale = e.stale;
                let remove = after_change
                    && e.gone
                    && s.sink.common().remove_on_delete
                    && matches!(s.sink, Sink::File(_));
                if remove {
                    match write::remove(&s.target) {
                        Ok(true) => {
                            wrote = true;
                            tracing::info!(destination, reason = %e.message, "removed");
                            s.state.changes += 1;
                            s.state.changed_at = Some(Timestamp::now());
                            s.state.versions.clear();
                            if !self.once {
                                s.fire_at = Some(Instant::now() + splay(s.sink.common().splay));
                            }
                        }
                        Ok(false) => {}
                        Err(r) => {
                            tracing::warn!(destination, error = %format!("{r:#}"), "cannot remove")
                        }
                    }
                } else {
                    tracing::warn!(destination, code = %e.code, error = %e.message, "cannot render; the old file is kept");
                }
                fail(&mut s.state, &e.code, e.message);
            }
        }
        if wrote && let Some(command) = &mut self.command {
            command.file_changed();
        }
    }

    fn save(&mut self) {
        self.state.sinks = self.sinks.iter().map(|s| s.state.clone()).collect();
        match self
            .state
            .save(&self.config.status_file, &self.config.metrics_file)
        {
            Ok(()) => {
                if std::mem::take(&mut self.save_failing) {
                    tracing::info!("the status file is written again");
                }
                self.dirty = false;
            }
            // Once per stretch of failures; retried at the next change.
            Err(e) if !self.save_failing => {
                self.save_failing = true;
                tracing::warn!(error = %format!("{e:#}"), "cannot write the status file");
            }
            Err(_) => {}
        }
    }
}

fn fail(state: &mut SinkState, code: &str, message: String) {
    state.errors += 1;
    state.last_error = Some(ErrorState {
        code: code.to_owned(),
        message,
        at: Timestamp::now(),
    });
}

/// `default/db v3, acme/api v1`.
fn describe(used: &[Used]) -> String {
    used.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A random delay in `[0, max)`.
fn splay(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return Duration::ZERO;
    }
    let nanos = u64::from_le_bytes(b) % u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(nanos)
}

/// Blocks TERM, INT and HUP in this thread (and so in every thread started after) and
/// forwards them to the loop from a thread of their own. Call before any other thread starts.
pub fn signals(tx: Sender<Msg>) -> anyhow::Result<()> {
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block().context("cannot block signals")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            while let Ok(s) = set.wait() {
                let caught = Caught {
                    signal: s,
                    // Only the agent itself acts on these: no command to pass them to.
                    from_terminal: false,
                };
                if tx.send(Msg::Signal(caught)).is_err() {
                    return;
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}
