//! `coffer audit`: verify the hash-chained audit log, compute the hash under which a name
//! appears in it, and follow it.
//!
//! `verify` asks the running daemon (which holds the checkpoint key) unless `--data-dir` or
//! `--audit-dir` is given; then it reads the files itself and opens the store's master key
//! the way the daemon does at start (a key file or TPM slot), or with the recovery key
//! (`--recovery`), to check the checkpoint.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use coffer_client::Client;
use coffer_core::{Vault, VaultOptions};
use coffer_store::{Backend, SqliteBackend};
use coffer_types::reply::AuditReport;
use coffer_types::wire::UnsealWith;

use super::json;
use crate::cmd::serve::dir_default;
use crate::config;
use crate::input;
use coffer_server::daemon::reach_tpm;

/// Audit verbs.
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the whole chain and its checkpoint; name the first bad record.
    Verify(VerifyArgs),
    /// Acknowledge what the daemon's audit check at start found missing: writes a MAC'd gap
    /// record naming it, after which the daemon serves again (needs sudo on sys/audit).
    Acknowledge,
    /// Print the hash under which a name (and/or a namespace) appears in the audit log.
    ///
    /// That is the first 32 hex digits of its HMAC under the audit key, which the lines of
    /// every file format carry: one grep finds the name in old and new files.
    Hash {
        /// The secret name
        name: Option<String>,
        /// The namespace
        #[arg(long, short = 'n')]
        namespace: Option<String>,
    },
    /// Print the last records and, with --follow, new ones as they are written.
    ///
    /// Each record is one JSON line with full field names and the time in ISO 8601, whatever
    /// the file format (docs/audit.md).
    Tail {
        #[command(flatten)]
        place: Place,
        /// How many of the last records to print first
        #[arg(long, short = 'n', default_value_t = 10)]
        lines: usize,
        /// Keep printing records as they are written (Ctrl-C to stop)
        #[arg(long, short = 'f')]
        follow: bool,
    },
}

/// Where the audit files are.
#[derive(Args, Debug)]
pub struct Place {
    /// The store's data directory (its audit log is DATA_DIR/audit)
    #[arg(
        long,
        env = "COFFER_DATA_DIR",
        hide_env_values = true,
        value_name = "DIR"
    )]
    data_dir: Option<PathBuf>,
    /// The audit directory, when it is not DATA_DIR/audit
    #[arg(
        long,
        env = "COFFER_AUDIT_DIR",
        hide_env_values = true,
        value_name = "DIR"
    )]
    audit_dir: Option<PathBuf>,
}

impl Place {
    fn audit_dir(&self) -> PathBuf {
        self.audit_dir.clone().unwrap_or_else(|| {
            dir_default(
                &self
                    .data_dir
                    .clone()
                    .unwrap_or_else(config::default_data_dir),
            )
        })
    }
}

/// Options of `coffer audit verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Verify the files of this data directory here, without the daemon
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Verify the files of this audit directory here (with --data-dir for the checkpoint key)
    #[arg(long, value_name = "DIR")]
    audit_dir: Option<PathBuf>,
    /// Open the master key with the recovery key (prompted) to check the checkpoint
    #[arg(long)]
    recovery: bool,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

