//! Which Vault paths and capabilities a coffer check amounts to, so HCL policies written for
//! Vault's KV v2 judge coffer's operations (docs/access.md, "HCL policies", has the table).
//!
//! A namespace `NS` is the KV v2 mount `NS/`, and `default` is also `secret/` (as the HTTP API
//! mounts them). A check of capability `c` on `NS/NAME` is granted by an HCL policy when any
//! one of the Vault requests below is:
//!
//! | coffer | Vault |
//! |---|---|
//! | read | read on `M/data/NAME` |
//! | list | list on `M/metadata/NAME` |
//! | meta | read on `M/metadata/NAME` |
//! | create | create on `M/data/NAME` |
//! | update | update on `M/data/NAME` |
//! | generate | create or update on `M/data/NAME` |
//! | rotate | update on `M/data/NAME` |
//! | revoke (soft delete, undelete) | update on `M/delete/NAME`, `M/undelete/NAME`, or delete on `M/data/NAME` |
//! | destroy | update on `M/destroy/NAME`, or delete on `M/metadata/NAME` |
//! | sudo | sudo on `M/data/NAME` |
//!
//! The daemon's own areas (`sys/<area>`) are Vault's `sys/` paths with the same capability
//! word (coffer's `destroy` is Vault's `delete`): `sys/policy` is `sys/policies/acl/*` and
//! `sys/policy/*`, `sys/token` is `auth/token/*` (and `create` on `sys/token/roles/R`, making
//! a token through the role R, is `create` or `update` on `auth/token/create/R`),
//! `sys/namespaces` is `sys/mounts/*`,
//! `sys/audit` is `sys/audit/*`, `sys/seal` is `sys/seal` and `sys/unseal`, any other area
//! `sys/<area>`.

use coffer_types::Capability;

use super::hcl::VaultCap;

/// The Vault requests (path, capability) that grant `capability` on the coffer `path`
/// (`namespace/name` or `sys/<area>`); `namespace` splits the path when the namespace holds
/// a `/`.
pub fn vault_requests(
    capability: Capability,
    path: &str,
    namespace: Option<&str>,
) -> Vec<(String, VaultCap)> {
    // The daemon's own areas, whatever namespace a confined token's check names (no
    // namespace is `sys`: the name is reserved).
    if let Some(area) = path.strip_prefix("sys/") {
        return sys_requests(capability, area);
    }
    let (ns, name) = match namespace.and_then(|ns| Some((ns, path.strip_prefix(ns)?))) {
        Some((ns, rest)) => (ns, rest.trim_start_matches('/')),
        None => path.split_once('/').unwrap_or((path, "")),
    };
    let mounts: &[&str] = if ns == "default" {
        &["secret", "default"]
    } else {
        &[ns]
    };
    use Capability as C;
    use VaultCap as V;
    let wants: &[(&str, VaultCap)] = match capability {
        C::Read => &[("data", V::Read)],
        C::List => &[("metadata", V::List)],
        C::Meta => &[("metadata", V::Read)],
        C::Create => &[("data", V::Create)],
        C::Update | C::Rotate => &[("data", V::Update)],
        C::Generate => &[("data", V::Create), ("data", V::Update)],
        C::Revoke => &[
            ("delete", V::Update),
            ("undelete", V::Update),
            ("data", V::Delete),
        ],
        C::Destroy => &[("destroy", V::Update), ("metadata", V::Delete)],
        C::Sudo => &[("data", V::Sudo)],
        // `deny` is never asked for; a capability added later grants nothing here.
        _ => &[],
    };
    let mut out = Vec::new();
    for m in mounts {
        for (word, cap) in wants {
            out.push((format!("{m}/{word}/{name}"), *cap));
        }
    }
    out
}

