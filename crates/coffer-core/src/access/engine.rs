//! The policy gate's decision: which rules apply to a caller, and whether they grant a
//! capability on a path. Deny by default; `deny` wins; `sudo` grants everything where it
//! applies.
//!
//! Policies from the file and from the store are compiled together into one [`Engine`],
//! rebuilt whenever either changes, so a decision is a few map lookups and pattern matches.

use std::collections::HashMap;
use std::sync::Arc;

use coffer_types::Capability;

use super::hcl::{HclPolicy, VaultCap, VaultCaps, Verdict, capabilities_on, judge};
use super::policy::{DEFAULT_POLICY, PolicyDoc, PolicySet, ROOT_POLICY, Subject};
use super::vault_map::{coffer_check, vault_requests};

/// What the policy gate needs to know of a caller.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The peer's uid (always known on the socket).
    pub uid: u32,
    /// The peer's gid.
    pub gid: u32,
    /// The token's accessor and policies, when the request carried one: the caller is then
    /// the token, and only its grants count.
    pub token: Option<(&'a str, &'a [String])>,
    /// The systemd unit a credential is asked for (the credentials socket): the caller is
    /// then `unit:NAME`, and only its grants count (never the peer's uid or gid).
    pub unit: Option<&'a str>,
}

/// Compiled policies.
#[derive(Debug, Default)]
pub struct Engine {
    policies: HashMap<String, Arc<PolicyDoc>>,
    by_uid: HashMap<u32, Vec<Arc<PolicyDoc>>>,
    by_gid: HashMap<u32, Vec<Arc<PolicyDoc>>>,
    by_token: HashMap<String, Vec<Arc<PolicyDoc>>>,
    by_unit: HashMap<String, Vec<Arc<PolicyDoc>>>,
    /// The names of the policies bound to each subject (that exist), for the rule that a
    /// new token carries only policies its creator holds.
    names: Bound,
    /// uids that hold `root` and nothing else: decided without looking at rules.
    root_only: Vec<u32>,
}

/// Policy names bound to uids, gids and token accessors.
#[derive(Debug, Default)]
struct Bound {
    uid: HashMap<u32, Vec<String>>,
    gid: HashMap<u32, Vec<String>>,
    token: HashMap<String, Vec<String>>,
    unit: HashMap<String, Vec<String>>,
}

/// The result of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A rule grants it and none denies it.
    Allowed,
    /// No rule grants it.
    NotGranted,
    /// A `deny` rule covers the path.
    Denied,
}

