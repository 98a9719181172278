//! `coffer backup`, `coffer backup verify` and `coffer restore` (docs/operations.md, "Backup
//! and disaster recovery").
//!
//! A backup is made by the daemon over its socket (`sudo` on `sys/backup`, audited), or with
//! `--data-dir` from the data directory of a stopped daemon. It is an age file: what opens
//! it is the age identity (or passphrase) AND one of the store's own slots (the recovery
//! key, a key file or a passphrase), which `verify` and `restore` ask for.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use coffer_client::{BackupTo, Client};
use coffer_core::backup::{self, Identity, Recipients, Unlock, Verified};
use coffer_core::datadir::DataDir;
use coffer_core::{Vault, VaultOptions};
use coffer_crypto::SecretBytes;
use coffer_server::daemon::{open_backend, reach_tpm};
use coffer_types::wire::UnsealWith;

use crate::cmd::serve::store_kind;
use crate::config::{self, StoreKind};
use crate::input;

/// `coffer backup`: make a backup (or check one with `verify`).
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    command: Option<BackupCommand>,
    #[command(flatten)]
    make: MakeArgs,
}

#[derive(clap::Subcommand, Debug)]
enum BackupCommand {
    /// Check a backup without restoring it: the age layer, every record, the counts, the
    /// hash and the manifest's MAC (which needs one of the store's slots)
    Verify(VerifyArgs),
}

/// Making a backup.
#[derive(clap::Args, Debug)]
struct MakeArgs {
    /// Where to write the backup (an age file; written beside it, then renamed)
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// An age recipient (age1...) to encrypt to; repeat for several
    #[arg(long = "recipient", value_name = "AGE1...")]
    recipients: Vec<String>,
    /// A file of age recipients, one per line (# comments)
    #[arg(long, value_name = "FILE")]
    recipients_file: Option<PathBuf>,
    /// Encrypt to a passphrase instead (age's scrypt recipient; prompted twice, or one line of standard input); then the only recipient
    #[arg(long, conflicts_with_all = ["recipients", "recipients_file"])]
    passphrase: bool,
    /// Read that passphrase from this file
    #[arg(long, value_name = "FILE", conflicts_with_all = ["recipients", "recipients_file"])]
    passphrase_file: Option<PathBuf>,
    /// Back up this data directory of a STOPPED daemon directly (default: through the running daemon's socket)
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// With --data-dir: the key file of the store's file slot [default: the path recorded in the slot]
    #[arg(long, value_name = "FILE", requires = "data_dir")]
    key_file: Option<PathBuf>,
    /// With --data-dir: open the store with its recovery key (prompted)
    #[arg(long, requires = "data_dir")]
    recovery: bool,
    /// With --data-dir: read the recovery key from this file
    #[arg(
        long,
        value_name = "FILE",
        requires = "data_dir",
        conflicts_with = "recovery"
    )]
    recovery_file: Option<PathBuf>,
    /// With --data-dir: the TPM's TCTI; `none` for no TPM [default: device:/dev/tpmrm0 when it exists]
    #[arg(long, value_name = "TCTI", requires = "data_dir")]
    tpm_tcti: Option<String>,
    /// With --data-dir: where the store keeps its secrets [default: sqlite]
    #[arg(long, value_enum, value_name = "STORE", requires = "data_dir")]
    store: Option<StoreKind>,
}

/// One of the store's slots, to check a backup's MAC (and open a restored store).
#[derive(clap::Args, Debug)]
struct SlotArgs {
    /// The store's recovery key (prompted, input hidden)
    #[arg(long)]
    recovery: bool,
    /// Read the recovery key from this file
    #[arg(long, value_name = "FILE")]
    recovery_file: Option<PathBuf>,
    /// The key file of the store's file slot
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// A passphrase of the store's passphrase slot (prompted, input hidden)
    #[arg(long)]
    passphrase: bool,
    /// Read that passphrase from this file
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// The age identity file the backup was encrypted to (AGE-SECRET-KEY-1...)
    #[arg(long, value_name = "KEYFILE")]
    identity: Option<PathBuf>,
    /// For a backup encrypted to a passphrase: read it from this file (else it is prompted)
    #[arg(long, value_name = "FILE")]
    backup_passphrase_file: Option<PathBuf>,
}

/// `coffer backup verify`.
#[derive(clap::Args, Debug)]
struct VerifyArgs {
    /// The backup file
    file: PathBuf,
    #[command(flatten)]
    slot: SlotArgs,
}

/// `coffer restore`: a backup into a new data directory.
#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// The backup file
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    /// The data directory to restore into: missing or empty
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    #[command(flatten)]
    slot: SlotArgs,
}