/// Runs one verb; answers the exit status.
pub fn run(client: &Client, command: AuditCommand) -> anyhow::Result<std::process::ExitCode> {
    match command {
        AuditCommand::Verify(args) => verify(client, args),
        AuditCommand::Acknowledge => {
            match client.audit_acknowledge()? {
                Some(seq) => eprintln!(
                    "gap acknowledged: record {seq} of the audit log names what is missing; \
                     the daemon serves again"
                ),
                None => eprintln!("nothing to acknowledge: the audit log matches its checkpoint"),
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        AuditCommand::Hash { name, namespace } => {
            if name.is_none() && namespace.is_none() {
                bail!("give a name, --namespace, or both");
            }
            let hashes = client.audit_hash(name.as_deref(), namespace.as_deref())?;
            // The first 32 hex digits of the HMAC: what format-3 lines carry, and a prefix of
            // what format-2 lines carry, so one grep finds the name in every file.
            for h in [hashes.name, hashes.namespace].into_iter().flatten() {
                println!("{}", coffer_audit::record::short_name_hash(&h));
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        AuditCommand::Tail {
            place,
            lines,
            follow,
        } => {
            let dir = place.audit_dir();
            let stop = AtomicBool::new(false);
            let mut out = std::io::stdout().lock();
            coffer_audit::tail(&dir, lines, follow, &mut out, &stop)
                .with_context(|| format!("cannot read the audit log in {}", dir.display()))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

fn verify(client: &Client, args: VerifyArgs) -> anyhow::Result<std::process::ExitCode> {
    let report = if args.data_dir.is_none() && args.audit_dir.is_none() {
        if args.recovery {
            bail!("--recovery goes with --data-dir: the daemon checks its own log with its keys");
        }
        client.audit_verify()?
    } else {
        offline(&args)?
    };
    if args.json {
        json::print(&report)?;
    } else {
        println!(
            "{} records in {} file(s), last seq {}",
            report.records,
            report.files,
            report.last_seq.map_or("-".to_owned(), |s| s.to_string())
        );
        match report.checkpoint {
            Some(seq) => println!(
                "checkpoint: verified through record {seq}; {} record(s) written after it",
                report.unanchored
            ),
            None => println!("checkpoint: not checked (no key to check it with)"),
        }
        if let Some(counter) = &report.counter {
            println!("counter: {counter}");
        }
        if let Some(seq) = report.retained_from {
            println!(
                "retention: the log starts at record {seq} (older files removed by retention)"
            );
        }
        if report.unauthenticated > 0 {
            println!(
                "{} record(s) without a MAC (written while sealed, or in the first format)",
                report.unauthenticated
            );
        }
        for gap in &report.gaps {
            println!("{gap}");
        }
    }
    if let Some(problem) = &report.problem {
        eprintln!("coffer: the audit log is damaged: {problem}");
        return Ok(std::process::ExitCode::from(1));
    }
    if report.checkpoint.is_none() {
        eprintln!(
            "coffer: the chain is intact, but without the checkpoint a truncation cannot be \
             ruled out; give --data-dir of a store whose key file or TPM slot opens, or \
             --recovery"
        );
        return Ok(std::process::ExitCode::from(2));
    }
    if report.gaps.is_empty() {
        eprintln!("the audit log is intact");
    } else {
        eprintln!(
            "the audit log is intact apart from {} acknowledged gap(s)",
            report.gaps.len()
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn offline(args: &VerifyArgs) -> anyhow::Result<AuditReport> {
    let audit_dir = args.audit_dir.clone().unwrap_or_else(|| {
        dir_default(
            args.data_dir
                .as_deref()
                .unwrap_or(std::path::Path::new(".")),
        )
    });
    let keys = match &args.data_dir {
        Some(data) => master_keys(data, args.recovery)?,
        None => None,
    };
    let anchor = args
        .data_dir
        .as_ref()
        .map(|d| d.join(coffer_audit::ANCHOR_FILE));
    let report = coffer_audit::verify_anchored(&audit_dir, anchor.as_deref(), keys.as_ref())
        .with_context(|| format!("cannot read the audit log in {}", audit_dir.display()))?;
    Ok(report.to_reply())
}

/// Opens the store in `data` the way the daemon does at start, to derive the audit keys.
fn master_keys(
    data: &std::path::Path,
    recovery: bool,
) -> anyhow::Result<Option<coffer_crypto::AuditKeys>> {
    let db = data.join(coffer_core::datadir::DATABASE);
    if !db.exists() {
        bail!("{} holds no store", data.display());
    }
    let backend: Arc<dyn Backend> = Arc::new(
        SqliteBackend::open(&db).with_context(|| format!("cannot open {}", db.display()))?,
    );
    let tpm = reach_tpm(&config::resolve_tcti(None, None), data).unwrap_or(None);
    let vault = Vault::start(
        backend,
        VaultOptions {
            tpm,
            ..VaultOptions::default()
        },
    );
    if recovery && vault.audit_keys().is_none() {
        let key = input::line_secret("Recovery key (input hidden): ")?;
        vault
            .unseal(UnsealWith::Recovery, Some(key), true)
            .context("the recovery key did not open the store")?;
    }
    Ok(vault.audit_keys())
}
