//! The agent's configuration file (docs/agent.md): parsed strictly, every error naming the
//! file, the sink (`[[file]] #N` with its destination) and the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::Signal;
use serde::Deserialize;

use crate::supervise::{Exec, ExecConfig};

/// The whole file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    socket: Option<PathBuf>,
    token_file: Option<PathBuf>,
    namespace: Option<String>,
    state_dir: Option<PathBuf>,
    status_file: Option<PathBuf>,
    metrics_file: Option<PathBuf>,
    #[serde(default)]
    file: Vec<toml::Value>,
    #[serde(default)]
    template: Vec<toml::Value>,
    exec: Option<toml::Value>,
}

/// The keys every sink has.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    secret: String,
    namespace: Option<String>,
    destination: PathBuf,
    kind: Option<String>,
    env_name: Option<String>,
    post: Option<String>,
    mode: Option<String>,
    owner: Option<toml::Value>,
    group: Option<toml::Value>,
    on_change: Option<RawOnChange>,
    allow_persistent: Option<bool>,
    write: Option<String>,
    on_delete: Option<String>,
    create_dirs: Option<bool>,
    splay: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    source: Option<PathBuf>,
    contents: Option<String>,
    namespace: Option<String>,
    destination: PathBuf,
    wait: Option<RawWait>,
    mode: Option<String>,
    owner: Option<toml::Value>,
    group: Option<toml::Value>,
    on_change: Option<RawOnChange>,
    allow_persistent: Option<bool>,
    write: Option<String>,
    on_delete: Option<String>,
    create_dirs: Option<bool>,
    splay: Option<String>,
}

/// The keys every sink shares (serde's `flatten` cannot be combined with
/// `deny_unknown_fields`, so each sink's table lists them and hands them over here).
struct RawCommon {
    mode: Option<String>,
    owner: Option<toml::Value>,
    group: Option<toml::Value>,
    on_change: Option<RawOnChange>,
    allow_persistent: Option<bool>,
    write: Option<String>,
    on_delete: Option<String>,
    create_dirs: Option<bool>,
    splay: Option<String>,
}

macro_rules! raw_common {
    ($raw:expr) => {
        RawCommon {
            mode: $raw.mode,
            owner: $raw.owner,
            group: $raw.group,
            on_change: $raw.on_change,
            allow_persistent: $raw.allow_persistent,
            write: $raw.write,
            on_delete: $raw.on_delete,
            create_dirs: $raw.create_dirs,
            splay: $raw.splay,
        }
    };
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOnChange {
    signal: Option<String>,
    pid_file: Option<PathBuf>,
    command: Option<Vec<String>>,
    systemd: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWait {
    min: String,
    max: Option<String>,
}

/// What a file sink writes, from the secret's value (docs/agent.md, Kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// The value and a newline; a value holding a newline or NUL is refused.
    Line,
    /// The value as it is (UTF-8 text).
    Text,
    /// `KEY=value` lines, quoted for systemd's EnvironmentFile= and the shell.
    Env,
    /// The bytes as they are.
    File,
}

/// Post-processing of a file sink's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Post {
    /// None.
    None,
    /// The daemon's yescrypt hash of the value (the agent never reads the value).
    Yescrypt,
}

/// How the content reaches the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// A temporary file in the destination's directory, renamed over it.
    Atomic,
    /// The existing file rewritten (a bind-mounted single file keeps its inode).
    InPlace,
}

/// What to run when a destination changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnChange {
    /// Signal the process whose pid the file holds.
    Signal {
        /// The signal.
        signal: Signal,
        /// The pid file.
        pid_file: PathBuf,
    },
    /// Run a command (no shell).
    Command(Vec<String>),
    /// `systemctl <verb> <unit>...`.
    Systemd(Vec<String>),
}

/// The keys every sink shares, resolved.
#[derive(Debug, Clone)]
pub struct Common {
    /// Where the content goes.
    pub destination: PathBuf,
    /// Its mode.
    pub mode: u32,
    /// Its owner (None: the agent's own).
    pub uid: Option<u32>,
    /// Its group (None: the agent's own).
    pub gid: Option<u32>,
    /// What to run on a change.
    pub on_change: Option<OnChange>,
    /// Whether a destination on persistent storage is accepted.
    pub allow_persistent: bool,
    /// How to write.
    pub write: WriteMode,
    /// Whether the file is removed when its secret goes away.
    pub remove_on_delete: bool,
    /// Whether missing parent directories are made.
    pub create_dirs: bool,
    /// The most random delay before `on_change`.
    pub splay: Duration,
}

