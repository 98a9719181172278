//! The webhook delivery worker: reads the store's event feed from a cursor kept in the
//! store, and POSTs each event to the webhooks that take it, signed as Standard Webhooks
//! says (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
//!
//! It runs beside the requests (never delaying one) in rounds. A round takes the events
//! after the cursor (at most [`BATCH`]), the test deliveries asked for and the retries now
//! due; makes one attempt of each, concurrently; and then, in one quiet write, stores the
//! new cursor with the retries it queued and the outcomes. The cursor thus moves only once
//! every delivery of its events succeeded or has its retry stored: a daemon killed mid-round
//! makes the round's attempts again after its restart, with the same message ids (receivers
//! dedupe by `webhook-id`). Deliveries are at least once.
//!
//! Retries follow [`WebhookSettings::retry`]; after the last, the delivery is failed (kept
//! in `coffer webhooks status`, counted in the metrics). The worker holds the store only
//! while it reads or writes it, never across an attempt or a wait, so a seal is not held up.

mod client;

use std::sync::Arc;
use std::time::Duration;

use coffer_core::Service;
use coffer_core::webhook::stored::{self, KEEP_FAILED, MAX_QUEUE};
use coffer_core::webhook::{
    DeliveryState, Outcome, Queued, TEST_EVENT, WebhookDef, WebhookSettings, Webhooks,
};
use coffer_store::StoreError;
use coffer_types::Timestamp;
use coffer_types::webhook::DeliveryView;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use client::Sender;

/// Most events one round takes from the feed.
pub const BATCH: usize = 256;
/// Most attempts in flight at once.
const PARALLEL: usize = 16;
/// The longest wait between rounds when nothing is due (a safety net; the feed and the
/// operations wake the worker).
const IDLE: Duration = Duration::from_secs(30);
/// The shortest wait between rounds with retries due.
const MIN_WAIT: Duration = Duration::from_millis(20);
/// The wait while the store is sealed or a round failed.
const AWAY: Duration = Duration::from_secs(2);

/// Starts the worker; it ends when `stop` turns true.
pub fn spawn(
    service: Arc<Service>,
    settings: WebhookSettings,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let sender = match Sender::new(settings.timeout) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::error!(error = %e, "webhook deliveries are off");
                return;
            }
        };
        let hub = Arc::clone(service.webhooks());
        let worker = Worker {
            service,
            hub: Arc::clone(&hub),
            settings,
            sender,
        };
        let mut feed: Option<watch::Receiver<u64>> = None;
        // Rounds that failed in a row: a round whose state could not be saved made its
        // attempts all the same, so the next waits longer each time (2 s doubling to 5 min)
        // rather than sending the same deliveries every 2 s.
        let mut failures: u32 = 0;
        let mut leading = worker.service.cluster().subscribe();
        loop {
            if *stop.borrow() {
                return;
            }
            if !worker.service.cluster().is_leader() {
                // Another hub sharing the store holds the lease: it delivers.
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = leading.changed() => {}
                }
                continue;
            }
            if feed.is_none()
                && let Ok(store) = worker.service.own_store()
            {
                feed = Some(store.subscribe());
            }
            if let Some(rx) = feed.as_mut() {
                rx.borrow_and_update();
            }
            let round = worker.round().await;
            // With no webhook (none stored, none in the file) and nothing queued, a change in
            // the store is nothing to deliver: only an added webhook (the hub's wake-up) or
            // the idle timer starts a round, so the store's writes do not each cost a read of
            // the webhooks' state. (A file webhook whose secret is not written yet listens:
            // the write of its secret is a change.)
            let listen = !matches!(round, Ok(Next::Idle)) || !worker.settings.file.is_empty();
            failures = match &round {
                Err(Away::Failed(_)) => failures.saturating_add(1),
                _ => 0,
            };
            let wait = match round {
                Ok(Next::Now) => continue,
                Ok(Next::At(due)) => due.map_or(IDLE, until).clamp(MIN_WAIT, IDLE),
                Ok(Next::Idle) => IDLE,
                Err(Away::Sealed) => AWAY,
                Err(Away::Failed(e)) => {
                    let wait = AWAY
                        .saturating_mul(1 << failures.min(8))
                        .min(Duration::from_secs(300));
                    tracing::warn!(error = %e, retry_in_s = wait.as_secs(), "a round of webhook deliveries failed; retrying");
                    wait
                }
            };
            let changed = async {
                match feed.as_mut().filter(|_| listen) {
                    Some(rx) => {
                        if rx.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.changed() => {}
                () = hub.woken() => {}
                () = changed => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    })
}

fn until(due: Timestamp) -> Duration {
    let ms = due.as_millis() - Timestamp::now().as_millis();
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

enum Next {
    /// More events wait in the feed.
    Now,
    /// The next retry is due then (none queued: `None`).
    At(Option<Timestamp>),
    /// No webhook.
    Idle,
}

enum Away {
    Sealed,
    Failed(String),
}

struct Worker {
    service: Arc<Service>,
    hub: Arc<Webhooks>,
    settings: WebhookSettings,
    sender: Arc<Sender>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Away> + Send + 'static,
) -> Result<T, Away> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(Away::Failed(e.to_string())))
}

