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

use super::secrets::parse_version;

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
