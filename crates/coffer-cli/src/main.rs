//! `coffer`: the daemon, the operator's commands and the load generator, in one binary.
//!
//! The binary is thin: it parses arguments into a validated configuration (config.rs) and
//! calls the library crates. Errors print as `coffer: <message>` and exit with the status of
//! their stable code.
#![deny(unsafe_code)]

mod agent;
mod bench;
mod cmd;
mod config;
mod database;
mod fleet_args;
mod follow;
mod input;
mod logging;
mod pipe;
mod supervise;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use coffer_client::ClientError;

/// coffer: a TPM-rooted secrets manager for machines that can be stolen.
///
/// `coffer serve` runs the daemon; the other commands talk to it over its Unix socket.
/// Secret values are read from a hidden prompt or standard input, never from arguments.
#[derive(Parser, Debug)]
#[command(
    name = "coffer",
    version = env!("COFFER_VERSION_LONG"),
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    /// The daemon's socket [default: /run/coffer/coffer.sock as root, $XDG_RUNTIME_DIR/coffer/coffer.sock otherwise]
    #[arg(
        long,
        global = true,
        env = "COFFER_SOCKET",
        hide_env_values = true,
        value_name = "PATH"
    )]
    socket: Option<PathBuf>,

    /// A file holding the token to send with every request (or set COFFER_TOKEN); a token
    /// is never taken from the command line
    #[arg(
        long,
        global = true,
        env = "COFFER_TOKEN_FILE",
        hide_env_values = true,
        value_name = "FILE"
    )]
    token_file: Option<PathBuf>,

    /// How log lines on standard error are written: `text`, or `json` (one object a line)
    /// [default: log_format in the configuration file, else text]
    #[arg(
        long,
        global = true,
        env = "COFFER_LOG_FORMAT",
        hide_env_values = true,
        hide_possible_values = true,
        value_enum,
        value_name = "FORMAT"
    )]
    log_format: Option<logging::LogFormat>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon.
    ///
    /// With no configuration it runs on embedded defaults: SQLite in the data directory and,
    /// on first start, a new store sealed to the TPM's PCR 7 when a TPM is reachable (add a
    /// recovery slot), else one opened by a freshly minted key file (back it up).
    Serve(Box<cmd::serve::ServeArgs>),
    /// Create a new store and print its recovery key (once, on standard output).
    Init(cmd::init::InitArgs),
    /// Store a secret (as `coffer secrets set`). The value comes from a hidden prompt, or
    /// standard input when it is not a terminal; a final newline from a pipe is dropped.
    Set(cmd::secrets::SetArgs),
    /// Print a secret's value on standard output: the data plane's read, which policies will
    /// restrict; operators manage secrets with `coffer secrets`, which never shows values.
    Get(cmd::secret::GetArgs),
    /// Delete a secret and every version of it, for good (`coffer secrets revoke` keeps the
    /// history).
    Del(cmd::secret::DelArgs),
    /// Manage secrets without seeing them: set, generate, list, show, describe, rotate,
    /// revoke, destroy, versions.
    #[command(subcommand)]
    Secrets(cmd::secrets::SecretsCommand),
    /// Create, list, lock and unlock namespaces, and rotate their data keys.
    #[command(subcommand)]
    Namespaces(cmd::namespaces::NamespacesCommand),
    /// Print the HMAC of standard input under a secret key; the key stays in the daemon.
    Hmac(cmd::compute::HmacArgs),
    /// Print the yescrypt hash (crypt(3)'s `$y$j9T$...`) of a password secret; the password
    /// stays in the daemon.
    Yescrypt(cmd::compute::YescryptArgs),
    /// Run a command with secrets in its environment only:
    /// `coffer run --env DB_PASSWORD=db/password -- ./server`.
    Run(cmd::run::RunArgs),
    /// Show the daemon's state: sealed or not, slots, the TPM, cache. Never a value or a name.
    Status(cmd::status::StatusArgs),
    /// Forget the keys and flush the cache; secrets are unreadable until `coffer unseal`.
    Seal,
    /// Open a sealed store with a passphrase (default), the recovery key, the key file, or
    /// the TPM.
    Unseal(cmd::status::UnsealArgs),
    /// Manage the key slots that open the store: list, add, remove, reseal.
    #[command(subcommand)]
    Slots(cmd::slots::SlotsCommand),
    /// Replace the store's master key; a new recovery key is printed once
    ///
    /// Every slot and every namespace key is re-wrapped under a new master key in one
    /// transaction, and the recovery slot gets a new recovery key, printed once on standard
    /// output (the old one opens nothing any more). Key file and TPM slots are re-wrapped by the daemon;
    /// passphrase slots need their passphrases (asked for, or --passphrase-file) or are
    /// dropped with --drop-passphrase-slots. Keys derived from the store's first master key
    /// (token hashes, the audit chain) stay valid. Needs `sudo` on `sys/`.
    RotateMaster(cmd::master::RotateMasterArgs),
    /// Manage policies and the subjects bound to them: put, get, list, delete, bind.
    #[command(subcommand)]
    Policy(cmd::policy::PolicyCommand),
    /// Manage tokens for applications and services: create, list, revoke, renew, lookup.
    #[command(subcommand)]
    Token(cmd::token::TokenCommand),
    /// AppRole, the machine login: roles, role-ids, secret-ids (printed once) and the login.
    #[command(subcommand)]
    Approle(cmd::approle::AppRoleCommand),
    /// The fleet (on a hub): join tokens, nodes and their tags, assignment rules, bundles.
    #[command(subcommand)]
    Fleet(cmd::fleet::FleetCommand),
    /// Signed webhooks that receive the change events: add, list, remove, test, status.
    #[command(subcommand)]
    Webhooks(cmd::webhooks::WebhooksCommand),
    /// The audit log: verify its chain, hash a name to search for, tail it.
    #[command(subcommand)]
    Audit(cmd::audit::AuditCommand),
    /// Follow changes as they happen: one line per event (what changed, where, by whom;
    /// never a value), from now or from a revision an earlier watch printed.
    Watch(cmd::watch::WatchArgs),
    /// Keep secrets in files on tmpfs, current from the daemon's change events: `coffer agent
    /// --config agent.toml` (docs/agent.md); `coffer agent status` shows what it rendered.
    Agent(agent::AgentArgs),
    /// Measure the socket protocol: coffer against a floor server that does no work.
    Bench(bench::BenchArgs),
    /// Make an encrypted backup of the whole store (an age file: `--recipient age1...` or
    /// `--passphrase`), through the daemon or, with `--data-dir`, from a stopped daemon's
    /// data directory; `coffer backup verify FILE` checks one.
    Backup(cmd::backup::BackupArgs),
    /// Restore a backup into a new, empty data directory (checked whole before anything is
    /// written; left empty on any failure).
    Restore(cmd::backup::RestoreArgs),
    /// Print a shell completion script: `coffer completions bash >
    /// /usr/share/bash-completion/completions/coffer` (also zsh, fish, elvish, powershell).
    Completions(cmd::shell::CompletionsArgs),
    /// Check the configuration: the settings `coffer serve` would run with and where each
    /// came from
    #[command(subcommand)]
    Config(cmd::config::ConfigCommand),
    /// Write the man pages (for packaging).
    #[command(hide = true)]
    Man(cmd::shell::ManArgs),
}

