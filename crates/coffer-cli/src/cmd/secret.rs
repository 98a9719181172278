//! `coffer get`, `del`: the data-plane verbs over the socket (`coffer set` is
//! `coffer secrets set`).

use std::io::{IsTerminal, Write};

use anyhow::Context;
use clap::Args;
use coffer_client::Client;
use coffer_types::Version;

/// Options of `coffer get`.
#[derive(Args, Debug)]
#[command(disable_version_flag = true)]
pub struct GetArgs {
    /// The secret's name
    name: String,
    /// The namespace [default: default]
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// A version to read instead of the newest: a number, or `previous` (the version
    /// before the last scheduled rotation, during its grace period)
    #[arg(long, value_name = "N|previous", value_parser = parse_version_or_previous)]
    version: Option<Wanted>,
}

/// The version `coffer get` asks for.
#[derive(Debug, Clone, Copy)]
enum Wanted {
    Number(Version),
    Previous,
}

fn parse_version_or_previous(s: &str) -> Result<Wanted, String> {
    if s == "previous" {
        return Ok(Wanted::Previous);
    }
    parse_version(s)
        .map(Wanted::Number)
        .map_err(|e| format!("{e}, or `previous`"))
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

use super::secrets::parse_version;

pub fn get(client: &Client, args: GetArgs) -> anyhow::Result<()> {
    let ns = args.namespace.as_deref();
    let value = match args.version {
        Some(Wanted::Previous) => client.get_previous(ns, &args.name),
        Some(Wanted::Number(v)) => client.get(ns, &args.name, Some(v)),
        None => client.get(ns, &args.name, None),
    }
    .map_err(super::missing::named(ns, &args.name))?;
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
    client
        .del(args.namespace.as_deref(), &args.name)
        .map_err(super::missing::named(args.namespace.as_deref(), &args.name))?;
    eprintln!("deleted {}", args.name);
    Ok(())
}
