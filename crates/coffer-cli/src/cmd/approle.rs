//! `coffer approle`: AppRole, the machine login Vault Agent, CI systems and External Secrets
//! Operator use, on the local socket. A secret-id and a login's token are printed once, alone
//! on standard output; the daemon keeps only their hashes. Managing roles needs `sudo` on
//! `sys/approle`; a login needs nothing but its role-id and secret-id (read from standard
//! input, never from the command line).

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use coffer_client::{Client, RoleSettings};

use super::json;
use super::table::Table;
use crate::{config, input};

/// AppRole verbs (the same roles and secret-ids as HTTP's `auth/approle/`).
#[derive(Subcommand, Debug)]
pub enum AppRoleCommand {
    /// Make or change a role: the policies its logins' tokens carry, and its secret-ids' limits
    Write {
        /// The role's name (A-Z a-z 0-9 _ - .)
        role: String,
        /// A policy its tokens carry (repeat for several); `default` is added
        #[arg(long = "policy", value_name = "POLICY")]
        policies: Vec<String>,
        /// How long a secret-id lives, e.g. 10m (0: until destroyed)
        #[arg(long, value_parser = config::parse_duration)]
        secret_id_ttl: Option<Duration>,
        /// How many logins a secret-id allows (0: any number)
        #[arg(long)]
        secret_id_num_uses: Option<u64>,
        /// How long a login's token lives (default 32 days)
        #[arg(long, value_parser = config::parse_duration)]
        token_ttl: Option<Duration>,
        /// The longest a login's token lives, renewals included
        #[arg(long, value_parser = config::parse_duration)]
        token_max_ttl: Option<Duration>,
    },
    /// Show a role's settings (JSON)
    Read {
        /// The role's name
        role: String,
    },
    /// List the roles
    List,
    /// Delete a role and its secret-ids
    Delete {
        /// The role's name
        role: String,
    },
    /// Print a role's role-id (not secret: the secret-id is the password)
    RoleId {
        /// The role's name
        role: String,
    },
    /// Make a secret-id for a role; printed once, alone on standard output
    SecretId {
        /// The role's name
        role: String,
        /// How long it lives (default: the role's secret-id TTL)
        #[arg(long, value_parser = config::parse_duration)]
        ttl: Option<Duration>,
        /// How many logins it allows (default: the role's)
        #[arg(long)]
        num_uses: Option<u64>,
    },
    /// List the accessors of a role's live secret-ids
    SecretIds {
        /// The role's name
        role: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Destroy a secret-id by its accessor (from `secret-ids`)
    DestroySecretId {
        /// The role's name
        role: String,
        /// The secret-id's accessor
        accessor: String,
    },
    /// Log in with a role-id and a secret-id (one line of standard input, or asked for on a
    /// terminal); the token is printed once, alone on standard output
    Login {
        /// The role-id (from `role-id`)
        #[arg(long)]
        role_id: String,
    },
}

fn print_once(what: &str, secret: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(secret)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .with_context(|| format!("cannot write the {what} to standard output"))
}

/// Runs one verb.
pub fn run(client: &Client, command: AppRoleCommand) -> anyhow::Result<()> {
    match command {
        AppRoleCommand::Write {
            role,
            policies,
            secret_id_ttl,
            secret_id_num_uses,
            token_ttl,
            token_max_ttl,
        } => {
            client.approle_put(
                &role,
                &RoleSettings {
                    policies: (!policies.is_empty()).then_some(policies.as_slice()),
                    secret_id_ttl,
                    secret_id_num_uses,
                    token_ttl,
                    token_max_ttl,
                },
            )?;
            eprintln!("role {role} written");
        }
        AppRoleCommand::Read { role } => json::print(&client.approle_get(&role)?)?,
        AppRoleCommand::List => {
            for name in client.approle_list()? {
                println!("{name}");
            }
        }
        AppRoleCommand::Delete { role } => {
            client.approle_delete(&role)?;
            eprintln!("role {role} deleted, with its secret-ids");
        }
        AppRoleCommand::RoleId { role } => println!("{}", client.approle_role_id(&role)?),
        AppRoleCommand::SecretId {
            role,
            ttl,
            num_uses,
        } => {
            let (secret_id, info) = client.approle_secret_id(&role, ttl, num_uses)?;
            eprintln!(
                "created a secret-id for role {role} (accessor {}); it follows on standard \
                 output, this once only",
                info.get("accessor").and_then(|a| a.as_str()).unwrap_or("?")
            );
            print_once("secret-id", secret_id.expose_secret())?;
        }
        AppRoleCommand::SecretIds { role, json } => {
            let accessors = client.approle_secret_ids(&role)?;
            if json {
                return json::print(&accessors);
            }
            let mut t = Table::new(["ACCESSOR"]);
            for a in accessors {
                t.row([a]);
            }
            t.print();
        }
        AppRoleCommand::DestroySecretId { role, accessor } => {
            client.approle_secret_id_destroy(&role, &accessor)?;
            eprintln!("secret-id {accessor} of role {role} destroyed");
        }
        AppRoleCommand::Login { role_id } => {
            let secret_id = input::line_secret("secret-id: ")?;
            let (token, record) = client.approle_login(&role_id, &secret_id)?;
            drop(secret_id);
            eprintln!(
                "logged in: token {} (policies {}, expires {}); it follows on standard output, \
                 this once only",
                record.accessor,
                record.policies.join(", "),
                record.expires
            );
            print_once("token", token.expose_secret())?;
        }
    }
    Ok(())
}