/// Reports progress on standard error when it is a terminal, once a second at most and only
/// after the first second (small stores print nothing).
struct Progress {
    on: bool,
    started: Instant,
    last: Instant,
    shown: bool,
}

impl Progress {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            on: std::io::stderr().is_terminal(),
            started: now,
            last: now,
            shown: false,
        }
    }

    fn report(&mut self, what: impl FnOnce() -> String) {
        if !self.on || self.started.elapsed() < Duration::from_secs(1) {
            return;
        }
        if self.last.elapsed() >= Duration::from_millis(500) || !self.shown {
            eprint!("\r{}\x1b[K", what());
            self.last = Instant::now();
            self.shown = true;
        }
    }

    fn done(&self) {
        if self.shown {
            eprintln!();
        }
    }
}

fn read_secret_file(path: &Path, what: &str) -> anyhow::Result<SecretBytes> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    let bytes = SecretBytes::from_vec(bytes);
    Ok(SecretBytes::copy_from(
        bytes.expose_secret().trim_ascii_end(),
    ))
}

fn recipients(args: &MakeArgs) -> anyhow::Result<Recipients> {
    if args.passphrase || args.passphrase_file.is_some() {
        let p = match &args.passphrase_file {
            Some(f) => read_secret_file(f, "passphrase")?,
            None => input::new_passphrase()?,
        };
        return Ok(Recipients::passphrase(&p)?);
    }
    let mut keys = args.recipients.clone();
    if let Some(f) = &args.recipients_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the recipients file {}", f.display()))?;
        keys.extend(Recipients::lines(&text));
    }
    if keys.is_empty() {
        bail!("give --recipient age1... (or --recipients-file, or --passphrase)");
    }
    Ok(Recipients::parse(&keys)?)
}

