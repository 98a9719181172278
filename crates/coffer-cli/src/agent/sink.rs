//! What a sink writes: a secret's value in the sink's kind, its yescrypt hash, or a rendered
//! template; and which secret versions it came from. Errors carry a code and a message,
//! never a value.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use coffer_client::{Client, ClientError};
use coffer_crypto::SecretBytes;
use coffer_types::{ErrorCode, Kind, SecretMeta, Version};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use zeroize::Zeroizing;

use super::config::{FileKind, FileSink, Post, TemplateSink, valid_env_key};
use super::template::{self, Missing, Secrets, Template};

/// A secret version a sink rendered from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Used {
    /// Its namespace (`default` for the daemon's default).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The version read, when the agent may see metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

/// `default/db v3`; a name the template computed shows as that alone.
impl std::fmt::Display for Used {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)?;
        } else {
            write!(f, "{}/{}", self.namespace, self.name)?;
        }
        match self.version {
            Some(v) => write!(f, " v{v}"),
            None => Ok(()),
        }
    }
}

/// Why a sink could not be rendered.
#[derive(Debug, Clone)]
pub struct SinkError {
    /// A stable word: the daemon's code, `unreachable`, `invalid` or `render`.
    pub code: String,
    /// What happened (never a value).
    pub message: String,
    /// The daemon could not answer (down, sealed): try again when it is back.
    pub stale: bool,
    /// The secret does not exist (any more): `on_delete` applies.
    pub gone: bool,
}

impl SinkError {
    fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: "invalid".into(),
            message: message.into(),
            stale: false,
            gone: false,
        }
    }

    fn client(e: &ClientError, what: &str) -> Self {
        match e {
            ClientError::Refused { code, message, .. } => Self {
                code: code.as_str().into(),
                message: format!("{what}: {message}"),
                stale: matches!(
                    code,
                    ErrorCode::Sealed | ErrorCode::StoreUnavailable | ErrorCode::RateLimited
                ),
                gone: *code == ErrorCode::NotFound,
            },
            other => Self {
                code: "unreachable".into(),
                message: format!("{what}: {}", crate::follow::error_chain(other)),
                stale: true,
                gone: false,
            },
        }
    }
}

/// What a render produced.
pub struct Output {
    /// The content to write.
    pub content: Zeroizing<Vec<u8>>,
    /// The versions it came from.
    pub used: Vec<Used>,
}

/// `default` for the daemon's default namespace.
pub fn ns_name(namespace: Option<&str>) -> String {
    namespace
        .unwrap_or(coffer_types::Namespace::DEFAULT)
        .to_owned()
}

/// What [`read`] found: the value, the secret's kind and the version read (each `None` when
/// the agent may not see metadata and no event named the version).
struct Read {
    value: SecretBytes,
    kind: Option<Kind>,
    version: Option<u32>,
}

/// Metadata, then the value of that very version: the current one, or `at_least` when a
/// change event named a newer one (the daemon publishes an event once the write committed, so
/// that version is there even if a metadata read raced it). Without `meta` on the secret: the
/// version the event named, else the current value.
fn read(
    client: &Client,
    namespace: Option<&str>,
    name: &str,
    at_least: Option<u32>,
) -> Result<Read, ClientError> {
    match client.meta(namespace, name) {
        Ok(meta) => {
            let version = match at_least.and_then(Version::new) {
                Some(v) if v > meta.current => v,
                _ => meta.current,
            };
            let value = client.get(namespace, name, Some(version))?;
            Ok(Read {
                value,
                kind: Some(meta.kind),
                version: Some(version.get()),
            })
        }
        Err(ClientError::Refused {
            code: ErrorCode::Denied,
            ..
        }) => {
            let version = at_least.and_then(Version::new);
            Ok(Read {
                value: client.get(namespace, name, version)?,
                kind: None,
                version: version.map(Version::get),
            })
        }
        Err(e) => Err(e),
    }
}

