//! `coffer secrets`: the operator's verbs (reference 004, section 2). Operators manage secrets
//! without seeing them: values go in through a hidden prompt or standard input, and the only
//! values printed are the ones the daemon mints, once, on standard output.

use std::io::{IsTerminal, Write};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use coffer_client::{Client, ListOptions, WriteOptions};
use coffer_crypto::SecretBytes;
use coffer_types::{Encoding, GeneratorSpec, Kind, SecretMeta, Version, VersionInfo};

use super::table::Table;
use crate::input;

/// Largest value read from standard input (the daemon enforces its own limit).
const MAX_INPUT: usize = 64 << 20;

/// The operator's verbs.
#[derive(Subcommand, Debug)]
pub enum SecretsCommand {
    /// Store an operator-supplied value: a new secret, or a new version of one. The value
    /// comes from a hidden prompt, or standard input when it is not a terminal.
    Set(SetArgs),
    /// Mint a random value for a new secret and print it once, alone, on standard output.
    Generate(GenerateArgs),
    /// List secrets (names and metadata, never values).
    List(ListArgs),
    /// Show a secret's metadata and version history, never its value.
    Show(NameArgs),
    /// Change a secret's description or version limit without writing a new version.
    Describe(DescribeArgs),
    /// Write a new version of an existing secret: an operator value (prompt or standard
    /// input), or with --generate a minted one, printed once on standard output.
    Rotate(RotateArgs),
    /// Revoke a secret: it stays for audit but can no longer be read, and its name is free at
    /// once (a new secret of that name starts at version 1). See `list --revoked`.
    Revoke(NameArgs),
    /// Erase chosen versions' ciphertexts for good. Their metadata stays.
    Destroy(DestroyArgs),
    /// List a secret's versions with their times and writers.
    Versions(NameArgs),
    /// Show a secret's rotation policy, when it is next due and how the last rotation ended.
    Rotation(NameArgs),
}

/// Where a secret is.
#[derive(Args, Debug)]
pub struct Target {
    /// The secret's name, e.g. `stripe-api-key` or `db/main/password`
    pub name: String,
    /// The namespace [default: default]
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
}

/// Kind and metadata given with a value.
#[derive(Args, Debug, Default)]
pub struct ValueOptions {
    /// The value's kind: line (no newline), text, env (KEY=VALUE lines), file (any bytes),
    /// kv (a JSON object) [default: the secret's kind; text for a new secret]
    #[arg(long, value_parser = parse_kind)]
    pub kind: Option<Kind>,
    /// A description (shown by `show` and `list`)
    #[arg(long)]
    pub description: Option<String>,
    /// Keep at most this many versions, the oldest going first (0: unlimited)
    #[arg(long, value_name = "N")]
    pub max_versions: Option<u32>,
}

impl ValueOptions {
    fn to_client(&self) -> WriteOptions {
        WriteOptions {
            kind: self.kind,
            description: self.description.clone(),
            max_versions: self.max_versions,
        }
    }
}

/// Options of `set`.
#[derive(Args, Debug)]
pub struct SetArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    options: ValueOptions,
    /// Keep a final newline read from standard input (dropped by default)
    #[arg(long)]
    keep_newline: bool,
}

/// How to mint.
#[derive(Args, Debug)]
pub struct MintArgs {
    /// Random bytes to mint, 1 to 4096 [default: 32, written as 43 base64url characters]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=4096))]
    byte_len: Option<u64>,
    /// How the bytes are written [default: base64url]
    #[arg(long, value_parser = parse_encoding)]
    encoding: Option<Encoding>,
}

impl MintArgs {
    fn spec(&self) -> anyhow::Result<Option<GeneratorSpec>> {
        if self.byte_len.is_none() && self.encoding.is_none() {
            return Ok(None);
        }
        let len = self
            .byte_len
            .unwrap_or(u64::from(GeneratorSpec::DEFAULT_BYTES));
        Ok(Some(GeneratorSpec::new(
            len,
            self.encoding.unwrap_or_default(),
        )?))
    }
}

