//! `coffer policy`: policies and the subjects bound to them, put at run time (the policy
//! file's are read at start). Changes need `sudo` on `sys/policy`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use coffer_client::Client;

use super::table::Table;

/// Policy verbs.
#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Put a policy from a file (TOML or JSON; `-` for standard input):
    /// `rules = [{ path = "app/*", capabilities = ["read"] }]`.
    Put {
        /// The policy's name (a-z, 0-9, '_', '-')
        name: String,
        /// The file with its rules
        file: PathBuf,
    },
    /// Show a policy's rules.
    Get {
        /// The policy's name
        name: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// List policies and bindings, with where each comes from (builtin, file, store).
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Delete a run-time policy; bindings to it go too.
    Delete {
        /// The policy's name
        name: String,
    },
    /// Bind a subject (uid:N, gid:N, user:NAME, token:ACCESSOR) to policies, replacing its
    /// run-time binding; with no --policy, remove it.
    Bind {
        /// The subject
        subject: String,
        /// A policy (repeat for several)
        #[arg(long = "policy", value_name = "POLICY")]
        policies: Vec<String>,
    },
}

/// Reads rules from TOML or JSON.
fn read_rules(file: &PathBuf) -> anyhow::Result<serde_json::Value> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    let doc: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(_) => {
            let t: toml::Value = toml::from_str(&text)
                .with_context(|| format!("{} is neither JSON nor TOML", file.display()))?;
            serde_json::to_value(t)?
        }
    };
    match doc.get("rules") {
        Some(rules) if rules.is_array() => Ok(rules.clone()),
        _ => bail!(
            "{} needs `rules`, a list such as rules = [{{ path = \"app/*\", capabilities = [\"read\"] }}]",
            file.display()
        ),
    }
}

fn rules_table(rules: &serde_json::Value) -> Table<2> {
    let mut t = Table::new(["PATH", "CAPABILITIES"]);
    for r in rules.as_array().into_iter().flatten() {
        let caps: Vec<&str> = r["capabilities"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str())
            .collect();
        t.row([
            r["path"].as_str().unwrap_or("?").to_owned(),
            caps.join(", "),
        ]);
    }
    t
}

/// Runs one verb.
pub fn run(client: &Client, command: PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Put { name, file } => {
            client.put_policy(&name, &read_rules(&file)?)?;
            eprintln!("policy {name} put");
        }
        PolicyCommand::Get { name, json } => {
            let p = client.policy(&name)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                println!(
                    "policy {} ({})",
                    p["name"].as_str().unwrap_or("?"),
                    p["source"].as_str().unwrap_or("?")
                );
                rules_table(&p["rules"]["rules"]).print();
            }
        }
        PolicyCommand::List { json } => {
            let (policies, subjects) = client.policies()?;
            if json {
                let all = serde_json::json!({"policies": policies, "subjects": subjects});
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(());
            }
            let mut t = Table::new(["POLICY", "SOURCE", "RULES"]);
            for p in &policies {
                t.row([
                    p["name"].as_str().unwrap_or("?").to_owned(),
                    p["source"].as_str().unwrap_or("?").to_owned(),
                    p["rules"]["rules"]
                        .as_array()
                        .map_or(0, Vec::len)
                        .to_string(),
                ]);
            }
            t.print();
            println!();
            let mut t = Table::new(["SUBJECT", "SOURCE", "POLICIES"]);
            for s in &subjects {
                let names: Vec<&str> = s["policies"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.as_str())
                    .collect();
                t.row([
                    s["subject"].as_str().unwrap_or("?").to_owned(),
                    s["source"].as_str().unwrap_or("?").to_owned(),
                    names.join(", "),
                ]);
            }
            t.print();
        }
        PolicyCommand::Delete { name } => {
            client.delete_policy(&name)?;
            eprintln!("policy {name} deleted");
        }
        PolicyCommand::Bind { subject, policies } => {
            client.bind(&subject, &policies)?;
            if policies.is_empty() {
                eprintln!("{subject} unbound");
            } else {
                eprintln!("{subject} bound to {}", policies.join(", "));
            }
        }
    }
    Ok(())
}
