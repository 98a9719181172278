//! A webhook's definition as kept in the store, with its signing secret (never shown after
//! it was added: `Debug` and [`WebhookDef::view`] leave it out), its filter, and its signing.

use coffer_crypto::SecretBytes;
use coffer_types::webhook::WebhookView;
use coffer_types::{ChangeEvent, DigestEncoding, HmacAlgorithm, Timestamp};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

const SECRET_PREFIX: &str = "whsec_";

/// A webhook as kept in the store: with its signing secret (`whsec_` and base64).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDef {
    /// Its id (`wh_` and hex).
    pub id: String,
    /// The endpoint.
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
    /// When it was added.
    pub created: Timestamp,
    /// The store's revision when it was added: it takes the events after it.
    pub since: u64,
    secret: String,
}

impl Drop for WebhookDef {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl std::fmt::Debug for WebhookDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookDef")
            .field("id", &self.id)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl WebhookDef {
    /// A new webhook with a fresh id and signing secret; answers it and the secret (to be
    /// shown once).
    pub fn new(
        url: String,
        events: Vec<String>,
        namespace: Option<String>,
        prefix: Option<String>,
        since: u64,
    ) -> Result<(Self, SecretBytes), coffer_crypto::CryptoError> {
        let id = SecretBytes::random(6)?;
        let key = SecretBytes::random(32)?;
        let secret = format!(
            "{SECRET_PREFIX}{}",
            data_encoding::BASE64.encode(key.expose_secret())
        );
        let shown = SecretBytes::copy_from(secret.as_bytes());
        let def = Self {
            id: format!("wh_{}", data_encoding::HEXLOWER.encode(id.expose_secret())),
            url,
            events,
            namespace,
            prefix,
            created: Timestamp::now(),
            since,
            secret,
        };
        Ok((def, shown))
    }

    /// A webhook of the configuration file, with its signing secret as read from the store.
    pub(super) fn configured(
        id: String,
        url: String,
        events: Vec<String>,
        namespace: Option<String>,
        prefix: Option<String>,
        secret: String,
    ) -> Self {
        Self {
            id,
            url,
            events,
            namespace,
            prefix,
            created: Timestamp::MIN,
            since: 0,
            secret,
        }
    }

    /// What listings show: everything but the secret.
    pub fn view(&self) -> WebhookView {
        WebhookView {
            id: self.id.clone(),
            url: self.url.clone(),
            events: self.events.clone(),
            namespace: self.namespace.clone(),
            prefix: self.prefix.clone(),
            created: self.created,
            configured: false,
        }
    }

    /// Whether the webhook takes `event`: after it was added, of a type it names, in its
    /// namespace (events of the store's own namespace go only to webhooks without one),
    /// under its prefix.
    pub fn takes(&self, event: &ChangeEvent) -> bool {
        if event.revision <= self.since {
            return false;
        }
        if !self.events.is_empty() && !self.events.iter().any(|e| e == event.action.as_str()) {
            return false;
        }
        if let Some(ns) = &self.namespace {
            let under = event
                .namespace
                .strip_prefix(ns.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
            if !under {
                return false;
            }
        }
        match &self.prefix {
            Some(p) => event.name.as_deref().is_some_and(|n| n.starts_with(p)),
            None => true,
        }
    }

    /// The `webhook-signature` header for a message: `v1,` and the base64 HMAC-SHA256 of
    /// `{id}.{timestamp}.{body}` under the secret's bytes.
    pub fn sign(&self, message: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
        let encoded = self
            .secret
            .strip_prefix(SECRET_PREFIX)
            .ok_or("the stored signing secret is malformed")?;
        let key = SecretBytes::from_base64(encoded)
            .map_err(|_| "the stored signing secret is malformed".to_owned())?;
        let mut data = Vec::with_capacity(message.len() + body.len() + 24);
        data.extend_from_slice(message.as_bytes());
        data.extend_from_slice(format!(".{timestamp}.").as_bytes());
        data.extend_from_slice(body);
        let mac = coffer_crypto::compute::hmac(
            HmacAlgorithm::Sha256,
            &key,
            &data,
            DigestEncoding::Base64,
        )
        .map_err(|e| e.to_string())?;
        Ok(format!("v1,{mac}"))
    }
}
