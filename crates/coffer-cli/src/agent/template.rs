//! The agent's templates: minijinja text with functions that read secrets (docs/agent-templates.md).
//!
//! A [`Template`] is compiled once and rendered whenever one of the secrets it used changes.
//! A render is strict: an undefined variable, a secret that cannot be had, a KV field that
//! does not exist or a value that is not text fails the whole render, so the agent keeps the
//! old file. Errors are built here from what failed (the template, its line, the secret's
//! reference, the field), never from the engine's own detail, which may quote a value.
//!
//! The engine's functions must be `'static`, while the secrets come from a borrowed
//! [`Secrets`]: a render runs the engine on a scoped thread of its own, and the calling
//! thread answers its questions over a channel, fetching each secret once per render. The
//! output is written into zeroizing memory; the copies of values the engine makes while it
//! runs (plain strings) live only as long as that render.

mod functions;
mod secrets;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::sync::{Arc, mpsc};

use anyhow::bail;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use zeroize::Zeroizing;

use functions::{Ask, Broker, Failure};
pub use secrets::{Missing, Secrets, reference};

/// The largest template source accepted.
pub const MAX_SOURCE: usize = 1 << 20;
/// The largest output a render may produce.
pub const MAX_OUTPUT: usize = 16 << 20;
/// The work one render may do, in minijinja's fuel (about one per instruction executed and
/// one per 64 bytes of data created): bounds both its time and its memory.
pub const FUEL: u64 = 1_000_000;
/// The engine's recursion limit (nested blocks, loops and macro calls).
const RECURSION_LIMIT: usize = 200;
/// The stack of the thread that runs the engine.
const ENGINE_STACK: usize = 8 << 20;

/// A render's result.
pub struct Rendered {
    /// The text.
    pub text: Zeroizing<String>,
    /// Every secret it used, as (namespace, name): the events that re-render it. A name the
    /// template computed (`secret("db-" ~ x)`) is here as computed, which may be from a
    /// value: match events against it, do not log it (`Debug` shows only the count).
    pub uses: BTreeSet<(String, String)>,
}

impl fmt::Debug for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rendered")
            .field("len", &self.text.len())
            .field("uses", &self.uses.len())
            .finish()
    }
}

/// Why a render failed. Its text (`Display` and `Debug`) names the template, the line, and
/// the secret or field; it never holds a value.
#[derive(Clone, PartialEq, Eq)]
pub struct RenderError {
    /// The template (its `origin`).
    pub origin: String,
    /// The line that failed, when known.
    pub line: Option<usize>,
    /// What failed.
    pub problem: Problem,
    /// The secrets the render asked for before it failed (the missing one included), as
    /// (namespace, name): the events after which it is worth trying again. Like
    /// [`Rendered::uses`], it may hold a name the template computed (even from a value): match
    /// events against it, do not log it.
    pub uses: BTreeSet<(String, String)>,
}

/// What made a render fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A secret could not be had.
    Missing(Missing),
    /// A secret was had but cannot be used that way (no such KV field, not a JSON object,
    /// not UTF-8 text).
    Unusable {
        /// The secret.
        reference: String,
        /// What is wrong, e.g. "has no field `db.user`".
        what: String,
    },
    /// The output passed [`MAX_OUTPUT`].
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The render did more work than its [`FUEL`] allows.
    OutOfFuel,
    /// Any other template error, from the engine's error kind.
    Template(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(m) => m.fmt(f),
            Self::Unusable { reference, what } => write!(f, "secret {reference} {what}"),
            Self::TooLarge { limit } => write!(f, "the output is larger than {limit} bytes"),
            Self::OutOfFuel => f.write_str(
                "the template did more work than a render may (a loop too long, or too much data)",
            ),
            Self::Template(what) => f.write_str(what),
        }
    }
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} line {line}: {}", self.origin, self.problem),
            None => write!(f, "{}: {}", self.origin, self.problem),
        }
    }
}

impl fmt::Debug for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderError")
            .field("origin", &self.origin)
            .field("line", &self.line)
            .field("problem", &self.problem)
            .field("uses", &self.uses.len())
            .finish()
    }
}

impl std::error::Error for RenderError {}

/// Limits of one render (the constants; tests lower them).
#[derive(Debug, Clone, Copy)]
struct Limits {
    output: usize,
}

/// A compiled template.
pub struct Template {
    origin: String,
    env: Environment<'static>,
    source: Arc<str>,
    limits: Limits,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Template")
            .field("origin", &self.origin)
            .finish()
    }
}

impl Template {
    /// Compiles `text`; `origin` names it in errors (a file name, or the agent config's
    /// key). Syntax errors name the template and line, e.g. `app.conf.tmpl line 3: ...`.
    pub fn compile(origin: &str, text: &str) -> anyhow::Result<Self> {
        if text.len() > MAX_SOURCE {
            bail!(
                "{origin}: the template is {} bytes, more than the {MAX_SOURCE} a template may have",
                text.len()
            );
        }
        let mut env = Environment::new();
        // Config files, not HTML: nothing is escaped unless the template asks.
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
        // A config file keeps its last newline.
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()?;
        env.set_syntax(syntax);
        // `debug()` would print the render's state (secrets in variables) into the file.
        env.remove_global("debug");
        if let Err(e) = env.add_template_owned(origin.to_owned(), text.to_owned()) {
            let at = e.line().map(|l| format!(" line {l}")).unwrap_or_default();
            // A syntax error's detail quotes only the template's own text.
            let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
            bail!("{origin}{at}: {}{detail}", describe(e.kind()));
        }
        Ok(Self {
            origin: origin.to_owned(),
            env,
            source: Arc::from(text),
            limits: Limits { output: MAX_OUTPUT },
        })
    }

