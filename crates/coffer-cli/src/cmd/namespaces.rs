//! `coffer namespaces`: create and list namespaces, each with its own data key.

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
    }
    Ok(())
}