/// A `[[file]]` sink.
#[derive(Debug, Clone)]
pub struct FileSink {
    /// Namespace (None: the daemon's default).
    pub namespace: Option<String>,
    /// Secret name.
    pub secret: String,
    /// The kind written (None: from the secret's kind).
    pub kind: Option<FileKind>,
    /// For `env` of a secret that is not `kv`: the variable's name.
    pub env_name: Option<String>,
    /// Post-processing.
    pub post: Post,
    /// Shared keys.
    pub common: Common,
}

/// A `[[template]]` sink.
#[derive(Debug, Clone)]
pub struct TemplateSink {
    /// Where its text came from (a path, or `contents of [[template]] #N`).
    pub origin: String,
    /// The template's text.
    pub text: String,
    /// The namespace of names without one.
    pub namespace: Option<String>,
    /// Render this long after the last change...
    pub wait_min: Duration,
    /// ...and at most this long after the first.
    pub wait_max: Duration,
    /// Shared keys.
    pub common: Common,
}

/// A sink.
#[derive(Debug, Clone)]
pub enum Sink {
    /// `[[file]]`.
    File(FileSink),
    /// `[[template]]`.
    Template(TemplateSink),
}

impl Sink {
    /// The shared keys.
    pub fn common(&self) -> &Common {
        match self {
            Sink::File(f) => &f.common,
            Sink::Template(t) => &t.common,
        }
    }

    /// `[[file]] #1 (/run/app/db)`, for messages.
    pub fn label(&self, index: usize) -> String {
        let (table, n) = match self {
            Sink::File(_) => ("file", index),
            Sink::Template(_) => ("template", index),
        };
        format!(
            "[[{table}]] #{} ({})",
            n + 1,
            self.common().destination.display()
        )
    }
}

/// The agent's configuration, validated.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The file it came from.
    pub path: PathBuf,
    /// The daemon's socket, if the file names one.
    pub socket: Option<PathBuf>,
    /// The token file, if the file names one.
    pub token_file: Option<PathBuf>,
    /// The sinks: files first, then templates, each in file order.
    pub sinks: Vec<Sink>,
    /// Labels of the sinks (same order).
    pub labels: Vec<String>,
    /// Where the status goes (JSON).
    pub status_file: PathBuf,
    /// Where the metrics go (Prometheus text).
    pub metrics_file: PathBuf,
    /// `[exec]`: a command kept in step with the files.
    pub exec: Option<Exec>,
}

impl AgentConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the agent configuration {}", path.display()))?;
        Self::parse(path, &text)
    }

    /// Validates `text`, read from `path`.
    pub fn parse(path: &Path, text: &str) -> anyhow::Result<Self> {
        let file = path.display();
        let raw: RawConfig = toml::from_str(text)
            .with_context(|| format!("agent configuration {file} is invalid"))?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned();
        let default_ns = raw.namespace.clone();
        let mut sinks = Vec::new();
        let mut labels = Vec::new();
        for (i, value) in raw.file.into_iter().enumerate() {
            let dest = destination_hint(&value);
            let where_ = format!("{file}: [[file]] #{}{dest}", i + 1);
            let raw: RawFile = value.try_into().with_context(|| where_.clone())?;
            let sink = file_sink(raw, default_ns.as_deref()).with_context(|| where_.clone())?;
            labels.push(Sink::File(sink.clone()).label(i));
            sinks.push(Sink::File(sink));
        }
        for (i, value) in raw.template.into_iter().enumerate() {
            let dest = destination_hint(&value);
            let where_ = format!("{file}: [[template]] #{}{dest}", i + 1);
            let raw: RawTemplate = value.try_into().with_context(|| where_.clone())?;
            let sink = template_sink(raw, i, &dir, default_ns.as_deref())
                .with_context(|| where_.clone())?;
            labels.push(Sink::Template(sink.clone()).label(i));
            sinks.push(Sink::Template(sink));
        }
        let exec = raw
            .exec
            .map(|v| {
                let c: ExecConfig = v.try_into()?;
                c.check()
            })
            .transpose()
            .with_context(|| format!("{file}: [exec]"))?;
        if sinks.is_empty() {
            bail!("agent configuration {file} has no [[file]] or [[template]]: nothing to do");
        }
        let mut seen = std::collections::BTreeSet::new();
        for (sink, label) in sinks.iter().zip(&labels) {
            if !seen.insert(sink.common().destination.clone()) {
                bail!("{file}: {label}: another sink writes the same destination");
            }
        }
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "agent".into());
        let state_dir = raw
            .state_dir
            .map(|d| relative(&dir, d))
            .unwrap_or(dir.clone());
        let status_file = raw
            .status_file
            .map(|p| relative(&dir, p))
            .unwrap_or_else(|| state_dir.join(format!("{stem}.status.json")));
        let metrics_file = raw
            .metrics_file
            .map(|p| relative(&dir, p))
            .unwrap_or_else(|| status_file.with_extension("prom"));
        Ok(Self {
            path: path.to_owned(),
            socket: raw.socket.map(|p| relative(&dir, p)),
            token_file: raw.token_file.map(|p| relative(&dir, p)),
            sinks,
            labels,
            status_file,
            metrics_file,
            exec,
        })
    }
}

