//! Vault's HCL policies: `path "secret/data/app/*" { capabilities = ["read"] }` blocks with
//! Vault's capabilities (create, read, update, patch, delete, list, sudo, deny), `*` (only
//! last, a prefix glob) and `+` (one segment), judged in Vault's model: among the rules that
//! match a path, the most specific wins (Vault's "policies" page, priority matching), and
//! `deny` in the winning rule refuses. Paths are Vault's; [`super::vault_map`] says which
//! Vault paths and capabilities a coffer operation amounts to.
//!
//! The text is parsed by `hcl-rs`'s own parser (hcl-edit), which bounds nesting; errors name
//! the line. The text itself is kept so that a policy reads back exactly as written.

use std::cmp::Ordering;

use hcl::edit::Span;
use hcl::edit::expr::Expression;
use hcl::edit::structure::{Body, Structure};

/// Why a policy (HCL or coffer's own form) or a binding was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// The most text an HCL policy may have.
pub const MAX_HCL_BYTES: usize = 64 * 1024;

/// The most `path` blocks an HCL policy may have.
pub const MAX_PATH_BLOCKS: usize = 1024;

/// Vault's capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum VaultCap {
    /// Create data at a path that has none.
    Create = 0,
    /// Read.
    Read = 1,
    /// Change data at a path that has some.
    Update = 2,
    /// Change part of the data (HTTP PATCH).
    Patch = 3,
    /// Delete.
    Delete = 4,
    /// List keys under a path.
    List = 5,
    /// Root-protected endpoints.
    Sudo = 6,
    /// Refuses, whatever else is granted.
    Deny = 7,
}

impl VaultCap {
    /// Every capability, in Vault's order of `sys/capabilities` answers.
    pub const ALL: &'static [Self] = &[
        Self::Create,
        Self::Delete,
        Self::Deny,
        Self::List,
        Self::Patch,
        Self::Read,
        Self::Sudo,
        Self::Update,
    ];

    /// The word Vault writes.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Read => "read",
            Self::Update => "update",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::List => "list",
            Self::Sudo => "sudo",
            Self::Deny => "deny",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == word)
    }
}

/// A set of Vault capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VaultCaps(u8);

impl VaultCaps {
    /// The set with `c` added.
    pub const fn with(self, c: VaultCap) -> Self {
        Self(self.0 | 1 << c as u8)
    }

    /// Whether `c` is in the set.
    pub const fn has(self, c: VaultCap) -> bool {
        self.0 & (1 << c as u8) != 0
    }

    /// The words, in Vault's (alphabetical) order; `deny` alone when it is there.
    pub fn words(self) -> Vec<&'static str> {
        if self.has(VaultCap::Deny) {
            return vec!["deny"];
        }
        VaultCap::ALL
            .iter()
            .filter(|c| self.has(**c))
            .map(|c| c.as_str())
            .collect()
    }
}

/// A Vault path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultPattern {
    text: String,
}

impl VaultPattern {
    /// Parses a pattern: `*` only at the end, `+` only as a whole segment.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim_start_matches('/');
        if text.len() > 512 {
            return Err("is longer than 512 bytes".to_owned());
        }
        let body = text.strip_suffix('*').unwrap_or(text);
        if body.contains('*') {
            return Err("has '*' before its end; '*' may only end a path".to_owned());
        }
        if body
            .split('/')
            .any(|segment| segment.contains('+') && segment != "+")
        {
            return Err("has '+' inside a segment; '+' stands alone for one segment".to_owned());
        }
        Ok(Self {
            text: text.to_owned(),
        })
    }

    /// The pattern as written (without a leading `/`).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn glob(&self) -> bool {
        self.text.ends_with('*')
    }

    /// Whether the pattern matches `path`.
    pub fn matches(&self, path: &str) -> bool {
        let path = path.trim_start_matches('/');
        let segment = |p: &str, s: &str| p == "+" || p == s;
        match self.text.strip_suffix('*') {
            Some(body) => {
                let parts: Vec<&str> = body.split('/').collect();
                let mut rest = path.splitn(parts.len(), '/');
                let (last, init) = parts.split_last().unwrap_or((&"", &[]));
                for p in init {
                    match rest.next() {
                        Some(s) if segment(p, s) => {}
                        _ => return false,
                    }
                }
                rest.next().is_some_and(|r| r.starts_with(last))
            }
            None => {
                let (mut p, mut s) = (self.text.split('/'), path.split('/'));
                loop {
                    match (p.next(), s.next()) {
                        (None, None) => return true,
                        (Some(a), Some(b)) if segment(a, b) => {}
                        _ => return false,
                    }
                }
            }
        }
    }

    /// Vault's priority order: `Less` when `self` is the less specific. P1 is lower when its
    /// first `+` or `*` comes earlier, when it ends in `*` and P2 does not, when it has more
    /// `+` segments, when it is shorter, when it sorts lower.
    fn priority(&self, other: &Self) -> Ordering {
        let first_wild = |t: &str| t.find(['+', '*']).unwrap_or(usize::MAX);
        let pluses = |t: &str| t.split('/').filter(|s| *s == "+").count();
        first_wild(&self.text)
            .cmp(&first_wild(&other.text))
            .then_with(|| other.glob().cmp(&self.glob()))
            .then_with(|| pluses(&other.text).cmp(&pluses(&self.text)))
            .then_with(|| self.text.len().cmp(&other.text.len()))
            .then_with(|| self.text.cmp(&other.text))
    }
}

