//! TLS for the HTTP API: the operator's certificate and key, or a certificate coffer issues
//! itself.
//!
//! coffer's own certificates live in `DATA_DIR/tls/`: `ca.pem` (a CA made for this one
//! purpose, whose key is never written anywhere and is dropped once it has signed),
//! `server.pem` (the chain clients receive) and `server.key` (mode 0600), plus
//! `issued-for`, which records the names the certificate covers. Clients trust `ca.pem`
//! (`curl --cacert`, `BAO_CACERT`, `VAULT_CACERT`). When the names change or the
//! certificate is within 30 days of expiry, all three are issued again, so clients must
//! fetch the new `ca.pem`.

use std::fs;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// How long a self-issued certificate is valid.
const VALIDITY: Duration = Duration::from_secs(397 * 24 * 3600);
/// Issue again when less than this is left.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Why TLS could not be set up. Messages name files, never key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds no usable certificate or key.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// Issuing a certificate failed.
    #[error("cannot issue a certificate: {0}")]
    Issue(#[from] rcgen::Error),
    /// rustls refused the certificate and key.
    #[error("the certificate and key do not form a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A server configuration from the operator's PEM files.
pub fn from_files(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::Pem {
            path: cert.to_owned(),
            what: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: cert.to_owned(),
            what: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: cert.to_owned(),
            what: "no certificate in the file".to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Pem {
        path: key.to_owned(),
        what: format!("no usable private key ({e})"),
    })?;
    config(chain, key)
}

fn config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The names a self-issued certificate covers for `addr`: the address itself (or, for an
/// unspecified address, the loopback addresses and this host's name), `localhost`, and
/// `extra`.
pub fn names_for(addr: IpAddr, extra: &[String]) -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if addr.is_unspecified() {
        if let Ok(host) = nix::unistd::gethostname()
            && let Ok(host) = host.into_string()
        {
            names.push(host);
        }
    } else {
        names.push(addr.to_string());
    }
    names.extend(extra.iter().cloned());
    names.sort();
    names.dedup();
    names
}

/// A server configuration with coffer's own certificate for `names`, issued now when
/// `dir` holds none that fits.
pub fn self_issued(dir: &Path, names: &[String]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (cert, key, record) = (
        dir.join("server.pem"),
        dir.join("server.key"),
        dir.join("issued-for"),
    );
    let wanted = issued_for(names);
    let current = fs::read_to_string(&record).ok();
    let fits = current.as_deref().is_some_and(|r| still_valid(r, &wanted))
        && cert.exists()
        && key.exists();
    if !fits {
        issue(dir, names)?;
        tracing::info!(dir = %dir.display(), names = ?names, "issued a TLS certificate for the HTTP API; clients trust ca.pem");
    }
    from_files(&cert, &key)
}

/// The record's first line: the names; the second: the expiry in Unix seconds.
fn issued_for(names: &[String]) -> String {
    names.join(",")
}

fn still_valid(record: &str, wanted: &str) -> bool {
    let mut lines = record.lines();
    let (Some(names), Some(expiry)) = (lines.next(), lines.next()) else {
        return false;
    };
    let Ok(expiry) = expiry.trim().parse::<u64>() else {
        return false;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(u64::MAX);
    names == wanted && expiry > now.saturating_add(RENEW_BEFORE.as_secs())
}

fn issue(dir: &Path, names: &[String]) -> Result<(), TlsError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    let now = SystemTime::now();
    let expiry = now + VALIDITY;

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, "coffer HTTP API CA");
    ca.not_before = now.into();
    ca.not_after = expiry.into();
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca, ca_key);

    let server_key = KeyPair::generate()?;
    let mut server = CertificateParams::default();
    server.distinguished_name = DistinguishedName::new();
    server.distinguished_name.push(DnType::CommonName, "coffer");
    server.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()?;
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.not_before = now.into();
    server.not_after = expiry.into();
    let server_cert = server.signed_by(&server_key, &issuer)?;

    write(
        &dir.join("server.key"),
        server_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write(
        &dir.join("server.pem"),
        format!("{}{}", server_cert.pem(), ca_cert.pem()).as_bytes(),
        0o644,
    )?;
    write(&dir.join("ca.pem"), ca_cert.pem().as_bytes(), 0o644)?;
    let expiry_secs = expiry
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    write(
        &dir.join("issued-for"),
        format!("{}\n{expiry_secs}\n", issued_for(names)).as_bytes(),
        0o644,
    )?;
    Ok(())
}

/// Writes a file atomically (temporary file, sync, rename) with `mode`.
fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(parent) = path.parent()
        && let Ok(d) = fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_issued_certificate_is_kept_until_its_names_change() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let names = names_for("10.0.0.5".parse().unwrap(), &[]);
        assert!(names.contains(&"10.0.0.5".to_owned()));
        self_issued(&tls, &names).unwrap();
        let first = fs::read(tls.join("ca.pem")).unwrap();
        self_issued(&tls, &names).unwrap();
        assert_eq!(fs::read(tls.join("ca.pem")).unwrap(), first, "kept");
        let mode = fs::metadata(tls.join("server.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let more = names_for("10.0.0.5".parse().unwrap(), &["vault.example".to_owned()]);
        self_issued(&tls, &more).unwrap();
        assert_ne!(fs::read(tls.join("ca.pem")).unwrap(), first, "issued again");
    }

    #[test]
    fn a_missing_key_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = from_files(&dir.path().join("c.pem"), &dir.path().join("k.pem")).unwrap_err();
        assert!(err.to_string().contains("c.pem"), "{err}");
    }
}
