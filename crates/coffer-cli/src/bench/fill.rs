//! `coffer bench fill`: writes `bench-0..N` into a data directory directly, with no daemon,
//! so a store of a million secrets can be made in about a minute.
//!
//! It is for making a bench store, not for operating one: it takes the data directory's
//! lock (so it refuses a directory a daemon is serving), refuses a directory that already
//! holds a store (an existing store is changed only through a daemon, which records every
//! change), makes the store with a new key file (as `coffer serve` does on first boot), and
//! writes through
//! the same data model as the daemon ([`coffer_store::SecretStore::set`]), from many threads
//! at once, so the SQLite writer commits them in groups of up to 512. No audit record is
//! written: no request is served (the daemon started afterwards records every request it
//! answers). `coffer bench` runs it on its own temporary store before starting the daemon.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use coffer_core::datadir::DataDir;
use coffer_core::{FirstBoot, Vault, VaultOptions};
use coffer_crypto::SecretBytes;
use coffer_server::daemon::{StoreKind, open_backend};
use coffer_store::Write;
use coffer_types::{Namespace, SecretName};

/// Most writer threads: enough to keep the group commit's batches full.
pub const MAX_THREADS: usize = 512;

/// What a fill did.
pub struct Filled {
    /// Secrets written.
    pub keys: usize,
    /// Seconds it took, opening the store included.
    pub seconds: f64,
}

/// Writes `bench-0..keys` (values of `size` bytes, `versions` versions each) into the SQLite
/// store in `data_dir` with `threads` concurrent writers.
pub fn fill(
    data_dir: &Path,
    keys: usize,
    size: usize,
    threads: usize,
    versions: usize,
) -> anyhow::Result<Filled> {
    if !(1..=MAX_THREADS).contains(&threads) {
        bail!("--threads must be between 1 and {MAX_THREADS}");
    }
    let started = Instant::now();
    let dir = DataDir::lock(data_dir)?;
    if dir.database().exists() {
        // A store that exists may be an operator's: a change to it is made only through a
        // daemon, which records it. The fill writes only stores it makes itself.
        bail!(
            "{} already holds a store: bench fill writes only into a new data directory",
            data_dir.display()
        );
    }
    let backend = open_backend(StoreKind::Sqlite, &dir, None, true, None)?;
    let vault = Vault::start(
        backend,
        VaultOptions {
            key_file: None,
            tpm: None,
            first_boot: Some(FirstBoot::KeyFile(dir.default_key_file())),
        },
    );
    let store = vault
        .store()
        .context("cannot open the store (fill needs a store with a key file slot)")?;
    let namespace = Namespace::default_namespace();
    let value = SecretBytes::copy_from("v".repeat(size).as_bytes());
    let actor = format!("uid:{}", nix::unistd::getuid());
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let result: anyhow::Result<()> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= keys || failed.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        let name = SecretName::parse_owned(format!("bench-{i}"))
                            .context("a bench name")?;
                        for _ in 0..versions.max(1) {
                            if let Err(e) = store.set(&namespace, &name, Write::new(&value, &actor))
                            {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e).with_context(|| format!("cannot write {name}"));
                            }
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("a fill thread panicked"))??;
        }
        Ok(())
    });
    result?;
    // Closing the store checkpoints the WAL into the database, so the daemon started next
    // opens a clean file.
    drop(store);
    vault.seal();
    drop(vault);
    drop(dir);
    Ok(Filled {
        keys,
        seconds: started.elapsed().as_secs_f64(),
    })
}
