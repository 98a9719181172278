//! Policies as operators write them: named lists of rules, each a path pattern with the
//! capabilities it grants, and the subjects they are bound to (DESIGN.md, Identity, policy
//! and gates).
//!
//! ```toml
//! [policies.app-read]
//! rules = [{ path = "app/*", capabilities = ["read"] }]
//!
//! [subjects]
//! "uid:65534" = ["app-read"]
//! ```
//!
//! The capability words of reference 004 are aliases: `secret:*:read` is `list` + `meta`,
//! `secret:*:write` is `create`, `update`, `generate`, `rotate`, `revoke` (describe is an
//! update). A policy file that does not parse, names an unknown capability, a malformed path
//! or subject, or binds a policy that does not exist, is refused with its line.

use std::collections::BTreeMap;
use std::fmt;

use coffer_types::Capability;
use serde::{Deserialize, Serialize};

use super::hcl::{HclPolicy, parse_hcl};
use super::pattern::PathPattern;

/// The name of the built-in policy that grants everything.
pub const ROOT_POLICY: &str = "root";

/// The name of the built-in policy that grants nothing (Vault's `default`).
pub const DEFAULT_POLICY: &str = "default";

/// A set of capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapSet(u16);

impl CapSet {
    /// Every capability but `deny`.
    pub const ALL: Self = Self(0x7ff & !(1 << Capability::Deny as u16));

    /// The set with `c` added.
    pub const fn with(self, c: Capability) -> Self {
        Self(self.0 | 1 << c as u16)
    }

    /// Whether `c` is in the set.
    pub const fn has(self, c: Capability) -> bool {
        self.0 & (1 << c as u16) != 0
    }

    /// Whether the set grants `c`: it holds `c` itself or `sudo`.
    pub const fn grants(self, c: Capability) -> bool {
        self.has(c) || self.has(Capability::Sudo)
    }

    /// Adds the capabilities a word names (a capability or one of reference 004's aliases).
    fn add_word(self, word: &str) -> Result<Self, String> {
        use Capability::*;
        let added: &[Capability] = match word {
            "secret:*:read" => &[List, Meta],
            "secret:*:write" => &[Create, Update, Generate, Rotate, Revoke],
            w => {
                let c = w.parse::<Capability>().map_err(|_| {
                    format!(
                        "unknown capability {:?}; expected one of read, list, meta, create, \
                         update, generate, rotate, revoke, destroy, sudo, deny, secret:*:read, \
                         secret:*:write",
                        w.chars().take(40).collect::<String>()
                    )
                })?;
                return Ok(self.with(c));
            }
        };
        Ok(added.iter().fold(self, |s, &c| s.with(c)))
    }
}

/// One rule: a path pattern and what it grants (or denies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Where it applies.
    pub path: PathPattern,
    /// What it grants; `deny` refuses everything on the path whatever else is granted.
    pub capabilities: CapSet,
    /// The words as written, for showing the policy back.
    words: Vec<String>,
}

/// A named policy's rules.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyDoc {
    /// The rules.
    pub rules: Vec<Rule>,
    /// A Vault HCL policy: its text as written and its rules, judged in Vault's model.
    pub hcl: Option<HclDoc>,
}

/// An HCL policy kept with the text it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HclDoc {
    /// The text, byte for byte as written.
    pub text: String,
    /// Its rules.
    pub policy: HclPolicy,
}

pub use coffer_types::reply::{PolicyText, RuleText};

pub use super::hcl::PolicyError;

impl Rule {
    /// Parses one rule.
    pub fn parse(path: &str, words: &[String]) -> Result<Self, PolicyError> {
        let path = PathPattern::parse(path).map_err(|e| PolicyError(e.to_string()))?;
        if words.is_empty() {
            return Err(PolicyError(format!(
                "the rule for {path} grants no capability"
            )));
        }
        let mut capabilities = CapSet::default();
        for w in words {
            capabilities = capabilities.add_word(w).map_err(PolicyError)?;
        }
        Ok(Self {
            path,
            capabilities,
            words: words.to_vec(),
        })
    }
}

impl PolicyDoc {
    /// Checks and compiles the written form.
    pub fn from_text(text: &PolicyText) -> Result<Self, PolicyError> {
        let rules = text
            .rules
            .iter()
            .map(|r| Rule::parse(&r.path, &r.capabilities))
            .collect::<Result<_, _>>()?;
        let hcl = match &text.hcl {
            Some(t) => Some(HclDoc {
                policy: parse_hcl(t)?,
                text: t.clone(),
            }),
            None => None,
        };
        if hcl.is_some() && !text.rules.is_empty() {
            return Err(PolicyError(
                "a policy is either coffer's rules or Vault's HCL, not both".to_owned(),
            ));
        }
        Ok(Self { rules, hcl })
    }

