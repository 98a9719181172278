//! Where the database is and how to reach it: the URL, the password (from a file only, never
//! from the URL or the command line) and TLS.
//!
//! Beyond what the client library reads from a URL, coffer reads three parameters libpq users
//! know: `passfile` (a `.pgpass` file), `sslrootcert` (the CA that signs the server's
//! certificate) and `sslmode=verify-ca`/`verify-full` (taken as `require`: rustls always
//! checks the certificate chain and the host name).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use coffer_store::StoreError;
use postgres::config::{Host, SslMode};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;
use zeroize::Zeroizing;

/// How to reach the database.
#[derive(Clone, Default)]
pub struct PgOptions {
    /// `postgresql://USER@HOST:PORT/DB?sslmode=...` (or libpq's `key=value` form). A password
    /// in it is refused: name a file instead.
    pub url: String,
    /// A file whose first line is the password (mode 0600 or stricter).
    pub password_file: Option<PathBuf>,
}

impl std::fmt::Debug for PgOptions {
    /// The URL as [`PgOptions::check`] sees it: where it points, never a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let database = parse(&self.url)
            .map(|(config, _)| describe(&config))
            .unwrap_or_else(|_| "(not a valid URL)".to_owned());
        f.debug_struct("PgOptions")
            .field("database", &database)
            .field("password_file", &self.password_file)
            .finish()
    }
}

impl PgOptions {
    /// Checks the URL without connecting or reading any file: it parses, and holds no
    /// password. Errors never quote it.
    pub fn check(&self) -> Result<(), StoreError> {
        parse(&self.url).map(drop)
    }
}

/// The client's settings and coffer's own parameters from a URL; refuses a password in it.
fn parse(url: &str) -> Result<(postgres::Config, Extra), StoreError> {
    if url.trim().is_empty() {
        return Err(bad(
            "no database URL (--database-url, COFFER_DATABASE_URL or database_url in the file)",
        ));
    }
    let (url, extra) = take_extra(url);
    // The client's parse errors never quote the URL's value.
    let mut config = postgres::Config::from_str(&url)
        .map_err(|e| bad(format!("the database URL is not valid: {e}")))?;
    if config.get_password().is_some() {
        return Err(bad(
            "the database URL holds a password; keep it out of URLs (they show in process \
             lists and logs): put it in a file named by --database-password-file, or by the \
             URL's passfile=PATH",
        ));
    }
    if config.get_user().is_none() {
        config.user("coffer");
    }
    // Over TCP, TLS unless the URL says otherwise (the client's own default, `prefer`, lets
    // a man in the middle turn it down).
    if !url.contains("sslmode") && tcp(&config) {
        config.ssl_mode(SslMode::Require);
    }
    // A connection that stops answering is given up (a hub cut off does not hang), and a
    // session left inside a transaction (a hub that died holding the write lock) is ended by
    // the server, so the other hubs write again.
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    config.keepalives_idle(Duration::from_secs(10));
    let guard = "-c idle_in_transaction_session_timeout=30000";
    let options = match config.get_options() {
        Some(given) => format!("{given} {guard}"),
        None => guard.to_owned(),
    };
    config.options(&options);
    Ok((config, extra))
}

/// Whether any host of `config` is reached over TCP.
fn tcp(config: &postgres::Config) -> bool {
    config.get_hosts().iter().any(|h| matches!(h, Host::Tcp(_))) || config.get_hosts().is_empty()
}

/// Opens connections with one set of settings.
pub struct Connector {
    config: postgres::Config,
    tls: MakeRustlsConnect,
    describe: String,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("database", &self.describe)
            .finish_non_exhaustive()
    }
}

fn bad(detail: impl std::fmt::Display) -> StoreError {
    StoreError::unavailable("reading the database settings", detail.to_string())
}

/// The parameters coffer reads itself, taken out of the URL before the client parses it.
#[derive(Default)]
struct Extra {
    passfile: Option<PathBuf>,
    rootcert: Option<PathBuf>,
}

