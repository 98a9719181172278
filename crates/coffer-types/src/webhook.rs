//! What `coffer webhooks` shows of a webhook: its definition without its signing secret, and
//! how its deliveries went. Neither ever holds the signing secret or a value.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// A webhook as listed: where it posts and which events it takes. Never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookView {
    /// Its id (`wh_` and hex).
    pub id: String,
    /// The endpoint.
    pub url: String,
    /// The event types it takes (`secret.rotated`, ...); empty: every event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// Only events of this namespace (and the namespaces under it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Only events whose name starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// When it was added (the epoch for one named in the configuration file).
    pub created: Timestamp,
    /// Named in the configuration file (its signing secret is a secret in the store); it
    /// is changed there, not with `coffer webhooks`.
    #[serde(default)]
    pub configured: bool,
}

/// One delivery attempt's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryView {
    /// The message id (`webhook-id`), the same for every attempt of one delivery.
    pub message: String,
    /// The event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// When the attempt ended.
    pub time: Timestamp,
    /// Which attempt it was (1 is the first).
    pub attempt: u32,
    /// The endpoint's HTTP status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// Why the attempt failed (never a value or the secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How one webhook's deliveries stand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookStatus {
    /// The webhook's id.
    pub id: String,
    /// Its endpoint.
    pub url: String,
    /// The newest attempt, whatever its outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<DeliveryView>,
    /// When the newest successful delivery was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivered: Option<Timestamp>,
    /// Deliveries waiting for a retry.
    pub pending: u64,
    /// Deliveries given up after the last retry (the newest few), with their last error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<DeliveryView>,
}
