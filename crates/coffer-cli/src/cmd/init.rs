//! `coffer init`: a new store with its first slot and a recovery key (reference 004, section 1).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use coffer_core::NewSlot;
use coffer_core::bootstrap;
use coffer_core::datadir::DataDir;
use coffer_store::StoreHeader;
use coffer_tpm::PcrPolicy;

use crate::cmd::serve::store_kind;
use crate::config::{self, FileConfig, StoreKind};
use crate::input;
use coffer_server::daemon::TpmChoice;
use coffer_server::daemon::{open_backend, reach_tpm};

/// The first slot of a new store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SlotChoice {
    /// A 32-byte key file (opens the store at every start with no person present).
    File,
    /// A passphrase (the store starts sealed; `coffer unseal` opens it).
    Passphrase,
    /// A node key sealed by the TPM to a PCR policy: opens at every boot with no person
    /// present, and never on another machine or after a change to the measured boot chain.
    Tpm,
    /// A TPM-sealed node key and a passphrase: both are needed to open the store.
    #[value(name = "tpm+passphrase")]
    TpmPassphrase,
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
    /// PCR policy of a TPM slot: a bank and PCR numbers, e.g. sha256:0,2,7 [default: sha256:7]
    #[arg(long, value_name = "BANK:PCRS", value_parser = config::parse_pcrs)]
    pcrs: Option<PcrPolicy>,
    /// The TPM's TCTI, e.g. swtpm:host=127.0.0.1,port=2321 [default: device:/dev/tpmrm0]
    #[arg(
        long,
        env = "COFFER_TPM_TCTI",
        hide_env_values = true,
        value_name = "TCTI"
    )]
    tpm_tcti: Option<String>,
    /// Where secrets are kept: sqlite in the data directory, tpm-nv in the TPM's NV indices, or postgres (--database-url)
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite, value_name = "STORE")]
    store: StoreKind,
    #[command(flatten)]
    database: crate::database::DatabaseArgs,
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

fn where_(store: StoreKind, dir: &DataDir) -> String {
    match store {
        StoreKind::Sqlite => dir.root().display().to_string(),
        StoreKind::TpmNv => "the TPM's NV".to_owned(),
        StoreKind::Postgres => "the PostgreSQL database".to_owned(),
    }
}

pub fn run(args: InitArgs) -> anyhow::Result<()> {
    let file = FileConfig::load(args.config.as_deref())?;
    let uses_tpm = matches!(args.slot, SlotChoice::Tpm | SlotChoice::TpmPassphrase);
    if args.pcrs.is_some() && !uses_tpm {
        bail!("--pcrs applies to --slot tpm and --slot tpm+passphrase only");
    }
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
    let tpm = if uses_tpm || args.store == StoreKind::TpmNv {
        let tcti = match config::resolve_tcti(args.tpm_tcti, None) {
            TpmChoice::Off => bail!(
                "no TPM is reachable: {} does not exist and COFFER_TPM_TCTI is not set \
                 (give --tpm-tcti, or choose --slot file or passphrase)",
                coffer_tpm::DEVICE
            ),
            TpmChoice::Required(t) | TpmChoice::Optional(t) => TpmChoice::Required(t),
        };
        reach_tpm(&tcti, dir.root())?
    } else {
        None
    };
    let database = crate::database::resolve(
        args.store == StoreKind::Postgres,
        args.database,
        file.database_file(),
        &data_dir,
    )?;
    let backend = open_backend(
        store_kind(args.store),
        &dir,
        tpm.as_ref(),
        false,
        database.as_ref(),
    )?;
    let existing_store = StoreHeader::load(backend.as_ref())?.is_some();
    if existing_store && args.store == StoreKind::Postgres {
        bail!(
            "the database already holds a coffer store. Another hub serves it with `coffer \
             serve --store postgres` and a slot of its own: a copy of the key file \
             (--key-file), or a slot added with `coffer slots add` on a hub that is unsealed. \
             To start over, drop and re-create the database first"
        );
    }
    if existing_store && args.store == StoreKind::TpmNv {
        bail!(
            "the TPM's NV already holds a coffer store; re-initializing it in place is not \
             supported. Delete its secrets and undefine its indices (or clear the TPM), then \
             run init again"
        );
    }
    let existing_key = args.slot == SlotChoice::File && key_file.exists();
    drop(backend);
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
    let pcrs = args.pcrs.unwrap_or_default();
    let first = match args.slot {
        SlotChoice::File => NewSlot::KeyFile(key_file.clone()),
        SlotChoice::Passphrase => NewSlot::Passphrase {
            passphrase: input::new_passphrase()?,
            argon2: config::argon2_params(&file)?,
        },
        SlotChoice::Tpm => NewSlot::Tpm { pcrs: pcrs.clone() },
        SlotChoice::TpmPassphrase => NewSlot::TpmPassphrase {
            pcrs: pcrs.clone(),
            passphrase: input::new_passphrase()?,
            argon2: config::argon2_params(&file)?,
        },
    };
    // The database may have been removed (--force): open it afresh.
    let backend = open_backend(
        store_kind(args.store),
        &dir,
        tpm.as_ref(),
        false,
        database.as_ref(),
    )?;
    let made = bootstrap::initialize(backend, first, true, tpm)?;
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
        SlotChoice::Tpm => eprintln!(
            "Initialized a coffer store in {} with a tpm slot (PCR policy {pcrs}) and a \
             recovery slot.\nThe daemon opens it at every start through the TPM; after an \
             intended change of those PCRs, unseal with the recovery key and run \
             `coffer slots reseal`.",
            where_(args.store, &dir)
        ),
        SlotChoice::TpmPassphrase => eprintln!(
            "Initialized a coffer store in {} with a tpm+passphrase slot (PCR policy {pcrs}) \
             and a recovery slot.\nThe daemon will start sealed; open it with `coffer unseal` \
             and the passphrase.",
            where_(args.store, &dir)
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
