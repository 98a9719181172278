//! `coffer policy`: policies and the subjects bound to them, put at run time (the policy
//! file's are read at start). Changes need `sudo` on `sys/policy`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use coffer_client::Client;
use coffer_types::reply::{PolicySource, RuleText};

use super::json;
use super::table::Table;

/// Policy verbs.
#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Put a policy from a file (TOML or JSON; `-` for standard input):
    /// `rules = [{ path = "app/*", capabilities = ["read"] }]`, or Vault's HCL (a `.hcl`
    /// file, or text of `path "..." { capabilities = [...] }` blocks), kept as written.
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
    /// Check a policy file (as --policy-file reads it) or one policy (as `put` takes it)
    /// without a daemon: refuse what would be refused, and warn about grants that amount
    /// to root (`sudo` reaching sys/policy, sys/token or sys/slots; bindings to `root`).
    Check {
        /// The file (`-` for standard input)
        file: PathBuf,
    },
    /// Bind a subject (uid:N, gid:N, user:NAME, token:ACCESSOR, unit:NAME) to policies,
    /// replacing its run-time binding; with no --policy, remove it.
    Bind {
        /// The subject
        subject: String,
        /// A policy (repeat for several)
        #[arg(long = "policy", value_name = "POLICY")]
        policies: Vec<String>,
    },
}

fn read_text(file: &Path) -> anyhow::Result<String> {
    if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read standard input")
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
    }
}

/// Whether a policy file is Vault's HCL: a `.hcl` name, or text that is neither JSON nor
/// TOML.
fn is_hcl(file: &Path, text: &str) -> bool {
    file.extension().is_some_and(|e| e == "hcl")
        || (serde_json::from_str::<serde_json::Value>(text).is_err()
            && toml::from_str::<toml::Table>(text).is_err())
}

fn rules_of(file: &Path, text: &str) -> anyhow::Result<Vec<RuleText>> {
    let doc: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => {
            let t: toml::Value = toml::from_str(text)
                .with_context(|| format!("{} is neither JSON nor TOML", file.display()))?;
            serde_json::to_value(t)?
        }
    };
    let example = "rules = [{ path = \"app/*\", capabilities = [\"read\"] }]";
    match doc.get("rules") {
        Some(rules) if rules.is_array() => serde_json::from_value(rules.clone()).map_err(|e| {
            anyhow::anyhow!(
                "{}: each rule is a path and its capabilities, such as {example} ({e})",
                file.display()
            )
        }),
        _ => bail!("{} needs `rules`, a list such as {example}", file.display()),
    }
}

/// `coffer policy check`: the file's policies as the daemon would load them, and the grants
/// in them that amount to root (coffer_core::access::review), each a warning.
fn check(file: &Path) -> anyhow::Result<()> {
    use coffer_core::access::policy::{PolicyDoc, PolicySet, PolicyText, parse_policy_file};
    let text = read_text(file)?;
    let one_policy = toml::from_str::<toml::Table>(&text)
        .map(|t| t.contains_key("rules"))
        .unwrap_or_else(|_| serde_json::from_str::<serde_json::Value>(&text).is_ok());
    let set = if is_hcl(file, &text) {
        let doc = PolicyDoc::from_text(&PolicyText {
            rules: Vec::new(),
            hcl: Some(text.clone()),
        })
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let mut set = PolicySet::default();
        set.policies.insert("policy".to_owned(), doc);
        set
    } else if one_policy {
        let rules = rules_of(file, &text)?;
        let doc = PolicyDoc::from_text(&PolicyText { rules, hcl: None })
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let name = file
            .file_stem()
            .filter(|_| file.as_os_str() != "-")
            .map_or("policy".into(), |s| s.to_string_lossy().into_owned());
        let mut set = PolicySet::default();
        set.policies.insert(name, doc);
        set
    } else {
        parse_policy_file(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
    };
    let found = coffer_core::access::review::root_grants(&set);
    for g in &found {
        eprintln!("warning: policy {}: {} (amounts to root)", g.policy, g.why);
    }
    println!(
        "{}: {} {}, {} {}; {} {} to root",
        file.display(),
        set.policies.len(),
        if set.policies.len() == 1 {
            "policy"
        } else {
            "policies"
        },
        set.subjects.len(),
        if set.subjects.len() == 1 {
            "binding"
        } else {
            "bindings"
        },
        found.len(),
        if found.len() == 1 {
            "grant amounts"
        } else {
            "grants amount"
        },
    );
    Ok(())
}

fn rules_table(rules: &[RuleText]) -> Table<2> {
    let mut t = Table::new(["PATH", "CAPABILITIES"]);
    for r in rules {
        t.row([r.path.clone(), r.capabilities.join(", ")]);
    }
    t
}

fn source(s: PolicySource) -> &'static str {
    match s {
        PolicySource::Builtin => "builtin",
        PolicySource::File => "file",
        PolicySource::Store => "store",
    }
}

/// Runs one verb.
pub fn run(client: &Client, command: PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Put { name, file } => {
            let text = read_text(&file)?;
            if is_hcl(&file, &text) {
                client.put_hcl_policy(&name, &text)?;
            } else {
                client.put_policy(&name, &rules_of(&file, &text)?)?;
            }
            eprintln!("policy {name} put");
        }
        PolicyCommand::Get { name, json } => {
            let p = client.policy(&name)?;
            if json {
                json::print(&p)?;
            } else {
                if let Some(hcl) = &p.rules.hcl {
                    // Exactly as written.
                    print!("{hcl}");
                } else {
                    println!("policy {} ({})", p.name, source(p.source));
                    rules_table(&p.rules.rules).print();
                }
            }
        }
        PolicyCommand::List { json } => {
            let listing = client.policies()?;
            if json {
                return json::print(&listing);
            }
            let mut t = Table::new(["POLICY", "SOURCE", "RULES"]);
            for p in listing.policies {
                t.row([
                    p.name,
                    source(p.source).to_owned(),
                    p.rules.rules.len().to_string(),
                ]);
            }
            t.print();
            println!();
            let mut t = Table::new(["SUBJECT", "SOURCE", "POLICIES"]);
            for s in listing.subjects {
                t.row([
                    s.subject,
                    source(s.source).to_owned(),
                    s.policies.join(", "),
                ]);
            }
            t.print();
        }
        PolicyCommand::Delete { name } => {
            client.delete_policy(&name)?;
            eprintln!("policy {name} deleted");
        }
        PolicyCommand::Check { file } => check(&file)?,
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
