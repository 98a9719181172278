//! Gate 7 for the webhook operations (`sudo` on `sys/webhooks`, checked at gate 5): adding
//! (the signing secret is answered once), listing, removing, a test delivery, and the
//! deliveries' status. The definitions are kept in the store's own namespace
//! (`crate::webhook::stored`); the delivery worker runs in the daemon beside the requests.

use std::sync::Arc;

use coffer_store::SecretStore;
use coffer_types::webhook::WebhookStatus;
use coffer_types::{EventAction, Namespace};

use super::state::{Gated, Service, blocking, invalid, stored};
use crate::access::Principal;
use crate::op::WebhookOp;
use crate::webhook::{self, MAX_WEBHOOKS, WebhookDef, Webhooks, stored as kept};
use crate::{CoreError, Gate, Refusal, Reply};

fn no_such_webhook() -> Refusal {
    Refusal::at(
        Gate::Store,
        CoreError::Store(coffer_store::StoreError::NotFound("webhook")),
    )
}

impl Service {
    /// What the webhook delivery worker shares with the operations.
    pub fn webhooks(&self) -> &Arc<Webhooks> {
        &self.webhooks
    }

    /// The store, for the daemon's own background work (the webhook delivery worker); never
    /// for a request, which goes through [`Service::call`]. An error while sealed.
    pub fn own_store(&self) -> Result<Arc<dyn SecretStore>, CoreError> {
        self.vault.store()
    }

    fn file_views(&self) -> Vec<coffer_types::webhook::WebhookView> {
        let file = self.webhooks.configured();
        file.iter().enumerate().map(|(i, w)| w.view(i)).collect()
    }

    /// Records one delivery attempt, the daemon's own work (no request asked for it), as
    /// the daemon's user and process: `webhook_deliver`, naming the webhook. Its outcome is
    /// `ok` when the endpoint answered 2xx.
    pub async fn record_delivery(&self, webhook: &str, delivered: bool) {
        self.record_own_work(
            coffer_types::Action::WebhookDeliver,
            None,
            (None, Some(webhook)),
            delivered,
        )
        .await;
    }

    pub(super) async fn webhook(&self, who: &Principal, op: WebhookOp) -> Gated<Reply> {
        let store = self.store()?;
        let actor = who.actor();
        match op {
            WebhookOp::Add {
                url,
                events,
                namespace,
                prefix,
            } => {
                webhook::check_url(&url).map_err(invalid)?;
                for e in &events {
                    if e.parse::<EventAction>().is_err() {
                        return Err(invalid(format!(
                            "an unknown event type in `events`; expected {}",
                            EventAction::ALL
                                .iter()
                                .map(|a| a.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )));
                    }
                }
                if let Some(ns) = &namespace {
                    Namespace::parse(ns)
                        .map_err(|e| Refusal::at(Gate::Validation, CoreError::InvalidName(e)))?;
                }
                if prefix.as_deref() == Some("") {
                    return Err(invalid("an empty prefix: leave it out to take every name"));
                }
                let hub = Arc::clone(&self.webhooks);
                let (reply, secret) = blocking(move || {
                    let _editing = hub.editing();
                    let mut all = kept::load_webhooks(&store)?;
                    if all.len() >= MAX_WEBHOOKS {
                        return Err(CoreError::InvalidRequest(format!(
                            "a store keeps at most {MAX_WEBHOOKS} webhooks"
                        )));
                    }
                    let (def, secret) =
                        WebhookDef::new(url, events, namespace, prefix, store.head())
                            .map_err(|e| CoreError::Unavailable(e.to_string()))?;
                    let view = def.view();
                    all.push(def);
                    kept::save_webhooks(&store, &all, &actor)?;
                    Ok((view, secret))
                })
                .await
                .map_err(refused)?;
                self.webhooks.wake();
                Ok(Reply::WebhookAdded {
                    webhook: Box::new(reply),
                    secret,
                })
            }
            WebhookOp::List => {
                let all = blocking(move || kept::load_webhooks(&store))
                    .await
                    .map_err(stored)?;
                let mut views: Vec<_> = all.iter().map(WebhookDef::view).collect();
                views.extend(self.file_views());
                Ok(Reply::Webhooks(views))
            }
            WebhookOp::Remove { id } => {
                let hub = Arc::clone(&self.webhooks);
                if self.file_views().iter().any(|v| v.id == id) {
                    return Err(invalid(
                        "this webhook is named in the configuration file; remove it there",
                    ));
                }
                blocking(move || {
                    let _editing = hub.editing();
                    let mut all = kept::load_webhooks(&store)?;
                    let before = all.len();
                    all.retain(|w| w.id != id);
                    if all.len() == before {
                        return Err(CoreError::Store(coffer_store::StoreError::NotFound(
                            "webhook",
                        )));
                    }
                    kept::save_webhooks(&store, &all, &actor)
                })
                .await
                .map_err(stored)?;
                self.webhooks.wake();
                Ok(Reply::Done)
            }
            WebhookOp::Test { id } => {
                let all = blocking(move || kept::load_webhooks(&store))
                    .await
                    .map_err(stored)?;
                if !all.iter().any(|w| w.id == id) && !self.file_views().iter().any(|v| v.id == id)
                {
                    return Err(no_such_webhook());
                }
                self.webhooks.test(id);
                Ok(Reply::Done)
            }
            WebhookOp::Status => {
                let (all, mut state) =
                    blocking(move || Ok((kept::load_webhooks(&store)?, kept::load_state(&store)?)))
                        .await
                        .map_err(stored)?;
                let views = all.iter().map(WebhookDef::view).chain(self.file_views());
                let status = views
                    .map(|w| WebhookStatus {
                        url: w.url.clone(),
                        last: state.last.remove(&w.id),
                        last_delivered: state.delivered.remove(&w.id),
                        pending: state.queue.iter().filter(|q| q.webhook == w.id).count() as u64,
                        failed: state.failed.remove(&w.id).unwrap_or_default(),
                        id: w.id,
                    })
                    .collect();
                Ok(Reply::WebhookStatus(status))
            }
        }
    }
}

/// An invalid request as such, the rest as the store's.
fn refused(error: CoreError) -> Refusal {
    match error {
        e @ CoreError::InvalidRequest(_) => Refusal::at(Gate::Validation, e),
        e => stored(e),
    }
}
