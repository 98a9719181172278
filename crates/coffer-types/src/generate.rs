//! How the daemon mints values (DESIGN.md, Data model, Generate; reference 004, section 2).

string_enum! {
    /// How minted bytes are written out.
    #[derive(Default)]
    pub enum Encoding {
        /// RFC 4648 base64url without padding: 32 bytes give 43 characters.
        #[default]
        Base64Url = "base64url",
        /// Lowercase hex: 32 bytes give 64 characters.
        Hex = "hex",
        /// Letters and digits, uniformly drawn, as many as carry `byte_len` bytes of
        /// entropy: 32 bytes give 43 characters.
        Alnum = "alnum",
    }
    /// A string that is not an encoding.
    error UnknownEncoding = "unknown encoding; expected base64url, hex or alnum";
}

/// What to mint: `byte_len` random bytes (1-4096) in an encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GeneratorSpec {
    byte_len: u16,
    /// How the bytes are written out.
    pub encoding: Encoding,
}

/// A byte length outside 1-4096.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("byte_len must be between 1 and {max}, got {got}", max = GeneratorSpec::MAX_BYTES)]
pub struct ByteLenError {
    /// What was asked.
    pub got: u64,
}

impl GeneratorSpec {
    /// The most bytes one secret may be minted from.
    pub const MAX_BYTES: u16 = 4096;
    /// The default length.
    pub const DEFAULT_BYTES: u16 = 32;

    /// A spec, checking the length.
    pub fn new(byte_len: u64, encoding: Encoding) -> Result<Self, ByteLenError> {
        match u16::try_from(byte_len) {
            Ok(n) if (1..=Self::MAX_BYTES).contains(&n) => Ok(Self {
                byte_len: n,
                encoding,
            }),
            _ => Err(ByteLenError { got: byte_len }),
        }
    }

    /// Random bytes to mint.
    pub fn byte_len(self) -> usize {
        usize::from(self.byte_len)
    }

    /// Characters of alphanumeric output carrying at least `byte_len` bytes of entropy.
    pub fn alnum_len(self) -> usize {
        // log2(62) > 5.954; 8 * n / 5.954 rounded up, in integers.
        (self.byte_len() * 8 * 1000).div_ceil(5954)
    }
}

impl Default for GeneratorSpec {
    fn default() -> Self {
        Self {
            byte_len: Self::DEFAULT_BYTES,
            encoding: Encoding::default(),
        }
    }
}

string_enum! {
    /// The hash of an HMAC computed value.
    #[derive(Default)]
    pub enum HmacAlgorithm {
        /// HMAC-SHA256.
        #[default]
        Sha256 = "sha256",
        /// HMAC-SHA512.
        Sha512 = "sha512",
    }
    /// A string that is not an HMAC algorithm.
    error UnknownAlgorithm = "unknown algorithm; expected sha256 or sha512";
}

string_enum! {
    /// How a digest is written out.
    #[derive(Default)]
    pub enum DigestEncoding {
        /// Lowercase hex.
        #[default]
        Hex = "hex",
        /// Standard base64 with padding.
        Base64 = "base64",
    }
    /// A string that is not a digest encoding.
    error UnknownDigestEncoding = "unknown digest encoding; expected hex or base64";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_checked() {
        assert!(GeneratorSpec::new(0, Encoding::Hex).is_err());
        assert!(GeneratorSpec::new(4097, Encoding::Hex).is_err());
        assert_eq!(
            GeneratorSpec::new(4096, Encoding::Hex).unwrap().byte_len(),
            4096
        );
        let err = GeneratorSpec::new(4097, Encoding::Hex)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "byte_len must be between 1 and 4096, got 4097");
        assert_eq!(GeneratorSpec::default().byte_len(), 32);
        assert_eq!(GeneratorSpec::default().alnum_len(), 43);
    }

    #[test]
    fn the_spec_is_stored_as_json() {
        let spec = GeneratorSpec::new(16, Encoding::Alnum).unwrap();
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(json, r#"{"byte_len":16,"encoding":"alnum"}"#);
        assert_eq!(serde_json::from_str::<GeneratorSpec>(&json).unwrap(), spec);
    }
}
