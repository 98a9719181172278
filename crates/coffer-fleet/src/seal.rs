//! Per-node sealing: each secret version a hub sends a node is encrypted to that node's
//! X25519 key with HPKE (RFC 9180, base mode: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! ChaCha20-Poly1305). The associated data binds the node id, the namespace, the name and
//! the version, so a payload captured for one node opens with no other node's key, and one
//! moved to another name, version or node fails to open.

use coffer_crypto::SecretBytes;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};

use crate::error::FleetError;

type Kem = X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::ChaCha20Poly1305;

/// HPKE's `info`: this protocol and its version.
const INFO: &[u8] = b"coffer fleet secret v1";

/// Bytes of an X25519 public key, and of HPKE's encapsulated key.
pub const KEY_BYTES: usize = 32;

/// What a sealed payload is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding<'a> {
    /// The node it is for.
    pub node: &'a str,
    /// The secret's namespace.
    pub namespace: &'a str,
    /// The secret's name.
    pub name: &'a str,
    /// The hub's version of the secret.
    pub version: u32,
}

impl<'a> Binding<'a> {
    /// The binding of an enrollment's challenge for the node key `key` (its text): no
    /// secret's binding is ever this one (a secret's namespace is never empty).
    #[must_use]
    pub fn enrollment(key: &'a str) -> Self {
        Self {
            node: key,
            namespace: "",
            name: "enroll",
            version: 0,
        }
    }

    /// The associated data: each field length-prefixed, so no two bindings share bytes.
    fn aad(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.name.len());
        for part in [self.node, self.namespace, self.name] {
            out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out.extend_from_slice(&self.version.to_be_bytes());
        out
    }
}

/// A node's public key: what a hub seals to.
#[derive(Clone, PartialEq, Eq)]
pub struct NodePublic(<Kem as hpke::Kem>::PublicKey);

impl std::fmt::Debug for NodePublic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodePublic({})", self.to_text())
    }
}

impl NodePublic {
    /// Reads the key from its text form (base64url, 43 characters).
    pub fn from_text(text: &str) -> Result<Self, FleetError> {
        let bytes = data_encoding::BASE64URL_NOPAD
            .decode(text.trim().as_bytes())
            .map_err(|_| FleetError::Invalid("a node key is 43 characters of base64url"))?;
        if bytes.len() != KEY_BYTES {
            return Err(FleetError::Invalid("a node key is 32 bytes"));
        }
        <Kem as hpke::Kem>::PublicKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| FleetError::Invalid("not an X25519 public key"))
    }

    /// The key as text (base64url, no padding).
    pub fn to_text(&self) -> String {
        data_encoding::BASE64URL_NOPAD.encode(&self.0.to_bytes())
    }

    /// Seals `plaintext` to this key, bound to `binding`: the encapsulated key, then the
    /// ciphertext and its tag.
    pub fn seal(&self, binding: &Binding<'_>, plaintext: &[u8]) -> Result<Vec<u8>, FleetError> {
        let (enc, ct) = hpke::single_shot_seal::<Aead, Kdf, Kem>(
            &OpModeS::Base,
            &self.0,
            INFO,
            plaintext,
            &binding.aad(),
        )
        .map_err(|_| FleetError::Crypto)?;
        let mut out = enc.to_bytes().to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }
}

/// A node's private key. Its bytes live in locked memory and are kept only in the node's
/// own store, under its master key (its slots, its TPM).
pub struct NodeKey {
    private: <Kem as hpke::Kem>::PrivateKey,
    public: NodePublic,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl NodeKey {
    /// A new key pair from the system's random source.
    pub fn generate() -> Result<Self, FleetError> {
        let seed = SecretBytes::random(KEY_BYTES).map_err(|_| FleetError::Crypto)?;
        Self::from_secret(&seed)
    }

    /// The key pair derived from its 32 stored bytes.
    pub fn from_secret(seed: &SecretBytes) -> Result<Self, FleetError> {
        if seed.len() != KEY_BYTES {
            return Err(FleetError::Invalid("a node key seed is 32 bytes"));
        }
        let (private, public) = Kem::derive_keypair(seed.expose_secret());
        Ok(Self {
            private,
            public: NodePublic(public),
        })
    }

    /// The public half.
    pub fn public(&self) -> &NodePublic {
        &self.public
    }

    /// Opens a payload sealed to this key for `binding`. Any other key, binding or a
    /// changed byte is [`FleetError::Crypto`].
    pub fn open(&self, binding: &Binding<'_>, sealed: &[u8]) -> Result<SecretBytes, FleetError> {
        if sealed.len() < KEY_BYTES + 16 {
            return Err(FleetError::Crypto);
        }
        let (enc, ct) = sealed.split_at(KEY_BYTES);
        let enc =
            <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| FleetError::Crypto)?;
        hpke::single_shot_open::<Aead, Kdf, Kem>(
            &OpModeR::Base,
            &self.private,
            &enc,
            INFO,
            ct,
            &binding.aad(),
        )
        .map(SecretBytes::from_vec)
        .map_err(|_| FleetError::Crypto)
    }

    /// Opens a payload as the wire carries it (standard base64, in
    /// [`crate::wire::ToNode::Put`]).
    pub fn open_base64(
        &self,
        binding: &Binding<'_>,
        sealed: &str,
    ) -> Result<SecretBytes, FleetError> {
        let bytes = data_encoding::BASE64
            .decode(sealed.as_bytes())
            .map_err(|_| FleetError::Invalid("a sealed payload is not base64"))?;
        self.open(binding, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(node: &str) -> Binding<'_> {
        Binding {
            node,
            namespace: "default",
            name: "kiosk/wifi",
            version: 3,
        }
    }

    #[test]
    fn a_payload_for_one_node_opens_only_with_its_key_and_binding() {
        let a = NodeKey::generate().unwrap();
        let b = NodeKey::generate().unwrap();
        let sealed = a.public().seal(&binding("node-a"), b"hunter2").unwrap();
        assert_eq!(
            a.open(&binding("node-a"), &sealed).unwrap().expose_secret(),
            b"hunter2"
        );
        // Node B's key, even with A's binding, opens nothing.
        assert!(matches!(
            b.open(&binding("node-a"), &sealed),
            Err(FleetError::Crypto)
        ));
        // Another node id, name or version fails too.
        assert!(a.open(&binding("node-b"), &sealed).is_err());
        let mut other = binding("node-a");
        other.version = 4;
        assert!(a.open(&other, &sealed).is_err());
        other = binding("node-a");
        other.name = "kiosk/wifi2";
        assert!(a.open(&other, &sealed).is_err());
        // A flipped byte fails; a short payload fails without a panic.
        let mut bent = sealed.clone();
        let last = bent.len() - 1;
        bent[last] ^= 1;
        assert!(a.open(&binding("node-a"), &bent).is_err());
        assert!(a.open(&binding("node-a"), &sealed[..10]).is_err());
    }

    #[test]
    fn keys_round_trip_as_text_and_seed() {
        let seed = SecretBytes::random(32).unwrap();
        let k = NodeKey::from_secret(&seed).unwrap();
        let again = NodeKey::from_secret(&seed).unwrap();
        assert_eq!(k.public(), again.public());
        let text = k.public().to_text();
        assert_eq!(text.len(), 43);
        assert_eq!(&NodePublic::from_text(&text).unwrap(), k.public());
        assert!(NodePublic::from_text("short").is_err());
        assert!(NodeKey::from_secret(&SecretBytes::random(31).unwrap()).is_err());
    }
}
