//! Grants that amount to root (docs/access.md, "Grants that amount to root"), found in a set
//! of policies so `coffer policy check` can warn about them before they are in force.
//!
//! `sudo` grants every capability where it applies, and three `sys/` areas hand out power
//! over everything else: whoever holds `sudo` on one of them can make themselves root, or
//! open the store without the daemon. A rule reaches an area when its pattern matches the
//! area's path (`sys/*`, `*` and `+/policy` all reach `sys/policy`) and no `deny` of the
//! same policy covers it. Binding a subject to the built-in `root` policy is one too.

use coffer_types::Capability;

use super::policy::{PolicySet, ROOT_POLICY};

/// The `sys/` areas where `sudo` amounts to root, and why.
pub const ROOT_AREAS: &[(&str, &str)] = &[
    (
        "sys/policy",
        "writes policies and bindings, so it can bind itself (or anyone) to `root`",
    ),
    (
        "sys/token",
        "creates, lists and revokes every token, and makes tokens for the policies it names",
    ),
    (
        "sys/slots",
        "adds key slots: whoever holds the new passphrase, recovery key or key file opens the \
         store from a copy of its files, without the daemon",
    ),
];

/// One grant that amounts to root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootGrant {
    /// The policy (or, for a binding to `root`, `root`).
    pub policy: String,
    /// The rule's pattern (or, for a binding, the subject).
    pub rule: String,
    /// What it reaches and why that is root.
    pub why: String,
}

/// Every grant in `set` that amounts to root, in policy order.
pub fn root_grants(set: &PolicySet) -> Vec<RootGrant> {
    let mut found = Vec::new();
    for (name, doc) in &set.policies {
        for &(area, why) in ROOT_AREAS {
            let reaching = |c: Capability| {
                doc.rules
                    .iter()
                    .find(|r| r.capabilities.has(c) && r.path.matches(area))
            };
            if reaching(Capability::Deny).is_some() {
                continue;
            }
            if let Some(rule) = reaching(Capability::Sudo) {
                found.push(RootGrant {
                    policy: name.clone(),
                    rule: rule.path.to_string(),
                    why: format!("`sudo` on {} reaches {area}: it {why}", rule.path),
                });
            }
        }
    }
    for (subject, names) in &set.subjects {
        if names.iter().any(|n| n == ROOT_POLICY) {
            found.push(RootGrant {
                policy: ROOT_POLICY.to_owned(),
                rule: subject.to_string(),
                why: format!("{subject} is bound to the built-in `root` policy: everything"),
            });
        }
    }
    found
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::access::policy::parse_policy_file;

    fn flagged(file: &str) -> Vec<(String, String)> {
        root_grants(&parse_policy_file(file).unwrap())
            .into_iter()
            .map(|g| (g.policy, g.rule))
            .collect()
    }

    #[test]
    fn sudo_on_the_areas_that_hand_out_power_is_root() {
        let file = r#"
[policies.everything]
rules = [{ path = "*", capabilities = ["sudo"] }]
[policies.sys]
rules = [{ path = "sys/*", capabilities = ["sudo"] }]
[policies.ops]
rules = [{ path = "sys/token", capabilities = ["sudo"] }]
[policies.slots]
rules = [{ path = "+/slots", capabilities = ["sudo"] }]
[policies.fenced]
rules = [
  { path = "sys/*", capabilities = ["sudo"] },
  { path = "sys/policy", capabilities = ["deny"] },
  { path = "sys/token", capabilities = ["deny"] },
  { path = "sys/slots", capabilities = ["deny"] },
]
[policies.app]
rules = [
  { path = "app/*", capabilities = ["sudo"] },
  { path = "sys/seal", capabilities = ["sudo"] },
  { path = "sys/policy", capabilities = ["read", "list"] },
]
[subjects]
"uid:1000" = ["app", "root"]
"#;
        let got = flagged(file);
        let has = |p: &str, r: &str| got.iter().any(|(a, b)| a == p && b == r);
        assert_eq!(
            got.iter().filter(|(p, _)| p == "everything").count(),
            3,
            "{got:?}"
        );
        assert_eq!(got.iter().filter(|(p, _)| p == "sys").count(), 3);
        assert!(has("ops", "sys/token"));
        assert!(has("slots", "+/slots"));
        assert!(has("root", "uid:1000"));
        assert!(
            !got.iter().any(|(p, _)| p == "fenced" || p == "app"),
            "{got:?}"
        );
        assert_eq!(got.len(), 9, "{got:?}");
    }
}
