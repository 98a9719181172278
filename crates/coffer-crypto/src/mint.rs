//! Minting values: random bytes from the operating system, written out in locked memory.

use coffer_types::{Encoding, GeneratorSpec};

use crate::{CryptoError, SecretBytes};

const ALNUM: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A new value as `spec` asks: `byte_len` random bytes, encoded.
pub fn mint(spec: GeneratorSpec) -> Result<SecretBytes, CryptoError> {
    match spec.encoding {
        Encoding::Base64Url => encode(spec, &data_encoding::BASE64URL_NOPAD),
        Encoding::Hex => encode(spec, &data_encoding::HEXLOWER),
        Encoding::Alnum => alnum(spec.alnum_len()),
        _ => Err(CryptoError::Malformed(
            "an encoding this build cannot write",
        )),
    }
}

fn encode(spec: GeneratorSpec, enc: &data_encoding::Encoding) -> Result<SecretBytes, CryptoError> {
    let raw = SecretBytes::random(spec.byte_len())?;
    let mut out = SecretBytes::zeroed(enc.encode_len(raw.len()));
    enc.encode_mut(raw.expose_secret(), out.expose_secret_mut());
    Ok(out)
}

/// `len` characters drawn uniformly from 62 by rejection sampling: bytes 248-255 are
/// dropped, so each kept byte maps to a character with equal probability.
fn alnum(len: usize) -> Result<SecretBytes, CryptoError> {
    let mut out = SecretBytes::zeroed(len);
    let mut pool = SecretBytes::zeroed(len + 64);
    let mut filled = 0;
    while filled < len {
        getrandom::fill(pool.expose_secret_mut()).map_err(|_| CryptoError::Random)?;
        for &b in pool.expose_secret() {
            if b < 248 && filled < len {
                out.expose_secret_mut()[filled] = ALNUM[usize::from(b % 62)];
                filled += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn lengths_and_alphabets() {
        let b64 = mint(GeneratorSpec::default()).unwrap();
        assert_eq!(b64.len(), 43);
        let decoded = data_encoding::BASE64URL_NOPAD
            .decode(b64.expose_secret())
            .unwrap();
        assert_eq!(decoded.len(), 32);
        let hex = mint(GeneratorSpec::new(16, Encoding::Hex).unwrap()).unwrap();
        assert_eq!(hex.len(), 32);
        assert!(hex.expose_secret().iter().all(u8::is_ascii_hexdigit));
        let an = mint(GeneratorSpec::new(32, Encoding::Alnum).unwrap()).unwrap();
        assert_eq!(an.len(), 43);
        assert!(an.expose_secret().iter().all(u8::is_ascii_alphanumeric));
        let big = mint(GeneratorSpec::new(4096, Encoding::Base64Url).unwrap()).unwrap();
        assert_eq!(big.len(), 5462);
    }

    #[test]
    fn alnum_covers_the_alphabet_evenly() {
        let mut counts = [0u32; 256];
        let s = alnum(62_000).unwrap();
        for &b in s.expose_secret() {
            counts[usize::from(b)] += 1;
        }
        let used: Vec<u32> = ALNUM.iter().map(|&c| counts[usize::from(c)]).collect();
        // 1000 expected per character; a biased mapping (b % 62 over 256) would give
        // characters 0-7 about 1.23x the others.
        assert!(used.iter().all(|&n| (850..1150).contains(&n)), "{used:?}");
    }

    #[test]
    fn values_do_not_repeat() {
        let seen: HashSet<Vec<u8>> = (0..2000)
            .map(|_| {
                mint(GeneratorSpec::new(8, Encoding::Hex).unwrap())
                    .unwrap()
                    .expose_secret()
                    .to_vec()
            })
            .collect();
        assert_eq!(seen.len(), 2000);
    }
}