    /// The written form.
    pub fn to_text(&self) -> PolicyText {
        PolicyText {
            rules: self
                .rules
                .iter()
                .map(|r| RuleText {
                    path: r.path.to_string(),
                    capabilities: r.words.clone(),
                })
                .collect(),
            hcl: self.hcl.as_ref().map(|h| h.text.clone()),
        }
    }

    /// The built-in `root` policy: everything, everywhere.
    pub fn root() -> Self {
        Self {
            rules: vec![Rule {
                // A literal that always parses.
                path: PathPattern::parse("*").unwrap_or_else(|_| unreachable!("`*` parses")),
                capabilities: CapSet::ALL,
                words: vec!["sudo".to_owned()],
            }],
            hcl: None,
        }
    }
}

/// Checks a policy name: 1-64 of `[a-z0-9_-]`, starting with a letter or digit.
pub fn check_policy_name(name: &str) -> Result<(), PolicyError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(PolicyError(
            "a policy name is 1-64 characters of a-z, 0-9, '_' and '-', starting with a letter \
             or digit"
                .to_owned(),
        ))
    }
}

/// Who a binding applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// A user id.
    Uid(u32),
    /// A (primary) group id.
    Gid(u32),
    /// A user by name, resolved to its uid when policies are compiled.
    User(String),
    /// A token by its accessor.
    Token(String),
    /// A systemd unit, asking through the credentials socket (`LoadCredential=`): what its
    /// requests may do, and nothing more (not the grants of the root peer that connects).
    Unit(String),
}

/// The unit types systemd knows (systemd.unit(5)); a unit name ends in one of them.
const UNIT_TYPES: &[&str] = &[
    "service",
    "socket",
    "target",
    "device",
    "mount",
    "automount",
    "swap",
    "timer",
    "path",
    "slice",
    "scope",
];

/// Whether `name` is a unit name as systemd allows one (`unit_name_is_valid`): under 256
/// bytes of `[A-Za-z0-9:_.\@-]` (`@` not first), ending in `.TYPE` for a unit type
/// (`app.service`, `getty@tty1.service`, `app@.service`).
pub fn is_unit_name(name: &str) -> bool {
    if name.is_empty() || name.len() >= 256 {
        return false;
    }
    let Some((stem, suffix)) = name.rsplit_once('.') else {
        return false;
    };
    !stem.is_empty()
        && UNIT_TYPES.contains(&suffix)
        && !stem.starts_with('@')
        && stem.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b':' | b'-' | b'_' | b'.' | b'\\' | b'@')
        })
}

impl Subject {
    /// Parses `uid:N`, `gid:N`, `user:NAME`, `token:ACCESSOR`, `unit:NAME.TYPE`.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let bad = |why: &str| {
            PolicyError(format!(
                "subject {:?}: {why}",
                text.chars().take(80).collect::<String>()
            ))
        };
        let (kind, rest) = text
            .split_once(':')
            .ok_or_else(|| bad("write uid:N, gid:N, user:NAME, token:ACCESSOR or unit:NAME"))?;
        let number = |r: &str| r.parse::<u32>().map_err(|_| bad("needs a number"));
        let word = |r: &str| {
            let ok = !r.is_empty()
                && r.len() <= 64
                && r.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if ok {
                Ok(r.to_owned())
            } else {
                Err(bad("needs a name of [A-Za-z0-9._-]"))
            }
        };
        match kind {
            "uid" => Ok(Self::Uid(number(rest)?)),
            "gid" => Ok(Self::Gid(number(rest)?)),
            "user" => Ok(Self::User(word(rest)?)),
            "token" => Ok(Self::Token(word(rest)?)),
            "unit" if is_unit_name(rest) => Ok(Self::Unit(rest.to_owned())),
            "unit" => Err(bad(
                "needs a systemd unit name such as app.service ([A-Za-z0-9:_.\\@-], ending in \
                 a unit type)",
            )),
            "node" | "tag" => Err(bad("node and tag subjects arrive with the fleet")),
            _ => Err(bad(
                "write uid:N, gid:N, user:NAME, token:ACCESSOR or unit:NAME",
            )),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uid(n) => write!(f, "uid:{n}"),
            Self::Gid(n) => write!(f, "gid:{n}"),
            Self::User(n) => write!(f, "user:{n}"),
            Self::Token(a) => write!(f, "token:{a}"),
            Self::Unit(u) => write!(f, "unit:{u}"),
        }
    }
}

