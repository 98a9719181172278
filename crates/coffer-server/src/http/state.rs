//! What every HTTP handler shares: the service, the metrics, the limits.

use std::sync::Arc;
use std::time::Instant;

use coffer_core::Service;

use super::metrics::Metrics;
use crate::handler::Limits;

/// The state behind the router.
pub struct AppState {
    /// The one path every request takes.
    pub service: Arc<Service>,
    /// The HTTP API's counters.
    pub metrics: Metrics,
    /// Body size and time limits.
    pub limits: Limits,
    /// When the API started (for the uptime metric).
    pub started: Instant,
    /// The budget of body bytes read at once (permits of 1 KiB).
    pub(crate) bodies: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// State for `service` with `limits`.
    pub fn new(service: Arc<Service>, limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            service,
            metrics: Metrics::new(),
            bodies: Arc::new(tokio::sync::Semaphore::new(limits.buffered_permits())),
            limits,
            started: Instant::now(),
        })
    }
}

/// The router's state.
pub type Shared = Arc<AppState>;
