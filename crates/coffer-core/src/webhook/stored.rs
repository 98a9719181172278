//! Where webhooks are kept: in the store's own namespace, encrypted like every secret,
//! written as the daemon's quiet bookkeeping (no event, so delivering an event never makes
//! another):
//!
//! - `webhooks/endpoints`: every webhook's definition with its signing secret (one JSON
//!   document, kind `kv`);
//! - `webhooks/deliveries`: the delivery worker's [`DeliveryState`] (the feed's cursor, the
//!   retry queue, the outcomes), rewritten once per round of deliveries.

use std::collections::BTreeMap;
use std::sync::Arc;

use coffer_crypto::SecretBytes;
use coffer_store::{Change, SecretStore, StoreError, Write};
use coffer_types::webhook::DeliveryView;
use coffer_types::{Kind, SecretName, Timestamp};

use crate::access::ensure_system_namespace as ensure_namespace;
use serde::{Deserialize, Serialize};

use super::def::WebhookDef;
use crate::CoreError;

const ENDPOINTS: &str = "webhooks/endpoints";
const DELIVERIES: &str = "webhooks/deliveries";
/// Failed deliveries kept per webhook (the newest).
pub const KEEP_FAILED: usize = 20;
/// The most deliveries the retry queue holds; past it the oldest are given up as failed.
pub const MAX_QUEUE: usize = 10_000;

/// One delivery waiting for its next attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    /// The webhook's id.
    pub webhook: String,
    /// The message id (`webhook-id`), the same for every attempt.
    pub message: String,
    /// The event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The event's time (the body's `timestamp`).
    pub time: Timestamp,
    /// The body's `data`: the change event (never a value).
    pub data: serde_json::Value,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due.
    pub due: Timestamp,
}

/// The delivery worker's bookkeeping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryState {
    /// The newest event revision taken from the feed: delivered, or its retry queued.
    #[serde(default)]
    pub cursor: Option<u64>,
    /// Deliveries waiting for a retry.
    #[serde(default)]
    pub queue: Vec<Queued>,
    /// Each webhook's newest attempt.
    #[serde(default)]
    pub last: BTreeMap<String, DeliveryView>,
    /// Each webhook's newest successful delivery.
    #[serde(default)]
    pub delivered: BTreeMap<String, Timestamp>,
    /// Each webhook's failed deliveries, the newest last.
    #[serde(default)]
    pub failed: BTreeMap<String, Vec<DeliveryView>>,
}

fn name(text: &str) -> Result<SecretName, CoreError> {
    SecretName::parse(text).map_err(CoreError::from)
}

fn read<T: for<'de> Deserialize<'de> + Default>(
    store: &Arc<dyn SecretStore>,
    at: &str,
) -> Result<T, CoreError> {
    let ns = ensure_namespace(store)?;
    match store.get(&ns, &name(at)?, None) {
        Ok(secret) => serde_json::from_slice(secret.value.expose_secret()).map_err(|e| {
            // serde's message may quote the text; the position is enough.
            tracing::error!(
                line = e.line(),
                column = e.column(),
                "the stored {at} cannot be read"
            );
            CoreError::Unavailable(format!("the stored {at} cannot be read"))
        }),
        Err(StoreError::NotFound(_)) => Ok(T::default()),
        Err(e) => Err(e.into()),
    }
}

fn write(
    store: &Arc<dyn SecretStore>,
    at: &str,
    value: &impl Serialize,
    actor: &str,
) -> Result<(), CoreError> {
    let ns = ensure_namespace(store)?;
    let json = serde_json::to_vec(value).map_err(|e| {
        tracing::error!(error = %e, "cannot encode {at}");
        CoreError::Unavailable(format!("cannot encode {at}"))
    })?;
    let value = SecretBytes::from_vec(json);
    let mut w = Write::new(&value, actor);
    // Bookkeeping: no event (a webhook change is in the audit log, as its request).
    w.change = Change::by(actor).quiet();
    w.kind = Some(Kind::Kv);
    w.new_max_versions = Some(1);
    store.set(&ns, &name(at)?, w)?;
    Ok(())
}

/// The stored document of webhooks (a `kv` secret is a JSON object).
#[derive(Default, Serialize, Deserialize)]
struct Endpoints {
    webhooks: Vec<WebhookDef>,
}

/// The webhooks.
pub fn load_webhooks(store: &Arc<dyn SecretStore>) -> Result<Vec<WebhookDef>, CoreError> {
    read::<Endpoints>(store, ENDPOINTS).map(|e| e.webhooks)
}

/// Replaces the webhooks.
pub fn save_webhooks(
    store: &Arc<dyn SecretStore>,
    all: &[WebhookDef],
    actor: &str,
) -> Result<(), CoreError> {
    #[derive(Serialize)]
    struct Shown<'a> {
        webhooks: &'a [WebhookDef],
    }
    write(store, ENDPOINTS, &Shown { webhooks: all }, actor)
}

/// The delivery worker's bookkeeping.
pub fn load_state(store: &Arc<dyn SecretStore>) -> Result<DeliveryState, CoreError> {
    read(store, DELIVERIES)
}

/// Replaces the delivery worker's bookkeeping (one quiet write).
pub fn save_state(store: &Arc<dyn SecretStore>, state: &DeliveryState) -> Result<(), CoreError> {
    write(store, DELIVERIES, state, "coffer")
}
