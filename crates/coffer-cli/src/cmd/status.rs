//! `coffer status`, `seal`, `unseal`.

use clap::Args;
use coffer_client::Client;
use coffer_types::reply::SealState;
use coffer_types::wire::UnsealWith;

use super::json;
use crate::input;

/// Options of `coffer status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
    /// Wait up to DURATION (e.g. 30s) for the daemon to answer, for scripts that have just
    /// started it: `coffer serve & coffer status --wait 30s`
    #[arg(long, value_name = "DURATION", value_parser = crate::config::parse_duration)]
    wait: Option<std::time::Duration>,
}

/// Asks for the status until the daemon answers or `limit` has passed: only "cannot reach"
/// is waited out; a daemon that answers with a refusal is an answer.
fn wait_for(
    client: &Client,
    limit: std::time::Duration,
) -> Result<coffer_types::reply::StatusReport, coffer_client::ClientError> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        match client.status() {
            Err(coffer_client::ClientError::Connect { .. })
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// The fleet's lines of `status`: a hub's listener and nodes, a node's hub and last sync.
fn fleet(f: &coffer_types::reply::FleetFacts) {
    if f.role == "hub" {
        println!(
            "fleet:      hub on {}, {} node(s) connected",
            f.listen.as_deref().unwrap_or("-"),
            f.nodes_connected.unwrap_or(0)
        );
        return;
    }
    println!(
        "fleet:      node {}, {}",
        f.node.as_deref().unwrap_or("(not enrolled yet)"),
        match &f.hub {
            Some(hub) => format!("connected to {hub}"),
            None => "no hub reachable; serving its last copy".to_owned(),
        }
    );
    match f.last_sync_age_seconds {
        Some(age) => println!(
            "last sync:  {} ago (revision {})",
            uptime(age),
            f.revision.unwrap_or(0)
        ),
        None => println!("last sync:  never"),
    }
}

/// `3d 4h 5m 6s`, the largest units first, zeros left out.
fn uptime(secs: u64) -> String {
    let parts = [
        (secs / 86_400, "d"),
        (secs / 3600 % 24, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
    ];
    let shown: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    if shown.is_empty() {
        "0s".to_owned()
    } else {
        shown.join(" ")
    }
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
    let report = match args.wait {
        Some(limit) => wait_for(client, limit)?,
        None => client.status()?,
    };
    if args.json {
        return json::print(&report);
    }
    let state = match report.state {
        SealState::Unsealed => "unsealed",
        SealState::Sealed => "sealed",
        SealState::Unavailable => "unavailable",
    };
    println!("state:      {state}");
    if let Some(reason) = &report.reason {
        println!("reason:     {reason}");
    }
    println!("version:    {}", report.version);
    println!("backend:    {}", report.backend);
    println!("store id:   {}", report.store_id.as_deref().unwrap_or("-"));
    println!("socket:     {}", client.socket().display());
    if let Some(d) = &report.daemon {
        println!("data dir:   {}", d.data_dir);
        println!("listening:  {}", d.listeners.join(", "));
        println!("audit:      {}", d.audit);
        println!("policies:   {}", d.policies);
        println!("uptime:     {}", uptime(d.uptime_seconds));
        if let Some(n) = d.secrets {
            println!("secrets:    {n}");
        }
        if let Some(f) = &d.fleet {
            fleet(f);
        }
    }
    if let Some(n) = report.namespaces {
        println!("namespaces: {n}");
    }
    for r in &report.key_rotations {
        println!(
            "key rotation: {} to generation {}: {}/{} versions",
            r.namespace, r.key_version, r.done, r.total
        );
    }
    match (report.tpm.present, &report.tpm.tcti) {
        (true, Some(tcti)) => println!("tpm:        present ({tcti})"),
        (true, None) => println!("tpm:        present"),
        (false, _) => println!("tpm:        none"),
    }
    println!("slots:");
    for slot in &report.slots {
        let mut detail = match (&slot.pcrs, &slot.path) {
            (Some(pcrs), _) => format!("  PCR policy {pcrs}"),
            (None, Some(path)) => format!("  {path}"),
            (None, None) => String::new(),
        };
        if let Some(note) = &slot.note {
            detail.push_str(&format!("  (unusable here: {note})"));
        }
        // The id unpadded, as this line has always printed it.
        println!(
            "  {}  {:<14} created {}{detail}",
            slot.id, slot.kind, slot.created,
        );
    }
    let cache = &report.cache;
    println!(
        "cache:      {} entries, {} bytes, ttl {}s",
        cache.entries, cache.bytes, cache.ttl_seconds
    );
    let memory = &report.memory;
    println!(
        "memory:     {} locked pages, {} lock refusals",
        memory.locked_pages, memory.lock_refusals
    );
    if report.detail_withheld {
        println!(
            "details:    withheld (store id, key-file paths, TPM, reasons: they need `meta` on \
             sys/status)"
        );
    }
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
