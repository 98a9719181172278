//! Signed webhooks (Standard Webhooks): what a webhook is, how its deliveries are signed,
//! where its records are kept, and the state the daemon's delivery worker shares with the
//! service.
//!
//! A webhook's definition (endpoint, filter, signing secret) and the delivery bookkeeping
//! (the event feed's cursor, the retry queue, the outcomes) live in the store's own
//! namespace ([`stored`]), encrypted like every secret. The signing secret is answered once,
//! when the webhook is added, and never shown again: [`WebhookDef`]'s `Debug` and
//! [`WebhookDef::view`] leave it out.

mod def;
mod file;
pub mod stored;
mod url;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use def::WebhookDef;
pub use file::{FileWebhook, resolve_all};
pub use stored::{DeliveryState, Queued};
pub use url::{MAX_URL_LEN, check_url, host_of, is_loopback};

/// The most webhooks a store keeps.
pub const MAX_WEBHOOKS: usize = 64;
/// The environment variable that shortens the retry schedule (a test and operator knob).
pub const RETRY_SCHEDULE_VAR: &str = "COFFER_WEBHOOK_RETRY_SCHEDULE";
/// The event type of a test delivery (`coffer webhooks test`).
pub const TEST_EVENT: &str = "webhook.test";

/// How deliveries are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// The wait before each attempt: the first is the first attempt's (normally none), and
    /// there are as many attempts as entries. Standard Webhooks' schedule by default.
    pub retry: Vec<Duration>,
    /// One attempt's time limit (connecting, sending, the status line).
    pub timeout: Duration,
    /// The webhooks named in the configuration file.
    pub file: Vec<FileWebhook>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        const MIN: u64 = 60;
        const HOUR: u64 = 3600;
        Self {
            retry: [
                0,
                5,
                5 * MIN,
                30 * MIN,
                2 * HOUR,
                5 * HOUR,
                10 * HOUR,
                10 * HOUR,
            ]
            .into_iter()
            .map(Duration::from_secs)
            .collect(),
            timeout: Duration::from_secs(10),
            file: Vec::new(),
        }
    }
}

impl WebhookSettings {
    /// The settings with a retry schedule read from its text: durations separated by
    /// commas (`0s,5s,5m`), one per attempt.
    pub fn with_schedule(mut self, text: &str) -> Result<Self, String> {
        let retry = text
            .split(',')
            .map(|t| coffer_types::duration::parse_seconds(t).map(Duration::from_secs))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("webhook retry schedule: {e}"))?;
        if retry.is_empty() || retry.len() > 32 {
            return Err("webhook retry schedule: give 1 to 32 durations".to_owned());
        }
        self.retry = retry;
        Ok(self)
    }
}

/// What the service and the delivery worker share at run time: the worker's wake-up, test
/// deliveries asked for, and the counts the metrics show.
#[derive(Debug, Default)]
pub struct Webhooks {
    file: std::sync::RwLock<Vec<FileWebhook>>,
    editing: Mutex<()>,
    wake: tokio::sync::Notify,
    tests: Mutex<Vec<String>>,
    delivered: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    pending: AtomicU64,
}

/// One attempt's outcome, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered 2xx.
    Delivered,
    /// It did not; another attempt is queued.
    Retried,
    /// It did not, and that was the last attempt.
    Failed,
}

impl Webhooks {
    /// Takes the webhooks the configuration file names (at start).
    pub fn configure(&self, file: Vec<FileWebhook>) {
        *self
            .file
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = file;
    }

