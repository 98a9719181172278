//! The webhook operations (`coffer webhooks ...`): all need `sudo` on `sys/webhooks`.

use coffer_types::Action;

/// Something done to the webhooks.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebhookOp {
    /// Add a webhook; its signing secret is answered once.
    Add {
        /// The endpoint: `https://`, or `http://` to a loopback address.
        url: String,
        /// The event types it takes (none: every event).
        events: Vec<String>,
        /// Only events of this namespace (and those under it).
        namespace: Option<String>,
        /// Only events whose name starts with this.
        prefix: Option<String>,
    },
    /// The webhooks.
    List,
    /// Remove a webhook (its pending deliveries go with it).
    Remove {
        /// Its id.
        id: String,
    },
    /// Send a test delivery now.
    Test {
        /// The webhook's id.
        id: String,
    },
    /// How each webhook's deliveries stand.
    Status,
}

impl WebhookOp {
    /// What it does, as the audit log names it.
    pub fn action(&self) -> Action {
        match self {
            Self::Add { .. } => Action::WebhookAdd,
            Self::List => Action::WebhookList,
            Self::Remove { .. } => Action::WebhookRemove,
            Self::Test { .. } => Action::WebhookTest,
            Self::Status => Action::WebhookStatus,
        }
    }
}
