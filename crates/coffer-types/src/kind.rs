//! Secret kinds (DESIGN.md, Data model; reference 002's secret types).

use std::fmt;
use std::str::FromStr;

/// What shape a secret's value has. The kind is bound into each version's ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Kind {
    /// One line of text, no newline.
    Line,
    /// Multi-line text, such as a PEM key.
    #[default]
    Text,
    /// `KEY=VALUE` lines.
    Env,
    /// Any bytes.
    File,
    /// A JSON object, as written through the Vault-compatible API.
    Kv,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 5] = [Self::Line, Self::Text, Self::Env, Self::File, Self::Kv];

    /// The stable string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Line => "line",
            Self::Text => "text",
            Self::Env => "env",
            Self::File => "file",
            Self::Kv => "kv",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown kind; expected one of line, text, env, file, kv")]
pub struct UnknownKind;

impl FromStr for Kind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or(UnknownKind)
    }
}

impl serde::Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Kind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for k in Kind::ALL {
            assert_eq!(k.as_str().parse::<Kind>().unwrap(), k);
        }
        assert!("blob".parse::<Kind>().is_err());
    }
}