impl Worker {
    async fn round(&self) -> Result<Next, Away> {
        let service = Arc::clone(&self.service);
        let file = self.settings.file.clone();
        // Read what the round needs, then let go of the store.
        let (defs, mut state, start, events, resync) = blocking(move || {
            let store = service.own_store().map_err(|_| Away::Sealed)?;
            let failed = |e: coffer_core::CoreError| Away::Failed(e.to_string());
            let mut defs = stored::load_webhooks(&store).map_err(failed)?;
            // The first round ever starts with the events after the oldest webhook was
            // added (one added just before it, then a change, misses nothing).
            let first = defs.iter().map(|d| d.since).min();
            defs.extend(coffer_core::webhook::resolve_all(&store, &file));
            let state = stored::load_state(&store).map_err(failed)?;
            let head = store.head();
            let cursor = state
                .cursor
                .unwrap_or_else(|| first.map_or(head, |f| f.min(head)));
            match store.events(cursor, BATCH) {
                Ok(events) => Ok((defs, state, cursor, events, None)),
                Err(StoreError::Resync { oldest, .. }) => {
                    Ok((defs, state, cursor, Vec::new(), Some(oldest)))
                }
                Err(e) => Err(Away::Failed(e.to_string())),
            }
        })
        .await?;
        let tests = self.hub.take_tests();
        if defs.is_empty() && state.queue.is_empty() {
            // Nothing to deliver: the cursor stays (a webhook added later takes only the
            // events after it was added).
            self.hub.set_pending(0);
            return Ok(Next::Idle);
        }
        let before = state.clone();
        let now = Timestamp::now();
        let mut cursor = start;
        if let Some(oldest) = resync {
            tracing::warn!(
                oldest,
                "webhook deliveries resume at the oldest event the feed keeps; older ones were pruned before they were delivered"
            );
            cursor = oldest;
        }
        let full = events.len() == BATCH;
        let mut work: Vec<Queued> = Vec::new();
        for event in &events {
            cursor = event.revision;
            for def in defs.iter().filter(|d| d.takes(event)) {
                let data =
                    serde_json::to_value(&**event).map_err(|e| Away::Failed(e.to_string()))?;
                work.push(Queued {
                    webhook: def.id.clone(),
                    message: format!("msg_{}_{}", event.revision, def.id),
                    kind: event.action.as_str().to_owned(),
                    time: event.time,
                    data,
                    attempts: 0,
                    due: now,
                });
            }
        }
        for id in tests {
            if defs.iter().any(|d| d.id == id) {
                work.push(test_delivery(id, now));
            }
        }
        // Retries now due; the deliveries and outcomes of webhooks since removed go.
        // (A webhook of the file whose secret cannot be read now keeps its deliveries.)
        let file_ids: Vec<String> = (0..self.settings.file.len())
            .map(coffer_core::webhook::FileWebhook::id)
            .collect();
        let known = |id: &String| defs.iter().any(|d| &d.id == id) || file_ids.contains(id);
        state.queue.retain(|q| known(&q.webhook));
        state.last.retain(|id, _| known(id));
        state.delivered.retain(|id, _| known(id));
        state.failed.retain(|id, _| known(id));
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut state.queue)
            .into_iter()
            .partition(|q| q.due <= now);
        state.queue = later;
        // A schedule whose first wait is not zero queues new deliveries instead.
        let first = self.settings.retry.first().copied().unwrap_or_default();
        if !first.is_zero() {
            let at = now.saturating_add_secs(first.as_secs());
            state
                .queue
                .extend(work.drain(..).map(|q| Queued { due: at, ..q }));
        }
        work.extend(due);
        let (work, waiting): (Vec<_>, Vec<_>) = work
            .into_iter()
            .partition(|q| defs.iter().any(|d| d.id == q.webhook));
        // Deliveries of a file webhook whose secret cannot be read now wait a little.
        let later = now.saturating_add_secs(AWAY.as_secs());
        state
            .queue
            .extend(waiting.into_iter().map(|q| Queued { due: later, ..q }));
        let results = self.attempt_all(&defs, work).await;
        for (mut q, result) in results {
            let delivered = matches!(result, Ok(s) if (200..300).contains(&s));
            self.service.record_delivery(&q.webhook, delivered).await;
            if self.settle(&mut state, &mut q, result) {
                state.queue.push(q);
            }
        }
        for q in trim(&mut state) {
            // Given up for room: failed, as the last attempt's failure would be.
            let failed = state.failed.entry(q.webhook.clone()).or_default();
            failed.push(DeliveryView {
                message: q.message,
                kind: q.kind,
                time: Timestamp::now(),
                attempt: q.attempts,
                http_status: None,
                error: Some("given up: the retry queue was full".to_owned()),
            });
            if failed.len() > KEEP_FAILED {
                failed.remove(0);
            }
            self.hub.count(Outcome::Failed);
        }
        state.cursor = Some(cursor);
        self.hub.set_pending(state.queue.len() as u64);
        if state != before {
            let service = Arc::clone(&self.service);
            let next = state.clone();
            blocking(move || {
                let store = service.own_store().map_err(|_| Away::Sealed)?;
                stored::save_state(&store, &next).map_err(|e| Away::Failed(e.to_string()))
            })
            .await?;
        }
        if full {
            return Ok(Next::Now);
        }
        Ok(Next::At(state.queue.iter().map(|q| q.due).min()))
    }

    async fn attempt_all(
        &self,
        defs: &[WebhookDef],
        work: Vec<Queued>,
    ) -> Vec<(Queued, Result<u16, String>)> {
        let permits = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
        let mut set = tokio::task::JoinSet::new();
        for q in work {
            let Some(def) = defs.iter().find(|d| d.id == q.webhook).cloned() else {
                continue;
            };
            let (sender, permits) = (Arc::clone(&self.sender), Arc::clone(&permits));
            set.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let result = deliver(&sender, &def, &q).await;
                (q, result)
            });
        }
        let mut out = Vec::new();
        while let Some(done) = set.join_next().await {
            match done {
                Ok(pair) => out.push(pair),
                Err(e) => tracing::error!(error = %e, "a webhook delivery's task failed"),
            }
        }
        out
    }

    /// Records one attempt's outcome: delivered, due again (answers true: the caller queues
    /// it), or failed for good.
    fn settle(
        &self,
        state: &mut DeliveryState,
        q: &mut Queued,
        result: Result<u16, String>,
    ) -> bool {
        q.attempts += 1;
        let now = Timestamp::now();
        let (status, error) = match &result {
            Ok(s) if (200..300).contains(s) => (Some(*s), None),
            Ok(s) => (Some(*s), Some(format!("the endpoint answered HTTP {s}"))),
            Err(e) => (None, Some(e.clone())),
        };
        let view = DeliveryView {
            message: q.message.clone(),
            kind: q.kind.clone(),
            time: now,
            attempt: q.attempts,
            http_status: status,
            error: error.clone(),
        };
        state.last.insert(q.webhook.clone(), view.clone());
        let Some(error) = error else {
            tracing::debug!(webhook = %q.webhook, message = %q.message, attempt = q.attempts, "webhook delivered");
            state.delivered.insert(q.webhook.clone(), now);
            self.hub.count(Outcome::Delivered);
            return false;
        };
        match self.settings.retry.get(q.attempts as usize) {
            Some(wait) => {
                tracing::info!(webhook = %q.webhook, message = %q.message, attempt = q.attempts, %error, retry_in_s = wait.as_secs(), "webhook delivery failed; will retry");
                q.due = now.saturating_add_secs(wait.as_secs());
                self.hub.count(Outcome::Retried);
                true
            }
            None => {
                tracing::warn!(webhook = %q.webhook, message = %q.message, attempts = q.attempts, %error, "webhook delivery failed for good");
                let failed = state.failed.entry(q.webhook.clone()).or_default();
                failed.push(view);
                if failed.len() > KEEP_FAILED {
                    failed.remove(0);
                }
                self.hub.count(Outcome::Failed);
                false
            }
        }
    }
}

