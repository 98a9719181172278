//! Computed values: results derived from a secret, so the caller never holds the secret
//! itself (DESIGN.md, Delivery; reference 004, section 3).

use coffer_types::{DigestEncoding, HmacAlgorithm};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Sha256, Sha512};

use crate::{CryptoError, SecretBytes};

/// HMAC of `data` under `key`, written out as asked. The digest is not secret.
pub fn hmac(
    algorithm: HmacAlgorithm,
    key: &SecretBytes,
    data: &[u8],
    encoding: DigestEncoding,
) -> Result<String, CryptoError> {
    let digest = match algorithm {
        HmacAlgorithm::Sha512 => {
            let mut mac = Hmac::<Sha512>::new_from_slice(key.expose_secret())
                .map_err(|_| CryptoError::Malformed("hmac key"))?;
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        _ => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_secret())
                .map_err(|_| CryptoError::Malformed("hmac key"))?;
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
    };
    Ok(match encoding {
        DigestEncoding::Base64 => data_encoding::BASE64.encode(&digest),
        _ => data_encoding::HEXLOWER.encode(&digest),
    })
}

/// Why a basic-auth header cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BasicAuthError {
    /// RFC 7617: the user-id cannot contain a colon (or control characters).
    #[error("the user may not contain ':' or control characters (RFC 7617)")]
    BadUser,
    /// The password is not text.
    #[error("the password secret is not UTF-8 text")]
    BadPassword,
}

/// The `Authorization` header value `Basic base64(user:password)`, in locked memory.
pub fn basic_auth(user: &str, password: &SecretBytes) -> Result<SecretBytes, BasicAuthError> {
    if user.chars().any(|c| c == ':' || c.is_control()) {
        return Err(BasicAuthError::BadUser);
    }
    if password.expose_str().is_none() {
        return Err(BasicAuthError::BadPassword);
    }
    let mut pair = SecretBytes::zeroed(user.len() + 1 + password.len());
    {
        let buf = pair.expose_secret_mut();
        buf[..user.len()].copy_from_slice(user.as_bytes());
        buf[user.len()] = b':';
        buf[user.len() + 1..].copy_from_slice(password.expose_secret());
    }
    let enc = &data_encoding::BASE64;
    let prefix = b"Basic ";
    let mut header = SecretBytes::zeroed(prefix.len() + enc.encode_len(pair.len()));
    header.expose_secret_mut()[..prefix.len()].copy_from_slice(prefix);
    enc.encode_mut(
        pair.expose_secret(),
        &mut header.expose_secret_mut()[prefix.len()..],
    );
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_vectors() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let key = SecretBytes::copy_from(b"Jefe");
        let data = b"what do ya want for nothing?";
        assert_eq!(
            hmac(HmacAlgorithm::Sha256, &key, data, DigestEncoding::Hex).unwrap(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hmac(HmacAlgorithm::Sha512, &key, data, DigestEncoding::Hex).unwrap(),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
        assert_eq!(
            hmac(HmacAlgorithm::Sha256, &key, data, DigestEncoding::Base64).unwrap(),
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="
        );
    }

    #[test]
    fn basic_auth_is_rfc7617() {
        // RFC 7617 section 2: Aladdin / open sesame.
        let h = basic_auth("Aladdin", &SecretBytes::copy_from(b"open sesame")).unwrap();
        assert_eq!(h.expose_secret(), b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(
            basic_auth("a:b", &SecretBytes::copy_from(b"p")).err(),
            Some(BasicAuthError::BadUser)
        );
    }
}