impl Engine {
    /// Compiles the built-in bindings (root and `daemon_uid` hold `root`), then `sets` in
    /// order (the policy file, then the store's policies). `user:NAME` subjects are resolved
    /// to uids now; a name with no account is skipped with a warning.
    pub fn compile(daemon_uid: u32, sets: &[&PolicySet]) -> Self {
        let mut engine = Self::default();
        engine
            .policies
            .insert(ROOT_POLICY.to_owned(), Arc::new(PolicyDoc::root()));
        // Vault's `default` policy exists everywhere, so clients that make tokens with it
        // work unchanged; here it grants nothing (a token's own lookup, renewal and
        // revocation need no grant). A policy file or the store may define it.
        engine
            .policies
            .insert(DEFAULT_POLICY.to_owned(), Arc::new(PolicyDoc::default()));
        for set in sets {
            for (name, doc) in &set.policies {
                engine.policies.insert(name.clone(), Arc::new(doc.clone()));
            }
        }
        let mut uid_names: HashMap<u32, Vec<String>> = HashMap::new();
        for uid in [0, daemon_uid] {
            uid_names
                .entry(uid)
                .or_default()
                .push(ROOT_POLICY.to_owned());
        }
        let mut gid_names: HashMap<u32, Vec<String>> = HashMap::new();
        let mut token_names: HashMap<String, Vec<String>> = HashMap::new();
        let mut unit_names: HashMap<String, Vec<String>> = HashMap::new();
        for set in sets {
            for (subject, names) in &set.subjects {
                let target = match subject {
                    Subject::Uid(u) => uid_names.entry(*u).or_default(),
                    Subject::Gid(g) => gid_names.entry(*g).or_default(),
                    Subject::Token(a) => token_names.entry(a.clone()).or_default(),
                    Subject::Unit(u) => unit_names.entry(u.clone()).or_default(),
                    Subject::User(name) => match nix::unistd::User::from_name(name) {
                        Ok(Some(user)) => uid_names.entry(user.uid.as_raw()).or_default(),
                        _ => {
                            tracing::warn!(subject = %subject, "no such user on this machine; the binding is skipped");
                            continue;
                        }
                    },
                };
                target.extend(names.iter().cloned());
            }
        }
        let existing = |names: &[String], policies: &HashMap<String, Arc<PolicyDoc>>| {
            let mut kept: Vec<String> = Vec::new();
            for n in names {
                if policies.contains_key(n) && !kept.contains(n) {
                    kept.push(n.clone());
                }
            }
            kept
        };
        for (uid, names) in &uid_names {
            let kept = existing(names, &engine.policies);
            engine.names.uid.insert(*uid, kept);
        }
        for (gid, names) in &gid_names {
            let kept = existing(names, &engine.policies);
            engine.names.gid.insert(*gid, kept);
        }
        for (acc, names) in &token_names {
            let kept = existing(names, &engine.policies);
            engine.names.token.insert(acc.clone(), kept);
        }
        for (unit, names) in &unit_names {
            let kept = existing(names, &engine.policies);
            engine.names.unit.insert(unit.clone(), kept);
        }
        let resolve = |names: Vec<String>, policies: &HashMap<String, Arc<PolicyDoc>>| {
            let mut docs: Vec<Arc<PolicyDoc>> = Vec::new();
            for n in names {
                match policies.get(&n) {
                    Some(d) if !docs.iter().any(|x| Arc::ptr_eq(x, d)) => docs.push(d.clone()),
                    Some(_) => {}
                    None => {
                        tracing::warn!(policy = %n, "a binding names a policy that does not exist; skipped")
                    }
                }
            }
            docs
        };
        for (uid, names) in uid_names {
            if names.iter().all(|n| n == ROOT_POLICY) {
                engine.root_only.push(uid);
            }
            let docs = resolve(names, &engine.policies);
            engine.by_uid.insert(uid, docs);
        }
        for (gid, names) in gid_names {
            let docs = resolve(names, &engine.policies);
            engine.by_gid.insert(gid, docs);
        }
        for (acc, names) in token_names {
            let docs = resolve(names, &engine.policies);
            engine.by_token.insert(acc, docs);
        }
        for (unit, names) in unit_names {
            let docs = resolve(names, &engine.policies);
            engine.by_unit.insert(unit, docs);
        }
        engine
    }

    /// Whether a peer `uid`/`gid` holds the built-in `root` policy and nothing else.
    pub fn root_only(&self, uid: u32, gid: u32) -> bool {
        self.root_only.contains(&uid) && !self.by_gid.contains_key(&gid)
    }

    /// Whether a policy of that name exists (built in, file or store).
    pub fn has_policy(&self, name: &str) -> bool {
        self.policies.contains_key(name)
    }

    /// The names of the policies `caller` holds: a token's own and those bound to its
    /// accessor; for a peer, those bound to its uid and gid (root and the daemon's user hold
    /// `root`).
    pub fn held(&self, caller: Caller<'_>) -> Vec<String> {
        let mut held: Vec<String> = Vec::new();
        let mut add = |names: &[String]| {
            for n in names {
                if self.policies.contains_key(n) && !held.contains(n) {
                    held.push(n.clone());
                }
            }
        };
        if let Some(unit) = caller.unit {
            add(self.names.unit.get(unit).map_or(&[], Vec::as_slice));
            return held;
        }
        match caller.token {
            Some((accessor, own)) => {
                add(own);
                add(self.names.token.get(accessor).map_or(&[], Vec::as_slice));
            }
            None => {
                add(self.names.uid.get(&caller.uid).map_or(&[], Vec::as_slice));
                add(self.names.gid.get(&caller.gid).map_or(&[], Vec::as_slice));
            }
        }
        held
    }