fn sys_requests(capability: Capability, area: &str) -> Vec<(String, VaultCap)> {
    use Capability as C;
    if let Some(role) = area.strip_prefix("token/roles/") {
        // Making a token through a role: Vault's POST on `auth/token/create/:role`.
        let path = format!("auth/token/create/{role}");
        return match capability {
            C::Create => vec![(path.clone(), VaultCap::Create), (path, VaultCap::Update)],
            _ => Vec::new(),
        };
    }
    let cap = match capability {
        C::Read | C::Meta => VaultCap::Read,
        C::List => VaultCap::List,
        C::Create | C::Generate => VaultCap::Create,
        C::Update | C::Rotate | C::Revoke => VaultCap::Update,
        C::Destroy => VaultCap::Delete,
        C::Sudo => VaultCap::Sudo,
        _ => return Vec::new(),
    };
    let paths: Vec<String> = match area {
        "policy" => vec![
            "sys/policies/acl/".into(),
            "sys/policy/".into(),
            "sys/policies/acl".into(),
        ],
        "token" => vec!["auth/token/".into()],
        "namespaces" => vec!["sys/mounts/".into(), "sys/mounts".into()],
        "audit" => vec!["sys/audit/".into(), "sys/audit".into()],
        "seal" => vec!["sys/seal".into(), "sys/unseal".into()],
        other => vec![format!("sys/{other}")],
    };
    paths.into_iter().map(|p| (p, cap)).collect()
}

/// The KV v2 path segments after a mount.
const KV_SEGMENTS: &[&str] = &[
    "data", "metadata", "delete", "undelete", "destroy", "subkeys",
];

/// The coffer check a Vault capability on a Vault path amounts to, the table above read
/// backwards (for `sys/capabilities`): (capability, coffer path, namespace). `None` when
/// no coffer operation is that request. A KV path's mount is everything before its first
/// KV segment (`secret` is `default`); the namespace's own rules decide what it holds.
pub fn coffer_check(
    vault_path: &str,
    cap: VaultCap,
) -> Option<(Capability, String, Option<String>)> {
    use Capability as C;
    use VaultCap as V;
    let path = vault_path.trim_start_matches('/');
    let sys_area = |area: &str| -> Option<(Capability, String, Option<String>)> {
        let c = match cap {
            V::Read => C::Read,
            V::List => C::List,
            V::Create => C::Create,
            V::Update | V::Patch => C::Update,
            V::Delete => C::Destroy,
            V::Sudo => C::Sudo,
            V::Deny => return None,
        };
        Some((c, format!("sys/{area}"), None))
    };
    let first = |p: &str| p.split('/').next().unwrap_or_default().to_owned();
    if let Some(role) = path.strip_prefix("auth/token/create/")
        && !role.is_empty()
    {
        return matches!(cap, V::Create | V::Update)
            .then(|| (C::Create, format!("sys/token/roles/{role}"), None));
    }
    if let Some(rest) = path.strip_prefix("auth/") {
        return match first(rest).as_str() {
            "token" => sys_area("token"),
            "approle" => sys_area("approle"),
            _ => None,
        };
    }
    if let Some(rest) = path.strip_prefix("sys/") {
        return match first(rest).as_str() {
            "policies" | "policy" => sys_area("policy"),
            "mounts" => sys_area("namespaces"),
            "unseal" => sys_area("seal"),
            area => sys_area(area),
        };
    }
    let segments: Vec<&str> = path.split('/').collect();
    let at = (1..segments.len()).find(|&i| KV_SEGMENTS.contains(&segments[i]))?;
    let mount = segments[..at].join("/");
    let ns = if mount == "secret" {
        "default".to_owned()
    } else {
        mount
    };
    let name = segments[at + 1..].join("/");
    let c = match (segments[at], cap) {
        ("data", V::Read) | ("subkeys", V::Read) => C::Read,
        ("data", V::Create) => C::Create,
        ("data", V::Update | V::Patch) | ("metadata", V::Update | V::Patch) => C::Update,
        ("data", V::Delete) | ("delete" | "undelete", V::Update) => C::Revoke,
        ("data", V::Sudo) => C::Sudo,
        ("metadata", V::Read) => C::Meta,
        ("metadata", V::List) => C::List,
        ("metadata", V::Delete) | ("destroy", V::Update) => C::Destroy,
        _ => return None,
    };
    Some((c, format!("{ns}/{name}"), Some(ns)))
}

