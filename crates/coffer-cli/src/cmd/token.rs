//! `coffer token`: tokens for applications and services (reference 001's agent keys). A
//! token is printed once, alone on standard output; the daemon keeps only its hash.
//! Requests carry a token when `COFFER_TOKEN` or `--token-file` gives one.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use coffer_client::{Client, TokenRequest};

use super::json;
use super::table::Table;
use crate::config;

/// Token verbs. `create` needs `create` on `sys/token` and gives only policies the caller
/// holds (`--orphan` needs `sudo` there); `list`, `revoke` and `lookup ACCESSOR` need `sudo`
/// on `sys/token`; a token renews, looks up and revokes itself without a grant.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Make a token (with a token: its child, holding no more); printed once, alone on stdout
    Create {
        /// A policy it carries (repeat for several; each once)
        #[arg(long = "policy", value_name = "POLICY", required = true)]
        policies: Vec<String>,
        /// How long it lives, e.g. 1h, 30d
        #[arg(long, default_value = "30d", value_parser = config::parse_duration)]
        ttl: Duration,
        /// The longest it can live, renewals included, fixed now (default: its parent's, or
        /// ten years)
        #[arg(long, value_parser = config::parse_duration)]
        max_ttl: Option<Duration>,
        /// Make it without a parent: revoking the token that makes it leaves it alone
        /// (needs `sudo` on `sys/token`)
        #[arg(long)]
        orphan: bool,
        /// Confine it to a namespace (and the namespaces under it)
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        /// A label shown in `token list`
        #[arg(long)]
        display_name: Option<String>,
    },
    /// List live tokens: accessor, policies, namespace, expiry. Never the tokens.
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its accessor, and the tokens descended from it; they stop at once
    Revoke {
        /// The accessor, from `token list`
        accessor: String,
    },
    /// Renew the token this command carries (never past its max TTL)
    Renew,
    /// Show a token's record: by accessor, or (without one) the token this command carries.
    Lookup {
        /// The accessor
        accessor: Option<String>,
    },
}

/// Runs one verb.
pub fn run(client: &Client, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            policies,
            ttl,
            namespace,
            display_name,
            max_ttl,
            orphan,
        } => {
            let made = client.create_token(&TokenRequest {
                policies: &policies,
                ttl,
                namespace: namespace.as_deref(),
                display_name: display_name.as_deref(),
                max_ttl,
                orphan,
            })?;
            eprintln!(
                "created token {} (policies {}, expires {}); it follows on standard output, this \
                 once only",
                made.record.accessor,
                policies.join(", "),
                made.record.expires
            );
            let mut out = std::io::stdout().lock();
            out.write_all(made.token.expose_secret())
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.flush())
                .context("cannot write the token to standard output")?;
        }
        TokenCommand::List { json } => {
            let tokens = client.tokens()?;
            if json {
                return json::print(&tokens);
            }
            let mut t = Table::new([
                "ACCESSOR",
                "POLICIES",
                "NAMESPACE",
                "EXPIRES",
                "PARENT",
                "NAME",
            ]);
            for tok in tokens {
                t.row([
                    tok.accessor,
                    tok.policies.join(", "),
                    tok.namespace.unwrap_or_else(|| "-".to_owned()),
                    tok.expires.to_string(),
                    tok.parent.unwrap_or_else(|| "-".to_owned()),
                    tok.display_name.unwrap_or_else(|| "-".to_owned()),
                ]);
            }
            t.print();
        }
        TokenCommand::Revoke { accessor } => {
            let revoked = client.revoke_token(&accessor)?;
            match revoked.len() {
                0 | 1 => eprintln!("token {accessor} revoked"),
                n => eprintln!(
                    "token {accessor} revoked, with {} tokens descended from it: {}",
                    n - 1,
                    revoked[1..].join(", ")
                ),
            }
        }
        TokenCommand::Renew => {
            let record = client.renew_token()?;
            eprintln!(
                "token {} renewed; it expires {}",
                record.accessor, record.expires
            );
        }
        TokenCommand::Lookup { accessor } => {
            json::print(&client.lookup_token(accessor.as_deref())?)?;
        }
    }
    Ok(())
}