/// Renders a `[[file]]` sink. `existing` is what the destination holds now (for yescrypt,
/// whose salt is kept while the password is unchanged, so nothing churns).
pub fn render_file(
    client: &Client,
    sink: &FileSink,
    existing: Option<&[u8]>,
    at_least: Option<u32>,
) -> Result<Output, SinkError> {
    let ns = sink.namespace.as_deref();
    let what = format!("{}/{}", ns_name(ns), sink.secret);
    if sink.post == Post::Yescrypt {
        let version = match client.meta(ns, &sink.secret) {
            Ok(m) => Some(m.current.get()),
            Err(ClientError::Refused {
                code: ErrorCode::Denied,
                ..
            }) => None,
            Err(e) => return Err(SinkError::client(&e, &what)),
        };
        let setting = existing
            .and_then(|b| std::str::from_utf8(b).ok())
            .map(str::trim_end)
            .filter(|s| s.starts_with("$y$") && !s.contains(char::is_whitespace));
        let mut hash = yescrypt(client, ns, &sink.secret, setting)
            .map_err(|e| SinkError::client(&e, &what))?;
        if setting.is_some_and(|s| s != hash) {
            // A new password: a new salt too.
            hash = yescrypt(client, ns, &sink.secret, None)
                .map_err(|e| SinkError::client(&e, &what))?;
        }
        let mut content = Zeroizing::new(hash.into_bytes());
        content.push(b'\n');
        return Ok(Output {
            content,
            used: vec![Used {
                namespace: ns_name(ns),
                name: sink.secret.clone(),
                version,
            }],
        });
    }
    let read =
        read(client, ns, &sink.secret, at_least).map_err(|e| SinkError::client(&e, &what))?;
    let (value, secret_kind) = (read.value, read.kind);
    let kind = sink.kind.unwrap_or(match secret_kind {
        Some(Kind::Line) => FileKind::Line,
        Some(Kind::Env) => FileKind::Env,
        Some(Kind::File) => FileKind::File,
        _ => FileKind::Text,
    });
    let content = format(kind, secret_kind, sink.env_name.as_deref(), &value)
        .map_err(|m| SinkError::invalid(format!("{what}: {m}")))?;
    Ok(Output {
        content,
        used: vec![Used {
            namespace: ns_name(ns),
            name: sink.secret.clone(),
            version: read.version,
        }],
    })
}

/// The daemon's yescrypt hash of a secret, recomputed with `setting`'s salt when given.
fn yescrypt(
    client: &Client,
    namespace: Option<&str>,
    name: &str,
    setting: Option<&str>,
) -> Result<String, ClientError> {
    client.yescrypt(namespace, name, setting)
}

/// The content of a file sink of `kind` (docs/agent.md, Kinds).
fn format(
    kind: FileKind,
    secret_kind: Option<Kind>,
    env_name: Option<&str>,
    value: &SecretBytes,
) -> Result<Zeroizing<Vec<u8>>, String> {
    let bytes = value.expose_secret();
    match kind {
        FileKind::Line => {
            if bytes.iter().any(|b| *b == b'\n' || *b == 0) {
                return Err("the value holds a newline or NUL, which kind `line` cannot hold (use text or file)".into());
            }
            let mut out = Zeroizing::new(Vec::with_capacity(bytes.len() + 1));
            out.extend_from_slice(bytes);
            out.push(b'\n');
            Ok(out)
        }
        FileKind::Text => {
            if std::str::from_utf8(bytes).is_err() {
                return Err("the value is not UTF-8 text (use kind file)".into());
            }
            Ok(Zeroizing::new(bytes.to_vec()))
        }
        FileKind::File => Ok(Zeroizing::new(bytes.to_vec())),
        FileKind::Env => env(secret_kind, env_name, value),
    }
}