/// Policies and bindings, from the policy file or from the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySet {
    /// Policies by name.
    pub policies: BTreeMap<String, PolicyDoc>,
    /// Which policies each subject holds.
    pub subjects: BTreeMap<Subject, Vec<String>>,
}

/// The stored form of a [`PolicySet`] (JSON in the store's own namespace).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySetText {
    /// Policies by name.
    #[serde(default)]
    pub policies: BTreeMap<String, PolicyText>,
    /// Bindings: subject to policy names.
    #[serde(default)]
    pub subjects: BTreeMap<String, Vec<String>>,
}

impl PolicySet {
    /// Checks and compiles the written form; `known` says whether a bound policy name exists
    /// elsewhere (the policy file's policies for the store's bindings, and the reverse).
    pub fn from_text(
        text: &PolicySetText,
        known: &dyn Fn(&str) -> bool,
    ) -> Result<Self, PolicyError> {
        let mut set = Self::default();
        for (name, policy) in &text.policies {
            check_policy_name(name)?;
            if name == ROOT_POLICY {
                return Err(PolicyError(
                    "`root` is built in and cannot be redefined".to_owned(),
                ));
            }
            let doc = PolicyDoc::from_text(policy)
                .map_err(|e| PolicyError(format!("policy {name}: {e}")))?;
            set.policies.insert(name.clone(), doc);
        }
        for (subject, names) in &text.subjects {
            let parsed = Subject::parse(subject)?;
            for n in names {
                if n != ROOT_POLICY && !set.policies.contains_key(n) && !known(n) {
                    return Err(PolicyError(format!(
                        "subject {subject} is bound to policy {n:?}, which is not defined"
                    )));
                }
            }
            set.subjects.insert(parsed, names.clone());
        }
        Ok(set)
    }

    /// The written form.
    pub fn to_text(&self) -> PolicySetText {
        PolicySetText {
            policies: self
                .policies
                .iter()
                .map(|(n, d)| (n.clone(), d.to_text()))
                .collect(),
            subjects: self
                .subjects
                .iter()
                .map(|(s, p)| (s.to_string(), p.clone()))
                .collect(),
        }
    }
}

/// Reads a policy file (TOML). Errors name the line.
pub fn parse_policy_file(text: &str) -> Result<PolicySet, PolicyError> {
    let file: FileText = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| format!("line {}: ", line_of(text, s.start)))
            .unwrap_or_default();
        PolicyError(format!("{line}{}", e.message()))
    })?;
    let mut set = PolicySet::default();
    for (name, policy) in &file.policies {
        let at = |span: std::ops::Range<usize>| format!("line {}", line_of(text, span.start));
        check_policy_name(name.get_ref())
            .map_err(|e| PolicyError(format!("{}: {e}", at(name.span()))))?;
        if name.get_ref() == ROOT_POLICY {
            return Err(PolicyError(format!(
                "{}: `root` is built in and cannot be redefined",
                at(name.span())
            )));
        }
        let mut rules = Vec::new();
        for rule in &policy.rules {
            let words: Vec<String> = rule
                .capabilities
                .iter()
                .map(|w| w.get_ref().clone())
                .collect();
            let parsed = Rule::parse(rule.path.get_ref(), &words).map_err(|e| {
                // Point at the word that failed when it is a capability.
                let span = rule
                    .capabilities
                    .iter()
                    .find(|w| CapSet::default().add_word(w.get_ref()).is_err())
                    .map_or(rule.path.span(), |w| w.span());
                PolicyError(format!("{}: policy {}: {e}", at(span), name.get_ref()))
            })?;
            rules.push(parsed);
        }
        set.policies
            .insert(name.get_ref().clone(), PolicyDoc { rules, hcl: None });
    }
    for (subject, names) in &file.subjects {
        let at = format!("line {}", line_of(text, subject.span().start));
        let parsed =
            Subject::parse(subject.get_ref()).map_err(|e| PolicyError(format!("{at}: {e}")))?;
        for n in names.get_ref() {
            if n != ROOT_POLICY && !set.policies.contains_key(n) {
                return Err(PolicyError(format!(
                    "{at}: subject {} is bound to policy {n:?}, which is not defined in this file",
                    subject.get_ref()
                )));
            }
        }
        set.subjects.insert(parsed, names.get_ref().clone());
    }
    Ok(set)
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(0, |t| t.matches('\n').count()) + 1
}