    /// The policies that judge `caller`; `None` for a peer that holds `root` alone (every
    /// check passes).
    fn docs(&self, caller: Caller<'_>) -> Option<Vec<&Arc<PolicyDoc>>> {
        Some(match (caller.unit, caller.token) {
            // A unit: its own bindings only (no root shortcut, whoever connected).
            (Some(unit), _) => self.by_unit.get(unit).into_iter().flatten().collect(),
            (None, Some((accessor, names))) => {
                let own = names.iter().filter_map(|n| self.policies.get(n));
                let bound = self.by_token.get(accessor).into_iter().flatten();
                own.chain(bound).collect()
            }
            (None, None) => {
                if self.root_only(caller.uid, caller.gid) {
                    return None;
                }
                let by_uid = self.by_uid.get(&caller.uid).into_iter().flatten();
                let by_gid = self.by_gid.get(&caller.gid).into_iter().flatten();
                by_uid.chain(by_gid).collect()
            }
        })
    }

    /// Vault's capabilities of `caller` on the Vault path `vault_path` (`sys/capabilities`):
    /// what its HCL policies give there, as Vault computes it, and each Vault capability
    /// whose coffer check (`vault_map::coffer_check`) its policies pass. `None` for a peer
    /// that holds `root` alone.
    pub fn vault_capabilities(&self, caller: Caller<'_>, vault_path: &str) -> Option<VaultCaps> {
        let docs = self.docs(caller)?;
        let hcl = docs
            .iter()
            .filter_map(|d| d.hcl.as_ref().map(|h| &h.policy));
        let hcl_caps = capabilities_on(hcl, vault_path);
        if hcl_caps.has(VaultCap::Deny) {
            return Some(hcl_caps);
        }
        // The HCL rules answered for themselves above; coffer's own rules are read
        // backwards. What a check would refuse is not reported: a deny in either model
        // (coffer's rules, or an HCL deny on the other mount a namespace is served at) wins.
        let mut shown = VaultCaps::default();
        for &vc in VaultCap::ALL {
            let check = coffer_check(vault_path, vc);
            let granted = hcl_caps.has(vc)
                || check
                    .as_ref()
                    .is_some_and(|(cap, path, _)| native(&docs, *cap, path) == Decision::Allowed);
            let refused = check.as_ref().is_some_and(|(cap, path, ns)| {
                self.decide_in(caller, *cap, path, ns.as_deref()) == Decision::Denied
            });
            if granted && !refused {
                shown = shown.with(vc);
            }
        }
        Some(shown)
    }

    /// Decides whether `caller` may use `capability` on `path`.
    pub fn decide(&self, caller: Caller<'_>, capability: Capability, path: &str) -> Decision {
        self.decide_in(caller, capability, path, None)
    }

    /// Decides whether `caller` may use `capability` on `path`, a secret's path in
    /// `namespace` when one is given. coffer's rules and Vault's HCL policies are each judged
    /// in their own model: a grant in either allows, a deny in either refuses.
    pub fn decide_in(
        &self,
        caller: Caller<'_>,
        capability: Capability,
        path: &str,
        namespace: Option<&str>,
    ) -> Decision {
        let Some(docs) = self.docs(caller) else {
            return Decision::Allowed;
        };
        let mut granted = match native(&docs, capability, path) {
            Decision::Denied => return Decision::Denied,
            d => d == Decision::Allowed,
        };
        let hcl: Vec<&HclPolicy> = docs
            .iter()
            .filter_map(|d| d.hcl.as_ref().map(|h| &h.policy))
            .collect();
        if !hcl.is_empty() {
            // A deny on any Vault path the check amounts to refuses it (deny wins, as in
            // coffer's own rules); otherwise a grant on any of them allows it.
            for (p, c) in vault_requests(capability, path, namespace) {
                match judge(hcl.iter().copied(), c, &p) {
                    Verdict::Denied => return Decision::Denied,
                    Verdict::Granted => granted = true,
                    Verdict::NotGranted => {}
                }
            }
        }
        if granted {
            Decision::Allowed
        } else {
            Decision::NotGranted
        }
    }
}

