//! `coffer namespaces`: create and list namespaces, each with its own data key, and rotate
//! that key.

use clap::Subcommand;
use coffer_client::Client;

/// Namespace verbs.
#[derive(Subcommand, Debug)]
pub enum NamespacesCommand {
    /// List the namespaces.
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Create a namespace (a path such as `acme/prod`) with its own data key.
    Create {
        /// The namespace
        namespace: String,
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

/// Runs one verb.
pub fn run(client: &Client, command: NamespacesCommand) -> anyhow::Result<()> {
    match command {
        NamespacesCommand::List { json } => {
            let all = client.namespaces()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                for ns in all {
                    println!("{ns}");
                }
            }
        }
        NamespacesCommand::Create { namespace } => {
            client.create_namespace(&namespace)?;
            eprintln!("created namespace {namespace}");
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
