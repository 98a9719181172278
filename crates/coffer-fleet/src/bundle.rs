//! Provisioning bundles: what a device image carries so a node serves on its first boot
//! with no hub in reach. A bundle holds the secrets assigned to its tags and a one-use join
//! credential, encrypted (AES-256-GCM) under a one-time key that is written apart from the
//! bundle and never into the image. The file: `CFB1`, then the envelope.

use coffer_crypto::SecretBytes;
use coffer_crypto::aead::{self, Aad};
use serde::{Deserialize, Serialize};

use crate::error::FleetError;

const MAGIC: &[u8; 4] = b"CFB1";
const CONTEXT: &str = "coffer fleet bundle v1";

/// The largest bundle read: the secrets of one image.
pub const MAX_BUNDLE: usize = 256 << 20;

/// How a bundled node joins once a hub answers.
#[derive(Clone, Serialize, Deserialize)]
pub struct Join {
    /// A join token usable once, for the bundle's tags.
    pub token: String,
    /// The fleet CA's certificate (PEM).
    pub ca_pem: String,
    /// Hub addresses (`host:port`) the operator named, if any.
    #[serde(default)]
    pub hubs: Vec<String>,
}

/// A secret version in a bundle.
#[derive(Clone, Serialize, Deserialize)]
pub struct BundleSecret {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The hub's version.
    pub version: u32,
    /// Its kind.
    pub kind: String,
    /// The value, base64.
    pub value: String,
}

impl std::fmt::Debug for Join {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Join")
            .field("hubs", &self.hubs)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for BundleSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleSecret")
            .field("namespace", &self.namespace)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Drop for BundleSecret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.value);
    }
}

/// A bundle's contents.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Bundle {
    /// The tags the bundle was made for (the node's tags once it enrolls).
    pub tags: Vec<String>,
    /// The hub's revision when it was made.
    pub revision: u64,
    /// The join credential.
    pub join: Option<Join>,
    /// The secrets.
    pub secrets: Vec<BundleSecret>,
}

impl Drop for Join {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.token);
    }
}

impl Bundle {
    /// The bundle encrypted under a new one-time key: (the file's bytes, the key).
    pub fn seal(&self) -> Result<(Vec<u8>, SecretBytes), FleetError> {
        let key = SecretBytes::random(32).map_err(|_| FleetError::Crypto)?;
        let plain = SecretBytes::from_vec(
            serde_json::to_vec(self).map_err(|e| FleetError::Wire(e.to_string()))?,
        );
        let sealed = aead::seal(&key, plain.expose_secret(), &Aad::new(CONTEXT))
            .map_err(|_| FleetError::Crypto)?;
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&sealed);
        Ok((out, key))
    }

    /// Opens a bundle's bytes with its key. A wrong key, or a changed byte, is
    /// [`FleetError::Crypto`].
    pub fn open(bytes: &[u8], key: &SecretBytes) -> Result<Self, FleetError> {
        let body = bytes
            .strip_prefix(MAGIC)
            .ok_or(FleetError::Invalid("not a coffer bundle (no CFB1 header)"))?;
        let plain = aead::open(key, body, &Aad::new(CONTEXT)).map_err(|_| FleetError::Crypto)?;
        serde_json::from_slice(plain.expose_secret())
            .map_err(|e| FleetError::Wire(format!("a malformed bundle: {e}")))
    }
}

/// A bundle key as its file holds it: base64url, then a newline.
pub fn key_to_text(key: &SecretBytes) -> String {
    format!(
        "{}\n",
        data_encoding::BASE64URL_NOPAD.encode(key.expose_secret())
    )
}

/// A bundle key from its file's text.
pub fn key_from_text(text: &str) -> Result<SecretBytes, FleetError> {
    let key = data_encoding::BASE64URL_NOPAD
        .decode(text.trim().as_bytes())
        .map(SecretBytes::from_vec)
        .map_err(|_| FleetError::Invalid("a bundle key is 43 characters of base64url"))?;
    if key.len() != 32 {
        return Err(FleetError::Invalid("a bundle key is 32 bytes"));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_opens_with_its_key_only() {
        let bundle = Bundle {
            tags: vec!["kiosk".into()],
            revision: 4,
            join: Some(Join {
                token: "cft_x".into(),
                ca_pem: "pem".into(),
                hubs: vec![],
            }),
            secrets: vec![BundleSecret {
                namespace: "default".into(),
                name: "kiosk/wifi".into(),
                version: 1,
                kind: "line".into(),
                value: "aHVudGVyMg".into(),
            }],
        };
        let (bytes, key) = bundle.seal().unwrap();
        assert!(!bytes.windows(8).any(|w| w == b"kiosk/wi"));
        let back = Bundle::open(&bytes, &key).unwrap();
        assert_eq!(back.secrets[0].name, "kiosk/wifi");
        let text = key_to_text(&key);
        assert!(Bundle::open(&bytes, &key_from_text(&text).unwrap()).is_ok());
        let other = SecretBytes::random(32).unwrap();
        assert!(matches!(
            Bundle::open(&bytes, &other),
            Err(FleetError::Crypto)
        ));
        assert!(Bundle::open(b"nope", &key).is_err());
        assert!(key_from_text("short").is_err());
    }
}
