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
    /// Add (+TAG) or remove (-TAG) a secret's fleet tags: the nodes carrying one of its
    /// tags receive it, re-encrypted to each node's own key. Needs `sudo` on `sys/fleet`.
    Tag(TagArgs),
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
    /// Store an empty value (refused by default: an empty pipe is usually a mistake)
    #[arg(long)]
    allow_empty: bool,
    /// A fleet tag to add: nodes carrying it receive the secret (repeat for several;
    /// needs `sudo` on `sys/fleet`)
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
}

/// Fleet tags to add and remove.
#[derive(Args, Debug)]
pub struct TagArgs {
    #[command(flatten)]
    target: Target,
    /// `+TAG` adds a tag, `-TAG` removes one (e.g. `+kiosk -lab`)
    #[arg(value_name = "+TAG|-TAG", required = true, allow_hyphen_values = true)]
    changes: Vec<String>,
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
    /// Store an empty value (refused by default: an empty pipe is usually a mistake)
    #[arg(long)]
    allow_empty: bool,
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
        SecretsCommand::Tag(args) => {
            let (add, remove) = super::fleet::tag_changes(&args.changes)?;
            tag(client, &args.target, &add, &remove)
        }
        SecretsCommand::Generate(args) => generate(client, args),
        SecretsCommand::List(args) => list(client, args),
        SecretsCommand::Show(args) => show(client, args),
        SecretsCommand::Describe(args) => describe(client, args),
        SecretsCommand::Rotate(args) => rotate(client, args),
        SecretsCommand::Revoke(args) => {
            let t = &args.target;
            client
                .revoke(t.namespace.as_deref(), &t.name)
                .map_err(named(t))?;
            eprintln!(
                "revoked {}; its name is free, its history stays (list --revoked)",
                t.name
            );
            Ok(())
        }
        SecretsCommand::Destroy(args) => {
            let t = &args.target;
            let gone = client
                .destroy(t.namespace.as_deref(), &t.name, &args.versions)
                .map_err(named(t))?;
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
    let backend = before_value(client, t, false)?;
    let value = input::value(&t.name, args.keep_newline, args.allow_empty, MAX_INPUT)?;
    let w = client.set_with(
        t.namespace.as_deref(),
        &t.name,
        &value,
        &args.options.to_client(),
    )?;
    eprintln!("stored {}{}", t.name, written(client, backend, &w));
    if !args.tags.is_empty() {
        tag(client, t, &args.tags, &[])?;
    }
    Ok(())
}

/// Adds and removes a secret's fleet tags; says which it carries now.
fn tag(client: &Client, t: &Target, add: &[String], remove: &[String]) -> anyhow::Result<()> {
    let fields = serde_json::json!({
        "namespace": t.namespace.as_deref().unwrap_or("default"),
        "name": t.name,
        "add": add,
        "remove": remove,
    });
    let reply = client.fleet("secret_tag", &fields).map_err(named(t))?;
    let tags: Vec<&str> = reply["tags"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    eprintln!(
        "{} carries the tags: {}",
        t.name,
        if tags.is_empty() {
            "-".to_owned()
        } else {
            tags.join(" ")
        }
    );
    Ok(())
}

/// Checks made before a value is read: the name and namespace are valid and, when a person
/// is to type the value, the daemon answers and (for `rotate`) the secret exists, so no one
/// types a secret that cannot be stored. Answers the store's backend when it was asked.
fn before_value(client: &Client, t: &Target, must_exist: bool) -> anyhow::Result<Option<String>> {
    coffer_types::SecretName::parse(&t.name).map_err(coffer_core::CoreError::InvalidName)?;
    if let Some(ns) = &t.namespace {
        coffer_types::Namespace::parse(ns).map_err(coffer_core::CoreError::InvalidName)?;
    }
    if !input::interactive() {
        return Ok(None);
    }
    let backend = client.status()?.backend.into_owned();
    if must_exist {
        match client.meta(t.namespace.as_deref(), &t.name) {
            Ok(_) => {}
            // A caller allowed to write but not to read metadata: the write will say.
            Err(coffer_client::ClientError::Refused {
                code: coffer_types::ErrorCode::Denied,
                ..
            }) => {}
            Err(e) => return Err(named(t)(e).into()),
        }
    }
    Ok(Some(backend))
}

/// What follows "stored NAME" or "generated NAME": the TPM NV index when the store is the
/// TPM's NV memory (where an index means something), else the version when known.
fn written(client: &Client, backend: Option<String>, w: &coffer_client::Written) -> String {
    let backend = backend.or_else(|| client.status().ok().map(|r| r.backend.into_owned()));
    if backend.as_deref() == Some(TPM_NV) {
        format!(" (index {})", w.index)
    } else {
        w.version
            .map(|v| format!(" (version {v})"))
            .unwrap_or_default()
    }
}

/// Names a missing secret with its namespace (cmd::missing).
fn named(t: &Target) -> impl FnOnce(coffer_client::ClientError) -> coffer_client::ClientError + '_ {
    super::missing::named(t.namespace.as_deref(), &t.name)
}

/// The backend whose indices are real TPM NV indices.
const TPM_NV: &str = "tpm-nv";

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
    let note = written(client, None, &w);
    let value = w
        .value
        .context("the daemon answered a generate without the value")?;
    eprintln!(
        "generated {}{}; the value follows on standard output, this once only",
        t.name, note
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
        let w = client
            .rotate(
                t.namespace.as_deref(),
                &t.name,
                None,
                args.mint.spec()?,
                &options,
            )
            .map_err(named(t))?;
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
    before_value(client, t, true)?;
    let value = input::value(&t.name, args.keep_newline, args.allow_empty, MAX_INPUT)?;
    let w = client
        .rotate(
            t.namespace.as_deref(),
            &t.name,
            Some(&value),
            None,
            &options,
        )
        .map_err(named(t))?;
    eprintln!(
        "rotated {} to version {}",
        t.name,
        w.version.map_or(0, Version::get)
    );
    Ok(())
}

fn describe(client: &Client, args: DescribeArgs) -> anyhow::Result<()> {
    let t = &args.target;
    client
        .describe(
            t.namespace.as_deref(),
            &t.name,
            args.description.as_deref(),
            args.max_versions,
        )
        .map_err(named(t))?;
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
    let meta: SecretMeta = client
        .meta(t.namespace.as_deref(), &t.name)
        .map_err(named(t))?;
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
    if client.status().is_ok_and(|r| r.backend == TPM_NV) {
        println!("index:        {}", meta.index);
    }
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
    if !meta.tags.is_empty() {
        let tags: Vec<&str> = meta.tags.iter().map(String::as_str).collect();
        println!("fleet tags:   {}", tags.join(" "));
    }
    println!("versions:");
    print_versions(&meta.versions, "  ");
    Ok(())
}

fn rotation(client: &Client, args: NameArgs) -> anyhow::Result<()> {
    let t = &args.target;
    let meta: SecretMeta = client
        .meta(t.namespace.as_deref(), &t.name)
        .map_err(named(t))?;
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
    let all = client
        .versions(t.namespace.as_deref(), &t.name)
        .map_err(named(t))?;
    if args.json {
        return json(&all);
    }
    print_versions(&all, "");
    Ok(())
}
