//! Signed webhooks (Standard Webhooks): what a webhook is, how its deliveries are signed,
//! where its records are kept, and the state the daemon's delivery worker shares with the
//! service.
//!
//! A webhook's definition (endpoint, filter, signing secret) and the delivery bookkeeping
//! (the event feed's cursor, the retry queue, the outcomes) live in the store's own
//! namespace ([`stored`]), encrypted like every secret. The signing secret is answered once,
//! when the webhook is added, and never shown again: [`WebhookDef`]'s `Debug` and
//! [`WebhookDef::view`] leave it out.

pub mod stored;

use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coffer_crypto::SecretBytes;
use coffer_types::webhook::WebhookView;
use coffer_types::{ChangeEvent, DigestEncoding, HmacAlgorithm, Timestamp};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

pub use stored::{DeliveryState, Queued};

/// The most webhooks a store keeps.
pub const MAX_WEBHOOKS: usize = 64;
/// The longest endpoint URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// The environment variable that shortens the retry schedule (a test and operator knob).
pub const RETRY_SCHEDULE_VAR: &str = "COFFER_WEBHOOK_RETRY_SCHEDULE";
/// The event type of a test delivery (`coffer webhooks test`).
pub const TEST_EVENT: &str = "webhook.test";
const SECRET_PREFIX: &str = "whsec_";

/// How deliveries are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// The wait before each attempt: the first is the first attempt's (normally none), and
    /// there are as many attempts as entries. Standard Webhooks' schedule by default.
    pub retry: Vec<Duration>,
    /// One attempt's time limit (connecting, sending, the status line).
    pub timeout: Duration,
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

    /// What listings show: everything but the secret.
    pub fn view(&self) -> WebhookView {
        WebhookView {
            id: self.id.clone(),
            url: self.url.clone(),
            events: self.events.clone(),
            namespace: self.namespace.clone(),
            prefix: self.prefix.clone(),
            created: self.created,
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

/// Checks an endpoint: `https://`, or `http://` only to a loopback address (127.0.0.0/8,
/// ::1, localhost); no credentials in it, no fragment, no spaces.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!(
            "the webhook URL is longer than {MAX_URL_LEN} bytes"
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) || url.contains('#') {
        return Err("the webhook URL may not hold spaces, control characters or a fragment".into());
    }
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err("the webhook URL must start with https:// (or http:// to loopback)".into());
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.contains('@') {
        return Err("the webhook URL may not carry credentials (user@host)".into());
    }
    let host = host_of(authority).ok_or("the webhook URL has no host")?;
    if !https && !is_loopback(host) {
        return Err(format!(
            "plain http:// is only allowed to a loopback address (127.0.0.0/8, ::1, \
             localhost); use https:// for {host}"
        ));
    }
    Ok(())
}

/// The host of an authority (`host`, `host:port`, `[v6]:port`), without brackets.
pub fn host_of(authority: &str) -> Option<&str> {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.split(':').next()?,
    };
    (!host.is_empty()).then_some(host)
}

/// Whether `host` is loopback: `localhost`, 127.0.0.0/8 or ::1.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// What the service and the delivery worker share at run time: the worker's wake-up, test
/// deliveries asked for, and the counts the metrics show.
#[derive(Debug, Default)]
pub struct Webhooks {
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
}