/// Splits coffer's own parameters out of a URL's query (or a `key=value` string).
fn take_extra(url: &str) -> (String, Extra) {
    let mut extra = Extra::default();
    let mut keep = |key: &str, value: &str| -> Option<String> {
        match key {
            "passfile" => extra.passfile = Some(PathBuf::from(value)),
            "sslrootcert" => extra.rootcert = Some(PathBuf::from(value)),
            "sslmode" if matches!(value, "verify-ca" | "verify-full") => {
                return Some("sslmode=require".to_owned());
            }
            _ => return None,
        }
        Some(String::new())
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_owned(), extra);
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
            match keep(k, &value) {
                Some(replaced) if replaced.is_empty() => {}
                Some(replaced) => kept.push(replaced),
                None => kept.push(pair.to_owned()),
            }
        }
        let rebuilt = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        (rebuilt, extra)
    } else {
        let mut kept = Vec::new();
        for word in url.split_whitespace() {
            let (k, v) = word.split_once('=').unwrap_or((word, ""));
            match keep(k, v) {
                Some(replaced) if replaced.is_empty() => {}
                Some(replaced) => kept.push(replaced),
                None => kept.push(word.to_owned()),
            }
        }
        (kept.join(" "), extra)
    }
}

/// Reads a secret file that only its owner may read.
fn read_private(path: &Path, what: &str) -> Result<Zeroizing<String>, StoreError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| bad(format!("cannot read the {what} {}: {e}", path.display())))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(bad(format!(
            "the {what} {} may be read by others (mode {:o}); chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        )));
    }
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|e| bad(format!("cannot read the {what} {}: {e}", path.display())))
}

/// A `.pgpass` line's fields: `:` separates them, `\` escapes `:` and `\`.
fn pgpass_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => field.extend(chars.next()),
            ':' => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// The password a `.pgpass` file gives for the first host of `config`, as libpq picks it.
fn from_pgpass(text: &str, config: &postgres::Config) -> Option<Zeroizing<String>> {
    let (host, socket) = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => (h.clone(), false),
        Some(Host::Unix(p)) => (p.display().to_string(), true),
        None => ("localhost".to_owned(), false),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user().unwrap_or_default().to_owned();
    let db = config.get_dbname().unwrap_or(&user).to_owned();
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        // A line without five fields is skipped, as libpq skips it.
        let Ok([h, p, d, u, password]) = <[String; 5]>::try_from(pgpass_fields(line)) else {
            continue;
        };
        let host_ok = h == "*" || h == host || (socket && h == "localhost");
        if host_ok && (p == "*" || p == port) && (d == "*" || d == db) && (u == "*" || u == user) {
            return Some(Zeroizing::new(password));
        }
    }
    None
}

