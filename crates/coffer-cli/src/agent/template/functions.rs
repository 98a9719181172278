//! The functions and filters templates call, and the two ends of a render's channel: the
//! engine's side asks ([`Broker`]), the caller's side fetches from [`Secrets`] and answers
//! ([`answer`]), once per secret per render.
//!
//! A failure these functions understand (a secret missing, a field absent) is recorded in the
//! broker before the engine is told to stop, and becomes the render's error: the engine's own
//! error text is never used for it.

use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use coffer_crypto::SecretBytes;
use coffer_types::SecretMeta;
use data_encoding::BASE64;
use minijinja::value::Kwargs;
use minijinja::{Environment, Error, ErrorKind, Value};
use zeroize::{Zeroize, Zeroizing};

use super::secrets::{Missing, Secrets, reference};

/// What the engine asks for: a secret's value or its metadata, by the template's reference.
pub(super) enum Ask {
    /// The newest value.
    Value {
        namespace: Option<String>,
        name: String,
    },
    /// The metadata.
    Meta {
        namespace: Option<String>,
        name: String,
    },
}

/// The caller's answer to an [`Ask`].
pub(super) enum Answer {
    Value(Result<SecretBytes, Missing>),
    Meta(Result<Box<SecretMeta>, Missing>),
}

/// Why a function stopped the render, in words that hold no value.
pub(super) enum Failure {
    /// A secret could not be had.
    Missing(Missing),
    /// A secret, or a value a filter was given, cannot be used that way.
    Unusable { reference: String, what: String },
    /// A filter refused its input (the message names the filter, never the input).
    Filter(String),
}

/// The engine's end of a render's channel, and the render's cache of secret texts.
pub(super) struct Broker {
    ask: Sender<Ask>,
    answers: Mutex<Receiver<Answer>>,
    failure: Mutex<Option<Failure>>,
    /// The texts `secret()` handed out, by the template's reference.
    texts: Mutex<HashMap<(Option<String>, String), Value>>,
    /// The template's source: a name or field that appears in it may be shown in an error;
    /// one the template computed (perhaps from a value) is not.
    source: Arc<str>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The error the engine carries up when a function recorded its failure in the broker.
fn stopped() -> Error {
    Error::new(ErrorKind::InvalidOperation, "stopped by a coffer function")
}

impl Broker {
    pub(super) fn new(ask: Sender<Ask>, answers: Receiver<Answer>, source: Arc<str>) -> Arc<Self> {
        Arc::new(Self {
            ask,
            answers: Mutex::new(answers),
            failure: Mutex::new(None),
            texts: Mutex::new(HashMap::new()),
            source,
        })
    }

    /// The first failure a function recorded.
    pub(super) fn take_failure(&self) -> Option<Failure> {
        lock(&self.failure).take()
    }

    fn fail(&self, failure: Failure) -> Error {
        let mut slot = lock(&self.failure);
        if slot.is_none() {
            *slot = Some(failure);
        }
        stopped()
    }

    /// Whether `s` is written in the template's own text (so naming it shows no value).
    fn shown(&self, s: &str) -> bool {
        !s.is_empty() && self.source.contains(s)
    }

    /// A reference for an error: the template's own words, or a stand-in when the template
    /// computed the name.
    fn reference(&self, namespace: Option<&str>, name: &str) -> String {
        if self.shown(name) && namespace.is_none_or(|ns| self.shown(ns)) {
            reference(namespace, name)
        } else {
            "(a name the template computed)".to_owned()
        }
    }

    fn missing(&self, namespace: Option<&str>, name: &str, m: Missing) -> Error {
        let m = if self.reference(namespace, name) == reference(namespace, name) {
            m
        } else {
            // The daemon's message may repeat the name: keep only its code.
            let code = m.reason.split(':').next().unwrap_or_default().to_owned();
            Missing {
                reference: self.reference(namespace, name),
                reason: code,
            }
        };
        self.fail(Failure::Missing(m))
    }

    fn unusable(&self, namespace: Option<&str>, name: &str, what: String) -> Error {
        let reference = self.reference(namespace, name);
        self.fail(Failure::Unusable { reference, what })
    }

    fn exchange(&self, ask: Ask) -> Result<Answer, Error> {
        let answers = lock(&self.answers);
        let lost = || Error::new(ErrorKind::InvalidOperation, "the render was abandoned");
        self.ask.send(ask).map_err(|_| lost())?;
        answers.recv().map_err(|_| lost())
    }

    fn value(&self, namespace: Option<&str>, name: &str) -> Result<SecretBytes, Error> {
        let ask = Ask::Value {
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        };
        match self.exchange(ask)? {
            Answer::Value(Ok(v)) => Ok(v),
            Answer::Value(Err(m)) => Err(self.missing(namespace, name, m)),
            Answer::Meta(_) => Err(Error::from(ErrorKind::InvalidOperation)),
        }
    }