/// coffer's own rules of `docs` on `path`: a deny covering it wins, else any grant.
fn native(docs: &[&Arc<PolicyDoc>], capability: Capability, path: &str) -> Decision {
    let mut granted = false;
    for rule in docs.iter().flat_map(|d| &d.rules) {
        if !rule.path.matches(path) {
            continue;
        }
        if rule.capabilities.has(Capability::Deny) {
            return Decision::Denied;
        }
        granted |= rule.capabilities.grants(capability);
    }
    if granted {
        Decision::Allowed
    } else {
        Decision::NotGranted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::policy::parse_policy_file;

    fn engine(file: &str) -> Engine {
        let set = parse_policy_file(file).unwrap();
        Engine::compile(1000, &[&set])
    }

    fn uid(u: u32) -> Caller<'static> {
        Caller {
            uid: u,
            gid: u,
            token: None,
            unit: None,
        }
    }

    #[test]
    fn deny_by_default_root_and_the_daemon_user_hold_everything() {
        let e = engine("");
        for c in [Capability::Read, Capability::Sudo, Capability::Destroy] {
            assert_eq!(e.decide(uid(0), c, "default/x"), Decision::Allowed);
            assert_eq!(e.decide(uid(1000), c, "sys/seal"), Decision::Allowed);
            assert_eq!(e.decide(uid(65534), c, "default/x"), Decision::NotGranted);
        }
    }

    #[test]
    fn grants_denials_groups_and_tokens() {
        let e = engine(
            r#"
            [policies.app]
            rules = [
              { path = "app/*", capabilities = ["read", "list"] },
              { path = "app/secret-*", capabilities = ["deny"] },
            ]
            [policies.ops]
            rules = [{ path = "default/*", capabilities = ["sudo"] }]
            [policies.no-prod]
            rules = [{ path = "prod/*", capabilities = ["deny"] }]
            [subjects]
            "uid:65534" = ["app"]
            "gid:100" = ["ops"]
            "uid:0" = ["no-prod"]
            "token:acc1" = ["ops"]
            "#,
        );
        let u = uid(65534);
        assert_eq!(e.decide(u, Capability::Read, "app/x"), Decision::Allowed);
        assert_eq!(e.decide(u, Capability::List, "app/"), Decision::Allowed);
        assert_eq!(e.decide(u, Capability::Meta, "app/x"), Decision::NotGranted);
        assert_eq!(
            e.decide(u, Capability::Read, "other/x"),
            Decision::NotGranted
        );
        assert_eq!(
            e.decide(u, Capability::Read, "app/secret-1"),
            Decision::Denied
        );
        let g = Caller {
            uid: 5,
            gid: 100,
            token: None,
            unit: None,
        };
        assert_eq!(
            e.decide(g, Capability::Destroy, "default/a/b"),
            Decision::Allowed
        );
        assert_eq!(
            e.decide(g, Capability::Sudo, "sys/seal"),
            Decision::NotGranted
        );
        // Root bound to a deny policy: deny still wins over the built-in root.
        assert_eq!(
            e.decide(uid(0), Capability::Read, "prod/x"),
            Decision::Denied
        );
        assert_eq!(
            e.decide(uid(0), Capability::Read, "default/x"),
            Decision::Allowed
        );
        // A token: its own policies and its bindings, never the peer's.
        let names = ["app".to_owned()];
        let t = Caller {
            uid: 0,
            gid: 0,
            token: Some(("acc1", &names)),
            unit: None,
        };
        assert_eq!(e.decide(t, Capability::Read, "app/x"), Decision::Allowed);
        assert_eq!(
            e.decide(t, Capability::Rotate, "default/x"),
            Decision::Allowed
        );
        assert_eq!(
            e.decide(t, Capability::Sudo, "sys/seal"),
            Decision::NotGranted
        );
        let none: [String; 0] = [];
        let t2 = Caller {
            uid: 0,
            gid: 0,
            token: Some(("other", &none)),
            unit: None,
        };
        assert_eq!(
            e.decide(t2, Capability::Read, "default/x"),
            Decision::NotGranted
        );
    }

    #[test]
    fn a_unit_holds_its_own_bindings_and_never_its_peers() {
        let e = engine(
            r#"
            [policies.app-db]
            rules = [{ path = "default/db", capabilities = ["read"] }]
            [policies.wide]
            rules = [{ path = "*", capabilities = ["sudo"] }]
            [subjects]
            "unit:app.service" = ["app-db"]
            "gid:0" = ["wide"]
            "#,
        );
        let unit = |name| Caller {
            uid: 0,
            gid: 0,
            token: None,
            unit: Some(name),
        };
        let app = unit("app.service");
        assert_eq!(
            e.decide(app, Capability::Read, "default/db"),
            Decision::Allowed
        );
        assert_eq!(
            e.decide(app, Capability::Read, "default/other"),
            Decision::NotGranted,
            "root's and gid 0's grants are not the unit's"
        );
        assert_eq!(
            e.decide(app, Capability::Sudo, "sys/seal"),
            Decision::NotGranted
        );
        assert_eq!(e.held(app), ["app-db"]);
        let other = unit("other.service");
        assert_eq!(
            e.decide(other, Capability::Read, "default/db"),
            Decision::NotGranted
        );
        assert!(e.held(other).is_empty());
    }

    #[test]
    fn hcl_and_coffer_policies_mix_a_grant_in_either_allows_a_deny_in_either_refuses() {
        use crate::access::policy::PolicyText;
        let mut set = parse_policy_file(
            r#"
            [policies.coffer-read]
            rules = [{ path = "default/shared/*", capabilities = ["read"] },
                     { path = "default/locked", capabilities = ["deny"] }]
            [subjects]
            "uid:65534" = ["coffer-read"]
            "#,
        )
        .unwrap();
        let hcl = r#"
path "secret/data/app/*" { capabilities = ["read", "create"] }
path "secret/data/app/secret" { capabilities = ["deny"] }
path "secret/data/locked" { capabilities = ["read"] }
path "secret/metadata/*" { capabilities = ["list"] }
path "app/data/+/db" { capabilities = ["update"] }
"#;
        let doc = PolicyDoc::from_text(&PolicyText {
            rules: Vec::new(),
            hcl: Some(hcl.to_owned()),
        })
        .unwrap();
        set.policies.insert("vault-app".to_owned(), doc);
        set.subjects
            .get_mut(&Subject::Uid(65534))
            .unwrap()
            .push("vault-app".to_owned());
        let e = Engine::compile(1000, &[&set]);
        let u = uid(65534);
        let d = |c, p, ns| e.decide_in(u, c, p, ns);
        let ns = Some("default");
        assert_eq!(d(Capability::Read, "default/app/x", ns), Decision::Allowed);
        assert_eq!(
            d(Capability::Create, "default/app/x", ns),
            Decision::Allowed
        );
        assert_eq!(
            d(Capability::Update, "default/app/x", ns),
            Decision::NotGranted
        );
        // Refused as a deny: the refusal names the deny rule.
        assert_eq!(
            d(Capability::Read, "default/app/secret", ns),
            Decision::Denied
        );
        assert_eq!(
            d(Capability::Read, "default/shared/a", ns),
            Decision::Allowed
        );
        // coffer's deny refuses what the HCL policy grants.
        assert_eq!(d(Capability::Read, "default/locked", ns), Decision::Denied);
        assert_eq!(d(Capability::List, "default/", ns), Decision::Allowed);
        assert_eq!(
            d(Capability::Update, "app/team/db", Some("app")),
            Decision::Allowed
        );
        assert_eq!(
            d(Capability::Read, "app/team/db", Some("app")),
            Decision::NotGranted
        );
        assert_eq!(
            d(Capability::Sudo, "sys/policy", None),
            Decision::NotGranted
        );
        // The text reads back as written.
        assert_eq!(
            set.policies["vault-app"].to_text().hcl.as_deref(),
            Some(hcl)
        );
    }
}
