//! Mounts: each namespace is a KV v2 mount at `/v1/<namespace>/`, and `default` is also
//! `/v1/secret/`. Which namespaces exist is the core's to say, at its namespace gate after
//! the caller's identity; here a path only becomes its candidates: every way it splits into
//! a mount, an operation word and a name, longest mount first.

use coffer_types::Namespace;

/// The words that may follow a mount.
pub(crate) const WORDS: &[&str] = &[
    "data",
    "metadata",
    "delete",
    "undelete",
    "destroy",
    "subkeys",
    "config",
    "generate",
    "rotate",
    "revoke",
    "describe",
    "versions",
    "hmac",
    "basic-auth",
    "yescrypt",
    "revoked",
];

/// One way to read a path under `/v1/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    /// The namespace mounted there.
    pub namespace: Namespace,
    /// The operation word after the mount.
    pub word: &'static str,
    /// The path (shared by every reading) and where the rest starts in it.
    path: std::sync::Arc<str>,
    rest_at: usize,
}

impl Candidate {
    /// The rest: a secret's name, or a folder, or nothing.
    pub fn rest(&self) -> &str {
        self.path.get(self.rest_at..).unwrap_or("")
    }

    /// The path every reading shares, and where this one's rest starts in it.
    pub fn shared(&self) -> (std::sync::Arc<str>, usize) {
        (self.path.clone(), self.rest_at)
    }
}

/// The word `text` is, if it is one.
fn word(text: &str) -> Option<&'static str> {
    WORDS.iter().find(|w| **w == text).copied()
}

/// The ways `path` splits into a mount, a word and the rest, longest mount first. A path
/// under `secret/` is the `default` namespace's and nothing else's.
pub(crate) fn candidates(path: &str) -> Vec<Candidate> {
    let shared: std::sync::Arc<str> = path.trim_start_matches('/').into();
    let path = &*shared;
    // The word after the mount ending at `end`, and where the rest starts.
    let split = |end: usize| -> Option<(&'static str, usize)> {
        let after = path.get(end + 1..)?;
        let (w, rest_at) = match after.find('/') {
            Some(i) => (&after[..i], end + 1 + i + 1),
            None => (after, path.len()),
        };
        word(w).map(|w| (w, rest_at))
    };
    let reading = |namespace, (word, rest_at)| Candidate {
        namespace,
        word,
        path: shared.clone(),
        rest_at,
    };
    if path.starts_with("secret/") {
        return split("secret".len())
            .map(|w| reading(Namespace::default_namespace(), w))
            .into_iter()
            .collect();
    }
    let mut out = Vec::new();
    let ends: Vec<usize> = path.match_indices('/').map(|(i, _)| i).collect();
    for &end in ends.iter().rev() {
        let Some(w) = split(end) else {
            continue;
        };
        if let Ok(namespace) = Namespace::parse(&path[..end]) {
            out.push(reading(namespace, w));
        }
    }
    out
}

/// The mounts a path may be under, for Vault's preflight (`sys/internal/ui/mounts/<path>`):
/// every prefix that could be a namespace, longest first, with its mount path.
pub(crate) fn prefixes(path: &str) -> Vec<(String, Namespace)> {
    let path = path.trim_matches('/');
    if path == "secret" || path.starts_with("secret/") {
        return vec![("secret/".to_owned(), Namespace::default_namespace())];
    }
    let mut out = Vec::new();
    let mut end = path.len();
    loop {
        let candidate = &path[..end];
        if let Ok(ns) = Namespace::parse(candidate) {
            out.push((format!("{candidate}/"), ns));
        }
        match candidate.rfind('/') {
            Some(i) => end = i,
            None => break,
        }
    }
    out
}

/// The mount table entry of a namespace, as `sys/mounts` and the preflight show it.
pub(crate) fn entry(mount_path: &str, namespace: &str) -> serde_json::Value {
    serde_json::json!({
        "path": mount_path,
        "type": "kv",
        "description": format!("coffer namespace {namespace}"),
        "accessor": format!("kv_{}", &blake3_hex(namespace)[..8]),
        "options": {"version": "2"},
        "config": {
            "default_lease_ttl": 0,
            "max_lease_ttl": 0,
            "force_no_cache": false,
        },
        "local": false,
        "seal_wrap": false,
        "external_entropy_access": false,
        // Stable per namespace, in a UUID's shape (Vault's is random per mount).
        "uuid": uuid_of(namespace),
        "plugin_version": "",
        "running_plugin_version": "",
        "running_sha256": "",
        "deprecation_status": "supported",
    })
}

/// A UUID-shaped id derived from the namespace's name.
fn uuid_of(namespace: &str) -> String {
    let h = blake3_hex(&format!("coffer mount {namespace}"));
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn blake3_hex(text: &str) -> String {
    data_encoding::HEXLOWER.encode(blake3::hash(text.as_bytes()).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(c: &[Candidate]) -> Vec<(String, String, String)> {
        c.iter()
            .map(|c| {
                (
                    c.namespace.as_str().to_owned(),
                    c.word.to_owned(),
                    c.rest().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn a_path_splits_every_way_longest_mount_first() {
        let s = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
        assert_eq!(
            shown(&candidates("acme/prod/data/db")),
            [s("acme/prod", "data", "db")]
        );
        // A namespace segment or a name that is also a word gives more than one reading.
        assert_eq!(
            shown(&candidates("acme/data/metadata/x")),
            [
                s("acme/data", "metadata", "x"),
                s("acme", "data", "metadata/x")
            ]
        );
        assert_eq!(
            shown(&candidates("secret/data/app/data/x")),
            [s("default", "data", "app/data/x")]
        );
        assert_eq!(
            shown(&candidates("secret/metadata")),
            [s("default", "metadata", "")]
        );
        assert!(candidates("nothing/here").is_empty());
        assert!(candidates("secret/nope/x").is_empty());
        // `sys` is no namespace.
        assert!(candidates("sys/data/x").is_empty());
    }

    #[test]
    fn preflight_prefixes() {
        let p: Vec<String> = prefixes("acme/prod/db/")
            .into_iter()
            .map(|(m, _)| m)
            .collect();
        assert_eq!(p, ["acme/prod/db/", "acme/prod/", "acme/"]);
        assert_eq!(prefixes("secret/x")[0].0, "secret/");
    }
}
