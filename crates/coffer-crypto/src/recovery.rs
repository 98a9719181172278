//! Recovery keys: 256 random bits shown once at init, for when every other slot is lost.
//!
//! Shown as 56 characters of RFC 4648 base32 in groups of four:
//! `ABCD-EFGH-...`. The encoded 35 bytes are the 32 key bytes and a 3-byte BLAKE3 checksum,
//! so a typo is reported as a typo rather than as "this key does not open the store".

use crate::{CryptoError, SecretBytes};

const KEY_LEN: usize = 32;
const SUM_LEN: usize = 3;

/// A recovery key in locked memory.
pub struct RecoveryKey(SecretBytes);

impl RecoveryKey {
    /// A fresh random recovery key.
    pub fn generate() -> Result<Self, CryptoError> {
        SecretBytes::random(KEY_LEN).map(Self)
    }

    /// The key's bytes, for deriving the slot's wrapping key.
    pub(crate) fn bytes(&self) -> &SecretBytes {
        &self.0
    }

    /// Parses the displayed form; case, dashes and spaces do not matter.
    pub fn parse(text: &SecretBytes) -> Result<Self, CryptoError> {
        let mut clean = SecretBytes::zeroed(text.len());
        let mut n = 0;
        for &b in text.expose_secret() {
            match b {
                b'-' | b' ' | b'\t' | b'\r' | b'\n' => {}
                _ => {
                    clean.expose_secret_mut()[n] = b.to_ascii_uppercase();
                    n += 1;
                }
            }
        }
        clean.truncate(n);
        let enc = &data_encoding::BASE32_NOPAD;
        let decoded = match enc.decode_len(clean.len()) {
            Ok(len) if len == KEY_LEN + SUM_LEN => SecretBytes::fill_with(len, |out| {
                enc.decode_mut(clean.expose_secret(), out).map_err(|_| {
                    CryptoError::RecoveryKey(
                        "not a recovery key: it has characters outside A-Z and 2-7",
                    )
                })
            })?,
            _ => {
                return Err(CryptoError::RecoveryKey(
                    "not a recovery key: it should be 56 characters in groups of four",
                ));
            }
        };
        let (key, sum) = decoded.expose_secret().split_at(KEY_LEN);
        if checksum(key) != sum {
            return Err(CryptoError::RecoveryKey(
                "the recovery key is mistyped (its checksum does not match); check each group",
            ));
        }
        Ok(Self(SecretBytes::copy_from(key)))
    }

    /// The displayed form, in locked memory.
    pub fn display(&self) -> SecretBytes {
        let mut raw = SecretBytes::zeroed(KEY_LEN + SUM_LEN);
        raw.expose_secret_mut()[..KEY_LEN].copy_from_slice(self.0.expose_secret());
        raw.expose_secret_mut()[KEY_LEN..].copy_from_slice(&checksum(self.0.expose_secret()));
        let enc = &data_encoding::BASE32_NOPAD;
        let mut plain = SecretBytes::zeroed(enc.encode_len(raw.len()));
        enc.encode_mut(raw.expose_secret(), plain.expose_secret_mut());
        let groups = plain.len().div_ceil(4);
        SecretBytes::fill_with::<std::convert::Infallible>(plain.len() + groups - 1, |out| {
            let mut n = 0;
            for (i, chunk) in plain.expose_secret().chunks(4).enumerate() {
                if i > 0 {
                    out[n] = b'-';
                    n += 1;
                }
                out[n..n + chunk.len()].copy_from_slice(chunk);
                n += chunk.len();
            }
            Ok(n)
        })
        .unwrap_or_else(|never| match never {})
    }
}

fn checksum(key: &[u8]) -> [u8; SUM_LEN] {
    let h = blake3::hash(key);
    let mut out = [0u8; SUM_LEN];
    out.copy_from_slice(&h.as_bytes()[..SUM_LEN]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let k = RecoveryKey::generate().unwrap();
        let shown = k.display();
        let text = shown.expose_str().unwrap();
        assert_eq!(text.len(), 56 + 13);
        assert_eq!(text.split('-').count(), 14);
        assert!(text.split('-').all(|g| g.len() == 4));
        let back = RecoveryKey::parse(&shown).unwrap();
        assert!(back.0.ct_eq(&k.0));
        let lower = SecretBytes::copy_from(text.to_lowercase().replace('-', " ").as_bytes());
        assert!(RecoveryKey::parse(&lower).unwrap().0.ct_eq(&k.0));
    }

    #[test]
    fn typos_are_reported_as_typos() {
        let k = RecoveryKey::generate().unwrap();
        let mut shown = k.display().expose_str().unwrap().to_owned();
        let first = shown.remove(0);
        shown.insert(0, if first == 'A' { 'B' } else { 'A' });
        let err = RecoveryKey::parse(&SecretBytes::copy_from(shown.as_bytes()))
            .err()
            .unwrap();
        assert!(err.to_string().contains("mistyped"), "{err}");
        let err = RecoveryKey::parse(&SecretBytes::copy_from(b"hunter2"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("56 characters"), "{err}");
    }
}
