//! `coffer slots`: the key slots that open the store (DESIGN.md, Key hierarchy).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use coffer_client::{Client, NewSlot};
use coffer_types::SlotKind;

use super::table::Table;
use crate::input;

/// A kind of slot to add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SlotArg {
    /// A 32-byte key file (minted when the path does not exist)
    File,
    /// A passphrase (asked twice on a terminal, one line of standard input otherwise)
    Passphrase,
    /// A new recovery key, printed once on standard output
    Recovery,
    /// A node key sealed by the TPM to a PCR policy: opens at boot with no person present
    Tpm,
    /// A TPM-sealed node key and a passphrase, both needed
    #[value(name = "tpm+passphrase")]
    TpmPassphrase,
}

impl SlotArg {
    fn kind(self) -> SlotKind {
        match self {
            Self::File => SlotKind::File,
            Self::Passphrase => SlotKind::Passphrase,
            Self::Recovery => SlotKind::Recovery,
            Self::Tpm => SlotKind::Tpm,
            Self::TpmPassphrase => SlotKind::TpmPassphrase,
        }
    }
}

/// Slot verbs. Adding, removing and resealing need the store unsealed.
#[derive(Subcommand, Debug)]
pub enum SlotsCommand {
    /// List the slots: id, type, PCR policy or key file, creation time.
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Add a slot that opens the store. A recovery slot's key is printed once on standard
    /// output.
    Add {
        /// The kind of slot
        #[arg(value_enum)]
        kind: SlotArg,
        /// PCR policy of a TPM slot, e.g. sha256:0,2,7 [default: sha256:7]
        #[arg(long, value_name = "BANK:PCRS")]
        pcrs: Option<String>,
        /// The key file of a file slot (minted when it does not exist)
        #[arg(long, value_name = "PATH", required_if_eq("kind", "file"))]
        key_file: Option<PathBuf>,
    },
    /// Remove a slot. The last slot cannot be removed: the store could never open again.
    Remove {
        /// The slot's id, from `coffer slots list`
        id: u32,
    },
    /// Seal TPM slots to the PCRs' current values, after an intended change (a firmware or
    /// boot chain update). Without an id, every TPM slot is resealed.
    Reseal {
        /// One slot's id
        id: Option<u32>,
    },
}

/// Runs one verb.
pub fn run(client: &Client, command: SlotsCommand) -> anyhow::Result<()> {
    match command {
        SlotsCommand::List { json } => {
            let slots = client.slots()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&slots)?);
                return Ok(());
            }
            let mut table = Table::new(["ID", "TYPE", "PCRS", "CREATED", "KEY FILE", "NOTE"]);
            for s in slots {
                table.row([
                    s.id.to_string(),
                    s.kind.into_owned(),
                    s.pcrs.unwrap_or_else(|| "-".to_owned()),
                    s.created,
                    s.path.unwrap_or_else(|| "-".to_owned()),
                    s.note
                        .map_or_else(|| "-".to_owned(), |n| format!("unusable here: {n}")),
                ]);
            }
            table.print();
        }
        SlotsCommand::Add {
            kind,
            pcrs,
            key_file,
        } => add(client, kind, pcrs, key_file)?,
        SlotsCommand::Remove { id } => {
            client.remove_slot(id)?;
            eprintln!("removed slot {id}");
        }
        SlotsCommand::Reseal { id } => {
            let needs_passphrase = client
                .slots()?
                .iter()
                .any(|s| s.kind == "tpm+passphrase" && id.is_none_or(|i| i == s.id));
            let passphrase = needs_passphrase
                .then(|| {
                    input::line_secret("Passphrase of the tpm+passphrase slot (input hidden): ")
                })
                .transpose()?;
            let done = client.reseal(id, passphrase.as_ref())?;
            let list: Vec<String> = done.iter().map(u32::to_string).collect();
            eprintln!(
                "resealed slot{} {} to the PCRs' current values",
                if done.len() == 1 { "" } else { "s" },
                list.join(", ")
            );
        }
    }
    Ok(())
}

fn add(
    client: &Client,
    kind: SlotArg,
    pcrs: Option<String>,
    key_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    if pcrs.is_some() && !matches!(kind, SlotArg::Tpm | SlotArg::TpmPassphrase) {
        anyhow::bail!("--pcrs applies to tpm and tpm+passphrase slots only");
    }
    if key_file.is_some() && kind != SlotArg::File {
        anyhow::bail!("--key-file applies to file slots only");
    }
    // The daemon resolves paths in its own working directory: send an absolute one.
    let path = key_file
        .map(|p| std::path::absolute(&p).unwrap_or(p))
        .map(|p| p.display().to_string());
    let passphrase = match kind {
        SlotArg::Passphrase | SlotArg::TpmPassphrase => Some(input::new_passphrase()?),
        _ => None,
    };
    let added = client.add_slot(&NewSlot {
        kind: kind.kind(),
        pcrs: pcrs.as_deref(),
        path: path.as_deref(),
        passphrase: passphrase.as_ref(),
    })?;
    eprintln!("added {} slot {}", kind.kind().as_str(), added.id);
    if let Some(key) = added.recovery_key {
        eprintln!(
            "The recovery key follows on standard output. It is shown only this once: store it \
             offline."
        );
        let mut out = std::io::stdout().lock();
        out.write_all(key.expose_secret())
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush())
            .context("cannot write the recovery key to standard output")?;
    }
    Ok(())
}
