//! The AES-256-GCM envelope and the associated data that binds a ciphertext to its place.
//!
//! Envelope: `[format 0x01][96-bit random nonce][ciphertext][128-bit tag]`. Associated data is
//! built by [`Aad`]: a context label, then each field length-prefixed, so no two different
//! field lists ever produce the same bytes. Decryption writes straight into locked memory.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, aead};

use crate::{CryptoError, SecretBytes};

const FORMAT: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Bytes an envelope adds to its plaintext.
pub const ENVELOPE_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

/// Associated data: a context label and length-prefixed fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aad(Vec<u8>);

impl Aad {
    /// Starts associated data for one purpose, e.g. `"coffer entry v1"`.
    pub fn new(context: &'static str) -> Self {
        let mut aad = Self(Vec::with_capacity(96));
        aad.push(context.as_bytes());
        aad
    }

    /// Appends a byte field.
    pub fn with(mut self, field: impl AsRef<[u8]>) -> Self {
        self.push(field.as_ref());
        self
    }

    /// Appends a number field.
    pub fn with_u32(self, n: u32) -> Self {
        self.with(n.to_be_bytes())
    }

    fn push(&mut self, field: &[u8]) {
        // Fields are names, ids and labels: far below 4 GiB.
        let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(field);
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

fn cipher(key: &[u8]) -> Result<Aes256Gcm, CryptoError> {
    Aes256Gcm::new_from_slice(key).map_err(|_| CryptoError::KeyLength {
        expected: 32,
        got: key.len(),
    })
}

/// Encrypts `plaintext` under `key` (32 bytes) bound to `aad`, with a fresh random nonce.
pub fn seal(key: &SecretBytes, plaintext: &[u8], aad: &Aad) -> Result<Vec<u8>, CryptoError> {
    let cipher = cipher(key.expose_secret())?;
    let mut out = Vec::with_capacity(plaintext.len() + ENVELOPE_OVERHEAD);
    out.push(FORMAT);
    out.resize(1 + NONCE_LEN, 0);
    getrandom::fill(&mut out[1..]).map_err(|_| CryptoError::Random)?;
    let nonce = aead::Nonce::<Aes256Gcm>::try_from(&out[1..1 + NONCE_LEN])
        .map_err(|_| CryptoError::Malformed("nonce"))?;
    // The plaintext is overwritten by its ciphertext in place; capacity was reserved above
    // so the buffer never moves and leaves no plaintext copy behind.
    out.extend_from_slice(plaintext);
    let tag = cipher
        .encrypt_inout_detached(&nonce, aad.as_bytes(), out[1 + NONCE_LEN..].as_mut().into())
        .map_err(|_| CryptoError::Malformed("plaintext too long"))?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Decrypts an envelope made by [`seal`] with the same key and associated data.
pub fn open(key: &SecretBytes, envelope: &[u8], aad: &Aad) -> Result<SecretBytes, CryptoError> {
    let (nonce, ciphertext, tag) = parts(envelope)?;
    let mut plain = SecretBytes::copy_from(ciphertext);
    decrypt(key, nonce, aad, plain.expose_secret_mut(), tag)?;
    Ok(plain)
}

/// [`open`] into ordinary memory, zeroized on drop but not locked: for what is not kept
/// secret once opened, such as the secret names a store's name index holds in ordinary
/// memory anyway. Locking the page of each small plaintext costs two system calls (`mlock`,
/// then `munlock`), which made opening a million names take about 8 s.
pub fn open_unlocked(
    key: &SecretBytes,
    envelope: &[u8],
    aad: &Aad,
) -> Result<zeroize::Zeroizing<Vec<u8>>, CryptoError> {
    let (nonce, ciphertext, tag) = parts(envelope)?;
    let mut plain = zeroize::Zeroizing::new(ciphertext.to_vec());
    decrypt(key, nonce, aad, &mut plain, tag)?;
    Ok(plain)
}

/// An envelope's nonce, ciphertext and tag.
type Parts<'a> = (&'a [u8], &'a [u8], &'a [u8]);

fn parts(envelope: &[u8]) -> Result<Parts<'_>, CryptoError> {
    if envelope.len() < ENVELOPE_OVERHEAD {
        return Err(CryptoError::Malformed("envelope too short"));
    }
    if envelope[0] != FORMAT {
        return Err(CryptoError::Malformed("unknown envelope format"));
    }
    let (nonce, rest) = envelope[1..].split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    Ok((nonce, ciphertext, tag))
}

/// Decrypts `buf` (the ciphertext) in place.
fn decrypt(
    key: &SecretBytes,
    nonce: &[u8],
    aad: &Aad,
    buf: &mut [u8],
    tag: &[u8],
) -> Result<(), CryptoError> {
    let cipher = cipher(key.expose_secret())?;
    let nonce =
        aead::Nonce::<Aes256Gcm>::try_from(nonce).map_err(|_| CryptoError::Malformed("nonce"))?;
    let tag = aead::Tag::<Aes256Gcm>::try_from(tag).map_err(|_| CryptoError::Malformed("tag"))?;
    cipher
        .decrypt_inout_detached(&nonce, aad.as_bytes(), buf.into(), &tag)
        .map_err(|_| CryptoError::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> SecretBytes {
        SecretBytes::random(32).unwrap()
    }

    #[test]
    fn nist_gcm_vector() {
        // NIST SP 800-38D test case 16 (AES-256, 96-bit IV, with AAD), checked through the
        // envelope layout: our envelope is [1][iv][ct][tag], the AAD is used raw.
        let k = SecretBytes::copy_from(
            &data_encoding::HEXLOWER
                .decode(b"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
                .unwrap(),
        );
        let iv = data_encoding::HEXLOWER
            .decode(b"cafebabefacedbaddecaf888")
            .unwrap();
        let pt = data_encoding::HEXLOWER.decode(b"d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39").unwrap();
        let aad_raw = data_encoding::HEXLOWER
            .decode(b"feedfacedeadbeeffeedfacedeadbeefabaddad2")
            .unwrap();
        let ct = data_encoding::HEXLOWER.decode(b"522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662").unwrap();
        let tag = data_encoding::HEXLOWER
            .decode(b"76fc6ece0f4e1768cddf8853bb2d551b")
            .unwrap();
        let mut envelope = vec![FORMAT];
        envelope.extend_from_slice(&iv);
        envelope.extend_from_slice(&ct);
        envelope.extend_from_slice(&tag);
        let cipher = cipher(k.expose_secret()).unwrap();
        let mut buf = envelope[1 + NONCE_LEN..envelope.len() - TAG_LEN].to_vec();
        cipher
            .decrypt_inout_detached(
                &aead::Nonce::<Aes256Gcm>::try_from(&iv[..]).unwrap(),
                &aad_raw,
                buf.as_mut_slice().into(),
                &aead::Tag::<Aes256Gcm>::try_from(&tag[..]).unwrap(),
            )
            .unwrap();
        assert_eq!(buf, pt);
    }

    #[test]
    fn aad_binds_the_place() {
        let k = key();
        let here = Aad::new("coffer entry v1").with("default").with_u32(1);
        let there = Aad::new("coffer entry v1").with("default").with_u32(2);
        let env = seal(&k, b"sk_live_abc", &here).unwrap();
        assert_eq!(
            open(&k, &env, &here).unwrap().expose_secret(),
            b"sk_live_abc"
        );
        assert_eq!(open(&k, &env, &there).unwrap_err(), CryptoError::Decrypt);
        assert_eq!(open(&key(), &env, &here).unwrap_err(), CryptoError::Decrypt);
    }

    #[test]
    fn aad_fields_are_unambiguous() {
        assert_ne!(
            Aad::new("c").with("ab").with("c"),
            Aad::new("c").with("a").with("bc")
        );
    }

    #[test]
    fn tampering_and_truncation_fail() {
        let k = key();
        let aad = Aad::new("t");
        let env = seal(&k, b"value", &aad).unwrap();
        for i in 0..env.len() {
            let mut bad = env.clone();
            bad[i] ^= 1;
            assert!(open(&k, &bad, &aad).is_err(), "flip at {i}");
        }
        assert!(open(&k, &env[..ENVELOPE_OVERHEAD - 1], &aad).is_err());
    }

    #[test]
    fn open_unlocked_checks_like_open() {
        let k = key();
        let here = Aad::new("coffer secret name v1").with("default");
        let there = Aad::new("coffer secret name v1").with("other");
        let env = seal(&k, b"app/db-password", &here).unwrap();
        assert_eq!(
            open_unlocked(&k, &env, &here).unwrap().as_slice(),
            b"app/db-password"
        );
        assert_eq!(
            open_unlocked(&k, &env, &there).unwrap_err(),
            CryptoError::Decrypt
        );
        for i in 0..env.len() {
            let mut bad = env.clone();
            bad[i] ^= 1;
            assert!(open_unlocked(&k, &bad, &here).is_err(), "flip at {i}");
        }
        assert!(open_unlocked(&k, &env[..ENVELOPE_OVERHEAD - 1], &here).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..2048), label in "[a-z]{0,12}") {
            let k = key();
            let aad = Aad::new("prop").with(label.as_bytes());
            let env = seal(&k, &data, &aad).unwrap();
            prop_assert_eq!(env.len(), data.len() + ENVELOPE_OVERHEAD);
            let plain = open(&k, &env, &aad).unwrap();
            prop_assert_eq!(plain.expose_secret(), &data[..]);
        }
    }
}