    fn meta(&self, namespace: Option<&str>, name: &str) -> Result<Box<SecretMeta>, Error> {
        let ask = Ask::Meta {
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        };
        match self.exchange(ask)? {
            Answer::Meta(Ok(m)) => Ok(m),
            Answer::Meta(Err(m)) => Err(self.missing(namespace, name, m)),
            Answer::Value(_) => Err(Error::from(ErrorKind::InvalidOperation)),
        }
    }

    /// `secret(name, namespace=...)`: the value as text.
    fn secret(&self, namespace: Option<String>, name: String) -> Result<Value, Error> {
        let key = (namespace, name);
        if let Some(v) = lock(&self.texts).get(&key) {
            return Ok(v.clone());
        }
        let (namespace, name) = (key.0.as_deref(), key.1.as_str());
        let bytes = self.value(namespace, name)?;
        let Some(text) = bytes.expose_str() else {
            let what = "is not UTF-8 text (secret_base64() gives its bytes in base64)";
            return Err(self.unusable(namespace, name, what.to_owned()));
        };
        let v = Value::from(text);
        lock(&self.texts).insert(key, v.clone());
        Ok(v)
    }

    /// `secret_base64(name, namespace=...)`: the value's bytes in standard base64.
    fn secret_base64(&self, namespace: Option<String>, name: String) -> Result<Value, Error> {
        let bytes = self.value(namespace.as_deref(), &name)?;
        let text = Zeroizing::new(BASE64.encode(bytes.expose_secret()));
        Ok(Value::from(text.as_str()))
    }

    /// `kv(name, field, namespace=...)`: a field of a KV secret's JSON object, a string as
    /// it is and anything else as JSON.
    fn kv(&self, namespace: Option<String>, name: String, field: String) -> Result<Value, Error> {
        let namespace = namespace.as_deref();
        let bytes = self.value(namespace, &name)?;
        let parsed: Result<serde_json::Value, _> = serde_json::from_slice(bytes.expose_secret());
        let object = match parsed {
            Ok(serde_json::Value::Object(o)) => o,
            Ok(other) => {
                wipe(other);
                let what = "is not a JSON object (kv() reads the fields of a kv secret)";
                return Err(self.unusable(namespace, &name, what.to_owned()));
            }
            Err(_) => {
                let what = "is not JSON (kv() reads the fields of a kv secret)";
                return Err(self.unusable(namespace, &name, what.to_owned()));
            }
        };
        let found = lookup(&object, &field).map(|v| match v {
            serde_json::Value::String(s) => Value::from(s.as_str()),
            other => {
                let text = Zeroizing::new(other.to_string());
                Value::from(text.as_str())
            }
        });
        wipe(serde_json::Value::Object(object));
        found.ok_or_else(|| {
            let what = if self.shown(&field) {
                format!("has no field `{field}`")
            } else {
                "has no such field (its name, computed by the template, is not shown)".to_owned()
            };
            self.unusable(namespace, &name, what)
        })
    }

    /// `version(name, namespace=...)`: the newest version's number.
    fn version(&self, namespace: Option<String>, name: String) -> Result<Value, Error> {
        let meta = self.meta(namespace.as_deref(), &name)?;
        Ok(Value::from(meta.current.get()))
    }

