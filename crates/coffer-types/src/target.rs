//! Where a request points, parsed once at the edge: [`Target`] (a namespace and a secret
//! name) and [`SecretRef`] (`coffer://NAMESPACE/NAME`).
//!
//! A listener parses the namespace and the name it was given into a [`Target`] as soon as it
//! reads them. A part that does not parse keeps its error until the gate that checks it
//! (the namespace at the namespace gate, the name at validation), so a caller with a bad
//! token learns nothing about its input, and both protocols refuse in the same order.

use std::fmt;

use crate::{NameError, Namespace, SecretName};

/// A value parsed at the edge, or why it did not parse.
#[derive(Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// It parsed.
    Valid(T),
    /// It did not. `text` is kept only for the policy gate, which matches the path as
    /// given; it is never shown or logged (a caller may have pasted a value into it).
    Invalid {
        /// The text as given, cut to `KEPT_INVALID_BYTES` (one byte more than a valid name).
        text: String,
        /// The length of the text as given, in bytes (before it was cut; saturating at
        /// `u32::MAX`, far above any request the listeners accept).
        len: u32,
        /// Why it is refused.
        error: NameError,
    },
}

impl<T: AsRef<str>> Parsed<T> {
    /// The text as given (valid or not), for matching against policy paths only.
    pub fn text(&self) -> &str {
        match self {
            Self::Valid(v) => v.as_ref(),
            Self::Invalid { text, .. } => text,
        }
    }
}

impl<T> Parsed<T> {
    /// The parsed value, or the error.
    pub fn valid(&self) -> Result<&T, NameError> {
        match self {
            Self::Valid(v) => Ok(v),
            Self::Invalid { error, .. } => Err(error.clone()),
        }
    }

    /// The parsed value, if it parsed.
    pub fn ok(&self) -> Option<&T> {
        match self {
            Self::Valid(v) => Some(v),
            Self::Invalid { .. } => None,
        }
    }

    /// The length in bytes of what was given, when it did not parse (what an audit record
    /// shows of an invalid name: never the text).
    pub fn invalid_len(&self) -> Option<usize> {
        match self {
            Self::Valid(_) => None,
            Self::Invalid { len, .. } => Some(*len as usize),
        }
    }

    /// An invalid text: kept only up to [`KEPT_INVALID_BYTES`], with its length.
    fn invalid(text: String, error: NameError) -> Self {
        let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
        Self::Invalid {
            text: kept(text),
            len,
            error,
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Parsed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Valid(v) => v.fmt(f),
            Self::Invalid { error, .. } => write!(f, "Invalid({error})"),
        }
    }
}

impl<T> From<Result<T, (String, NameError)>> for Parsed<T> {
    fn from(r: Result<T, (String, NameError)>) -> Self {
        match r {
            Ok(v) => Self::Valid(v),
            Err((text, error)) => Self::invalid(text, error),
        }
    }
}

/// How much of an invalid name or namespace is kept for the policy gate: one byte more
/// than any valid name, so a request cannot make the daemon hold more of its input than
/// that once it is parsed (a 4 MB name is cut here and its memory given back).
pub const KEPT_INVALID_BYTES: usize = crate::MAX_NAME_LEN + 1;

/// The text of an invalid name, cut to [`KEPT_INVALID_BYTES`] (on a character boundary).
fn kept(mut text: String) -> String {
    if text.len() > KEPT_INVALID_BYTES {
        let mut end = KEPT_INVALID_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.shrink_to_fit();
    }
    text
}

/// The namespace and name a secret operation is about, as the request gave them.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Target {
    /// The namespace (`default` when the request named none).
    pub namespace: Parsed<Namespace>,
    /// The secret's name.
    pub name: Parsed<SecretName>,
}

impl Target {
    /// Parses a namespace (`None`: `default`) and a name.
    pub fn parse(namespace: Option<&str>, name: &str) -> Self {
        Self {
            namespace: parse_namespace(namespace),
            name: match SecretName::parse(name) {
                Ok(n) => Parsed::Valid(n),
                Err(error) => Parsed::invalid(name.to_owned(), error),
            },
        }
    }