fn relative(dir: &Path, p: PathBuf) -> PathBuf {
    if p.is_absolute() { p } else { dir.join(p) }
}

/// ` (/run/app/db)` when the table has a string `destination`.
fn destination_hint(value: &toml::Value) -> String {
    value
        .get("destination")
        .and_then(toml::Value::as_str)
        .map(|d| format!(" ({d})"))
        .unwrap_or_default()
}

fn file_sink(raw: RawFile, default_ns: Option<&str>) -> anyhow::Result<FileSink> {
    let kind = match raw.kind.as_deref() {
        None => None,
        Some("line") => Some(FileKind::Line),
        Some("text") => Some(FileKind::Text),
        Some("env") => Some(FileKind::Env),
        Some("file") => Some(FileKind::File),
        Some(other) => bail!("`kind`: `{other}` is not one of line, text, env, file"),
    };
    let post = match raw.post.as_deref() {
        None | Some("none") => Post::None,
        Some("yescrypt") => Post::Yescrypt,
        Some(other) => bail!("`post`: `{other}` is not one of none, yescrypt"),
    };
    if post == Post::Yescrypt && kind.is_some_and(|k| k != FileKind::Line) {
        bail!("`post = \"yescrypt\"` writes one line: `kind` must be line or left out");
    }
    if let Some(name) = &raw.env_name {
        if !valid_env_key(name) {
            bail!(
                "`env_name`: `{name}` is not a variable name (letters, digits and _, not starting with a digit)"
            );
        }
        if kind != Some(FileKind::Env) {
            bail!("`env_name` is only for `kind = \"env\"`");
        }
    }
    if raw.secret.is_empty() {
        bail!("`secret`: the secret's name is empty");
    }
    Ok(FileSink {
        namespace: raw.namespace.or_else(|| default_ns.map(str::to_owned)),
        secret: raw.secret,
        kind,
        env_name: raw.env_name,
        post,
        common: common(raw_common!(raw), raw.destination)?,
    })
}

fn template_sink(
    raw: RawTemplate,
    index: usize,
    dir: &Path,
    default_ns: Option<&str>,
) -> anyhow::Result<TemplateSink> {
    let (origin, text) = match (raw.source, raw.contents) {
        (Some(source), None) => {
            let path = relative(dir, source);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!("`source`: cannot read the template {}", path.display())
            })?;
            (path.display().to_string(), text)
        }
        (None, Some(text)) => (format!("contents of [[template]] #{}", index + 1), text),
        _ => bail!("give exactly one of `source` (a file) and `contents` (the text)"),
    };
    let (wait_min, wait_max) = match raw.wait {
        None => (Duration::ZERO, Duration::ZERO),
        Some(w) => {
            let min = duration("wait.min", &w.min)?;
            let max = match w.max {
                Some(m) => duration("wait.max", &m)?,
                None => min * 4,
            };
            if max < min {
                bail!("`wait.max` must not be shorter than `wait.min`");
            }
            (min, max)
        }
    };
    Ok(TemplateSink {
        origin,
        text,
        namespace: raw.namespace.or_else(|| default_ns.map(str::to_owned)),
        wait_min,
        wait_max,
        common: common(raw_common!(raw), raw.destination)?,
    })
}

fn duration(key: &str, text: &str) -> anyhow::Result<Duration> {
    humantime::parse_duration(text).map_err(|e| {
        anyhow::anyhow!("`{key}`: `{text}` is not a duration ({e}; write e.g. 2s or 500ms)")
    })
}