/// One `path` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HclRule {
    /// Where it applies.
    pub path: VaultPattern,
    /// What it grants.
    pub caps: VaultCaps,
}

/// A parsed HCL policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HclPolicy {
    /// Its rules, blocks on the same path merged.
    pub rules: Vec<HclRule>,
}

fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> usize {
    let offset = span.map_or(0, |s| s.start);
    text.get(..offset).map_or(0, |t| t.matches('\n').count()) + 1
}

/// Parses an HCL policy. Errors name the line and what to write instead.
pub fn parse_hcl(text: &str) -> Result<HclPolicy, PolicyError> {
    if text.len() > MAX_HCL_BYTES {
        return Err(PolicyError(format!(
            "the policy is {} bytes; an HCL policy may have at most {MAX_HCL_BYTES}",
            text.len()
        )));
    }
    let body: Body = hcl::edit::parser::parse_body(text).map_err(|e| {
        PolicyError(format!(
            "line {}: not HCL: {}",
            e.location().line(),
            e.message()
        ))
    })?;
    let mut policy = HclPolicy::default();
    let mut blocks = 0usize;
    for structure in body.iter() {
        let block = match structure {
            Structure::Block(b) if b.ident.as_str() == "path" => b,
            Structure::Attribute(a) if a.key.as_str() == "name" => continue,
            other => {
                let (what, span) = match other {
                    Structure::Block(b) => (format!("block {:?}", b.ident.as_str()), b.span()),
                    Structure::Attribute(a) => {
                        (format!("attribute {:?}", a.key.as_str()), a.span())
                    }
                };
                return Err(PolicyError(format!(
                    "line {}: unexpected {what}; a policy is made of path \"...\" {{ capabilities = [...] }} blocks",
                    line_of(text, span)
                )));
            }
        };
        let line = line_of(text, block.span());
        blocks += 1;
        if blocks > MAX_PATH_BLOCKS {
            return Err(PolicyError(format!(
                "line {line}: more than {MAX_PATH_BLOCKS} path blocks"
            )));
        }
        let [label] = block.labels.as_slice() else {
            return Err(PolicyError(format!(
                "line {line}: a path block has one label, the path: path \"secret/data/*\" {{ ... }}"
            )));
        };
        let path = VaultPattern::parse(label.as_str()).map_err(|e| {
            PolicyError(format!("line {line}: path {:?} {e}", short(label.as_str())))
        })?;
        let mut caps = VaultCaps::default();
        let mut any = false;
        for inner in block.body.iter() {
            let Structure::Attribute(attr) = inner else {
                return Err(PolicyError(format!(
                    "line {}: a path block holds only capabilities = [...]",
                    line_of(text, inner.span())
                )));
            };
            let at = line_of(text, attr.span());
            match attr.key.as_str() {
                "capabilities" => {
                    let Expression::Array(items) = &attr.value else {
                        return Err(PolicyError(format!(
                            "line {at}: capabilities is a list such as [\"read\", \"list\"]"
                        )));
                    };
                    for item in items.iter() {
                        let word = item.as_str().ok_or_else(|| {
                            PolicyError(format!(
                                "line {}: each capability is a string such as \"read\"",
                                line_of(text, item.span())
                            ))
                        })?;
                        let cap = VaultCap::parse(word).ok_or_else(|| {
                            PolicyError(format!(
                                "line {}: unknown capability {:?}; expected one of create, read, \
                                 update, patch, delete, list, sudo, deny",
                                line_of(text, item.span()),
                                short(word)
                            ))
                        })?;
                        caps = caps.with(cap);
                        any = true;
                    }
                }
                "policy" => {
                    // Vault's older form: one word standing for a set.
                    use VaultCap::*;
                    let set: &[VaultCap] = match attr.value.as_str() {
                        Some("deny") => &[Deny],
                        Some("read") => &[Read, List],
                        Some("write") => &[Create, Read, Update, Patch, Delete, List],
                        Some("sudo") => &[Create, Read, Update, Patch, Delete, List, Sudo],
                        _ => {
                            return Err(PolicyError(format!(
                                "line {at}: policy is one of \"deny\", \"read\", \"write\", \"sudo\"; \
                                 better, write capabilities = [...]"
                            )));
                        }
                    };
                    caps = set.iter().fold(caps, |c, &x| c.with(x));
                    any = true;
                }
                other => {
                    // Refused rather than ignored: ignoring denied_parameters would grant more
                    // than the author meant.
                    return Err(PolicyError(format!(
                        "line {at}: {:?} is not supported by coffer; a path block holds \
                         capabilities = [...] only",
                        short(other)
                    )));
                }
            }
        }
        if !any {
            return Err(PolicyError(format!(
                "line {line}: the block for {:?} grants no capability; add capabilities = [\"read\"] \
                 or [\"deny\"]",
                path.as_str()
            )));
        }
        match policy.rules.iter_mut().find(|r| r.path == path) {
            Some(r) => r.caps = VaultCaps(r.caps.0 | caps.0),
            None => policy.rules.push(HclRule { path, caps }),
        }
    }
    Ok(policy)
}

