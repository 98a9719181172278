//! `coffer init`: a new store with its first slot and a recovery key (reference 004, section 1).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use coffer_core::bootstrap::{self, FirstSlot};
use coffer_core::datadir::DataDir;
use coffer_store::{Backend, SqliteBackend, StoreHeader};

use crate::config::{self, FileConfig};
use crate::input;

/// The first slot of a new store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SlotChoice {
    /// A 32-byte key file (opens the store at every start with no person present).
    File,
    /// A passphrase (the store starts sealed; `coffer unseal` opens it).
    Passphrase,
}

/// Options of `coffer init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Where the store lives [default: /var/lib/coffer as root, $XDG_DATA_HOME/coffer otherwise]
    #[arg(
        long,
        env = "COFFER_DATA_DIR",
        hide_env_values = true,
        value_name = "DIR"
    )]
    data_dir: Option<PathBuf>,
    /// The first key slot; a recovery slot is always added
    #[arg(long, value_enum, default_value_t = SlotChoice::File)]
    slot: SlotChoice,
    /// Where the key file goes, for --slot file [default: DATA_DIR/coffer.key]
    #[arg(long, value_name = "PATH")]
    key_file: Option<PathBuf>,
    /// Destroy an existing store or key file and start over (asks you to type 'overwrite')
    #[arg(long)]
    force: bool,
    /// TOML configuration file (its argon2 table sets the cost of a passphrase slot)
    #[arg(
        long,
        env = "COFFER_CONFIG",
        hide_env_values = true,
        value_name = "FILE"
    )]
    config: Option<PathBuf>,
}

pub fn run(args: InitArgs) -> anyhow::Result<()> {
    let file = FileConfig::load(args.config.as_deref())?;
    let data_dir = args.data_dir.unwrap_or_else(config::default_data_dir);
    let dir = DataDir::lock(&data_dir)
        .context("a running daemon holds this data directory; stop it before initializing")?;
    let key_file = args.key_file.unwrap_or_else(|| dir.default_key_file());
    if key_file.is_dir() {
        bail!(
            "--key-file {} is a directory; give a file path such as {}",
            key_file.display(),
            key_file.join("coffer.key").display()
        );
    }
    let existing_store = {
        let backend = SqliteBackend::open(&dir.database())?;
        StoreHeader::load(&backend)?.is_some()
    };
    let existing_key = args.slot == SlotChoice::File && key_file.exists();
    if existing_store || existing_key {
        let what = if existing_store {
            format!("{} already holds a coffer store", dir.root().display())
        } else {
            format!("the key file {} already exists", key_file.display())
        };
        if !args.force {
            bail!(
                "{what}; refusing to overwrite it. Re-initializing makes every secret stored \
                 under the old key unreadable. Pass --force to do it anyway"
            );
        }
        if !input::confirm(
            &format!("{what}. Re-initializing destroys access to every secret stored under it."),
            "overwrite",
        )? {
            bail!("not confirmed; nothing was changed");
        }
        dir.remove_database()?;
        if existing_key {
            std::fs::remove_file(&key_file)
                .with_context(|| format!("cannot remove {}", key_file.display()))?;
        }
    }
    let first = match args.slot {
        SlotChoice::File => FirstSlot::KeyFile(key_file.clone()),
        SlotChoice::Passphrase => FirstSlot::Passphrase {
            passphrase: input::new_passphrase()?,
            argon2: config::argon2_params(&file)?,
        },
    };
    let backend: Arc<dyn Backend> = Arc::new(SqliteBackend::open(&dir.database())?);
    let made = bootstrap::initialize(backend, first, true)?;
    let recovery = made
        .recovery
        .context("initialization made no recovery key")?
        .display();
    match args.slot {
        SlotChoice::File => eprintln!(
            "Initialized a coffer store in {} with a key file slot ({}) and a recovery slot.\n\
             Back up the key file apart from the data directory.",
            dir.root().display(),
            std::path::absolute(&key_file).unwrap_or(key_file).display()
        ),
        SlotChoice::Passphrase => eprintln!(
            "Initialized a coffer store in {} with a passphrase slot and a recovery slot.\n\
             The daemon will start sealed; open it with `coffer unseal`.",
            dir.root().display()
        ),
    }
    eprintln!(
        "The recovery key follows on standard output. It is shown only this once: store it \
         offline. With it, `coffer unseal --recovery` opens the store when every other slot is lost."
    );
    let mut out = std::io::stdout().lock();
    out.write_all(recovery.expose_secret())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .context("cannot write the recovery key to standard output")?;
    Ok(())
}
