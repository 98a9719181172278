//! Signed webhooks: added (the signing secret is answered this once), listed, removed,
//! tested, and their deliveries' status. All need `sudo` on `sys/webhooks`.

use coffer_crypto::SecretBytes;
use coffer_types::webhook::{WebhookStatus, WebhookView};
use serde::Deserialize;

use crate::ClientError;
use crate::request::Client;

/// A webhook to add.
#[derive(Debug, Clone, Copy, Default)]
pub struct NewWebhook<'a> {
    /// The endpoint: `https://`, or `http://` to a loopback address.
    pub url: &'a str,
    /// The event types it takes (none: every event).
    pub events: &'a [String],
    /// Only events of this namespace (and those under it).
    pub namespace: Option<&'a str>,
    /// Only events whose name starts with this.
    pub prefix: Option<&'a str>,
}

/// A webhook just added.
#[derive(Debug, Deserialize)]
pub struct AddedWebhook {
    /// The webhook.
    pub webhook: WebhookView,
    /// Its signing secret (`whsec_...`): shown this once.
    pub signing_secret: SecretBytes,
}

#[derive(Deserialize)]
struct Listed<T> {
    #[serde(default = "Vec::new")]
    webhooks: Vec<T>,
}

impl Client {
    /// Adds a webhook; answers it with its signing secret.
    pub fn add_webhook(&self, w: &NewWebhook<'_>) -> Result<AddedWebhook, ClientError> {
        let request = self
            .request("webhook_add")
            .field("url", w.url)
            .json("events", &w.events)
            .opt("namespace", w.namespace)
            .opt("prefix", w.prefix)
            .finish();
        self.call_as(&request)
    }

    /// The webhooks (never their secrets).
    pub fn webhooks(&self) -> Result<Vec<WebhookView>, ClientError> {
        let request = self.request("webhook_list").finish();
        Ok(self.call_as::<Listed<WebhookView>>(&request)?.webhooks)
    }

    /// Removes a webhook, with its pending deliveries.
    pub fn remove_webhook(&self, id: &str) -> Result<(), ClientError> {
        let request = self.request("webhook_remove").field("webhook", id).finish();
        self.call(&request).map(drop)
    }

    /// Sends a webhook a test delivery now (its outcome shows in the status).
    pub fn test_webhook(&self, id: &str) -> Result<(), ClientError> {
        let request = self.request("webhook_test").field("webhook", id).finish();
        self.call(&request).map(drop)
    }

    /// How each webhook's deliveries stand.
    pub fn webhook_status(&self) -> Result<Vec<WebhookStatus>, ClientError> {
        let request = self.request("webhook_status").finish();
        Ok(self.call_as::<Listed<WebhookStatus>>(&request)?.webhooks)
    }
}
