//! `coffer config check`: the settings `coffer serve` would run with, resolved the same way
//! (its flags, their `COFFER_*` variables, the configuration file, the defaults) and checked
//! the same way, without starting a daemon; with where each one came from.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::serve::ServeArgs;
use crate::config::SYSTEM_CONFIG;

/// `coffer config` verbs.
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Check the settings `coffer serve` would run with (give it the same flags; its
    /// variables and file count as for serve), print them and where each came from, and
    /// refuse what serve would refuse (unknown keys, bad values) with the same message
    Check(Box<CheckArgs>),
}

/// Options of `coffer config check`: those of `coffer serve`, and `--json`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Print where each setting came from as JSON (the resolved settings stay text)
    #[arg(long)]
    json: bool,
}

/// Runs a `coffer config` verb.
pub fn run(socket: Option<PathBuf>, command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Check(args) => check(socket, *args),
    }
}

fn check(socket: Option<PathBuf>, args: CheckArgs) -> anyhow::Result<()> {
    let file = match &args.serve.config {
        Some(path) => Some(path.clone()),
        None if Path::new(SYSTEM_CONFIG).exists() => Some(PathBuf::from(SYSTEM_CONFIG)),
        None => None,
    };
    let file_keys = match &file {
        Some(path) => keys_of(path)?,
        None => Vec::new(),
    };
    // Names only: a variable such as COFFER_TOKEN holds a credential.
    let mut variables: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k.starts_with("COFFER_"))
        .collect();
    variables.sort();
    let resolved = super::serve::resolve(socket, args.serve)?;
    if args.json {
        let report = serde_json::json!({
            "ok": true,
            "file": file,
            "file_keys": file_keys,
            "variables": variables,
        });
        println!("{report:#}");
        return Ok(());
    }
    match &file {
        Some(path) => println!(
            "file:      {} (keys: {})",
            path.display(),
            file_keys.join(", ")
        ),
        None => println!("file:      none ({SYSTEM_CONFIG} does not exist; --config names one)"),
    }
    if variables.is_empty() {
        println!("variables: none");
    } else {
        println!("variables: {}", variables.join(", "));
    }
    println!(
        "a flag wins over its variable, which wins over the file, which wins over the \
         default; settings in effect:"
    );
    println!("{resolved:#?}");
    Ok(())
}

/// The top-level keys (and section names) of the TOML file at `path`.
fn keys_of(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .with_context(|| format!("configuration file {} is invalid", path.display()))?;
    Ok(table.keys().cloned().collect())
}