    /// `meta(name, namespace=...)`: the secret's metadata as an object.
    fn meta_value(&self, namespace: Option<String>, name: String) -> Result<Value, Error> {
        let m = self.meta(namespace.as_deref(), &name)?;
        let custom = Value::from_pairs(
            m.custom_metadata
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        Ok(Value::from_pairs([
            ("namespace", Value::from(m.namespace.as_str())),
            ("name", Value::from(m.name.as_str())),
            ("version", Value::from(m.current.get())),
            ("kind", Value::from(m.kind.as_str())),
            // Empty when unset, so that printing it never writes "none".
            (
                "description",
                Value::from(m.description.as_deref().unwrap_or_default()),
            ),
            ("custom_metadata", custom),
            ("created", Value::from(m.created.to_string())),
            ("updated", Value::from(m.updated.to_string())),
        ]))
    }

    /// `| b64encode`: text or bytes in standard base64.
    fn b64encode(&self, value: &Value) -> Result<Value, Error> {
        let bytes = match (value.as_str(), value.as_bytes()) {
            (Some(s), _) => s.as_bytes(),
            (None, Some(b)) => b,
            _ => return Err(self.fail(Failure::Filter("b64encode takes text".to_owned()))),
        };
        let text = Zeroizing::new(BASE64.encode(bytes));
        Ok(Value::from(text.as_str()))
    }

    /// `| b64decode`: standard base64 to the text it encodes.
    fn b64decode(&self, value: &Value) -> Result<Value, Error> {
        let Some(s) = value.as_str() else {
            return Err(self.fail(Failure::Filter("b64decode takes text".to_owned())));
        };
        let Ok(bytes) = BASE64.decode(s.trim().as_bytes()) else {
            let what = "b64decode was given text that is not standard base64";
            return Err(self.fail(Failure::Filter(what.to_owned())));
        };
        let bytes = SecretBytes::from_vec(bytes);
        match bytes.expose_str() {
            Some(text) => Ok(Value::from(text)),
            None => {
                let what = "b64decode decoded bytes that are not UTF-8 text";
                Err(self.fail(Failure::Filter(what.to_owned())))
            }
        }
    }

    /// `| json_escape`: text escaped to sit inside a JSON string's quotes.
    fn json_escape(&self, value: &Value) -> Result<Value, Error> {
        let Some(s) = value.as_str() else {
            return Err(self.fail(Failure::Filter("json_escape takes text".to_owned())));
        };
        let quoted = Zeroizing::new(serde_json::Value::from(s).to_string());
        let inner = quoted
            .strip_prefix('"')
            .and_then(|q| q.strip_suffix('"'))
            .unwrap_or_default();
        Ok(Value::from(inner))
    }
}

/// A field by its name, or by a dotted path through objects (and arrays, by index).
fn lookup<'a>(
    object: &'a serde_json::Map<String, serde_json::Value>,
    field: &str,
) -> Option<&'a serde_json::Value> {
    if let Some(v) = object.get(field) {
        return Some(v);
    }
    let mut parts = field.split('.');
    let mut at = object.get(parts.next()?)?;
    for part in parts {
        at = match at {
            serde_json::Value::Object(o) => o.get(part)?,
            serde_json::Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(at)
}

/// Drops a parsed JSON value, wiping its strings (keys included) first.
fn wipe(value: serde_json::Value) {
    match value {
        serde_json::Value::String(mut s) => s.zeroize(),
        serde_json::Value::Array(items) => items.into_iter().for_each(wipe),
        serde_json::Value::Object(fields) => {
            for (mut k, v) in fields {
                k.zeroize();
                wipe(v);
            }
        }
        _ => {}
    }
}

/// The optional `namespace=` of every function.
fn namespace(kwargs: &Kwargs) -> Result<Option<String>, Error> {
    let ns: Option<String> = kwargs.get("namespace")?;
    kwargs.assert_all_used()?;
    Ok(ns)
}

/// Binds the functions and filters of one render to its broker.
pub(super) fn add_functions(env: &mut Environment<'static>, broker: &Arc<Broker>) {
    let b = Arc::clone(broker);
    env.add_function("secret", move |name: String, kw: Kwargs| {
        b.secret(namespace(&kw)?, name)
    });
    let b = Arc::clone(broker);
    env.add_function("secret_base64", move |name: String, kw: Kwargs| {
        b.secret_base64(namespace(&kw)?, name)
    });
    let b = Arc::clone(broker);
    env.add_function("kv", move |name: String, field: String, kw: Kwargs| {
        b.kv(namespace(&kw)?, name, field)
    });
    let b = Arc::clone(broker);
    env.add_function("version", move |name: String, kw: Kwargs| {
        b.version(namespace(&kw)?, name)
    });
    let b = Arc::clone(broker);
    env.add_function("meta", move |name: String, kw: Kwargs| {
        b.meta_value(namespace(&kw)?, name)
    });
    let b = Arc::clone(broker);
    env.add_filter("b64encode", move |v: &Value| b.b64encode(v));
    let b = Arc::clone(broker);
    env.add_filter("b64decode", move |v: &Value| b.b64decode(v));
    let b = Arc::clone(broker);
    env.add_filter("json_escape", move |v: &Value| b.json_escape(v));
}

/// The caller's end: answers the engine's questions from `secrets`, each secret fetched
/// once, until the engine is done (its end of the channel drops). Every secret asked about
/// goes into `uses` as (namespace, name). The fetched values are wiped when this returns.
pub(super) fn answer(
    asks: Receiver<Ask>,
    answers: &Sender<Answer>,
    secrets: &dyn Secrets,
    uses: &mut BTreeSet<(String, String)>,
) {
    let mut values: HashMap<(String, String), Result<SecretBytes, Missing>> = HashMap::new();
    let mut metas: HashMap<(String, String), Result<Box<SecretMeta>, Missing>> = HashMap::new();
    for ask in asks {
        let (wants_value, namespace, name) = match ask {
            Ask::Value { namespace, name } => (true, namespace, name),
            Ask::Meta { namespace, name } => (false, namespace, name),
        };
        let ns = namespace.as_deref();
        let resolved = ns.unwrap_or(secrets.default_namespace()).to_owned();
        let key = (resolved, name.clone());
        uses.insert(key.clone());
        let answer = if wants_value {
            let value = values
                .entry(key)
                .or_insert_with(|| secrets.value(ns, &name));
            Answer::Value(value.clone())
        } else {
            let meta = metas
                .entry(key)
                .or_insert_with(|| secrets.meta(ns, &name).map(Box::new));
            Answer::Meta(meta.clone())
        };
        if answers.send(answer).is_err() {
            break;
        }
    }
}