fn tls(rootcert: Option<&Path>) -> Result<MakeRustlsConnect, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    match rootcert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| bad(format!("cannot read sslrootcert {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(bad(format!(
                    "sslrootcert {} holds no certificate",
                    path.display()
                )));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    bad(format!(
                        "sslrootcert {} holds a bad certificate: {e}",
                        path.display()
                    ))
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(format!("TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

impl Connector {
    /// Checks the settings and reads the password; connects nothing yet.
    pub fn new(options: &PgOptions) -> Result<Self, StoreError> {
        let (mut config, extra) = parse(&options.url)?;
        if let Some(path) = &options.password_file {
            let text = read_private(path, "database password file")?;
            let password = text.lines().next().unwrap_or_default();
            config.password(password.as_bytes());
        } else if let Some(path) = &extra.passfile {
            let text = read_private(path, "passfile")?;
            match from_pgpass(&text, &config) {
                Some(password) => {
                    config.password(password.as_bytes());
                }
                None => {
                    return Err(bad(format!(
                        "the passfile {} has no line for this host, port, database and user",
                        path.display()
                    )));
                }
            }
        }
        if config.get_password().is_some()
            && tcp(&config)
            && config.get_ssl_mode() != SslMode::Require
        {
            return Err(bad(
                "a password is sent to the database only over TLS: use sslmode=require (or \
                 verify-full with sslrootcert=), or a Unix socket (host=/run/postgresql)",
            ));
        }
        let describe = describe(&config);
        Ok(Self {
            config,
            tls: tls(extra.rootcert.as_deref())?,
            describe,
        })
    }

    /// A new connection.
    pub fn connect(&self) -> Result<postgres::Client, StoreError> {
        self.config.connect(self.tls.clone()).map_err(|e| {
            StoreError::unavailable("connecting to PostgreSQL", crate::ops::detail(&e))
        })
    }

    /// Where the database is, without any password: `user@host:port/db`.
    pub fn describe(&self) -> &str {
        &self.describe
    }
}

fn describe(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or_default();
    let db = config.get_dbname().unwrap_or(user);
    format!("{user}@{host}:{port}/{db}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coffers_own_parameters_leave_the_url() {
        let (url, extra) = take_extra(
            "postgresql://coffer@db:5432/coffer?passfile=%2Fetc%2Fpg&sslmode=verify-full&sslrootcert=/ca.pem&connect_timeout=5",
        );
        assert_eq!(
            url,
            "postgresql://coffer@db:5432/coffer?sslmode=require&connect_timeout=5"
        );
        assert_eq!(extra.passfile.as_deref(), Some(Path::new("/etc/pg")));
        assert_eq!(extra.rootcert.as_deref(), Some(Path::new("/ca.pem")));
        let (kv, extra) = take_extra("host=/run/pg user=coffer passfile=/p");
        assert_eq!(kv, "host=/run/pg user=coffer");
        assert!(extra.passfile.is_some());
    }

    #[test]
    fn a_password_in_the_url_is_refused_without_echoing_it() {
        let err = Connector::new(&PgOptions {
            url: "postgresql://coffer:hunter2secret@db/coffer".into(),
            password_file: None,
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("--database-password-file"), "{err}");
        assert!(!err.contains("hunter2secret"), "{err}");
        let options = PgOptions {
            url: "postgresql://coffer:hunter2secret@db/coffer".into(),
            password_file: None,
        };
        assert!(options.check().is_err());
        let shown = format!("{options:?}");
        assert!(!shown.contains("hunter2secret"), "{shown}");
    }

    #[test]
    fn pgpass_lines_match_as_libpq_matches_them() {
        let config = postgres::Config::from_str("postgresql://app@db.example:5433/store").unwrap();
        let text =
            "# comment\nother:*:*:*:no\ndb.example:5433:store:app:pa\\:ss\n*:*:*:*:fallback\n";
        assert_eq!(from_pgpass(text, &config).unwrap().as_str(), "pa:ss");
        let sock = postgres::Config::from_str("host=/tmp/s user=app dbname=x").unwrap();
        assert_eq!(
            from_pgpass("localhost:5432:x:app:sock\n", &sock)
                .unwrap()
                .as_str(),
            "sock"
        );
        assert!(from_pgpass("db:1:x:y:z\n", &sock).is_none());
    }

    #[test]
    fn a_password_goes_over_tcp_only_with_tls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let with = |url: &str| {
            Connector::new(&PgOptions {
                url: url.into(),
                password_file: Some(path.clone()),
            })
        };
        let err = with("postgresql://coffer@db/coffer?sslmode=disable")
            .unwrap_err()
            .to_string();
        assert!(err.contains("only over TLS"), "{err}");
        assert!(with("postgresql://coffer@db/coffer?sslmode=prefer").is_err());
        // TLS by default over TCP; a socket needs none.
        with("postgresql://coffer@db/coffer").unwrap();
        with("postgresql://coffer@/coffer?host=/run/postgresql").unwrap();
        let pgpass = "bad line\ndb:5432:coffer:coffer:pw\n";
        let config = postgres::Config::from_str("postgresql://coffer@db/coffer").unwrap();
        assert_eq!(from_pgpass(pgpass, &config).unwrap().as_str(), "pw");
    }

    #[test]
    fn a_readable_password_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Connector::new(&PgOptions {
            url: "postgresql://coffer@db/coffer".into(),
            password_file: Some(path.clone()),
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let ok = Connector::new(&PgOptions {
            url: "postgresql://coffer@db/coffer".into(),
            password_file: Some(path),
        })
        .unwrap();
        assert_eq!(ok.describe(), "coffer@db:5432/coffer");
    }
}