    #[cfg(test)]
    fn with_limits(mut self, output: usize, fuel: u64) -> Self {
        self.limits.output = output;
        self.env.set_fuel(Some(fuel));
        self
    }

    /// Renders: the text in zeroizing memory, and every secret it used as (namespace,
    /// name) so the agent knows which events re-render it. Strict: an undefined variable, a
    /// missing secret, a missing KV field, a non-UTF-8 value used as text each fail the
    /// whole render with an error that names the secret or field and the line, but never
    /// contains a value.
    pub fn render(&self, secrets: &dyn Secrets) -> Result<Rendered, RenderError> {
        let (ask_tx, ask_rx) = mpsc::channel::<Ask>();
        let (answer_tx, answer_rx) = mpsc::channel();
        let broker = Broker::new(ask_tx, answer_rx, Arc::clone(&self.source));
        let mut env = self.env.clone();
        functions::add_functions(&mut env, &broker);
        let origin = self.origin.clone();
        let limit = self.limits.output;
        let mut uses = BTreeSet::new();

        let outcome = std::thread::scope(|scope| {
            let engine = std::thread::Builder::new()
                .name("coffer-template".to_owned())
                .stack_size(ENGINE_STACK)
                .spawn_scoped(scope, move || {
                    let mut out = Capped::new(limit);
                    let result = env
                        .get_template(&origin)
                        .and_then(|t| t.render_captured_to((), &mut out).map(drop));
                    let failure = broker.take_failure();
                    // Dropping the environment and the broker closes the channel of
                    // questions, which ends the loop that answers them.
                    drop(env);
                    drop(broker);
                    // Only the kind, the line and a detail known to hold no value leave
                    // the engine's error.
                    let result = result.map_err(|e| (e.kind(), e.line(), runtime_message(&e)));
                    (result, failure, out)
                });
            let engine = match engine {
                Ok(engine) => engine,
                Err(_) => return None,
            };
            functions::answer(ask_rx, &answer_tx, secrets, &mut uses);
            engine.join().ok()
        });

        let fail = |line, problem, uses| RenderError {
            origin: self.origin.clone(),
            line,
            problem,
            uses,
        };
        let Some((result, failure, out)) = outcome else {
            return Err(fail(
                None,
                Problem::Template("the template engine failed".to_owned()),
                uses,
            ));
        };
        match result {
            Ok(()) => Ok(Rendered {
                text: out.into_text(),
                uses,
            }),
            Err((kind, line, message)) => {
                let problem = match failure {
                    Some(Failure::Missing(m)) => Problem::Missing(m),
                    Some(Failure::Unusable { reference, what }) => {
                        Problem::Unusable { reference, what }
                    }
                    Some(Failure::Filter(what)) => Problem::Template(what),
                    None if out.over => Problem::TooLarge { limit },
                    None if is_out_of_fuel(kind) => Problem::OutOfFuel,
                    None => Problem::Template(message),
                };
                Err(fail(line, problem, uses))
            }
        }
    }
}

fn is_out_of_fuel(kind: ErrorKind) -> bool {
    kind == ErrorKind::OutOfFuel
}

/// The engine's error kind in words.
fn describe(kind: ErrorKind) -> String {
    match kind {
        ErrorKind::UndefinedError => {
            "undefined value (a variable or attribute the template names does not exist)".to_owned()
        }
        // The kind's own words ("syntax error", "unknown filter", ...).
        kind => kind.to_string(),
    }
}

/// A runtime error's text: the kind, and the detail only where it holds nothing but names
/// from the template's text (the detail of other kinds may quote a value).
fn runtime_message(e: &minijinja::Error) -> String {
    let kind = e.kind();
    let detail = e.detail();
    let safe = matches!(
        kind,
        ErrorKind::UnknownFilter | ErrorKind::UnknownFunction | ErrorKind::UnknownTest
    ) || detail == Some("recursion limit exceeded");
    match detail {
        Some(d) if safe && d.len() <= 200 => format!("{}: {d}", describe(kind)),
        _ => describe(kind),
    }
}

/// The engine's output: zeroizing memory that never reallocates behind our back (a larger
/// buffer is allocated, the text copied, the old one wiped) and refuses to pass `limit`.
struct Capped {
    buf: Zeroizing<Vec<u8>>,
    limit: usize,
    over: bool,
}

impl Capped {
    fn new(limit: usize) -> Self {
        Self {
            buf: Zeroizing::new(Vec::new()),
            limit,
            over: false,
        }
    }

    fn into_text(mut self) -> Zeroizing<String> {
        let bytes = std::mem::take(&mut *self.buf);
        match String::from_utf8(bytes) {
            Ok(text) => Zeroizing::new(text),
            // Cannot happen: the engine writes only `str`s. Wipe and answer nothing.
            Err(e) => {
                drop(Zeroizing::new(e.into_bytes()));
                Zeroizing::new(String::new())
            }
        }
    }
}

impl io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let need = self.buf.len().saturating_add(data.len());
        if need > self.limit {
            self.over = true;
            return Err(io::Error::other("the output is too large"));
        }
        if need > self.buf.capacity() {
            let capacity = need.max(self.buf.capacity() * 2).max(4096).min(self.limit);
            let mut bigger = Zeroizing::new(Vec::with_capacity(capacity));
            bigger.extend_from_slice(&self.buf);
            // The old buffer is wiped as it drops.
            self.buf = bigger;
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
