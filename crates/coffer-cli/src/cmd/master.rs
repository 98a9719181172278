//! `coffer rotate-master`: replace the store's master key.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use coffer_client::Client;
use coffer_crypto::SecretBytes;

use crate::input;

/// `coffer rotate-master`.
#[derive(Args, Debug)]
pub struct RotateMasterArgs {
    /// Read the passphrases of the passphrase (and tpm+passphrase) slots from this file,
    /// one a line; may be given more than once. Without it each is asked for (input hidden;
    /// one line of standard input each when it is not a terminal)
    #[arg(long, value_name = "FILE")]
    passphrase_file: Vec<PathBuf>,
    /// Drop the passphrase slots whose passphrase is not given, instead of refusing:
    /// a passphrase slot cannot be re-wrapped without its passphrase
    #[arg(long)]
    drop_passphrase_slots: bool,
}

/// The passphrases of the store's passphrase slots, from files or asked for.
fn passphrases(client: &Client, args: &RotateMasterArgs) -> anyhow::Result<Vec<SecretBytes>> {
    let mut out = Vec::new();
    for path in &args.passphrase_file {
        let text = SecretBytes::from_vec(
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        );
        for line in text.expose_secret().split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !line.is_empty() {
                out.push(SecretBytes::copy_from(line));
            }
        }
    }
    if !args.passphrase_file.is_empty() || args.drop_passphrase_slots {
        return Ok(out);
    }
    for slot in client.slots()? {
        if slot.kind == "passphrase" || slot.kind == "tpm+passphrase" {
            out.push(input::line_secret(&format!(
                "Passphrase of {} slot {} (input hidden): ",
                slot.kind, slot.id
            ))?);
        }
    }
    Ok(out)
}

/// Replaces the master key; prints the new recovery key once on standard output.
pub fn run(client: &Client, args: RotateMasterArgs) -> anyhow::Result<()> {
    let given = passphrases(client, &args)?;
    let (recovery, dropped) = client.rotate_master(&given, args.drop_passphrase_slots)?;
    for id in &dropped {
        eprintln!("dropped passphrase slot {id}: its passphrase was not given");
    }
    eprintln!(
        "replaced the master key: every slot and namespace key is wrapped under the new one; \
         an old slot's secret (an old recovery key) opens nothing any more"
    );
    if let Some(key) = recovery {
        eprintln!(
            "The NEW recovery key follows on standard output (the old one no longer opens the \
             store). It is shown only this once: store it offline."
        );
        let mut out = std::io::stdout().lock();
        out.write_all(key.expose_secret())
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush())
            .context("cannot write the recovery key to standard output")?;
    }
    Ok(())
}
