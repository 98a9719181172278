//! `coffer hmac`: a digest under a secret key, which never leaves the daemon.

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
