//! [`SecretBytes`]: the one type every secret value and every key lives in.
//!
//! Locked pages (see [`crate::locked`]), zeroized on drop, independent clones, and nothing
//! that prints: `Debug` shows only the type name, there is no `Display` and no `Serialize`.
//! Reading the bytes takes [`SecretBytes::expose_secret`], a word a reviewer can grep for.

use std::fmt;

use secrecy::{ExposeSecret, ExposeSecretMut, SecretBox};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::{CryptoError, locked};

/// Secret bytes in locked, zeroize-on-drop memory.
pub struct SecretBytes {
    buf: SecretBox<[u8]>,
    /// Bytes in use; the tail past `len` is zero.
    len: usize,
}

impl SecretBytes {
    /// `len` zero bytes, to be filled in place.
    pub fn zeroed(len: usize) -> Self {
        let buf: SecretBox<[u8]> = SecretBox::new(vec![0u8; len].into_boxed_slice());
        let bytes = buf.expose_secret();
        locked::lock(bytes.as_ptr(), bytes.len());
        Self { buf, len }
    }

    /// A copy of `bytes`.
    pub fn copy_from(bytes: &[u8]) -> Self {
        let mut s = Self::zeroed(bytes.len());
        s.expose_secret_mut().copy_from_slice(bytes);
        s
    }

    /// Takes the bytes of `v`, zeroizing every byte of its allocation (spare capacity too).
    pub fn from_vec(mut v: Vec<u8>) -> Self {
        let s = Self::copy_from(&v);
        v.zeroize();
        s
    }

    /// Takes the bytes of `s`, zeroizing its allocation.
    pub fn from_string(s: String) -> Self {
        Self::from_vec(s.into_bytes())
    }

    /// `len` bytes from the operating system's random source.
    pub fn random(len: usize) -> Result<Self, CryptoError> {
        let mut s = Self::zeroed(len);
        getrandom::fill(s.expose_secret_mut()).map_err(|_| CryptoError::Random)?;
        Ok(s)
    }

    /// Decodes standard base64 (RFC 4648, with padding) straight into locked memory.
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let enc = &data_encoding::BASE64;
        let max = enc
            .decode_len(text.len())
            .map_err(|_| CryptoError::Malformed("base64 of the wrong length"))?;
        let mut s = Self::zeroed(max);
        let n = enc
            .decode_mut(text.as_bytes(), s.expose_secret_mut())
            .map_err(|_| CryptoError::Malformed("invalid base64"))?;
        s.truncate(n);
        Ok(s)
    }

    /// Fills a buffer of at most `max` bytes with `fill`, which returns how many it used.
    pub fn fill_with<E>(
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<Self, E> {
        let mut s = Self::zeroed(max);
        let n = fill(s.expose_secret_mut())?;
        s.truncate(n);
        Ok(s)
    }

    /// Shortens to `len` bytes, zeroizing the rest.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.buf.expose_secret_mut()[len..self.len].zeroize();
            self.len = len;
        }
    }

    /// The bytes. Every call is a place where a secret leaves its box: keep it short-lived.
    pub fn expose_secret(&self) -> &[u8] {
        &self.buf.expose_secret()[..self.len]
    }

    /// The bytes, mutably.
    pub fn expose_secret_mut(&mut self) -> &mut [u8] {
        &mut self.buf.expose_secret_mut()[..self.len]
    }

    /// The bytes as UTF-8 text, if they are.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(self.expose_secret()).ok()
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.expose_secret().ct_eq(other.expose_secret()).into()
    }
}

impl Clone for SecretBytes {
    /// An independent copy in its own locked allocation.
    fn clone(&self) -> Self {
        Self::copy_from(self.expose_secret())
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        let all = self.buf.expose_secret_mut();
        all.zeroize();
        locked::unlock(all.as_ptr(), all.len());
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes(<redacted>)")
    }
}

impl<'de> serde::Deserialize<'de> for SecretBytes {
    /// Reads a JSON string's bytes into locked memory. Errors never quote the input.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = SecretBytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SecretBytes, E> {
                Ok(SecretBytes::copy_from(v.as_bytes()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<SecretBytes, E> {
                Ok(SecretBytes::from_string(v))
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<SecretBytes, E> {
                Ok(SecretBytes::copy_from(v))
            }
        }
        d.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_are_independent() {
        let a = SecretBytes::copy_from(b"sk_live_abc");
        let mut b = a.clone();
        assert_ne!(
            a.expose_secret().as_ptr(),
            b.expose_secret().as_ptr(),
            "a clone must own its own allocation"
        );
        b.expose_secret_mut()[0] = b'X';
        assert_eq!(a.expose_secret(), b"sk_live_abc");
        drop(a);
        assert_eq!(b.expose_secret(), b"Xk_live_abc");
    }

    #[test]
    fn nothing_prints() {
        let s = SecretBytes::copy_from(b"hunter2");
        let shown = format!("{s:?} {s:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn truncate_and_base64() {
        let s = SecretBytes::from_base64("aGVsbG8gd29ybGQ=").unwrap();
        assert_eq!(s.expose_secret(), b"hello world");
        assert!(SecretBytes::from_base64("not base64!").is_err());
        let mut t = SecretBytes::copy_from(b"abcdef");
        t.truncate(2);
        assert_eq!(t.expose_secret(), b"ab");
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn random_is_random_and_eq_is_by_value() {
        let a = SecretBytes::random(32).unwrap();
        let b = SecretBytes::random(32).unwrap();
        assert!(!a.ct_eq(&b));
        assert!(a.ct_eq(&a.clone()));
    }

    #[test]
    fn deserializes_escaped_and_plain_strings() {
        let s: SecretBytes = serde_json::from_str(r#""a\nb""#).unwrap();
        assert_eq!(s.expose_secret(), b"a\nb");
        let s: SecretBytes = serde_json::from_str(r#""plain""#).unwrap();
        assert_eq!(s.expose_secret(), b"plain");
        // serde's own type errors quote the input; the protocol layer replaces them.
        assert!(serde_json::from_str::<SecretBytes>("12345").is_err());
    }
}