/// `coffer backup`.
pub fn run(
    client: impl FnOnce() -> anyhow::Result<Client>,
    args: BackupArgs,
) -> anyhow::Result<()> {
    if let Some(BackupCommand::Verify(v)) = args.command {
        return verify(v);
    }
    let args = args.make;
    let Some(out) = args.out.clone() else {
        bail!("give --out FILE (or `coffer backup verify FILE`)");
    };
    let to = recipients(&args)?;
    let mut progress = Progress::new();
    let started = Instant::now();
    let (summary, bytes) = match &args.data_dir {
        Some(dir) => offline(&args, dir, &to, &out, &mut progress)?,
        None => {
            let client = client()?;
            let (keys, passphrase) = to.to_wire();
            let target = match &passphrase {
                Some(p) => BackupTo::Passphrase(p),
                None => BackupTo::Recipients(&keys),
            };
            let (done, bytes) = backup::atomic_file(&out, |w| -> anyhow::Result<_> {
                Ok(client.backup(target, w, &mut |n| {
                    progress.report(|| format!("backup: {} MiB received", n >> 20));
                })?)
            })?;
            let counts = &done.counts;
            (
                format!(
                    "{} secrets, {} versions, {} namespaces of store {}",
                    counts["secrets"], counts["versions"], counts["namespaces"], done.store_id
                ),
                bytes,
            )
        }
    };
    progress.done();
    eprintln!(
        "backup written to {} ({bytes} bytes, {summary}) in {:.1} s",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A backup of a stopped daemon's data directory.
fn offline(
    args: &MakeArgs,
    data_dir: &Path,
    to: &Recipients,
    out: &Path,
    progress: &mut Progress,
) -> anyhow::Result<(String, u64)> {
    let dir = DataDir::lock(data_dir).context(
        "a running daemon holds this data directory: back it up through the daemon (without \
         --data-dir)",
    )?;
    let kind = args.store.unwrap_or_default();
    if kind == StoreKind::Postgres {
        bail!(
            "a PostgreSQL store is backed up through a running hub: `coffer backup` without \
             --data-dir (docs/hubs.md)"
        );
    }
    if kind == StoreKind::Sqlite && !dir.database().exists() {
        bail!("{} holds no store", data_dir.display());
    }
    let tpm = reach_tpm(
        &config::resolve_tcti(args.tpm_tcti.clone(), None),
        dir.root(),
    )?;
    let backend = open_backend(store_kind(kind), &dir, tpm.as_ref(), true, None)?;
    let vault = Vault::start(
        backend,
        VaultOptions {
            key_file: args.key_file.clone(),
            tpm,
            first_boot: None,
        },
    );
    if vault.store().is_err() {
        let key = match (&args.recovery_file, args.recovery) {
            (Some(f), _) => Some(read_secret_file(f, "recovery key")?),
            (None, true) => Some(input::line_secret("Recovery key (input hidden): ")?),
            (None, false) => None,
        };
        match key {
            Some(key) => vault.unseal(UnsealWith::Recovery, Some(key), true)?,
            None => {
                vault.store().context(
                    "the store did not open with its TPM or key file: give --key-file or \
                     --recovery",
                )?;
            }
        }
    }
    let written = vault.backup_to_file(to, out, Some(dir.root()), &mut |rows| {
        progress.report(|| format!("backup: {rows} records written"));
    })?;
    let c = written.manifest.counts;
    Ok((
        format!(
            "{} secrets, {} versions, {} namespaces of store {}",
            c.secrets, c.versions, c.namespaces, written.manifest.store_id
        ),
        written.bytes,
    ))
}

/// What opens the age layer and the slot, from the command line.
fn opener(file: &Path, slot: &SlotArgs) -> anyhow::Result<(Identity, Unlock)> {
    let given = [
        slot.recovery,
        slot.recovery_file.is_some(),
        slot.key_file.is_some(),
        slot.passphrase,
        slot.passphrase_file.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given != 1 {
        bail!(
            "give ONE of the store's slots to check the backup's MAC: --recovery (or \
             --recovery-file), --key-file or --passphrase (or --passphrase-file)"
        );
    }
    let scrypt = backup::crypt::is_passphrase(
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
    )?;
    let identity = match (&slot.identity, scrypt) {
        (Some(path), false) => Identity::from_file(path)?,
        (None, false) => {
            bail!("give --identity KEYFILE: the age identity the backup was encrypted to")
        }
        (_, true) => {
            let p = match &slot.backup_passphrase_file {
                Some(f) => read_secret_file(f, "backup passphrase")?,
                None => input::line_secret("Backup passphrase (input hidden): ")?,
            };
            Identity::passphrase(&p)?
        }
    };
    let unlock = if slot.recovery || slot.recovery_file.is_some() {
        let key = match &slot.recovery_file {
            Some(f) => read_secret_file(f, "recovery key")?,
            None => input::line_secret("Recovery key (input hidden): ")?,
        };
        Unlock {
            with: UnsealWith::Recovery,
            key: Some(key),
            key_file: None,
        }
    } else if let Some(k) = &slot.key_file {
        Unlock {
            with: UnsealWith::KeyFile,
            key: None,
            key_file: Some(k.clone()),
        }
    } else {
        let key = match &slot.passphrase_file {
            Some(f) => read_secret_file(f, "passphrase")?,
            None => input::line_secret("Passphrase (input hidden): ")?,
        };
        Unlock {
            with: UnsealWith::Passphrase,
            key: Some(key),
            key_file: None,
        }
    };
    Ok((identity, unlock))
}

fn describe(v: &Verified) -> String {
    let c = v.manifest.counts;
    let made = coffer_types::Timestamp::from_millis(v.manifest.created_ms);
    format!(
        "store {}, made {made} by coffer {}: {} namespaces, {} secrets, {} versions, event \
         revision kept{}",
        v.manifest.store_id,
        v.manifest.coffer_version,
        c.namespaces,
        c.secrets,
        c.versions,
        if v.audit_anchor.is_some() {
            ", audit anchor"
        } else {
            ""
        }
    )
}

fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let (identity, unlock) = opener(&args.file, &args.slot)?;
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let mut progress = Progress::new();
    let verified = backup::Rows::open(
        std::io::BufReader::new(file),
        &identity,
        &unlock,
        &mut |n| progress.report(|| format!("verify: {n} records checked")),
    )?
    .verify()?;
    progress.done();
    println!("ok: {}", describe(&verified));
    Ok(())
}

/// `coffer restore`.
pub fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let (identity, unlock) = opener(&args.from, &args.slot)?;
    let from = args.from.clone();
    let open = move || -> Result<Box<dyn std::io::Read>, coffer_core::CoreError> {
        let f = std::fs::File::open(&from).map_err(|e| {
            coffer_core::CoreError::Unavailable(format!("cannot open {}: {e}", from.display()))
        })?;
        Ok(Box::new(std::io::BufReader::new(f)))
    };
    let mut progress = Progress::new();
    let started = Instant::now();
    let verified = backup::restore(
        &open,
        &identity,
        &unlock,
        &args.data_dir,
        &mut |stage, n| {
            progress.report(|| format!("restore: {n} records {stage}"));
        },
    )?;
    progress.done();
    eprintln!(
        "restored {} into {} in {:.1} s; start it with `coffer serve --data-dir {}` and open it \
         with `coffer unseal --recovery` (or its key file or passphrase); bind it to this \
         machine's TPM with `coffer slots add tpm`",
        describe(&verified),
        args.data_dir.display(),
        started.elapsed().as_secs_f64(),
        args.data_dir.display()
    );
    Ok(())
}
