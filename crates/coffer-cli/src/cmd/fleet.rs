//! `coffer fleet`: a hub's nodes and what they receive. Join tokens (printed once, kept
//! hashed), pre-authorized nodes, node tags, assignment rules by prefix, and provisioning
//! bundles for device images. Every verb needs `sudo` on `sys/fleet`.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use coffer_client::Client;
use serde_json::{Value, json};

use super::table::Table;
use crate::config;

/// The fleet's verbs.
#[derive(Subcommand, Debug)]
pub enum FleetCommand {
    /// Join tokens: a node joins with one (`serve --join ADDR --join-token-file FILE`)
    #[command(subcommand)]
    Token(TokenCommand),
    /// The nodes: pre-authorize, list, tag, disable, enable, remove
    #[command(subcommand, alias = "node")]
    Nodes(NodesCommand),
    /// Send the secrets of a namespace under a prefix to the nodes carrying a tag
    Assign(RuleArgs),
    /// Remove an assignment rule
    Unassign(RuleArgs),
    /// List the assignment rules
    Rules {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Provisioning bundles for device images
    #[command(subcommand)]
    Bundle(BundleCommand),
}

/// Join tokens.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Make a join token; printed once, alone on standard output
    Create {
        /// A tag the joining node takes (repeat for several)
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// How many nodes may join with it
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long it works, e.g. 24h, 30d (at most a year)
        #[arg(long, default_value = "24h", value_parser = config::parse_duration)]
        ttl: Duration,
    },
    /// List the join tokens (never the tokens themselves)
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Revoke a join token by its id
    Revoke {
        /// Its id (`fleet token list`)
        id: String,
    },
}

/// The nodes.
#[derive(Subcommand, Debug)]
pub enum NodesCommand {
    /// Pre-authorize a node by its public key (DATA_DIR/fleet/node.pub on the node): it
    /// joins with no token
    Add {
        /// The node's public key file
        #[arg(long, value_name = "FILE")]
        pubkey: PathBuf,
        /// A tag it carries (repeat for several)
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
    },
    /// List the nodes
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Add (+TAG) or remove (-TAG) a node's tags; its secrets follow at once
    Tag {
        /// The node's id
        node: String,
        /// `+TAG` adds, `-TAG` removes
        #[arg(value_name = "+TAG|-TAG", required = true, allow_hyphen_values = true)]
        changes: Vec<String>,
    },
    /// Disable a node: its stream is closed and it receives nothing until enabled
    Disable {
        /// The node's id
        node: String,
    },
    /// Enable a disabled node
    Enable {
        /// The node's id
        node: String,
    },
    /// Remove a node: its certificate is revoked and its stream closed at once
    Remove {
        /// The node's id
        node: String,
    },
}

/// An assignment rule.
#[derive(Args, Debug)]
pub struct RuleArgs {
    /// The nodes' tag
    #[arg(long)]
    tag: String,
    /// The names' prefix (empty: the whole namespace)
    #[arg(long, default_value = "")]
    prefix: String,
    /// The namespace
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,
}

/// Bundles.
#[derive(Subcommand, Debug)]
pub enum BundleCommand {
    /// Write a bundle of the secrets assigned to the tags and a one-use join token,
    /// encrypted under a one-time key written apart (keep the key out of the image)
    Create {
        /// A tag the bundled node carries (repeat for several)
        #[arg(long = "tag", value_name = "TAG", required = true)]
        tags: Vec<String>,
        /// The bundle file to write (refused when it exists)
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The key file to write [default: OUT.key]
        #[arg(long, value_name = "FILE")]
        key_out: Option<PathBuf>,
        /// A hub address (host:port) the node dials once it boots (repeat for several)
        #[arg(long = "hub", value_name = "ADDR")]
        hubs: Vec<String>,
    },
}

/// Splits `+a -b c` into tags to add (`+a`, `c`) and to remove (`-b`).
pub fn tag_changes(changes: &[String]) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let (mut add, mut remove) = (Vec::new(), Vec::new());
    for c in changes {
        if let Some(t) = c.strip_prefix('-') {
            remove.push(t.to_owned());
        } else {
            add.push(c.strip_prefix('+').unwrap_or(c).to_owned());
        }
    }
    Ok((add, remove))
}

