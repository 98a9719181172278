//! `coffer run`: a command with secrets in its environment and nowhere else (reference 003,
//! injection into a child's environment).
//!
//! Every secret is read before the command starts, so a missing one fails early, naming the
//! variable and the secret. Then coffer `exec`s the command: it replaces coffer in the same
//! process, so standard input, output and error, signals and the exit status are the
//! command's own, and no coffer process lingers holding the values. The token coffer used
//! (`COFFER_TOKEN`, `COFFER_TOKEN_FILE`) is not passed on unless `--pass-token` asks.
//!
//! With `--watch` coffer stays, as the command's supervisor ([`watch`]): it follows changes
//! to the secrets and restarts or signals the command when a value changes.

mod watch;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use coffer_client::Client;
use coffer_types::{Namespace, SecretRef, Version};
use nix::sys::signal::Signal;

use crate::supervise::TOKEN_VARS;

/// Options of `coffer run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Put a secret in a variable: `VAR=NAME` (in --namespace) or
    /// `VAR=coffer://NAMESPACE/NAME` (a nested namespace's `/` written `%2F`)
    #[arg(long = "env", short = 'e', value_name = "VAR=SECRET")]
    env: Vec<String>,
    /// A file of `VAR=coffer://NAMESPACE/NAME` (or `VAR=NAME`) lines; blank lines and `#`
    /// comments are skipped
    #[arg(long, value_name = "FILE")]
    env_file: Vec<PathBuf>,
    /// The namespace of plain names [default: default]
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Let the command inherit COFFER_TOKEN and COFFER_TOKEN_FILE (by default they are
    /// removed from its environment: the token is coffer's, not the command's)
    #[arg(long)]
    pass_token: bool,
    /// Stay as the command's supervisor: follow changes to its secrets and, when a value
    /// changes, restart it with the new values (or send --reload-signal); signals are passed
    /// on and its exit status is coffer's
    #[arg(long)]
    watch: bool,
    /// With --watch: on a change, send this signal (e.g. HUP) instead of restarting; the
    /// command's environment keeps the values it started with
    #[arg(long, value_name = "SIG", requires = "watch", value_parser = reload_signal)]
    reload_signal: Option<Signal>,
    /// With --watch: the signal that asks the command to stop before a restart
    #[arg(long, value_name = "SIG", requires = "watch", default_value = "TERM", value_parser = crate::supervise::parse_signal)]
    stop_signal: Signal,
    /// With --watch: how long a stopping command may take before SIGKILL
    #[arg(long, value_name = "DURATION", requires = "watch", default_value = "30s", value_parser = crate::supervise::parse_duration)]
    stop_timeout: std::time::Duration,
    /// With --watch: wait a random time up to this before acting on a change (spreads the
    /// restarts of many machines that see the same change)
    #[arg(long, value_name = "DURATION", requires = "watch", default_value = "0s", value_parser = crate::supervise::parse_duration)]
    splay: std::time::Duration,
    /// The command and its arguments, after `--`
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

/// One variable to fill.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Binding {
    var: String,
    namespace: Option<String>,
    name: String,
    /// Where it was given, for messages.
    origin: String,
}

fn reload_signal(text: &str) -> Result<Signal, String> {
    crate::supervise::parse_signal(text).and_then(crate::supervise::check_reload_signal)
}

fn valid_var(var: &str) -> bool {
    let mut chars = var.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses `VAR=NAME` or `VAR=coffer://NAMESPACE/NAME`.
fn binding(text: &str, default_ns: Option<&str>, origin: String) -> anyhow::Result<Binding> {
    let Some((var, reference)) = text.split_once('=') else {
        bail!("{origin}: expected VAR=SECRET");
    };
    if !valid_var(var) {
        bail!(
            "{origin}: `{var}` is not a variable name (letters, digits and _, not starting with a digit)"
        );
    }
    let default_ns = default_ns
        .map(Namespace::parse)
        .transpose()
        .with_context(|| format!("{origin}: the namespace given with --namespace"))?;
    let parsed = SecretRef::parse(reference, default_ns.as_ref())
        .with_context(|| format!("{origin}: expected NAME or coffer://NAMESPACE/NAME"))?;
    Ok(Binding {
        var: var.to_owned(),
        namespace: parsed.namespace.map(|n| n.as_str().to_owned()),
        name: parsed.name.as_str().to_owned(),
        origin,
    })
}

fn from_file(path: &Path, default_ns: Option<&str>) -> anyhow::Result<Vec<Binding>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the env file {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(binding(
            line,
            default_ns,
            format!("{}:{}", path.display(), n + 1),
        )?);
    }
    Ok(out)
}