type Spanned<T> = toml::Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileText {
    #[serde(default)]
    policies: BTreeMap<Spanned<String>, FilePolicy>,
    #[serde(default)]
    subjects: BTreeMap<Spanned<String>, Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePolicy {
    rules: Vec<FileRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRule {
    path: Spanned<String>,
    capabilities: Vec<Spanned<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[policies.app-read]
rules = [{ path = "app/*", capabilities = ["read"] }]

[policies.ops]
rules = [
  { path = "default/*", capabilities = ["secret:*:read", "secret:*:write"] },
  { path = "default/prod/*", capabilities = ["deny"] },
]

[subjects]
"uid:65534" = ["app-read"]
"user:root" = ["ops", "root"]
"unit:app.service" = ["app-read"]
"#;

    #[test]
    fn the_documented_shape_parses() {
        let set = parse_policy_file(FILE).unwrap();
        assert_eq!(set.policies.len(), 2);
        let ops = &set.policies["ops"].rules;
        use Capability::*;
        for c in [List, Meta, Create, Update, Generate, Rotate, Revoke] {
            assert!(ops[0].capabilities.has(c), "{c}");
        }
        for c in [Read, Destroy, Sudo] {
            assert!(!ops[0].capabilities.has(c), "{c}");
        }
        assert!(ops[1].capabilities.has(Deny));
        assert_eq!(set.subjects[&Subject::Uid(65534)], ["app-read"]);
        assert_eq!(set.subjects[&Subject::User("root".into())], ["ops", "root"]);
        assert_eq!(
            set.subjects[&Subject::Unit("app.service".into())],
            ["app-read"]
        );
        // The written form round-trips through the store's JSON.
        let text = set.to_text();
        let json = serde_json::to_string(&text).unwrap();
        let back: PolicySetText = serde_json::from_str(&json).unwrap();
        assert_eq!(PolicySet::from_text(&back, &|_| false).unwrap(), set);
    }

    #[test]
    fn bad_files_name_the_line_and_the_reason() {
        let cases = [
            (
                "[policies.a]\nrules = [{ path = \"x/*\", capabilities = [\"reed\"] }]\n",
                "line 2",
                "unknown capability",
            ),
            (
                "\n\n[policies.a]\nrules = [{ path = \"x/*/y\", capabilities = [\"read\"] }]\n",
                "line 4",
                "'*' before its end",
            ),
            (
                "[policies.a]\nrules = []\n[subjects]\n\"uid:x\" = [\"a\"]\n",
                "line 4",
                "needs a number",
            ),
            (
                "[subjects]\n\"uid:1\" = [\"nope\"]\n",
                "line 2",
                "not defined",
            ),
            ("[policies.root]\nrules = []\n", "line 1", "built in"),
            (
                "[policies.a]\nrules = [{ path = \"x\", capabilites = [\"read\"] }]\n",
                "line 2",
                "unknown field",
            ),
            ("[policies.a\n", "line 1", ""),
            ("[policies.Bad]\nrules = []\n", "line 1", "policy name"),
            ("[subjects]\n\"node:n1\" = []\n", "line 2", "fleet"),
            ("[subjects]\n\"unit:app\" = []\n", "line 2", "unit name"),
        ];
        for (text, line, why) in cases {
            let e = parse_policy_file(text).unwrap_err().to_string();
            assert!(e.starts_with(line) && e.contains(why), "{text:?}: {e}");
        }
    }

    #[test]
    fn unit_names_are_what_systemd_allows() {
        for ok in [
            "app.service",
            "getty@tty1.service",
            "app@.service",
            "a-b_c:d\\x2d.timer",
            "sys-devices-x.device",
            "x.scope",
        ] {
            assert!(is_unit_name(ok), "{ok}");
        }
        let long = format!("{}.service", "a".repeat(247));
        assert!(is_unit_name(&long));
        for bad in [
            "",
            "app",
            ".service",
            "@x.service",
            "app.servic",
            "app service.service",
            "app/../x.service",
            "app\0.service",
            "é.service",
            &format!("{}.service", "a".repeat(248)),
        ] {
            assert!(!is_unit_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn root_grants_everything_but_is_not_deny() {
        let root = PolicyDoc::root();
        for &c in Capability::ALL {
            assert_eq!(
                root.rules[0].capabilities.has(c),
                c != Capability::Deny,
                "{c}"
            );
        }
        assert!(!root.rules[0].capabilities.has(Capability::Deny));
    }
}