/// `KEY="value"` lines.
fn env(
    secret_kind: Option<Kind>,
    env_name: Option<&str>,
    value: &SecretBytes,
) -> Result<Zeroizing<Vec<u8>>, String> {
    let text = value
        .expose_str()
        .ok_or("the value is not UTF-8 text, which kind `env` needs")?;
    let mut out = Zeroizing::new(String::new());
    match (env_name, secret_kind) {
        (Some(name), _) => push_assignment(&mut out, name, text)?,
        (None, Some(Kind::Kv)) => {
            // Fields borrowed from the value as raw JSON (sorted by name, so the file does not
            // depend on the stored order); a string is decoded straight into zeroized memory.
            let fields: BTreeMap<String, &RawValue> = serde_json::from_str(text)
                .map_err(|_| "the kv value is not a JSON object".to_string())?;
            for (key, field) in &fields {
                if !valid_env_key(key) {
                    return Err(format!(
                        "the field `{key}` is not a variable name (letters, digits and _, not starting with a digit)"
                    ));
                }
                let raw = field.get();
                let text = if raw.starts_with('"') {
                    Zeroizing::new(
                        serde_json::from_str::<String>(raw)
                            .map_err(|_| format!("the field `{key}` is not a JSON string"))?,
                    )
                } else if raw == "null" {
                    Zeroizing::new(String::new())
                } else {
                    Zeroizing::new(raw.to_owned())
                };
                push_assignment(&mut out, key, &text)?;
            }
        }
        (None, Some(Kind::Env)) => {
            if text.contains('\0') {
                return Err("the value holds a NUL".into());
            }
            out.push_str(text);
            if !text.is_empty() && !text.ends_with('\n') {
                out.push('\n');
            }
        }
        (None, _) => {
            return Err(
                "kind `env` of a secret that is neither kv nor env needs `env_name` (the variable's name)"
                    .into(),
            );
        }
    }
    Ok(Zeroizing::new(std::mem::take(&mut *out).into_bytes()))
}

/// `KEY="value"\n`, the value in double quotes with `\`, `"`, `$` and `` ` `` escaped: what
/// both systemd's EnvironmentFile= and a POSIX shell read back as the value (a newline stays
/// literal inside the quotes, for both).
fn push_assignment(out: &mut String, key: &str, value: &str) -> Result<(), String> {
    if value.contains('\0') {
        return Err(format!("the value of `{key}` holds a NUL"));
    }
    out.push_str(key);
    out.push_str("=\"");
    for c in value.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push_str("\"\n");
    Ok(())
}

/// [`Secrets`] over the client, remembering the versions read and why one could not be.
struct AgentSecrets<'a> {
    client: &'a Client,
    namespace: Option<&'a str>,
    used: RefCell<Vec<Used>>,
    asked: RefCell<BTreeSet<(String, String)>>,
    failure: RefCell<Option<SinkError>>,
}

impl AgentSecrets<'_> {
    fn ask(&self, namespace: Option<&str>, name: &str) {
        self.asked
            .borrow_mut()
            .insert((ns_name(namespace), name.to_owned()));
    }

    /// `template` is the namespace as the template gave it (for the reference it shows).
    fn missing(
        &self,
        e: &ClientError,
        template: Option<&str>,
        namespace: Option<&str>,
        name: &str,
    ) -> Missing {
        let error = SinkError::client(e, &format!("{}/{name}", ns_name(namespace)));
        let reason = match e {
            ClientError::Refused { code, message, .. } => format!("{code}: {message}"),
            other => format!("{}: {}", error.code, crate::follow::error_chain(other)),
        };
        self.failure.borrow_mut().get_or_insert(error);
        Missing {
            reference: template::reference(template, name),
            reason,
        }
    }
}