impl Binding {
    /// The namespace as events name it.
    fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or(Namespace::DEFAULT)
    }

    /// `namespace/name`, for messages.
    fn shown(&self) -> String {
        format!("{}/{}", self.namespace(), self.name)
    }

    /// Reads the value for the variable: the newest, or the version given.
    fn read(&self, client: &Client, version: Option<Version>) -> anyhow::Result<OsString> {
        let shown = self.shown();
        let value = client
            .get(self.namespace.as_deref(), &self.name, version)
            .with_context(|| {
                format!(
                    "cannot read secret {shown} for {} ({})",
                    self.var, self.origin
                )
            })?;
        if value.expose_secret().contains(&0) {
            bail!(
                "secret {shown} for {} holds a NUL byte, which no environment variable can carry",
                self.var
            );
        }
        Ok(OsString::from_vec(value.expose_secret().to_vec()))
    }
}

/// Reads every secret, then replaces this process with the command (or, with `--watch`,
/// supervises it).
pub fn run(
    client: &Client,
    args: RunArgs,
    core_limit: Option<coffer_core::CoreLimit>,
) -> anyhow::Result<()> {
    let ns = args.namespace.as_deref();
    let mut bindings = Vec::new();
    for file in &args.env_file {
        bindings.extend(from_file(file, ns)?);
    }
    for (i, e) in args.env.iter().enumerate() {
        bindings.push(binding(e, ns, format!("--env #{}", i + 1))?);
    }
    if args.watch {
        let exec = crate::supervise::Exec {
            command: args.command,
            reload_signal: args.reload_signal,
            stop_signal: args.stop_signal,
            stop_timeout: args.stop_timeout,
            splay: args.splay,
            pass_token: args.pass_token,
            core_limit,
        };
        let status = watch::run(client, &bindings, exec)?;
        crate::supervise::signals::exit_like(status);
    }
    let mut env = Vec::with_capacity(bindings.len());
    for b in &bindings {
        env.push((b.var.clone(), b.read(client, None)?));
    }
    let (program, rest) = args
        .command
        .split_first()
        .context("no command to run after --")?;
    // The command should dump core as it would have without coffer.
    if let Some(limit) = core_limit {
        let _ = limit.restore();
    }
    let mut command = std::process::Command::new(program);
    command.args(rest);
    if !args.pass_token {
        // The token let coffer read the secrets; the command gets the secrets it was given,
        // not the power to read others.
        for var in TOKEN_VARS {
            command.env_remove(var);
        }
    }
    let err = command.envs(env).exec();
    // exec returns only when it failed.
    bail!("cannot run {}: {err}", Path::new(program).display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let b = binding("DB=db/password", Some("acme"), "x".into()).unwrap();
        assert_eq!(
            (b.namespace.as_deref(), b.name.as_str()),
            (Some("acme"), "db/password")
        );
        let b = binding("DB=coffer://acme%2Fprod/db/password", None, "x".into()).unwrap();
        assert_eq!(
            (b.namespace.as_deref(), b.name.as_str()),
            (Some("acme/prod"), "db/password")
        );
        assert!(binding("1DB=x", None, "x".into()).is_err());
        assert!(binding("DB", None, "x".into()).is_err());
        assert!(binding("DB=coffer://onlyns", None, "x".into()).is_err());
        assert!(binding("DB=", None, "x".into()).is_err());
    }
}