/// Options of `generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    mint: MintArgs,
    #[command(flatten)]
    options: ValueOptions,
    /// Rotate the secret on this schedule (a duration such as 30d, 12h or 90s; at least 1s)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    rotate_every: Option<u64>,
    /// Run this executable (an absolute path) with each new value on its standard input;
    /// exit 0 makes the new version current, anything else drops it
    #[arg(long, value_name = "PATH", requires = "rotate_every")]
    rotate_command: Option<String>,
    /// Keep the version before a rotation readable as `previous` for this long (at most the
    /// period) [default: 0]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "rotate_every")]
    rotate_grace: Option<u64>,
}

fn parse_duration(s: &str) -> Result<u64, String> {
    coffer_types::duration::parse_seconds(s).map_err(|e| e.to_string())
}

/// Options of `list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// The namespace [default: default]
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Only names starting with this
    #[arg(long)]
    prefix: Option<String>,
    /// Only names after this one (the cursor a previous page printed)
    #[arg(long)]
    after: Option<String>,
    /// Most names to list
    #[arg(long, default_value_t = 1000)]
    limit: u64,
    /// List revoked secrets, with their version history
    #[arg(long)]
    revoked: bool,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

/// A secret, and whether to print JSON.
#[derive(Args, Debug)]
pub struct NameArgs {
    #[command(flatten)]
    target: Target,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

/// Options of `describe`.
#[derive(Args, Debug)]
pub struct DescribeArgs {
    #[command(flatten)]
    target: Target,
    /// The new description (empty clears it)
    #[arg(long, alias = "set", required_unless_present = "max_versions")]
    description: Option<String>,
    /// Keep at most this many versions (0: unlimited); lowering it erases the oldest now
    #[arg(long, value_name = "N")]
    max_versions: Option<u32>,
}

/// Options of `rotate`.
#[derive(Args, Debug)]
pub struct RotateArgs {
    #[command(flatten)]
    target: Target,
    /// Mint the new value instead of reading one; it is printed once on standard output
    #[arg(long)]
    generate: bool,
    #[command(flatten)]
    mint: MintArgs,
    #[command(flatten)]
    options: ValueOptions,
    /// Keep a final newline read from standard input (dropped by default)
    #[arg(long)]
    keep_newline: bool,
}

/// Options of `destroy`.
#[derive(Args, Debug)]
pub struct DestroyArgs {
    #[command(flatten)]
    target: Target,
    /// The versions to erase, e.g. `1,2`
    #[arg(long, value_delimiter = ',', required = true, value_parser = parse_version)]
    versions: Vec<Version>,
}

fn parse_kind(s: &str) -> Result<Kind, String> {
    s.parse()
        .map_err(|e: coffer_types::UnknownKind| e.to_string())
}

fn parse_encoding(s: &str) -> Result<Encoding, String> {
    s.parse()
        .map_err(|e: coffer_types::UnknownEncoding| e.to_string())
}

/// Parses a version number (1 or more).
pub fn parse_version(s: &str) -> Result<Version, String> {
    s.parse::<u32>()
        .ok()
        .and_then(Version::new)
        .ok_or_else(|| "versions are whole numbers from 1".to_owned())
}

/// Runs one verb.
pub fn run(client: &Client, command: SecretsCommand) -> anyhow::Result<()> {
    match command {
        SecretsCommand::Set(args) => set(client, args),
        SecretsCommand::Generate(args) => generate(client, args),
        SecretsCommand::List(args) => list(client, args),
        SecretsCommand::Show(args) => show(client, args),
        SecretsCommand::Describe(args) => describe(client, args),
        SecretsCommand::Rotate(args) => rotate(client, args),
        SecretsCommand::Revoke(args) => {
            let t = &args.target;
            client.revoke(t.namespace.as_deref(), &t.name)?;
            eprintln!(
                "revoked {}; its name is free, its history stays (list --revoked)",
                t.name
            );
            Ok(())
        }
        SecretsCommand::Destroy(args) => {
            let t = &args.target;
            let gone = client.destroy(t.namespace.as_deref(), &t.name, &args.versions)?;
            let gone: Vec<String> = gone.iter().map(Version::to_string).collect();
            eprintln!(
                "destroyed version {} of {} for good",
                gone.join(", "),
                t.name
            );
            Ok(())
        }
        SecretsCommand::Versions(args) => versions(client, args),
        SecretsCommand::Rotation(args) => rotation(client, args),
    }
}

/// `set`: also the top-level `coffer set`.
pub fn set(client: &Client, args: SetArgs) -> anyhow::Result<()> {
    let t = &args.target;
    let value = input::value(&t.name, args.keep_newline, MAX_INPUT)?;
    let w = client.set_with(
        t.namespace.as_deref(),
        &t.name,
        &value,
        &args.options.to_client(),
    )?;
    eprintln!("stored {} (index {})", t.name, w.index);
    Ok(())
}

/// Prints a minted value alone: no newline unless standard output is a terminal.
fn print_once(value: &SecretBytes) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(value.expose_secret())
        .context("cannot write to standard output")?;
    if out.is_terminal() {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

fn generate(client: &Client, args: GenerateArgs) -> anyhow::Result<()> {
    let t = &args.target;
    let w = match args.rotate_every {
        Some(every) => client.generate_rotating(
            t.namespace.as_deref(),
            &t.name,
            args.mint.spec()?,
            &args.options.to_client(),
            &coffer_client::RotationRequest {
                every,
                // Made absolute here, so a relative path names the operator's file.
                command: args
                    .rotate_command
                    .map(|c| std::path::absolute(&c).map(|p| p.to_string_lossy().into_owned()))
                    .transpose()
                    .context("the rotate command's path")?,
                grace: args.rotate_grace,
            },
        )?,
        None => client.generate(
            t.namespace.as_deref(),
            &t.name,
            args.mint.spec()?,
            &args.options.to_client(),
        )?,
    };
    let value = w
        .value
        .context("the daemon answered a generate without the value")?;
    eprintln!(
        "generated {} (index {}); the value follows on standard output, this once only",
        t.name, w.index
    );
    print_once(&value)
}

fn rotate(client: &Client, args: RotateArgs) -> anyhow::Result<()> {
    let t = &args.target;
    let options = args.options.to_client();
    if !args.generate && (args.mint.byte_len.is_some() || args.mint.encoding.is_some()) {
        bail!("--byte-len and --encoding go with --generate");
    }
    if args.generate {
        let w = client.rotate(
            t.namespace.as_deref(),
            &t.name,
            None,
            args.mint.spec()?,
            &options,
        )?;
        let value = w
            .value
            .context("the daemon answered a rotate without the value")?;
        eprintln!(
            "rotated {} to version {}; the value follows on standard output, this once only",
            t.name,
            w.version.map_or(0, Version::get)
        );
        return print_once(&value);
    }
    let value = input::value(&t.name, args.keep_newline, MAX_INPUT)?;
    let w = client.rotate(
        t.namespace.as_deref(),
        &t.name,
        Some(&value),
        None,
        &options,
    )?;
    eprintln!(
        "rotated {} to version {}",
        t.name,
        w.version.map_or(0, Version::get)
    );
    Ok(())
}

fn describe(client: &Client, args: DescribeArgs) -> anyhow::Result<()> {
    let t = &args.target;
    client.describe(
        t.namespace.as_deref(),
        &t.name,
        args.description.as_deref(),
        args.max_versions,
    )?;
    eprintln!("described {}", t.name);
    Ok(())
}

fn json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn list(client: &Client, args: ListArgs) -> anyhow::Result<()> {
    let ns = args.namespace.as_deref();
    if args.revoked {
        let revoked = client.list_revoked(ns)?;
        if args.json {
            return json(&revoked);
        }
        for meta in &revoked {
            println!(
                "{} (revoked {})",
                meta.name,
                meta.revoked.map(|t| t.to_string()).unwrap_or_default()
            );
            print_versions(&meta.versions, "  ");
        }
        return Ok(());
    }
    let options = ListOptions {
        prefix: args.prefix,
        after: args.after,
        limit: Some(args.limit),
    };
    let page = client.list_detail(ns, &options)?;
    if args.json {
        json(&serde_json::json!({ "secrets": page.items, "next": page.next }))?;
    } else {
        let mut table = Table::new(["NAME", "KIND", "VERSION", "UPDATED", "DESCRIPTION"]);
        for s in &page.items {
            table.row([
                s.name.to_string(),
                s.kind.to_string(),
                s.current.to_string(),
                s.updated.to_string(),
                s.description.clone().unwrap_or_default(),
            ]);
        }
        table.print();
    }
    if let Some(next) = page.next {
        eprintln!("more: --after {next}");
    }
    Ok(())
}

fn print_versions(versions: &[VersionInfo], indent: &str) {
    let mut table = Table::new(["VERSION", "KIND", "CREATED", "ACTOR", "STATE"]);
    for v in versions {
        table.row([
            v.version.to_string(),
            v.kind.to_string(),
            v.created.to_string(),
            v.actor.clone(),
            if v.destroyed { "destroyed" } else { "live" }.to_owned(),
        ]);
    }
    table.print_indented(indent);
}

fn show(client: &Client, args: NameArgs) -> anyhow::Result<()> {
    let t = &args.target;
    let meta: SecretMeta = client.meta(t.namespace.as_deref(), &t.name)?;
    if args.json {
        return json(&meta);
    }
    let generated = meta
        .generated
        .map(|g| format!("yes, {} bytes as {}", g.byte_len(), g.encoding))
        .unwrap_or_else(|| "no".to_owned());
    let limit = meta
        .max_versions
        .map(|m| m.to_string())
        .unwrap_or_else(|| "unlimited".to_owned());
    println!("name:         {}", meta.name);
    println!("namespace:    {}", meta.namespace);
    println!("index:        {}", meta.index);
    println!("kind:         {}", meta.kind);
    println!("version:      {}", meta.current);
    println!("created:      {}", meta.created);
    println!("updated:      {}", meta.updated);
    println!(
        "description:  {}",
        meta.description.as_deref().unwrap_or("-")
    );
    println!("generated:    {generated}");
    println!("max versions: {limit}");
    println!("versions:");
    print_versions(&meta.versions, "  ");
    Ok(())
}

fn rotation(client: &Client, args: NameArgs) -> anyhow::Result<()> {
    let t = &args.target;
    let meta: SecretMeta = client.meta(t.namespace.as_deref(), &t.name)?;
    if args.json {
        return json(&serde_json::json!({
            "namespace": meta.namespace,
            "name": meta.name,
            "current": meta.current,
            "rotation": meta.rotation,
        }));
    }
    let Some(r) = meta.rotation else {
        println!("{} has no rotation policy", meta.name);
        return Ok(());
    };
    let text = coffer_types::duration::go_text;
    println!("name:      {}", meta.name);
    println!("namespace: {}", meta.namespace);
    println!("every:     {}", text(r.policy.every));
    println!("hook:      {}", r.policy.command.as_deref().unwrap_or("-"));
    println!("grace:     {}", text(r.policy.grace));
    println!("next due:  {}", r.next_due);
    if let Some(p) = r.pending {
        println!("pending:   version {p} (its hook runs)");
    }
    match (r.previous, r.previous_until) {
        (Some(v), Some(until)) => println!("previous:  version {v} until {until}"),
        _ => println!("previous:  -"),
    }
    match r.last {
        Some(last) => println!(
            "last:      {} at {}{}{}",
            last.outcome,
            last.time,
            last.version
                .map(|v| format!(", version {v}"))
                .unwrap_or_default(),
            last.reason
                .map(|why| format!(": {why}"))
                .unwrap_or_default()
        ),
        None => println!("last:      none yet"),
    }
    Ok(())
}

fn versions(client: &Client, args: NameArgs) -> anyhow::Result<()> {
    let t = &args.target;
    let all = client.versions(t.namespace.as_deref(), &t.name)?;
    if args.json {
        return json(&all);
    }
    print_versions(&all, "");
    Ok(())
}
