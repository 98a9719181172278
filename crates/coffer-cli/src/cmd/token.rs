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

/// Token verbs. All but `lookup` of one's own token need `sudo` on `sys/token`.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Make a token; it is printed once, alone on standard output.
    Create {
        /// A policy it carries (repeat for several)
        #[arg(long = "policy", value_name = "POLICY", required = true)]
        policies: Vec<String>,
        /// How long it lives, e.g. 1h, 30d
        #[arg(long, default_value = "30d", value_parser = config::parse_duration)]
        ttl: Duration,
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
    /// Revoke a token by its accessor; it stops working at once.
    Revoke {
        /// The accessor, from `token list`
        accessor: String,
    },
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
        } => {
            let made = client.create_token(&TokenRequest {
                policies: &policies,
                ttl,
                namespace: namespace.as_deref(),
                display_name: display_name.as_deref(),
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
            let mut t = Table::new(["ACCESSOR", "POLICIES", "NAMESPACE", "EXPIRES", "NAME"]);
            for tok in tokens {
                t.row([
                    tok.accessor,
                    tok.policies.join(", "),
                    tok.namespace.unwrap_or_else(|| "-".to_owned()),
                    tok.expires.to_string(),
                    tok.display_name.unwrap_or_else(|| "-".to_owned()),
                ]);
            }
            t.print();
        }
        TokenCommand::Revoke { accessor } => {
            client.revoke_token(&accessor)?;
            eprintln!("token {accessor} revoked");
        }
        TokenCommand::Lookup { accessor } => {
            json::print(&client.lookup_token(accessor.as_deref())?)?;
        }
    }
    Ok(())
}