/// Quiets tpm2-tss, which otherwise prints every TPM refusal (an expected PCR mismatch
/// included) on standard error; coffer logs them itself, with context. An operator's own
/// `TSS2_LOG` is kept.
#[allow(unsafe_code)]
fn quiet_tss() {
    if std::env::var_os("TSS2_LOG").is_none() {
        // SAFETY: called first thing in `main`, before any other thread exists, so nothing
        // can read the environment concurrently.
        unsafe { std::env::set_var("TSS2_LOG", "all+none") };
    }
}

fn main() -> ExitCode {
    quiet_tss();
    pipe::install();
    let cli = Cli::parse();
    let serving = matches!(
        cli.command,
        Command::Serve(_) | Command::Bench(_) | Command::Agent(_)
    );
    // The flag or variable, else the configuration file's `log_format` (serve reads one).
    let log_format = cli
        .log_format
        .or_else(|| match &cli.command {
            Command::Serve(args) => config::FileConfig::load(args.config.as_deref())
                .ok()
                .and_then(|f| f.log_format()),
            _ => None,
        })
        .unwrap_or(logging::LogFormat::Text);
    // tss-esapi logs every TPM refusal itself; coffer logs them with their context.
    logging::init(
        if serving {
            "info,tss_esapi=off"
        } else {
            "warn,tss_esapi=off"
        },
        log_format,
    );
    let core_limit = match coffer_core::harden_process() {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!(error = %e, "could not disable core dumps and ptrace attachment");
            None
        }
    };
    let socket = cli.socket.clone();
    let client = |socket: Option<PathBuf>| client(socket, cli.token_file.as_deref());
    let result = match cli.command {
        Command::Serve(args) => cmd::serve::run(socket, *args),
        Command::Init(args) => cmd::init::run(args),
        Command::Set(args) => client(socket).and_then(|c| cmd::secrets::set(&c, args)),
        Command::Get(args) => client(socket).and_then(|c| cmd::secret::get(&c, args)),
        Command::Del(args) => client(socket).and_then(|c| cmd::secret::del(&c, args)),
        Command::Status(args) => client(socket).and_then(|c| cmd::status::status(&c, args)),
        Command::Seal => client(socket).and_then(|c| cmd::status::seal(&c)),
        Command::Unseal(args) => client(socket).and_then(|c| cmd::status::unseal(&c, args)),
        Command::Slots(command) => client(socket).and_then(|c| cmd::slots::run(&c, command)),
        Command::RotateMaster(args) => client(socket).and_then(|c| cmd::master::run(&c, args)),
        Command::Policy(command) => client(socket).and_then(|c| cmd::policy::run(&c, command)),
        Command::Token(command) => client(socket).and_then(|c| cmd::token::run(&c, command)),
        Command::Webhooks(command) => client(socket).and_then(|c| cmd::webhooks::run(&c, command)),
        Command::Approle(command) => client(socket).and_then(|c| cmd::approle::run(&c, command)),
        Command::Fleet(command) => client(socket).and_then(|c| cmd::fleet::run(&c, command)),
        Command::Audit(command) => {
            match client(socket).and_then(|c| cmd::audit::run(&c, command)) {
                Ok(code) => return code,
                Err(e) => Err(e),
            }
        }
        Command::Secrets(command) => client(socket).and_then(|c| cmd::secrets::run(&c, command)),
        Command::Namespaces(command) => {
            client(socket).and_then(|c| cmd::namespaces::run(&c, command))
        }
        Command::Hmac(args) => client(socket).and_then(|c| cmd::compute::hmac(&c, args)),
        Command::Yescrypt(args) => client(socket).and_then(|c| cmd::compute::yescrypt(&c, args)),
        Command::Run(args) => client(socket).and_then(|c| cmd::run::run(&c, args, core_limit)),
        Command::Watch(args) => client(socket).and_then(|c| cmd::watch::run(&c, args)),
        Command::Agent(args) => agent::run(
            args,
            socket,
            cli.token_file.as_deref(),
            core_limit,
            crate::client,
        ),
        Command::Bench(args) => bench::run(socket, args),
        Command::Backup(args) => cmd::backup::run(|| client(socket), args),
        Command::Restore(args) => cmd::backup::restore(args),
        Command::Completions(args) => {
            cmd::shell::completions(<Cli as clap::CommandFactory>::command(), args)
        }
        Command::Config(command) => cmd::config::run(socket, command),
        Command::Man(args) => cmd::shell::man(<Cli as clap::CommandFactory>::command(), args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stopped early (`| head -1`) is a clean end.
        Err(e) if pipe::is_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e
                .downcast_ref::<ClientError>()
                .map(ClientError::code)
                .or_else(|| e.downcast_ref::<coffer_core::CoreError>().map(|c| c.code()));
            let message = message(&e);
            match code {
                Some(code) => {
                    match e.downcast_ref::<ClientError>() {
                        // A TPM's own code; the ones every not_found carries add nothing.
                        Some(ClientError::Refused { rc: Some(rc), .. })
                            if code.implied_rc() != Some(rc.as_str()) && !message.contains(rc) =>
                        {
                            eprintln!("coffer: {message} ({code}, rc {rc})");
                        }
                        _ => eprintln!("coffer: {message} ({code})"),
                    }
                    ExitCode::from(code.exit_status())
                }
                None => {
                    eprintln!("coffer: {message}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// The error and its causes, each once: errors that also travel on the wire name their
/// cause in their own message, so a cause already said is not repeated.
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// A client for the daemon, carrying the token of `COFFER_TOKEN` or `--token-file` if any,
/// and trusting a daemon of the uid in `COFFER_SERVER_UID`, and of the packaged daemon's system
/// user `coffer`, beside root's and the user's own.
fn client(
    socket: Option<PathBuf>,
    token_file: Option<&std::path::Path>,
) -> anyhow::Result<coffer_client::Client> {
    let mut client =
        coffer_client::Client::new(socket.unwrap_or_else(config::default_client_socket));
    if let Some(uid) = config::trusted_server_uid()? {
        client = client.trust_server_uid(uid);
    }
    if let Some(uid) = config::packaged_daemon_uid() {
        client = client.trust_server_uid(uid);
    }
    let token = match (token_file, std::env::var_os("COFFER_TOKEN")) {
        (Some(path), _) => {
            let text = std::fs::read(path).map_err(|e| {
                anyhow::anyhow!("cannot read the token file {}: {e}", path.display())
            })?;
            Some(coffer_crypto::SecretBytes::from_vec(text))
        }
        (None, Some(t)) => Some(coffer_crypto::SecretBytes::from_vec(t.into_encoded_bytes())),
        (None, None) => None,
    };
    Ok(match token {
        Some(t) => {
            // A file or variable may end in a newline; a token never does.
            let trimmed = coffer_crypto::SecretBytes::copy_from(t.expose_secret().trim_ascii());
            if trimmed.is_empty() {
                anyhow::bail!("the token (COFFER_TOKEN or --token-file) is empty");
            }
            client.with_token(trimmed)
        }
        None => client,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