impl Secrets for AgentSecrets<'_> {
    fn value(&self, namespace: Option<&str>, name: &str) -> Result<SecretBytes, Missing> {
        let ns = namespace.or(self.namespace);
        self.ask(ns, name);
        let read =
            read(self.client, ns, name, None).map_err(|e| self.missing(&e, namespace, ns, name))?;
        let used = Used {
            namespace: ns_name(ns),
            name: name.to_owned(),
            version: read.version,
        };
        let mut all = self.used.borrow_mut();
        if !all.contains(&used) {
            all.push(used);
        }
        Ok(read.value)
    }

    fn meta(&self, namespace: Option<&str>, name: &str) -> Result<SecretMeta, Missing> {
        let ns = namespace.or(self.namespace);
        self.ask(ns, name);
        self.client
            .meta(ns, name)
            .map_err(|e| self.missing(&e, namespace, ns, name))
    }

    fn default_namespace(&self) -> &str {
        self.namespace.unwrap_or(coffer_types::Namespace::DEFAULT)
    }
}

/// What the status and the log show in place of a name the template computed (which may come
/// from a value) rather than wrote.
pub const COMPUTED: &str = "(a name the template computed)";

/// Whether `word` is written in the template as a quoted string.
fn written(text: &str, word: &str) -> bool {
    text.contains(&format!("\"{word}\"")) || text.contains(&format!("'{word}'"))
}

/// Renders a `[[template]]` sink. Answers also what it depends on: every secret it asked for,
/// found or not, even when the render failed (real names: match events against them, never
/// show them). The versions in [`Output::used`] show a name only when the template wrote it.
pub fn render_template(
    client: &Client,
    sink: &TemplateSink,
    template: &Template,
) -> (Result<Output, SinkError>, BTreeSet<(String, String)>) {
    let secrets = AgentSecrets {
        client,
        namespace: sink.namespace.as_deref(),
        used: RefCell::new(Vec::new()),
        asked: RefCell::new(BTreeSet::new()),
        failure: RefCell::new(None),
    };
    let result = template.render(&secrets);
    let mut deps = secrets.asked.borrow().clone();
    let default_ns = ns_name(sink.namespace.as_deref());
    let shown = |u: Used| {
        let literal = written(&sink.text, &u.name)
            && (u.namespace == default_ns || written(&sink.text, &u.namespace));
        if literal {
            u
        } else {
            Used {
                namespace: String::new(),
                name: COMPUTED.into(),
                version: u.version,
            }
        }
    };
    let result = match result {
        Ok(mut rendered) => {
            deps.extend(std::mem::take(&mut rendered.uses));
            let mut used: Vec<Used> = Vec::new();
            for u in secrets.used.into_inner().into_iter().map(shown) {
                if !used.contains(&u) {
                    used.push(u);
                }
            }
            Ok(Output {
                content: Zeroizing::new(std::mem::take(&mut *rendered.text).into_bytes()),
                used,
            })
        }
        Err(e) => {
            deps.extend(e.uses.iter().cloned());
            let failure = secrets.failure.into_inner();
            Err(SinkError {
                code: failure
                    .as_ref()
                    .map_or_else(|| "render".to_owned(), |f| f.code.clone()),
                message: e.to_string(),
                stale: failure.as_ref().is_some_and(|f| f.stale),
                // A template whose secret is gone keeps its old file: strict, not removing.
                gone: false,
            })
        }
    };
    (result, deps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_quoting_escapes_what_the_shell_and_systemd_expand() {
        let mut out = String::new();
        push_assignment(&mut out, "K", "a\"b$c`d\\e'f g").unwrap();
        assert_eq!(out, "K=\"a\\\"b\\$c\\`d\\\\e'f g\"\n");
        assert!(push_assignment(&mut out, "K", "a\0").is_err());
    }

    #[test]
    fn a_line_refuses_a_newline() {
        let v = SecretBytes::copy_from(b"a\nb");
        assert!(format(FileKind::Line, None, None, &v).is_err());
        let v = SecretBytes::copy_from(b"ab");
        assert_eq!(
            &format(FileKind::Line, None, None, &v).unwrap()[..],
            b"ab\n"
        );
    }
}
