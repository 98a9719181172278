//! `coffer watch`: follow the change events the caller may see.

use std::io::Write;

use clap::Args;
use coffer_client::{Client, WatchFrom};
use coffer_types::{ChangeEvent, WatchLine};

/// Options of `coffer watch`.
#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Only secrets whose names start with this
    prefix: Option<String>,
    /// The namespace; `*` for every namespace (needs `read` on `sys/events/subscribe/*`;
    /// root also sees policy and token changes there)
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// Start after this revision (what an earlier watch printed last) instead of now; a
    /// revision the feed no longer holds is refused with `resync`
    #[arg(long, value_name = "REV")]
    since: Option<u64>,
    /// Print each line as the daemon sent it: JSON, one object per line, heartbeats included
    #[arg(long)]
    json: bool,
}

/// Prints events until interrupted, or until the daemon ends the stream.
pub fn run(client: &Client, args: WatchArgs) -> anyhow::Result<()> {
    let lines = client.watch(&WatchFrom {
        namespace: Some(&args.namespace),
        prefix: args.prefix.as_deref(),
        since: args.since,
    })?;
    let mut out = std::io::stdout().lock();
    for line in lines {
        let line = line?;
        let written = if args.json {
            serde_json::to_writer(&mut out, &line)
                .map_err(std::io::Error::other)
                .and_then(|()| writeln!(out))
        } else {
            match &line {
                WatchLine::Event { event, .. } => writeln!(out, "{}", human(event)),
                WatchLine::Started { revision, .. } => {
                    eprintln!("watching {} from revision {revision}", args.namespace);
                    Ok(())
                }
                WatchLine::Heartbeat { .. } => Ok(()),
            }
        };
        // A closed pipe (`coffer watch | head -1`) ends the watch quietly.
        if written.and_then(|()| out.flush()).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// `12 2026-12-01T01:02:03.000Z secret.written default/app/db v3 by uid:0`.
fn human(e: &ChangeEvent) -> String {
    let mut text = format!("{} {} {} {}", e.revision, e.time, e.action, e.namespace);
    if let Some(name) = &e.name {
        text.push('/');
        text.push_str(name);
    }
    if let Some(v) = e.version {
        text.push_str(&format!(" v{v}"));
    }
    if !e.versions.is_empty() {
        let list: Vec<String> = e.versions.iter().map(u32::to_string).collect();
        text.push_str(&format!(" versions {}", list.join(",")));
    }
    text.push_str(" by ");
    text.push_str(&e.actor);
    text
}
