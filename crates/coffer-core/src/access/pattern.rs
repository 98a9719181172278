//! Path patterns of policy rules: `acme/prod/*` (everything under a prefix), `acme/+/db`
//! (exactly one segment where the `+` is), `acme/prod/db` (that path only), `*` (everything).
//!
//! A path is `namespace/name` (`default/db/password`); operations on the daemon itself are
//! checked at `sys/<area>` (`sys/seal`, `sys/policy`, `sys/token`, `sys/slots`, `sys/audit`,
//! `sys/namespaces`). `*` is allowed only at the end, where it matches any rest, slashes
//! included, as Vault's glob does; `+` stands alone in its segment.

use std::fmt;

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Exactly this text.
    Literal(String),
    /// Any one segment.
    Any,
}

/// A parsed path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    text: String,
    segments: Vec<Segment>,
    /// `Some(prefix)` when the pattern ends in `*`: the last segment must start with it and
    /// anything may follow.
    glob: Option<String>,
}

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path pattern {pattern:?}: {reason}")]
pub struct PatternError {
    pattern: String,
    reason: &'static str,
}

impl PathPattern {
    /// Parses a pattern.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let err = |reason| PatternError {
            pattern: text.chars().take(200).collect(),
            reason,
        };
        if text.is_empty() {
            return Err(err("is empty"));
        }
        if text.len() > 512 {
            return Err(err("is longer than 512 bytes"));
        }
        if text.starts_with('/') {
            return Err(err(
                "starts with '/'; write namespace/name, e.g. default/db/*",
            ));
        }
        let (body, glob) = match text.strip_suffix('*') {
            Some(rest) => {
                let last = rest.rsplit('/').next().unwrap_or(rest);
                (rest, Some(last.to_owned()))
            }
            None => (text, None),
        };
        if body.contains('*') {
            return Err(err("has '*' before its end; '*' may only end a pattern"));
        }
        let mut segments = Vec::new();
        let mut parts: Vec<&str> = body.split('/').collect();
        if glob.is_some() {
            // The last part is the glob's prefix, matched separately.
            parts.pop();
        }
        for part in parts {
            match part {
                "+" => segments.push(Segment::Any),
                "" => return Err(err("has an empty segment ('//' or a trailing '/')")),
                p if p.contains('+') => {
                    return Err(err(
                        "has '+' inside a segment; '+' stands alone for one segment",
                    ));
                }
                p => segments.push(Segment::Literal(p.to_owned())),
            }
        }
        if let Some(prefix) = &glob
            && prefix.contains('+')
        {
            return Err(err(
                "has '+' inside a segment; '+' stands alone for one segment",
            ));
        }
        Ok(Self {
            text: text.to_owned(),
            segments,
            glob,
        })
    }

    /// Whether `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        let mut rest = Some(path);
        for segment in &self.segments {
            let Some(r) = rest else { return false };
            let (head, tail) = match r.split_once('/') {
                Some((h, t)) => (h, Some(t)),
                None => (r, None),
            };
            let ok = match segment {
                Segment::Any => !head.is_empty(),
                Segment::Literal(l) => l == head,
            };
            if !ok {
                return false;
            }
            rest = tail;
        }
        match (&self.glob, rest) {
            (Some(prefix), Some(r)) => r.starts_with(prefix.as_str()),
            (None, None) => true,
            _ => false,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, path: &str) -> bool {
        PathPattern::parse(pattern).unwrap().matches(path)
    }

    #[test]
    fn literals_globs_and_single_segments() {
        assert!(m("default/db", "default/db"));
        assert!(!m("default/db", "default/db/x"));
        assert!(!m("default/db", "default"));
        assert!(!m("default/db/x", "default/db"));
        assert!(m("app/*", "app/x"));
        assert!(m("app/*", "app/x/y"));
        assert!(m("app/*", "app/"));
        assert!(!m("app/*", "app"));
        assert!(!m("app/*", "application/x"));
        assert!(m("app*", "application/x"));
        assert!(m("*", "anything/at/all"));
        assert!(m("sys/*", "sys/seal"));
        assert!(m("acme/+/db", "acme/prod/db"));
        assert!(!m("acme/+/db", "acme/prod/eu/db"));
        assert!(!m("acme/+/db", "acme//db"));
        assert!(m("acme/+/*", "acme/prod/db/x"));
        assert!(m("acme/+/db-*", "acme/prod/db-main"));
        assert!(!m("acme/+", "acme/prod/db"));
        assert!(m("acme/+", "acme/prod"));
    }

    #[test]
    fn malformed_patterns_are_refused_with_a_reason() {
        for (p, why) in [
            ("", "empty"),
            ("/a", "starts with"),
            ("a/*/b", "'*' before its end"),
            ("a//b", "empty segment"),
            ("a/", "empty segment"),
            ("a/b+c", "'+' inside"),
            ("a/+x*", "'+' inside"),
        ] {
            let e = PathPattern::parse(p).unwrap_err().to_string();
            assert!(e.contains(why), "{p}: {e}");
        }
    }
}