fn strings(v: &Value) -> String {
    let list: Vec<&str> = v
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if list.is_empty() {
        "-".to_owned()
    } else {
        list.join(",")
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Runs a fleet verb.
pub fn run(client: &Client, command: FleetCommand) -> anyhow::Result<()> {
    match command {
        FleetCommand::Token(TokenCommand::Create { tags, uses, ttl }) => {
            let reply = client.fleet(
                "token_create",
                &json!({ "tags": tags, "num_uses": uses, "ttl": ttl.as_secs() }),
            )?;
            let token = reply["token"].as_str().context("no token in the reply")?;
            println!("{token}");
            eprintln!(
                "join token {} for {} node(s), tags {}, until {}; shown once",
                text(&reply["id"]),
                uses,
                strings(&reply["tags"]),
                text(&reply["expires"])
            );
        }
        FleetCommand::Token(TokenCommand::List { json }) => {
            let reply = client.fleet("token_list", &json!({}))?;
            if json {
                return super::json::print(&reply["tokens"]);
            }
            let mut t = Table::new(["ID", "TAGS", "USES", "EXPIRES", "BY"]);
            for tok in reply["tokens"].as_array().into_iter().flatten() {
                t.row([
                    text(&tok["id"]),
                    strings(&tok["tags"]),
                    text(&tok["uses"]),
                    text(&tok["expires"]),
                    text(&tok["by"]),
                ]);
            }
            t.print();
        }
        FleetCommand::Token(TokenCommand::Revoke { id }) => {
            client.fleet("token_revoke", &json!({ "name": id }))?;
            eprintln!("join token {id} revoked");
        }
        FleetCommand::Nodes(command) => nodes(client, command)?,
        FleetCommand::Assign(r) | FleetCommand::Unassign(r) if r.tag.is_empty() => {
            bail!("--tag is required")
        }
        FleetCommand::Assign(r) => {
            client.fleet("assign", &rule(&r))?;
            eprintln!(
                "nodes tagged {} receive {}:{}*",
                r.tag, r.namespace, r.prefix
            );
        }
        FleetCommand::Unassign(r) => {
            client.fleet("unassign", &rule(&r))?;
            eprintln!("rule removed");
        }
        FleetCommand::Rules { json } => {
            let reply = client.fleet("rules", &json!({}))?;
            if json {
                return super::json::print(&reply["rules"]);
            }
            let mut t = Table::new(["TAG", "NAMESPACE", "PREFIX"]);
            for r in reply["rules"].as_array().into_iter().flatten() {
                t.row([text(&r["tag"]), text(&r["namespace"]), text(&r["prefix"])]);
            }
            t.print();
        }
        FleetCommand::Bundle(BundleCommand::Create {
            tags,
            out,
            key_out,
            hubs,
        }) => {
            let key_out = key_out.unwrap_or_else(|| {
                let mut k = out.clone().into_os_string();
                k.push(".key");
                PathBuf::from(k)
            });
            if out.exists() || key_out.exists() {
                bail!(
                    "{} or {} exists; a bundle is never written over another",
                    out.display(),
                    key_out.display()
                );
            }
            let reply = client.fleet("bundle_create", &json!({ "tags": tags, "hubs": hubs }))?;
            let bundle = data_encoding::BASE64
                .decode(reply["bundle"].as_str().unwrap_or_default().as_bytes())
                .context("the bundle in the reply is not base64")?;
            let key = zeroize::Zeroizing::new(reply["key"].as_str().unwrap_or_default().to_owned());
            write_new(&out, &bundle)?;
            write_new(&key_out, format!("{}\n", key.as_str()).as_bytes())?;
            eprintln!(
                "bundle {} ({} secrets and a one-use join token); its key in {}: keep the key out of the image",
                out.display(),
                text(&reply["secrets"]),
                key_out.display()
            );
        }
    }
    Ok(())
}

fn rule(r: &RuleArgs) -> Value {
    json!({ "tag": r.tag, "namespace": r.namespace, "prefix": r.prefix })
}

fn nodes(client: &Client, command: NodesCommand) -> anyhow::Result<()> {
    let show = |reply: &Value| {
        eprintln!(
            "node {}: tags {}, {}",
            text(&reply["id"]),
            strings(&reply["tags"]),
            if reply["enabled"] == Value::Bool(true) {
                "enabled"
            } else {
                "disabled"
            }
        );
    };
    match command {
        NodesCommand::Add { pubkey, tags } => {
            let key = std::fs::read_to_string(&pubkey)
                .with_context(|| format!("cannot read {}", pubkey.display()))?;
            let reply = client.fleet(
                "node_add",
                &json!({ "public_key": key.trim(), "tags": tags }),
            )?;
            println!("{}", text(&reply["id"]));
            show(&reply);
        }
        NodesCommand::List { json } => {
            let reply = client.fleet("node_list", &json!({}))?;
            if json {
                return super::json::print(&reply["nodes"]);
            }
            let mut t = Table::new(["ID", "HOST", "TAGS", "STATE", "CONNECTED", "ENROLLED"]);
            for n in reply["nodes"].as_array().into_iter().flatten() {
                let state = match (n["enabled"].as_bool(), n["enrolled"].is_null()) {
                    (Some(false), _) => "disabled",
                    (_, true) => "pre-authorized",
                    _ => "enabled",
                };
                t.row([
                    text(&n["id"]),
                    text(&n["hostname"]),
                    strings(&n["tags"]),
                    state.to_owned(),
                    text(&n["connected"]),
                    text(&n["enrolled"]),
                ]);
            }
            t.print();
        }
        NodesCommand::Tag { node, changes } => {
            let (add, remove) = tag_changes(&changes)?;
            let reply = client.fleet(
                "node_tag",
                &json!({ "node": node, "add": add, "remove": remove }),
            )?;
            show(&reply);
        }
        NodesCommand::Disable { node } => {
            show(&client.fleet("node_disable", &json!({ "node": node }))?)
        }
        NodesCommand::Enable { node } => {
            show(&client.fleet("node_enable", &json!({ "node": node }))?)
        }
        NodesCommand::Remove { node } => {
            client.fleet("node_remove", &json!({ "node": node }))?;
            eprintln!("node {node} removed; its certificate no longer opens a stream");
        }
    }
    Ok(())
}

/// Writes a new file, mode 0600, synced.
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}
