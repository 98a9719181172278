//! Where a PostgreSQL store is (`--store postgres`): the database's URL, its password file
//! and this hub's name, from flags, variables and the configuration file
//! ([docs/hubs.md](../../../docs/hubs.md)), checked before anything connects.

use std::path::{Path, PathBuf};

/// Where a PostgreSQL store is, shared by `init`, `serve` and the offline tools.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct DatabaseArgs {
    /// The PostgreSQL database of --store postgres, e.g. postgresql://coffer@db.example/coffer?sslmode=verify-full&sslrootcert=/etc/coffer/db-ca.pem; a password in it is refused (use --database-password-file or the URL's passfile=)
    #[arg(
        long,
        env = "COFFER_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database_url: Option<String>,
    /// A file (mode 0600) whose first line is the database password
    #[arg(
        long,
        env = "COFFER_DATABASE_PASSWORD_FILE",
        hide_env_values = true,
        value_name = "FILE"
    )]
    pub database_password_file: Option<PathBuf>,
    /// This hub's name among the hubs of one database (leases, sys/leader and audit records name it) [default: the host name and a tag of the data directory]
    #[arg(
        long,
        env = "COFFER_HUB_NAME",
        hide_env_values = true,
        value_name = "NAME"
    )]
    pub hub_name: Option<String>,
}

/// The configuration file's database keys.
#[derive(Debug, Default, Clone, Copy)]
pub struct FromFile<'a> {
    /// `database_url`.
    pub url: Option<&'a str>,
    /// `database_password_file`.
    pub password_file: Option<&'a Path>,
    /// `hub_name`.
    pub hub: Option<&'a str>,
}

/// The database settings: flags over the file; `None` unless the store is PostgreSQL
/// (`postgres`), an error when it is and no URL is given.
pub fn resolve(
    postgres: bool,
    flags: DatabaseArgs,
    file: FromFile<'_>,
    data_dir: &Path,
) -> anyhow::Result<Option<coffer_server::daemon::Database>> {
    if !postgres {
        if flags.database_url.is_some() {
            anyhow::bail!("--database-url is for --store postgres");
        }
        return Ok(None);
    }
    let Some(url) = flags.database_url.or(file.url.map(str::to_owned)) else {
        anyhow::bail!(
            "--store postgres needs a database: --database-url, COFFER_DATABASE_URL or \
             database_url in the configuration file"
        );
    };
    let hub = match flags.hub_name.or(file.hub.map(str::to_owned)) {
        Some(name) => {
            let ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !ok {
                anyhow::bail!("--hub-name takes 1 to 64 letters, digits, '-', '_' or '.'");
            }
            name
        }
        None => default_hub_name(data_dir),
    };
    let options = coffer_postgres::PgOptions {
        url,
        password_file: flags
            .database_password_file
            .or(file.password_file.map(Path::to_owned)),
    };
    options.check()?;
    Ok(Some(coffer_server::daemon::Database { options, hub }))
}

/// The host name and a tag of the data directory: stable across restarts, different for
/// two hubs on one machine.
fn default_hub_name(data_dir: &Path) -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "hub".to_owned());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(48)
        .collect();
    let tag = blake3::hash(data_dir.as_os_str().as_encoded_bytes()).to_hex();
    format!("{host}-{}", &tag[..8])
}