fn common(raw: RawCommon, destination: PathBuf) -> anyhow::Result<Common> {
    if !destination.is_absolute() {
        bail!("`destination`: must be an absolute path");
    }
    if destination.file_name().is_none() {
        bail!("`destination`: must name a file");
    }
    let mode = match raw.mode.as_deref() {
        None => 0o400,
        Some(m) => u32::from_str_radix(m.strip_prefix("0o").unwrap_or(m), 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .with_context(|| format!("`mode`: `{m}` is not an octal mode such as \"0440\""))?,
    };
    let write = match raw.write.as_deref() {
        None | Some("atomic") => WriteMode::Atomic,
        Some("in-place") => WriteMode::InPlace,
        Some(o) => bail!("`write`: `{o}` is not one of atomic, in-place"),
    };
    let remove_on_delete = match raw.on_delete.as_deref() {
        None | Some("remove") => true,
        Some("keep") => false,
        Some(o) => bail!("`on_delete`: `{o}` is not one of remove, keep"),
    };
    let splay = match raw.splay.as_deref() {
        None => Duration::ZERO,
        Some(s) => duration("splay", s)?,
    };
    Ok(Common {
        destination,
        mode,
        uid: raw.owner.map(|v| user("owner", &v)).transpose()?,
        gid: raw.group.map(|v| group("group", &v)).transpose()?,
        on_change: raw.on_change.map(on_change).transpose()?,
        allow_persistent: raw.allow_persistent.unwrap_or(false),
        write,
        remove_on_delete,
        create_dirs: raw.create_dirs.unwrap_or(true),
        splay,
    })
}

/// A user name or uid.
fn user(key: &str, v: &toml::Value) -> anyhow::Result<u32> {
    account(key, v, "user", "uid", |s| {
        Ok(nix::unistd::User::from_name(s)?.map(|u| u.uid.as_raw()))
    })
}

/// A group name or gid.
fn group(key: &str, v: &toml::Value) -> anyhow::Result<u32> {
    account(key, v, "group", "gid", |s| {
        Ok(nix::unistd::Group::from_name(s)?.map(|g| g.gid.as_raw()))
    })
}

/// A number, or a name looked up in the system's accounts.
fn account(
    key: &str,
    v: &toml::Value,
    what: &str,
    number: &str,
    lookup: impl Fn(&str) -> nix::Result<Option<u32>>,
) -> anyhow::Result<u32> {
    match v {
        toml::Value::Integer(n) => {
            u32::try_from(*n).with_context(|| format!("`{key}`: {n} is not a {number}"))
        }
        toml::Value::String(s) => match s.parse::<u32>() {
            Ok(n) => Ok(n),
            Err(_) => lookup(s)
                .with_context(|| format!("`{key}`: cannot look up the {what} `{s}`"))?
                .with_context(|| format!("`{key}`: there is no {what} `{s}` on this system")),
        },
        _ => bail!("`{key}`: expected a {what} name or a {number}"),
    }
}

/// The systemctl verbs `on_change.systemd` may use.
const SYSTEMD_VERBS: &[&str] = &[
    "reload",
    "restart",
    "try-restart",
    "reload-or-restart",
    "try-reload-or-restart",
];

fn on_change(raw: RawOnChange) -> anyhow::Result<OnChange> {
    match (raw.signal, raw.pid_file, raw.command, raw.systemd) {
        (Some(signal), Some(pid_file), None, None) => {
            let name = signal.to_ascii_uppercase();
            let name = if name.starts_with("SIG") {
                name
            } else {
                format!("SIG{name}")
            };
            let signal: Signal = name.parse().map_err(|_| {
                anyhow::anyhow!(
                    "`on_change.signal`: `{signal}` is not a signal name such as HUP or USR1"
                )
            })?;
            Ok(OnChange::Signal { signal, pid_file })
        }
        (Some(_), None, None, None) => bail!("`on_change.signal` needs `pid_file`"),
        (None, None, Some(argv), None) => {
            if argv.first().is_none_or(String::is_empty) {
                bail!(
                    "`on_change.command`: give the program and its arguments, e.g. [\"/usr/bin/app\", \"reload\"]"
                );
            }
            Ok(OnChange::Command(argv))
        }
        (None, None, None, Some(text)) => {
            let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
            match words.split_first() {
                Some((verb, units))
                    if SYSTEMD_VERBS.contains(&verb.as_str()) && !units.is_empty() =>
                {
                    Ok(OnChange::Systemd(words))
                }
                _ => bail!(
                    "`on_change.systemd`: expected `VERB UNIT...` with VERB one of {}, e.g. \"reload app.service\"",
                    SYSTEMD_VERBS.join(", ")
                ),
            }
        }
        _ => bail!(
            "`on_change`: give exactly one of {{ signal, pid_file }}, {{ command = [...] }}, {{ systemd = \"reload app.service\" }}"
        ),
    }
}

/// Whether `key` can be a variable's name.
pub fn valid_env_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<AgentConfig> {
        AgentConfig::parse(Path::new("/etc/coffer/agent.toml"), text)
    }

    fn err(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    #[test]
    fn a_full_file_sink_parses() {
        let c = parse(
            r#"
            [[file]]
            secret = "db"
            destination = "/run/app/db"
            kind = "line"
            mode = "0440"
            owner = 0
            group = "0"
            on_change = { signal = "HUP", pid_file = "/run/app.pid" }
            splay = "1s"
            "#,
        )
        .unwrap();
        let Sink::File(f) = &c.sinks[0] else { panic!() };
        assert_eq!(f.common.mode, 0o440);
        assert_eq!(f.common.uid, Some(0));
        assert_eq!(f.common.gid, Some(0));
        assert_eq!(
            f.common.on_change,
            Some(OnChange::Signal {
                signal: Signal::SIGHUP,
                pid_file: "/run/app.pid".into()
            })
        );
        assert_eq!(c.status_file, Path::new("/etc/coffer/agent.status.json"));
        assert_eq!(c.metrics_file, Path::new("/etc/coffer/agent.status.prom"));
    }

    #[test]
    fn errors_name_the_file_the_sink_and_the_key() {
        let e = err(
            "[[file]]\nsecret = \"a\"\ndestination = \"/run/a\"\n[[file]]\nsecret = \"b\"\ndestination = \"/run/b\"\nmdoe = \"0400\"\n",
        );
        assert!(
            e.contains("/etc/coffer/agent.toml: [[file]] #2 (/run/b)"),
            "{e}"
        );
        assert!(e.contains("mdoe"), "{e}");
        let e = err("[[file]]\nsecret = \"a\"\ndestination = \"/run/a\"\nmode = \"999\"\n");
        assert!(e.contains("`mode`"), "{e}");
        let e = err(
            "[[file]]\nsecret = \"a\"\ndestination = \"/run/a\"\nowner = \"no-such-user-here\"\n",
        );
        assert!(
            e.contains("`owner`") && e.contains("no-such-user-here"),
            "{e}"
        );
        let e = err(
            "[[file]]\nsecret = \"a\"\ndestination = \"/run/a\"\non_change = { signal = \"HUP\" }\n",
        );
        assert!(e.contains("pid_file"), "{e}");
        let e = err(
            "[[file]]\nsecret = \"a\"\ndestination = \"/run/a\"\non_change = { systemd = \"start x\" }\n",
        );
        assert!(e.contains("on_change.systemd"), "{e}");
        let e = err("[[template]]\ndestination = \"/run/a\"\n");
        assert!(
            e.contains("[[template]] #1 (/run/a)") && e.contains("source"),
            "{e}"
        );
        let e = err("[[file]]\nsecret = \"a\"\ndestination = \"run/a\"\n");
        assert!(e.contains("absolute"), "{e}");
        let e = err(
            "[[file]]\nsecret = \"a\"\ndestination = \"/run/a\"\n[[file]]\nsecret = \"b\"\ndestination = \"/run/a\"\n",
        );
        assert!(e.contains("same destination"), "{e}");
        let e = err(
            "[[file]]\nsecret = \"a\"\ndestination = \"/run/a\"\nkind = \"text\"\nenv_name = \"A\"\n",
        );
        assert!(e.contains("env_name"), "{e}");
        let e = err("[[file]]\nsecret = \"a\"\ndestination = \"/run/a\"\n[exec]\ncommand = []\n");
        assert!(
            e.contains("agent.toml: [exec]") && e.contains("command"),
            "{e}"
        );
        let e = err(
            "[[file]]\nsecret = \"a\"\ndestination = \"/run/a\"\n[exec]\ncommand = [\"x\"]\nreload = \"HUP\"\n",
        );
        assert!(e.contains("[exec]") && e.contains("reload"), "{e}");
        let e = err("bogus = 1\n");
        assert!(e.contains("bogus") && e.contains("agent.toml"), "{e}");
    }

    #[test]
    fn a_template_waits() {
        let c = parse(
            "[[template]]\ncontents = \"x\"\ndestination = \"/run/t\"\nwait = { min = \"2s\" }\n",
        )
        .unwrap();
        let Sink::Template(t) = &c.sinks[0] else {
            panic!()
        };
        assert_eq!(t.wait_min, Duration::from_secs(2));
        assert_eq!(t.wait_max, Duration::from_secs(8));
    }
}
