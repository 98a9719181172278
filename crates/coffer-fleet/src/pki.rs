//! The fleet's certificate authority and the mutual TLS between hubs and nodes.
//!
//! One CA per fleet, minted by the first hub and kept in the shared store (its key
//! encrypted like every secret). Every hub holds a server certificate it issues itself for
//! the one name nodes check, [`HUB_NAME`], with the server-auth usage only; every node a
//! client certificate for its own TLS key (made on the node, only its public half sent),
//! with the client-auth usage only, so no node's certificate can pose as a hub. A hub knows
//! a node by its certificate's SHA-256 fingerprint, kept in the node's record: removing the
//! record revokes the certificate at once.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SignatureAlgorithm,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sha2::Digest;

use crate::error::FleetError;

/// The name every hub's certificate carries and every node checks, whatever address it
/// dialled: the fleet's CA is private, so the name only says "a hub of this fleet".
pub const HUB_NAME: &str = "hub.fleet.coffer.invalid";

/// How long certificates last: the CA ten years, a hub's and a node's two (a node's is
/// renewed whenever it enrolls again; revocation is by its record, not by expiry).
const CA_DAYS: i64 = 3650;
const LEAF_DAYS: i64 = 730;

fn pki(e: impl std::fmt::Display) -> FleetError {
    FleetError::Pki(e.to_string())
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = rcgen::date_time_ymd(2000, 1, 1) + time_since_2000();
    params.not_before = now - std::time::Duration::from_secs(3600);
    params.not_after = now + std::time::Duration::from_secs(days.unsigned_abs() * 86_400);
}

fn time_since_2000() -> std::time::Duration {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // 2000-01-01 is 946,684,800 s after the epoch.
    since_epoch.saturating_sub(std::time::Duration::from_secs(946_684_800))
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "coffer fleet CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// The fleet's CA: its certificate, and its key while a hub holds it.
pub struct FleetCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for FleetCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetCa").finish_non_exhaustive()
    }
}

impl FleetCa {
    /// A new CA (ECDSA P-256).
    pub fn mint() -> Result<Self, FleetError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(pki)?;
        let mut params = ca_params();
        validity(&mut params, CA_DAYS);
        let cert = params.self_signed(&key).map_err(pki)?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(ca_params(), key),
        })
    }

    /// The CA from its stored certificate and key (PKCS#8 PEM).
    pub fn from_parts(cert_pem: &str, key_pem: &str) -> Result<Self, FleetError> {
        let key = KeyPair::from_pem(key_pem).map_err(pki)?;
        certificates(cert_pem)?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            issuer: Issuer::new(ca_params(), key),
        })
    }

    /// The CA's certificate (PEM): what nodes trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's key (PKCS#8 PEM), to be stored encrypted.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A hub's server certificate for [`HUB_NAME`] and its new key: (certificate PEM, key
    /// PEM).
    pub fn issue_hub(&self, hub: &str) -> Result<(String, String), FleetError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(pki)?;
        let mut params = CertificateParams::new(vec![HUB_NAME.to_owned()]).map_err(pki)?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("coffer hub {hub}"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut params, LEAF_DAYS);
        let cert = params.signed_by(&key, &self.issuer).map_err(pki)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A node's client certificate for its TLS public key (an uncompressed P-256 point, as
    /// [`TlsKey::public_raw`] gives it), naming the node: its DER.
    pub fn issue_node(&self, node: &str, tls_public: &[u8]) -> Result<Vec<u8>, FleetError> {
        let public = RawP256::new(tls_public)?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("coffer node {node}"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut params, LEAF_DAYS);
        let cert = params.signed_by(&public, &self.issuer).map_err(pki)?;
        Ok(cert.der().to_vec())
    }
}

/// Checks a node's TLS public key has the form [`FleetCa::issue_node`] takes.
///
/// # Errors
/// [`FleetError::Invalid`] when it is not 65 bytes starting with 4.
pub fn check_tls_public(bytes: &[u8]) -> Result<(), FleetError> {
    RawP256::new(bytes).map(drop)
}

/// A P-256 public key as sent by a node: 65 bytes, `04 || x || y`.
struct RawP256(Vec<u8>);

