//! `coffer namespaces`: create and list namespaces, each with its own data key; rotate that
//! key; give one a passphrase, lock it and unlock it (docs/namespaces.md).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use coffer_client::Client;
use coffer_crypto::SecretBytes;
use zeroize::Zeroizing;

use crate::input;

/// Namespace verbs.
#[derive(Subcommand, Debug)]
pub enum NamespacesCommand {
    /// List the namespaces, marking those locked.
    List {
        /// Print JSON (`{"namespaces": [...], "locked": [...]}`)
        #[arg(long)]
        json: bool,
    },
    /// Create a namespace (a path such as `acme/prod`) with its own data key.
    Create {
        /// The namespace
        namespace: String,
        /// Also wrap its key under a passphrase, so it can be locked (asked twice on a
        /// terminal; one line of standard input otherwise, or --passphrase-file)
        #[arg(long)]
        passphrase: bool,
        /// Read the passphrase from the first line of this file (implies --passphrase)
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
    },
    /// Rotate a namespace's data key, re-encrypting every version in the background
    ///
    /// A new key generation (wrapped under the master key) encrypts every write from now on, and the daemon re-encrypts every older version in
    /// the background, then forgets the older key. Reads keep working meanwhile; a daemon
    /// restarted mid-way resumes. Shows a progress bar until it completes. Needs `sudo` on
    /// `sys/namespaces`; a rotation already running answers `conflict`.
    RotateKey {
        /// The namespace
        namespace: String,
        /// Return once the rotation started, without waiting for the re-encryption
        /// (`coffer status` shows its progress)
        #[arg(long)]
        no_wait: bool,
    },
    /// Set or change the passphrase of an unlocked namespace (what lets it be locked).
    Passphrase {
        /// The namespace
        namespace: String,
        /// Read the new passphrase from the first line of this file
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
    },
    /// Lock a namespace: its key is forgotten and its cached values flushed; every request
    /// in it answers `locked` until it is unlocked, across restarts too.
    Lock {
        /// The namespace
        namespace: String,
    },
    /// Unlock a locked namespace with its passphrase (a hidden prompt, one line of standard
    /// input, or --passphrase-file).
    Unlock {
        /// The namespace
        namespace: String,
        /// Read the passphrase from the first line of this file
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
    },
}

/// How often the progress is asked for.
const POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Shows the rotation of `namespace` until the daemon no longer lists it as in progress.
fn follow_rotation(client: &Client, namespace: &str) -> anyhow::Result<()> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {pos}/{len} versions ({per_sec}, {eta} left)",
        )
        .map_err(|e| anyhow::anyhow!("progress bar template: {e}"))?
        .progress_chars("=> "),
    );
    bar.set_message(format!("re-encrypting {namespace}"));
    loop {
        let status = client.status()?;
        let Some(p) = status
            .key_rotations
            .iter()
            .find(|p| p.namespace == namespace)
        else {
            break;
        };
        bar.set_length(p.total);
        bar.set_position(p.done);
        std::thread::sleep(POLL);
    }
    bar.finish_and_clear();
    eprintln!("rotated the key of namespace {namespace}: every version is under the new key");
    Ok(())
}

/// The first line of `path`, without its newline; every buffer zeroized.
fn from_file(path: &Path) -> anyhow::Result<SecretBytes> {
    let mut buf = Zeroizing::new(Vec::new());
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut buf))
        .with_context(|| format!("cannot read the passphrase file {}", path.display()))?;
    let line = buf.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        bail!("the passphrase file {} holds no passphrase", path.display());
    }
    Ok(SecretBytes::copy_from(line))
}

fn new_passphrase(file: Option<&Path>) -> anyhow::Result<SecretBytes> {
    match file {
        Some(path) => from_file(path),
        None => input::new_passphrase(),
    }
}

/// Runs one verb.
pub fn run(client: &Client, command: NamespacesCommand) -> anyhow::Result<()> {
    match command {
        NamespacesCommand::List { json } => {
            let (all, locked) = client.namespace_states()?;
            if json {
                let shown = serde_json::json!({ "namespaces": all, "locked": locked });
                println!("{}", serde_json::to_string_pretty(&shown)?);
            } else {
                for ns in all {
                    if locked.contains(&ns) {
                        println!("{ns}\tlocked");
                    } else {
                        println!("{ns}");
                    }
                }
            }
        }
        NamespacesCommand::Create {
            namespace,
            passphrase,
            passphrase_file,
        } => {
            let pass = if passphrase || passphrase_file.is_some() {
                Some(new_passphrase(passphrase_file.as_deref())?)
            } else {
                None
            };
            client.create_namespace_with(&namespace, pass.as_ref())?;
            if pass.is_some() {
                eprintln!("created namespace {namespace} (it can be locked)");
            } else {
                eprintln!("created namespace {namespace}");
            }
        }
        NamespacesCommand::Passphrase {
            namespace,
            passphrase_file,
        } => {
            let pass = new_passphrase(passphrase_file.as_deref())?;
            client.set_namespace_passphrase(&namespace, &pass)?;
            eprintln!("set the passphrase of namespace {namespace}");
        }
        NamespacesCommand::Lock { namespace } => {
            client.lock_namespace(&namespace)?;
            eprintln!("locked namespace {namespace}");
        }
        NamespacesCommand::Unlock {
            namespace,
            passphrase_file,
        } => {
            let pass = match passphrase_file {
                Some(path) => from_file(&path)?,
                None => input::line_secret(&format!(
                    "Passphrase of namespace {namespace} (input hidden): "
                ))?,
            };
            client.unlock_namespace(&namespace, &pass)?;
            eprintln!("unlocked namespace {namespace}");
        }
        NamespacesCommand::RotateKey { namespace, no_wait } => {
            client.rotate_namespace_key(&namespace)?;
            if no_wait {
                eprintln!(
                    "started rotating the key of namespace {namespace}; `coffer status` shows \
                     the progress"
                );
            } else {
                follow_rotation(client, &namespace)?;
            }
        }
    }
    Ok(())
}