fn short(text: &str) -> String {
    text.chars().take(80).collect()
}

/// What the HCL rules say of one Vault capability on one Vault path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The winning rule grants it.
    Granted,
    /// No rule matches, or the winning one lacks it.
    NotGranted,
    /// The winning rule is `deny`.
    Denied,
}

/// The capabilities the HCL rules of `policies` give on `path`: those of the most specific
/// matching pattern, rules on the same pattern in several policies merged (Vault's ACL).
pub fn capabilities_on<'a>(
    policies: impl IntoIterator<Item = &'a HclPolicy>,
    path: &str,
) -> VaultCaps {
    let mut best: Option<(&VaultPattern, VaultCaps)> = None;
    for p in policies {
        for rule in p.rules.iter().filter(|r| r.path.matches(path)) {
            best = match best {
                None => Some((&rule.path, rule.caps)),
                Some((bp, bc)) => match rule.path.priority(bp) {
                    Ordering::Greater => Some((&rule.path, rule.caps)),
                    Ordering::Equal => Some((bp, VaultCaps(bc.0 | rule.caps.0))),
                    Ordering::Less => Some((bp, bc)),
                },
            };
        }
    }
    best.map_or(VaultCaps::default(), |(_, c)| c)
}

/// Judges `cap` on `path` in Vault's model.
pub fn judge<'a>(
    policies: impl IntoIterator<Item = &'a HclPolicy>,
    cap: VaultCap,
    path: &str,
) -> Verdict {
    let caps = capabilities_on(policies, path);
    if caps.has(VaultCap::Deny) {
        Verdict::Denied
    } else if caps.has(cap) {
        Verdict::Granted
    } else {
        Verdict::NotGranted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(p: &HclPolicy, path: &str) -> Vec<&'static str> {
        capabilities_on([p], path).words()
    }

    #[test]
    fn a_policy_parses_and_merges_blocks() {
        let p = parse_hcl(
            r#"
# app's policy
path "secret/data/app/*" {
  capabilities = ["read", "list"]
}
path "secret/data/app/*" { capabilities = ["create"] }
path "secret/metadata/+/x" { policy = "read" }
"#,
        )
        .unwrap();
        assert_eq!(p.rules.len(), 2);
        assert_eq!(caps(&p, "secret/data/app/db"), ["create", "list", "read"]);
        assert_eq!(caps(&p, "secret/metadata/a/x"), ["list", "read"]);
        assert!(caps(&p, "secret/metadata/a/b/x").is_empty());
        assert!(caps(&p, "secret/data/other").is_empty());
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            (
                "path \"a\" {\n  capabilities = [\"read\", \"reed\"]\n}\n",
                "line 2",
                "\"reed\"",
            ),
            ("\n\npath \"a\" {\n", "line 3", "not HCL"),
            (
                "path \"a*b\" { capabilities = [\"read\"] }",
                "line 1",
                "'*'",
            ),
            (
                "path \"a/b+/c\" { capabilities = [\"read\"] }",
                "line 1",
                "'+'",
            ),
            ("\npath \"a\" {}\n", "line 2", "grants no capability"),
            (
                "path \"a\" \"b\" { capabilities = [\"read\"] }",
                "line 1",
                "one label",
            ),
            ("foo \"a\" { }", "line 1", "block \"foo\""),
            (
                "path \"a\" {\n capabilities = [\"read\"]\n denied_parameters = {}\n}",
                "line 3",
                "not supported",
            ),
            ("path \"a\" { capabilities = \"read\" }", "line 1", "a list"),
        ];
        for (text, line, why) in cases {
            let e = parse_hcl(text).unwrap_err().to_string();
            assert!(e.starts_with(line) && e.contains(why), "{text:?}: {e}");
        }
    }

    #[test]
    fn limits_hold() {
        let big = format!("# {}\n", "x".repeat(MAX_HCL_BYTES));
        assert!(parse_hcl(&big).unwrap_err().to_string().contains("at most"));
        let many: String = (0..=MAX_PATH_BLOCKS)
            .map(|i| format!("path \"a/{i}\" {{ capabilities = [\"read\"] }}\n"))
            .collect();
        assert!(many.len() <= MAX_HCL_BYTES);
        let e = parse_hcl(&many).unwrap_err().to_string();
        assert!(e.contains("more than 1024 path blocks"), "{e}");
        let deep = format!(
            "path \"a\" {{ capabilities = {}{} }}",
            "[".repeat(5000),
            "]".repeat(5000)
        );
        assert!(parse_hcl(&deep).is_err());
    }

    #[test]
    fn vaults_priority_rules() {
        // The examples of Vault's policies page, "Priority matching".
        let p = |t: &str| VaultPattern::parse(t).unwrap();
        let lower = |a: &str, b: &str| {
            assert_eq!(p(a).priority(&p(b)), Ordering::Less, "{a} < {b}");
            assert_eq!(p(b).priority(&p(a)), Ordering::Greater, "{b} > {a}");
        };
        lower("secret/*", "secret/+/baz"); // first wildcard earlier? no: same; glob vs none
        lower("secret/+/*", "secret/foo/*"); // first wildcard earlier
        lower("secret/foo*", "secret/foo"); // ends in *
        lower("secret/+/+/foo", "secret/+/bar/foo"); // more + segments
        lower("secret/foo*", "secret/foo/bar*"); // shorter
        lower("secret/a*", "secret/b*"); // lexicographically smaller
        let pol = parse_hcl(
            r#"
path "secret/*" { capabilities = ["read", "update"] }
path "secret/data/prod/*" { capabilities = ["deny"] }
path "secret/data/prod/open" { capabilities = ["read"] }
path "secret/data/+/db" { capabilities = ["list"] }
"#,
        )
        .unwrap();
        assert_eq!(
            judge([&pol], VaultCap::Read, "secret/data/x"),
            Verdict::Granted
        );
        assert_eq!(
            judge([&pol], VaultCap::Read, "secret/data/prod/x"),
            Verdict::Denied
        );
        // The exact path beats the deny glob: the most specific rule wins.
        assert_eq!(
            judge([&pol], VaultCap::Read, "secret/data/prod/open"),
            Verdict::Granted
        );
        // `secret/data/+/db` is more specific than `secret/*`, and grants only list.
        assert_eq!(
            judge([&pol], VaultCap::Read, "secret/data/a/db"),
            Verdict::NotGranted
        );
        assert_eq!(
            judge([&pol], VaultCap::List, "secret/data/a/db"),
            Verdict::Granted
        );
        // sudo is its own capability in Vault, not a superset.
        assert_eq!(
            judge([&pol], VaultCap::Sudo, "secret/data/x"),
            Verdict::NotGranted
        );
    }

    #[test]
    fn patterns_match_as_vault_does() {
        let p = |t: &str| VaultPattern::parse(t).unwrap();
        assert!(p("secret/*").matches("secret/"));
        assert!(p("secret/*").matches("secret/a/b"));
        assert!(!p("secret/*").matches("secret"));
        assert!(p("secret/fo*").matches("secret/foo/bar"));
        assert!(p("secret/+/x*").matches("secret/a/xy"));
        assert!(!p("secret/+/x*").matches("secret/a/b/xy"));
        assert!(p("*").matches("anything/at/all"));
        assert!(p("/secret/a").matches("secret/a"));
        assert!(!p("secret/a").matches("secret/a/b"));
    }
}
