//! `coffer status`, `seal`, `unseal`.

use clap::Args;
use coffer_client::Client;
use coffer_types::wire::UnsealWith;

use crate::input;

/// Options of `coffer status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

/// Options of `coffer unseal`.
#[derive(Args, Debug)]
pub struct UnsealArgs {
    /// Use the recovery key shown at `coffer init`
    #[arg(long, conflicts_with_all = ["key_file", "tpm"])]
    recovery: bool,
    /// Have the daemon read its key file again (after fixing or restoring it)
    #[arg(long, conflicts_with = "tpm")]
    key_file: bool,
    /// Have the daemon ask its TPM again (after the PCRs were restored); a tpm+passphrase
    /// slot opens with the passphrase (the default)
    #[arg(long)]
    tpm: bool,
}

pub fn status(client: &Client, args: StatusArgs) -> anyhow::Result<()> {
    let report = client.status()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let field = |k: &str| report.get(k).and_then(|v| v.as_str()).unwrap_or("-");
    println!("state:      {}", field("state"));
    if let Some(reason) = report.get("reason").and_then(|v| v.as_str()) {
        println!("reason:     {reason}");
    }
    println!("version:    {}", field("version"));
    println!("backend:    {}", field("backend"));
    println!("store id:   {}", field("store_id"));
    println!("socket:     {}", client.socket().display());
    if let Some(n) = report.get("namespaces").and_then(|v| v.as_u64()) {
        println!("namespaces: {n}");
    }
    let tpm = &report["tpm"];
    match (tpm["present"].as_bool(), tpm["tcti"].as_str()) {
        (Some(true), Some(tcti)) => println!("tpm:        present ({tcti})"),
        _ => println!("tpm:        none"),
    }
    println!("slots:");
    for slot in report["slots"].as_array().into_iter().flatten() {
        let detail = match (slot["pcrs"].as_str(), slot["path"].as_str()) {
            (Some(pcrs), _) => format!("  PCR policy {pcrs}"),
            (None, Some(path)) => format!("  {path}"),
            (None, None) => String::new(),
        };
        println!(
            "  {:>3}  {:<14} created {}{detail}",
            slot["id"],
            slot["kind"].as_str().unwrap_or("?"),
            slot["created"].as_str().unwrap_or("?"),
        );
    }
    let cache = &report["cache"];
    println!(
        "cache:      {} entries, {} bytes, ttl {}s",
        cache["entries"], cache["bytes"], cache["ttl_seconds"]
    );
    let memory = &report["memory"];
    println!(
        "memory:     {} locked pages, {} lock refusals",
        memory["locked_pages"], memory["lock_refusals"]
    );
    Ok(())
}

pub fn seal(client: &Client) -> anyhow::Result<()> {
    client.seal()?;
    eprintln!("sealed: keys forgotten, cache flushed");
    Ok(())
}

pub fn unseal(client: &Client, args: UnsealArgs) -> anyhow::Result<()> {
    if args.key_file {
        client.unseal(UnsealWith::KeyFile, None)?;
    } else if args.tpm {
        client.unseal(UnsealWith::Tpm, None)?;
    } else if args.recovery {
        let key = input::line_secret("Recovery key (input hidden): ")?;
        client.unseal(UnsealWith::Recovery, Some(&key))?;
    } else {
        let passphrase = input::line_secret("Passphrase (input hidden): ")?;
        client.unseal(UnsealWith::Passphrase, Some(&passphrase))?;
    }
    eprintln!("unsealed");
    Ok(())
}