/// A Vault rule that would grant `capability` on the coffer `path`, for a refusal's advice.
pub fn advice(capability: Capability, path: &str, namespace: Option<&str>) -> Option<String> {
    let (p, c) = vault_requests(capability, path, namespace)
        .into_iter()
        .next()?;
    Some(format!(
        "path \"{p}\" {{ capabilities = [\"{}\"] }}",
        c.as_str()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(c: Capability, path: &str, ns: Option<&str>) -> Vec<String> {
        vault_requests(c, path, ns)
            .into_iter()
            .map(|(p, c)| format!("{} {p}", c.as_str()))
            .collect()
    }

    #[test]
    fn the_documented_table() {
        use Capability::*;
        assert_eq!(
            first(Read, "default/app/db", Some("default")),
            ["read secret/data/app/db", "read default/data/app/db"]
        );
        assert_eq!(first(List, "app/", Some("app")), ["list app/metadata/"]);
        assert_eq!(first(Meta, "app/x", None), ["read app/metadata/x"]);
        assert_eq!(first(Create, "app/x", None), ["create app/data/x"]);
        assert_eq!(first(Update, "app/x", None), ["update app/data/x"]);
        assert_eq!(first(Rotate, "app/x", None), ["update app/data/x"]);
        assert_eq!(
            first(Generate, "app/x", None),
            ["create app/data/x", "update app/data/x"]
        );
        assert_eq!(
            first(Revoke, "app/x", None),
            [
                "update app/delete/x",
                "update app/undelete/x",
                "delete app/data/x"
            ]
        );
        assert_eq!(
            first(Destroy, "app/x", None),
            ["update app/destroy/x", "delete app/metadata/x"]
        );
        assert_eq!(first(Sudo, "app/x", None), ["sudo app/data/x"]);
        assert!(first(Deny, "app/x", None).is_empty());
        // A namespace with a slash splits where the namespace says.
        assert_eq!(
            first(Read, "team/a/db", Some("team/a")),
            ["read team/a/data/db"]
        );
        assert_eq!(
            first(Sudo, "sys/policy", None),
            [
                "sudo sys/policies/acl/",
                "sudo sys/policy/",
                "sudo sys/policies/acl"
            ]
        );
        assert_eq!(first(Sudo, "sys/seal", None)[0], "sudo sys/seal");
        assert_eq!(first(Destroy, "sys/token", None), ["delete auth/token/"]);
    }

    #[test]
    fn vault_requests_read_backwards() {
        let check = |p: &str, c| coffer_check(p, c);
        assert_eq!(
            check("secret/data/app/db", VaultCap::Read),
            Some((
                Capability::Read,
                "default/app/db".into(),
                Some("default".into())
            ))
        );
        assert_eq!(
            check("team/a/metadata/x/", VaultCap::List),
            Some((Capability::List, "team/a/x/".into(), Some("team/a".into())))
        );
        assert_eq!(
            check("app/destroy/x", VaultCap::Update).map(|c| c.0),
            Some(Capability::Destroy)
        );
        assert_eq!(check("app/data/x", VaultCap::List), None);
        assert_eq!(check("data/x", VaultCap::Read), None);
        assert_eq!(
            check("sys/policies/acl/x", VaultCap::Sudo),
            Some((Capability::Sudo, "sys/policy".into(), None))
        );
        assert_eq!(
            check("auth/token/create", VaultCap::Update).map(|c| c.1),
            Some("sys/token".into())
        );
        assert_eq!(check("auth/userpass/x", VaultCap::Read), None);
        assert_eq!(
            check("auth/token/create/ci", VaultCap::Update),
            Some((Capability::Create, "sys/token/roles/ci".into(), None))
        );
        assert_eq!(
            first(Capability::Create, "sys/token/roles/ci", None),
            ["create auth/token/create/ci", "update auth/token/create/ci"]
        );
        // Every capability a KV path grants maps back onto itself.
        for c in [Capability::Read, Capability::Create, Capability::Meta] {
            for (p, vc) in vault_requests(c, "app/x", Some("app")) {
                assert_eq!(coffer_check(&p, vc).map(|r| r.0), Some(c));
            }
        }
    }
}
