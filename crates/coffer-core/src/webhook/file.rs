//! Webhooks named in the configuration file (`[[webhooks]]`). The file holds no secret: a
//! file webhook's signing secret is a secret in the store (`secret_name` in
//! `secret_namespace`) whose value is the `whsec_...` text, read when deliveries are made.

use coffer_crypto::SecretBytes;
use coffer_types::webhook::WebhookView;
use coffer_types::{EventAction, Namespace, SecretName, Timestamp};
use serde::Deserialize;

use super::def::WebhookDef;

/// A webhook named in the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWebhook {
    /// The endpoint: `https://`, or `http://` to a loopback address.
    pub url: String,
    /// The event types it takes (none: every event).
    #[serde(default)]
    pub events: Vec<String>,
    /// Only events of this namespace (and those under it).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Only events whose name starts with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The secret in the store that holds the signing secret (`whsec_...`).
    pub secret_name: String,
    /// Its namespace (default `default`).
    #[serde(default)]
    pub secret_namespace: Option<String>,
}

impl FileWebhook {
    /// Its id: `file_` and its place in the file (from 1).
    pub fn id(index: usize) -> String {
        format!("file_{}", index + 1)
    }

    /// Checks it when the file is read: the endpoint, the event types, the names.
    pub fn check(&self) -> Result<(), String> {
        super::url::check_url(&self.url)?;
        for e in &self.events {
            e.parse::<EventAction>()
                .map_err(|_| format!("webhook {}: unknown event type {e:?}", self.url))?;
        }
        if let Some(ns) = &self.namespace {
            Namespace::parse(ns).map_err(|e| format!("webhook {}: {e}", self.url))?;
        }
        self.secret_ref()?;
        Ok(())
    }

    /// Where its signing secret is kept.
    pub fn secret_ref(&self) -> Result<(Namespace, SecretName), String> {
        let ns = Namespace::parse(self.secret_namespace.as_deref().unwrap_or("default"))
            .map_err(|e| format!("webhook {}: secret_namespace: {e}", self.url))?;
        let name = SecretName::parse(&self.secret_name)
            .map_err(|e| format!("webhook {}: secret_name: {e}", self.url))?;
        Ok((ns, name))
    }

    /// What listings show.
    pub fn view(&self, index: usize) -> WebhookView {
        WebhookView {
            id: Self::id(index),
            url: self.url.clone(),
            events: self.events.clone(),
            namespace: self.namespace.clone(),
            prefix: self.prefix.clone(),
            created: Timestamp::MIN,
            configured: true,
        }
    }

    /// The webhook with its signing secret, read from the store.
    pub fn resolve(&self, index: usize, secret: &SecretBytes) -> Result<WebhookDef, String> {
        let text = secret
            .expose_str()
            .filter(|t| {
                t.strip_prefix("whsec_")
                    .is_some_and(|b| SecretBytes::from_base64(b.trim()).is_ok())
            })
            .ok_or_else(|| {
                format!(
                    "webhook {}: the secret {} does not hold a signing secret (whsec_ and base64)",
                    Self::id(index),
                    self.secret_name
                )
            })?;
        Ok(WebhookDef::configured(
            Self::id(index),
            self.url.clone(),
            self.events.clone(),
            self.namespace.clone(),
            self.prefix.clone(),
            text.trim().to_owned(),
        ))
    }
}

/// The file's webhooks with their signing secrets read from the store; one whose secret
/// cannot be read is left out this time, and said in the log (by its id and the secret's
/// name, never a value).
pub fn resolve_all(
    store: &std::sync::Arc<dyn coffer_store::SecretStore>,
    file: &[FileWebhook],
) -> Vec<WebhookDef> {
    let mut out = Vec::with_capacity(file.len());
    for (i, hook) in file.iter().enumerate() {
        let resolved = hook.secret_ref().and_then(|(ns, name)| {
            let secret = store
                .get(&ns, &name, None)
                .map_err(|e| format!("its signing secret {name} cannot be read: {e}"))?;
            hook.resolve(i, &secret.value)
        });
        match resolved {
            Ok(def) => out.push(def),
            Err(e) => {
                tracing::warn!(webhook = %FileWebhook::id(i), error = %e, "a webhook of the configuration file is skipped")
            }
        }
    }
    out
}
