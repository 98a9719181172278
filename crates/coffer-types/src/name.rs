//! Secret names and namespaces, parsed once at the edge.
//!
//! Both share one grammar (DESIGN.md, Data model): bytes of `[A-Za-z0-9._/-]`, `/`-separated
//! segments, no empty segment, no `.` or `..` segment, no leading or trailing `/`. A name is at
//! most 256 bytes, a namespace at most 128. Once a [`SecretName`] or [`Namespace`] exists it is
//! valid, so the core never checks again.
//!
//! Error messages never repeat the rejected input: a caller who pasted a value into the name
//! field must not find it echoed into a log.

use std::fmt;
use std::str::FromStr;

/// Longest secret name, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Longest namespace, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 128;

/// Why a name or namespace was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Zero bytes long.
    #[error("{what} must not be empty")]
    Empty {
        /// "name" or "namespace".
        what: &'static str,
    },
    /// Longer than the limit.
    #[error("{what} is longer than {max} bytes")]
    TooLong {
        /// "name" or "namespace".
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// A byte outside the allowed set.
    #[error("{what} has a character outside [A-Za-z0-9._/-] at byte {at}")]
    BadChar {
        /// "name" or "namespace".
        what: &'static str,
        /// Offset of the first bad byte.
        at: usize,
    },
    /// Starts or ends with `/`, or holds `//`.
    #[error("{what} has an empty path segment (a leading, trailing or doubled '/')")]
    EmptySegment {
        /// "name" or "namespace".
        what: &'static str,
    },
    /// A `.` or `..` segment.
    #[error("{what} has a '.' or '..' segment")]
    DotSegment {
        /// "name" or "namespace".
        what: &'static str,
    },
    /// `sys`, which policies use for the daemon's own operations.
    #[error("namespace `sys` is reserved: policies name the daemon's own operations sys/...")]
    Reserved,
}

fn check_namespace(s: &str) -> Result<(), NameError> {
    check_path(s, "namespace", MAX_NAMESPACE_LEN)?;
    if s == "sys" || s.starts_with("sys/") {
        return Err(NameError::Reserved);
    }
    Ok(())
}

fn check_path(s: &str, what: &'static str, max: usize) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty { what });
    }
    if s.len() > max {
        return Err(NameError::TooLong { what, max });
    }
    if let Some(at) = s
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-')))
    {
        return Err(NameError::BadChar { what, at });
    }
    for segment in s.split('/') {
        match segment {
            "" => return Err(NameError::EmptySegment { what }),
            "." | ".." => return Err(NameError::DotSegment { what }),
            _ => {}
        }
    }
    Ok(())
}

/// A valid secret name, such as `stripe-api-key` or `db/main/password`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretName(String);

impl SecretName {
    /// Parses a name, refusing anything outside the grammar.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        check_path(s, "name", MAX_NAME_LEN)?;
        Ok(Self(s.to_owned()))
    }

    /// Parses a name, keeping the given allocation.
    pub fn parse_owned(s: String) -> Result<Self, NameError> {
        check_path(&s, "name", MAX_NAME_LEN)?;
        Ok(Self(s))
    }

    /// Parses a name, keeping the allocation either way: the text comes back with the error.
    pub(crate) fn parse_keeping(s: String) -> Result<Self, (String, NameError)> {
        match check_path(&s, "name", MAX_NAME_LEN) {
            Ok(()) => Ok(Self(s)),
            Err(e) => Err((s, e)),
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A valid namespace, such as `default` or `acme/prod`. `default`, named on most requests,
/// costs no allocation.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(std::borrow::Cow<'static, str>);

impl Namespace {
    /// The namespace every store has from the start.
    pub const DEFAULT: &'static str = "default";

    /// Where the daemon keeps its own records (policies, tokens): a path no request can
    /// name, since `@` is outside the grammar.
    pub const SYSTEM: &'static str = "@coffer";

    /// Parses a namespace, refusing anything outside the grammar.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        check_namespace(s)?;
        Ok(Self(s.to_owned().into()))
    }

    /// Parses a namespace, keeping the given allocation.
    pub fn parse_owned(s: String) -> Result<Self, NameError> {
        check_namespace(&s)?;
        Ok(Self(s.into()))
    }

    /// Parses a namespace, keeping the allocation either way (`default` borrows none).
    pub(crate) fn parse_keeping(s: String) -> Result<Self, (String, NameError)> {
        if s == Self::DEFAULT {
            return Ok(Self::default_namespace());
        }
        match check_namespace(&s) {
            Ok(()) => Ok(Self(s.into())),
            Err(e) => Err((s, e)),
        }
    }

    /// The daemon's own namespace (see [`Namespace::SYSTEM`]).
    pub const fn system() -> Self {
        Self(std::borrow::Cow::Borrowed(Self::SYSTEM))
    }

    /// Whether this is the daemon's own namespace.
    pub fn is_system(&self) -> bool {
        self.0 == Self::SYSTEM
    }

    /// The `default` namespace.
    pub const fn default_namespace() -> Self {
        Self(std::borrow::Cow::Borrowed(Self::DEFAULT))
    }

    /// The namespace as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Self::default_namespace()
    }
}

