//! `coffer hmac` and `coffer yescrypt`: values computed from a secret, which never leaves
//! the daemon.

use std::io::Read;

use anyhow::Context;
use clap::Args;
use coffer_client::Client;
use coffer_types::{DigestEncoding, HmacAlgorithm};

use super::secrets::Target;

/// Options of `coffer hmac`.
#[derive(Args, Debug)]
pub struct HmacArgs {
    #[command(flatten)]
    target: Target,
    /// sha256 or sha512
    #[arg(long, default_value = "sha256", value_parser = parse_algorithm)]
    algorithm: HmacAlgorithm,
    /// hex or base64
    #[arg(long, default_value = "hex", value_parser = parse_encoding)]
    encoding: DigestEncoding,
}

fn parse_algorithm(s: &str) -> Result<HmacAlgorithm, String> {
    s.parse()
        .map_err(|e: coffer_types::UnknownAlgorithm| e.to_string())
}

fn parse_encoding(s: &str) -> Result<DigestEncoding, String> {
    s.parse()
        .map_err(|e: coffer_types::UnknownDigestEncoding| e.to_string())
}

/// Reads the data from standard input and prints the digest.
pub fn hmac(client: &Client, args: HmacArgs) -> anyhow::Result<()> {
    let mut data = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut data)
        .context("cannot read standard input")?;
    let t = &args.target;
    let digest = client.hmac(
        t.namespace.as_deref(),
        &t.name,
        args.algorithm,
        &data,
        args.encoding,
    )?;
    println!("{digest}");
    Ok(())
}

/// Options of `coffer yescrypt`.
#[derive(Args, Debug)]
pub struct YescryptArgs {
    #[command(flatten)]
    target: Target,
    /// An earlier hash (or `$y$PARAMS$SALT`) whose parameters and salt to reuse: the same
    /// password then gives the same string back. Default: a fresh salt at libxcrypt's
    /// default cost (`$y$j9T$`).
    #[arg(long, value_name = "SETTING")]
    setting: Option<String>,
}

/// Prints the yescrypt hash of a password secret, as crypt(3) and `mkpasswd -m yescrypt`
/// write it.
pub fn yescrypt(client: &Client, args: YescryptArgs) -> anyhow::Result<()> {
    let t = &args.target;
    let hash = client.yescrypt(t.namespace.as_deref(), &t.name, args.setting.as_deref())?;
    println!("{hash}");
    Ok(())
}
