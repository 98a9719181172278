//! `coffer webhooks`: signed webhooks (Standard Webhooks) that receive the store's change
//! events. `add` prints the endpoint's signing secret once, alone on standard output; the
//! daemon keeps it in the store and never shows it again. Every verb needs `sudo` on
//! `sys/webhooks`.

use std::io::Write;

use anyhow::Context;
use clap::Subcommand;
use coffer_client::{Client, NewWebhook};

use super::json;
use super::table::Table;

/// Webhook verbs.
#[derive(Subcommand, Debug)]
pub enum WebhooksCommand {
    /// Add a webhook; its signing secret (whsec_...) is printed once, alone on stdout
    Add {
        /// The endpoint: https://..., or http://... to a loopback address only
        url: String,
        /// The event types it takes, comma-separated (default: every event), e.g.
        /// secret.rotated,secret.written
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// Only events of this namespace (and those under it); events of the daemon's own
        /// records (policy.changed, token.*) go only to webhooks without one
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        /// Only events whose secret name starts with this
        #[arg(long)]
        prefix: Option<String>,
    },
    /// List the webhooks: id, endpoint, filter. Never their secrets.
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Remove a webhook; its pending deliveries are dropped
    Remove {
        /// Its id, from `webhooks list`
        id: String,
    },
    /// Send a webhook a test delivery (type webhook.test) now; see `webhooks status`
    Test {
        /// Its id
        id: String,
    },
    /// Per webhook: the last delivery, deliveries pending a retry, failed deliveries
    Status {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

fn or_dash(s: Option<String>) -> String {
    s.unwrap_or_else(|| "-".to_owned())
}

/// Runs one verb.
pub fn run(client: &Client, command: WebhooksCommand) -> anyhow::Result<()> {
    match command {
        WebhooksCommand::Add {
            url,
            events,
            namespace,
            prefix,
        } => {
            let added = client.add_webhook(&NewWebhook {
                url: &url,
                events: &events,
                namespace: namespace.as_deref(),
                prefix: prefix.as_deref(),
            })?;
            eprintln!(
                "added webhook {} for {}; its signing secret follows on standard output, this \
                 once only",
                added.webhook.id, added.webhook.url
            );
            let mut out = std::io::stdout().lock();
            out.write_all(added.signing_secret.expose_secret())
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.flush())
                .context("cannot write the signing secret to standard output")?;
        }
        WebhooksCommand::List { json } => {
            let all = client.webhooks()?;
            if json {
                return json::print(&all);
            }
            let mut t = Table::new(["ID", "URL", "EVENTS", "NAMESPACE", "PREFIX", "CREATED"]);
            for w in all {
                t.row([
                    w.id,
                    w.url,
                    match w.events.is_empty() {
                        true => "*".to_owned(),
                        false => w.events.join(","),
                    },
                    or_dash(w.namespace),
                    or_dash(w.prefix),
                    w.created.to_string(),
                ]);
            }
            t.print();
        }
        WebhooksCommand::Remove { id } => {
            client.remove_webhook(&id)?;
            eprintln!("webhook {id} removed");
        }
        WebhooksCommand::Test { id } => {
            client.test_webhook(&id)?;
            eprintln!(
                "a test delivery to {id} is on its way; `coffer webhooks status` shows how it went"
            );
        }
        WebhooksCommand::Status { json } => {
            let all = client.webhook_status()?;
            if json {
                return json::print(&all);
            }
            let mut t = Table::new(["ID", "URL", "LAST", "RESULT", "PENDING", "FAILED"]);
            let mut failures = Vec::new();
            for w in all {
                let (last, result) = match &w.last {
                    Some(d) => (
                        d.time.to_string(),
                        match (&d.error, d.http_status) {
                            (None, Some(s)) => format!("delivered (HTTP {s})"),
                            (Some(e), _) => format!("attempt {} failed: {e}", d.attempt),
                            (None, None) => "delivered".to_owned(),
                        },
                    ),
                    None => ("-".to_owned(), "-".to_owned()),
                };
                t.row([
                    w.id.clone(),
                    w.url,
                    last,
                    result,
                    w.pending.to_string(),
                    w.failed.len().to_string(),
                ]);
                for f in w.failed {
                    failures.push((w.id.clone(), f));
                }
            }
            t.print();
            if !failures.is_empty() {
                println!("\nfailed deliveries:");
                let mut f =
                    Table::new(["WEBHOOK", "MESSAGE", "TYPE", "AT", "ATTEMPTS", "LAST ERROR"]);
                for (id, d) in failures {
                    f.row([
                        id,
                        d.message,
                        d.kind,
                        d.time.to_string(),
                        d.attempt.to_string(),
                        or_dash(d.error),
                    ]);
                }
                f.print();
            }
        }
    }
    Ok(())
}