macro_rules! text_impls {
    ($ty:ident) => {
        impl FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($ty), self.0)
            }
        }
        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}
text_impls!(SecretName);
text_impls!(Namespace);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in [
            "a",
            "stripe-api-key",
            "db/main/password",
            "A.B_c-9",
            "x/.hidden",
            "a..b",
        ] {
            assert!(SecretName::parse(ok).is_ok(), "{ok}");
        }
        assert!(SecretName::parse(&"a".repeat(MAX_NAME_LEN)).is_ok());
    }

    #[test]
    fn refuses_each_rule_with_its_reason() {
        let cases = [
            ("", "must not be empty"),
            ("/a", "empty path segment"),
            ("a/", "empty path segment"),
            ("a//b", "empty path segment"),
            ("a/./b", "'.' or '..'"),
            ("..", "'.' or '..'"),
            ("a b", "at byte 1"),
            ("é", "at byte 0"),
            ("a\nb", "at byte 1"),
        ];
        for (input, reason) in cases {
            let err = SecretName::parse(input).unwrap_err().to_string();
            assert!(err.contains(reason), "{input:?}: {err}");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert!(
            SecretName::parse(&long)
                .unwrap_err()
                .to_string()
                .contains("256")
        );
    }

    #[test]
    fn errors_never_echo_the_input() {
        let input = "sk_live_abc123 with spaces";
        let err = SecretName::parse(input).unwrap_err().to_string();
        assert!(!err.contains("sk_live"), "{err}");
    }

    #[test]
    fn namespace_limit_is_shorter() {
        assert!(Namespace::parse(&"n".repeat(MAX_NAMESPACE_LEN)).is_ok());
        assert!(Namespace::parse(&"n".repeat(MAX_NAMESPACE_LEN + 1)).is_err());
        assert_eq!(Namespace::default().as_str(), "default");
    }

    #[test]
    fn sys_is_reserved_and_the_system_namespace_cannot_be_named() {
        for s in ["sys", "sys/x"] {
            assert_eq!(Namespace::parse(s).unwrap_err(), NameError::Reserved);
        }
        assert!(Namespace::parse("system").is_ok());
        assert!(SecretName::parse("sys").is_ok());
        assert!(Namespace::parse(Namespace::SYSTEM).is_err());
        assert!(Namespace::system().is_system());
        assert!(!Namespace::default().is_system());
    }

    proptest! {
        #[test]
        fn valid_names_round_trip(s in "[A-Za-z0-9_-][A-Za-z0-9._-]{0,20}(/[A-Za-z0-9_-][A-Za-z0-9._-]{0,20}){0,5}") {
            let name = SecretName::parse(&s).unwrap();
            prop_assert_eq!(name.as_str(), s.as_str());
            let json = serde_json::to_string(&name).unwrap();
            let back: SecretName = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, name);
        }

        #[test]
        fn parse_never_panics_and_accepted_names_obey_the_grammar(s in "\\PC{0,300}") {
            if let Ok(name) = SecretName::parse(&s) {
                let n = name.as_str();
                prop_assert!(!n.is_empty() && n.len() <= MAX_NAME_LEN);
                prop_assert!(!n.starts_with('/') && !n.ends_with('/') && !n.contains("//"));
                prop_assert!(n.split('/').all(|seg| seg != "." && seg != ".."));
            }
        }
    }
}