/// Keeps the queue within [`MAX_QUEUE`]: answers the oldest deliveries past it, given up.
fn trim(state: &mut DeliveryState) -> Vec<Queued> {
    if state.queue.len() <= MAX_QUEUE {
        return Vec::new();
    }
    let over = state.queue.len() - MAX_QUEUE;
    tracing::warn!(
        dropped = over,
        "the webhook retry queue is full; the oldest deliveries are given up (shown as failed)"
    );
    state.queue.drain(..over).collect()
}

fn test_delivery(webhook: String, now: Timestamp) -> Queued {
    let nonce = coffer_crypto::SecretBytes::random(8)
        .map(|b| data_encoding::HEXLOWER.encode(b.expose_secret()))
        .unwrap_or_else(|_| now.as_millis().to_string());
    Queued {
        data: serde_json::json!({ "webhook": webhook }),
        message: format!("msg_test_{nonce}"),
        webhook,
        kind: TEST_EVENT.to_owned(),
        time: now,
        attempts: 0,
        due: now,
    }
}

/// One attempt: the body, signed now, posted.
async fn deliver(sender: &Sender, def: &WebhookDef, q: &Queued) -> Result<u16, String> {
    let body = serde_json::to_vec(&serde_json::json!({
        "type": q.kind,
        "timestamp": q.time,
        "data": q.data,
    }))
    .map_err(|e| e.to_string())?;
    let timestamp = Timestamp::now().as_millis() / 1000;
    let signature = def.sign(&q.message, timestamp, &body)?;
    let headers = [
        ("webhook-id", q.message.clone()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature),
    ];
    sender.post(&def.url, &headers, body).await
}
