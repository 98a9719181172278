//! THROWAWAY STUB of the template module: helper "tmpl" builds the real one at this same path
//! with this same API; on merge the lead takes theirs and drops this file.
//!
//! It has the real module's API and understands one form only: `{{ secret("NAME") }}` or
//! `{{ secret("coffer://NAMESPACE/NAME") }}`, replaced by the secret's value.

use std::collections::BTreeSet;

use coffer_crypto::SecretBytes;
use coffer_types::SecretMeta;
use zeroize::Zeroizing;

/// Where a template gets secrets from.
pub trait Secrets {
    /// A secret's value.
    fn value(&self, namespace: Option<&str>, name: &str) -> Result<SecretBytes, Missing>;
    /// A secret's metadata.
    #[allow(dead_code)]
    fn meta(&self, namespace: Option<&str>, name: &str) -> Result<SecretMeta, Missing>;
}

/// A secret a template could not have.
#[derive(Debug, Clone)]
pub struct Missing {
    /// What the template asked for.
    pub reference: String,
    /// Why it is missing (never a value).
    pub reason: String,
}

/// Why a render failed.
#[derive(Debug)]
pub struct RenderError(String);

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RenderError {}

enum Piece {
    Text(String),
    Secret {
        namespace: Option<String>,
        name: String,
    },
}

/// A compiled template.
pub struct Template {
    pieces: Vec<Piece>,
}

/// A render's output.
pub struct Rendered {
    /// The text.
    pub text: Zeroizing<String>,
    /// The secrets used: (namespace, name).
    pub uses: BTreeSet<(String, String)>,
}

impl Template {
    /// Parses `text`; `origin` names it in errors.
    pub fn compile(origin: &str, text: &str) -> anyhow::Result<Self> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            pieces.push(Piece::Text(rest[..start].to_owned()));
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| anyhow::anyhow!("{origin}: `{{{{` without `}}}}`"))?;
            let inner = after[..end].trim();
            let arg = inner
                .strip_prefix("secret(\"")
                .and_then(|s| s.strip_suffix("\")"))
                .ok_or_else(|| anyhow::anyhow!("{origin}: expected {{{{ secret(\"NAME\") }}}}"))?;
            let (namespace, name) = match arg.strip_prefix("coffer://") {
                Some(r) => {
                    let (ns, name) = r.split_once('/').ok_or_else(|| {
                        anyhow::anyhow!("{origin}: expected coffer://NAMESPACE/NAME")
                    })?;
                    (Some(ns.to_owned()), name.to_owned())
                }
                None => (None, arg.to_owned()),
            };
            pieces.push(Piece::Secret { namespace, name });
            rest = &after[end + 2..];
        }
        pieces.push(Piece::Text(rest.to_owned()));
        Ok(Self { pieces })
    }

    /// Renders with `secrets`; strict: any missing secret fails the render.
    pub fn render(&self, secrets: &dyn Secrets) -> Result<Rendered, RenderError> {
        let mut text = Zeroizing::new(String::new());
        let mut uses = BTreeSet::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => text.push_str(t),
                Piece::Secret { namespace, name } => {
                    let value = secrets
                        .value(namespace.as_deref(), name)
                        .map_err(|m| RenderError(format!("{}: {}", m.reference, m.reason)))?;
                    let s = value
                        .expose_str()
                        .ok_or_else(|| RenderError(format!("{name}: the value is not text")))?;
                    text.push_str(s);
                    uses.insert((
                        namespace.clone().unwrap_or_else(|| "default".into()),
                        name.clone(),
                    ));
                }
            }
        }
        Ok(Rendered { text, uses })
    }
}