    /// Parses a namespace (`None`: `default`) and a name, keeping their allocations.
    pub fn parse_owned(namespace: Option<String>, name: String) -> Self {
        Self {
            namespace: match namespace {
                None => Parsed::Valid(Namespace::default_namespace()),
                Some(text) => Namespace::parse_keeping(text).into(),
            },
            name: SecretName::parse_keeping(name).into(),
        }
    }

    /// A target from parts already parsed.
    pub fn new(namespace: Namespace, name: SecretName) -> Self {
        Self {
            namespace: Parsed::Valid(namespace),
            name: Parsed::Valid(name),
        }
    }
}

/// Parses a namespace as a request gives it (`None`: `default`).
pub fn parse_namespace(namespace: Option<&str>) -> Parsed<Namespace> {
    match namespace {
        None => Parsed::Valid(Namespace::default_namespace()),
        Some(text) => match Namespace::parse(text) {
            Ok(n) => Parsed::Valid(n),
            Err(error) => Parsed::invalid(text.to_owned(), error),
        },
    }
}

/// A reference to a secret: `coffer://NAMESPACE/NAME` (a nested namespace's `/` written
/// `%2F`), or a bare name in a default namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// The namespace; `None`: the caller's default.
    pub namespace: Option<Namespace>,
    /// The name.
    pub name: SecretName,
}

/// Why a reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    /// `coffer://` without a `/` between namespace and name.
    #[error("expected coffer://NAMESPACE/NAME")]
    Shape,
    /// The namespace or the name is outside the grammar.
    #[error("invalid {0}")]
    Name(#[from] NameError),
}

impl SecretRef {
    /// The scheme of a reference.
    pub const SCHEME: &'static str = "coffer://";

    /// Parses `coffer://NAMESPACE/NAME` or a bare `NAME` (in `default_namespace`).
    pub fn parse(text: &str, default_namespace: Option<&Namespace>) -> Result<Self, RefError> {
        match text.strip_prefix(Self::SCHEME) {
            Some(rest) => {
                let (ns, name) = rest.split_once('/').ok_or(RefError::Shape)?;
                let ns = ns.replace("%2F", "/").replace("%2f", "/");
                Ok(Self {
                    namespace: Some(Namespace::parse_owned(ns)?),
                    name: SecretName::parse(name)?,
                })
            }
            None => Ok(Self {
                namespace: default_namespace.cloned(),
                name: SecretName::parse(text)?,
            }),
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(
                f,
                "{}{}/{}",
                Self::SCHEME,
                ns.as_str().replace('/', "%2F"),
                self.name
            ),
            None => self.name.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_parts_wait_for_their_gate_without_showing_their_text() {
        let t = Target::parse(Some("acme/prod"), "db/password");
        assert_eq!(t.namespace.valid().unwrap().as_str(), "acme/prod");
        assert_eq!(t.name.text(), "db/password");
        let t = Target::parse(Some("sys"), "sk_live_pasted value");
        assert_eq!(t.namespace.valid().unwrap_err(), NameError::Reserved);
        assert!(t.name.valid().is_err());
        assert_eq!(t.name.text(), "sk_live_pasted value");
        assert!(!format!("{t:?}").contains("sk_live"), "{t:?}");
        assert_eq!(
            Target::parse(None, "x").namespace.valid().unwrap().as_str(),
            "default"
        );
        let owned = Target::parse_owned(Some("acme".into()), "a b".into());
        assert_eq!(
            owned.namespace,
            Target::parse(Some("acme"), "a b").namespace
        );
        assert_eq!(owned.name.text(), "a b");
        assert!(owned.name.valid().is_err());
    }

    #[test]
    fn references() {
        let r = SecretRef::parse("coffer://acme%2Fprod/db/password", None).unwrap();
        assert_eq!(r.namespace.as_ref().unwrap().as_str(), "acme/prod");
        assert_eq!(r.name.as_str(), "db/password");
        assert_eq!(r.to_string(), "coffer://acme%2Fprod/db/password");
        let app = Namespace::parse("app").unwrap();
        let bare = SecretRef::parse("token", Some(&app)).unwrap();
        assert_eq!(bare.namespace, Some(app));
        assert_eq!(
            SecretRef::parse("coffer://onlyns", None).unwrap_err(),
            RefError::Shape
        );
        assert!(SecretRef::parse("coffer://ns/", None).is_err());
        assert!(SecretRef::parse("a b", None).is_err());
    }
}