impl RawP256 {
    fn new(bytes: &[u8]) -> Result<Self, FleetError> {
        if bytes.len() != 65 || bytes[0] != 4 {
            return Err(FleetError::Invalid(
                "a TLS public key is an uncompressed P-256 point (65 bytes)",
            ));
        }
        Ok(Self(bytes.to_vec()))
    }
}

impl PublicKeyData for RawP256 {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

/// A node's TLS key (ECDSA P-256). Its PEM is kept in the node's store.
pub struct TlsKey(KeyPair);

impl std::fmt::Debug for TlsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsKey").finish_non_exhaustive()
    }
}

impl TlsKey {
    /// A new key.
    pub fn generate() -> Result<Self, FleetError> {
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map(Self)
            .map_err(pki)
    }

    /// The key from its PEM.
    pub fn from_pem(pem: &str) -> Result<Self, FleetError> {
        KeyPair::from_pem(pem).map(Self).map_err(pki)
    }

    /// Its PEM (PKCS#8), to be stored encrypted.
    pub fn to_pem(&self) -> String {
        self.0.serialize_pem()
    }

    /// The public key as a hub signs it.
    pub fn public_raw(&self) -> Vec<u8> {
        self.0.public_key_raw().to_vec()
    }
}

/// The SHA-256 of a certificate's DER, in hex: how a hub knows a node.
pub fn fingerprint(der: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(&sha2::Sha256::digest(der))
}

/// The certificates in `pem`, at least one.
pub fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, FleetError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| FleetError::Invalid("not a PEM certificate"))?;
    if certs.is_empty() {
        return Err(FleetError::Invalid("no certificate in the PEM"));
    }
    Ok(certs)
}

fn private_key(pem: &str) -> Result<PrivateKeyDer<'static>, FleetError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| FleetError::Invalid("not a PEM private key"))
}

fn roots(ca_pem: &str) -> Result<Arc<rustls::RootCertStore>, FleetError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(ca_pem)? {
        roots.add(cert).map_err(pki)?;
    }
    Ok(Arc::new(roots))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A hub's TLS: its certificate; a client certificate is asked for and checked against
/// the fleet's CA when given. One without is let through the handshake only to enroll
/// (its join token is its credential); the sync stream needs one whose fingerprint a
/// node's record holds.
pub fn hub_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, FleetError> {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(ca_pem)?, provider())
            .allow_unauthenticated()
            .build()
            .map_err(pki)?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(pki)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates(cert_pem)?, private_key(key_pem)?)
        .map_err(pki)?;
    Ok(Arc::new(config))
}

/// A node's TLS to a hub: the hub must hold a certificate for [`HUB_NAME`] under the CA in
/// `ca_pem`; the node shows its client certificate (DER) and key when it has them.
pub fn node_config(
    ca_pem: &str,
    client: Option<(&[u8], &TlsKey)>,
) -> Result<Arc<rustls::ClientConfig>, FleetError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(pki)?
        .with_root_certificates(roots(ca_pem)?);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let key = PrivateKeyDer::try_from(key.0.serialize_der()).map_err(pki)?;
            builder
                .with_client_auth_cert(vec![CertificateDer::from(cert.to_vec())], key)
                .map_err(pki)?
        }
    };
    Ok(Arc::new(config))
}

/// The server name a node checks.
pub fn hub_name() -> ServerName<'static> {
    // A fixed, valid DNS name: the conversion cannot fail.
    ServerName::try_from(HUB_NAME)
        .unwrap_or_else(|_| ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_issues_hub_and_node_certificates_and_comes_back_from_its_parts() {
        let ca = FleetCa::mint().unwrap();
        let again = FleetCa::from_parts(ca.cert_pem(), &ca.key_pem()).unwrap();
        let (hub_cert, hub_key) = again.issue_hub("a").unwrap();
        hub_config(ca.cert_pem(), &hub_cert, &hub_key).unwrap();
        let node = TlsKey::generate().unwrap();
        let der = again.issue_node("n1", &node.public_raw()).unwrap();
        node_config(ca.cert_pem(), Some((&der, &node))).unwrap();
        assert_eq!(fingerprint(&der).len(), 64);
        assert!(ca.issue_node("n1", &[4; 10]).is_err());
        assert!(TlsKey::from_pem(&node.to_pem()).is_ok());
    }
}
