//! `coffer set`, `get`, `del`: the data-plane verbs over the socket.

use std::io::{IsTerminal, Write};

use anyhow::Context;
use clap::Args;
use coffer_client::Client;
use coffer_types::Version;

use crate::input;

/// Largest value `set` reads from standard input (the daemon enforces its own limit).
const MAX_INPUT: usize = 64 << 20;

/// Options of `coffer set`.
#[derive(Args, Debug)]
pub struct SetArgs {
    /// The secret's name, e.g. `stripe-api-key` or `db/main/password`
    name: String,
    /// The namespace [default: default]
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Keep a final newline read from standard input
    #[arg(long)]
    keep_newline: bool,
}

/// Options of `coffer get`.
#[derive(Args, Debug)]
#[command(disable_version_flag = true)]
pub struct GetArgs {
    /// The secret's name
    name: String,
    /// The namespace [default: default]
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// A version to read instead of the newest
    #[arg(long, value_name = "N", value_parser = parse_version)]
    version: Option<Version>,
}

/// Options of `coffer del`.
#[derive(Args, Debug)]
pub struct DelArgs {
    /// The secret's name
    name: String,
    /// The namespace [default: default]
    #[arg(long, short = 'n')]
    namespace: Option<String>,
}

fn parse_version(s: &str) -> Result<Version, String> {
    s.parse::<u32>()
        .ok()
        .and_then(Version::new)
        .ok_or_else(|| "versions are whole numbers from 1".to_owned())
}

pub fn set(client: &Client, args: SetArgs) -> anyhow::Result<()> {
    let value = input::value(&args.name, args.keep_newline, MAX_INPUT)?;
    let index = client.set(args.namespace.as_deref(), &args.name, &value, None)?;
    eprintln!("stored {} (index {index})", args.name);
    Ok(())
}

pub fn get(client: &Client, args: GetArgs) -> anyhow::Result<()> {
    let value = client.get(args.namespace.as_deref(), &args.name, args.version)?;
    let mut out = std::io::stdout().lock();
    out.write_all(value.expose_secret())
        .context("cannot write to standard output")?;
    if out.is_terminal() {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

pub fn del(client: &Client, args: DelArgs) -> anyhow::Result<()> {
    client.del(args.namespace.as_deref(), &args.name)?;
    eprintln!("deleted {}", args.name);
    Ok(())
}