    /// The webhooks the configuration file names.
    pub fn configured(&self) -> Vec<FileWebhook> {
        self.file
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Held while the stored webhooks are read and written back (two adds at once must not
    /// lose one).
    pub fn editing(&self) -> std::sync::MutexGuard<'_, ()> {
        self.editing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wakes the worker (webhooks changed, a test was asked for).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Waits for [`Webhooks::wake`].
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Asks for a test delivery to webhook `id`.
    pub fn test(&self, id: String) {
        self.tests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(id);
        self.wake();
    }

    /// The test deliveries asked for since the last call.
    pub fn take_tests(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .tests
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Counts an attempt's outcome.
    pub fn count(&self, outcome: Outcome) {
        let n = match outcome {
            Outcome::Delivered => &self.delivered,
            Outcome::Retried => &self.retried,
            Outcome::Failed => &self.failed,
        };
        n.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets how many deliveries wait for a retry.
    pub fn set_pending(&self, n: u64) {
        self.pending.store(n, Ordering::Relaxed);
    }

    /// Attempts since the start by outcome (delivered, retried, failed), and deliveries
    /// pending now.
    pub fn counts(&self) -> ([(&'static str, u64); 3], u64) {
        (
            [
                ("delivered", self.delivered.load(Ordering::Relaxed)),
                ("retried", self.retried.load(Ordering::Relaxed)),
                ("failed", self.failed.load(Ordering::Relaxed)),
            ],
            self.pending.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_types::ChangeEvent;

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(check_url("https://example.com/hook").is_ok());
        assert!(check_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(check_url("http://127.9.9.9/").is_ok());
        assert!(check_url("http://[::1]:9/x").is_ok());
        assert!(check_url("http://localhost:9/x").is_ok());
        assert!(check_url("http://example.com/hook").is_err());
        assert!(check_url("http://10.0.0.1/hook").is_err());
        assert!(check_url("ftp://127.0.0.1/").is_err());
        assert!(check_url("https://user:pw@example.com/").is_err());
    }

    #[test]
    fn schedules_parse_and_secrets_stay_hidden() {
        let s = WebhookSettings::default()
            .with_schedule("0s,1s,2m")
            .unwrap();
        assert_eq!(s.retry, [0, 1, 120].map(Duration::from_secs));
        assert!(WebhookSettings::default().with_schedule("soon").is_err());
        assert_eq!(WebhookSettings::default().retry.len(), 8);
        let (def, secret) = WebhookDef::new("https://x/".into(), vec![], None, None, 0).unwrap();
        let shown = secret.expose_str().unwrap();
        assert!(shown.starts_with("whsec_"));
        assert!(!format!("{def:?}").contains(&shown[6..]));
        assert!(
            !serde_json::to_string(&def.view())
                .unwrap()
                .contains(&shown[6..])
        );
        assert!(def.sign("msg_1", 1, b"{}").unwrap().starts_with("v1,"));
    }

    fn event(revision: u64, namespace: &str, name: &str, action: &str) -> ChangeEvent {
        ChangeEvent {
            revision,
            time: coffer_types::Timestamp::now(),
            namespace: namespace.to_owned(),
            name: Some(name.to_owned()),
            version: None,
            versions: Vec::new(),
            action: action.parse().unwrap(),
            actor: "uid:0".to_owned(),
        }
    }

    #[test]
    fn filters_take_their_events_only() {
        let url = "https://x/".to_owned();
        let all = WebhookDef::new(url.clone(), vec![], None, None, 5)
            .unwrap()
            .0;
        let prod = WebhookDef::new(
            url,
            vec!["secret.rotated".into()],
            Some("acme/prod".into()),
            Some("db/".into()),
            0,
        )
        .unwrap()
        .0;
        let own = event(9, coffer_types::Namespace::SYSTEM, "acc", "token.created");
        assert!(all.takes(&own));
        assert!(!prod.takes(&own));
        // Only events after the webhook was added.
        assert!(!all.takes(&event(5, "default", "a", "secret.written")));
        assert!(prod.takes(&event(9, "acme/prod", "db/pw", "secret.rotated")));
        assert!(prod.takes(&event(9, "acme/prod/eu", "db/pw", "secret.rotated")));
        assert!(!prod.takes(&event(9, "acme/production", "db/pw", "secret.rotated")));
        assert!(!prod.takes(&event(9, "acme/prod", "web/pw", "secret.rotated")));
        assert!(!prod.takes(&event(9, "acme/prod", "db/pw", "secret.written")));
    }
}
