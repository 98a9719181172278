//! `coffer agent`: secrets into files on tmpfs, kept current from the daemon's change events
//! (docs/agent.md). A client of the local daemon's socket; it never polls.
//!
//! - config.rs: the configuration file, parsed strictly;
//! - sink.rs: what a sink writes (a value in a kind, a yescrypt hash, a template);
//! - write.rs: writing it (tmpfs only, owner and mode first, atomic or in place, no churn);
//! - engine.rs: the loop (render at start, follow changes, wait, splay, on_change);
//! - exec.rs: `[exec]`, a command kept in step with the files (crate::supervise);
//! - notify.rs: on_change; status.rs: the status and metrics files;
//! - template.rs: the templates' language (minijinja; docs/agent-templates.md).

mod config;
mod engine;
mod exec;
mod notify;
mod sink;
mod status;
pub mod template;
mod write;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use config::AgentConfig;
use engine::{Engine, Msg};
use status::State;

/// Options of `coffer agent`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentArgs {
    #[command(subcommand)]
    command: Option<AgentCommand>,
    /// The agent's configuration file (docs/agent.md)
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Render every sink once and exit (for boot scripts): non-zero, naming the sinks that
    /// failed, when any did; on_change is not run
    #[arg(long)]
    once: bool,
}

/// `coffer agent` subcommands.
#[derive(Subcommand, Debug)]
enum AgentCommand {
    /// Show each sink's state: rendered when, from which versions, the last error; and
    /// whether the agent follows the daemon. Read from the agent's status file, never from
    /// the daemon.
    Status(StatusArgs),
}

/// Options of `coffer agent status`.
#[derive(Args, Debug)]
struct StatusArgs {
    /// Print the status file as it is (JSON)
    #[arg(long)]
    json: bool,
}

/// Runs `coffer agent`. `socket` and `token_file` are the global options, which win over the
/// configuration file's keys; `client` makes the daemon's client from them.
pub fn run(
    args: AgentArgs,
    socket: Option<PathBuf>,
    token_file: Option<&Path>,
    core_limit: Option<coffer_core::CoreLimit>,
    client: impl FnOnce(Option<PathBuf>, Option<&Path>) -> anyhow::Result<coffer_client::Client>,
) -> anyhow::Result<()> {
    let path = args
        .config
        .context("give the agent's configuration file with --config FILE")?;
    let mut config = AgentConfig::load(&path)?;
    if let Some(exec) = &mut config.exec {
        // The command may dump core as it would without coffer; the agent, holding values,
        // may not.
        exec.core_limit = core_limit;
    }
    if let Some(AgentCommand::Status(s)) = args.command {
        return print_status(&config, s.json);
    }
    let socket = socket.or_else(|| config.socket.clone());
    let token_file = token_file
        .map(Path::to_owned)
        .or_else(|| config.token_file.clone());
    let client = client(socket, token_file.as_deref())?;
    if args.once {
        return Engine::new(client, config, true)?.once();
    }
    let (tx, rx) = std::sync::mpsc::channel::<Msg>();
    // Before any thread starts, so every thread has the signals blocked.
    if config.exec.is_some() {
        // Those the command gets passed on, and SIGCHLD.
        crate::supervise::signals::catch(tx.clone(), Msg::Signal)?;
    } else {
        engine::signals(tx.clone())?;
    }
    let engine = Engine::new(client, config, false)?;
    tracing::info!(config = %path.display(), "agent started");
    match engine.run(&tx, &rx)? {
        Some(status) => crate::supervise::signals::exit_like(status),
        None => Ok(()),
    }
}

fn print_status(config: &AgentConfig, json: bool) -> anyhow::Result<()> {
    let state = State::load(&config.status_file).with_context(|| {
        format!(
            "no status yet for {} (is `coffer agent --config {}` running?)",
            config.path.display(),
            config.path.display()
        )
    })?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &state)?;
        writeln!(out)?;
    } else {
        let running = !state.agent.stopped
            && nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(state.agent.pid).unwrap_or(0)),
                None,
            )
            .is_ok()
            && state.agent.pid != 0;
        write!(out, "{}", status::table(&state, running))?;
    }
    Ok(())
}
