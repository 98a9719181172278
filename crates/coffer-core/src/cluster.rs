//! A daemon's place among the hubs serving one shared store (PostgreSQL): who holds the
//! lease for singleton work (the rotation scheduler, webhook delivery, scheduled backups),
//! and which hubs were seen lately. The daemon's lease keeper fills it; `sys/leader`,
//! `sys/ha-status`, `sys/health` and `status` show it. A daemon alone on its store is its
//! own leader and has no view.

use std::sync::{PoisonError, RwLock};

use coffer_types::Timestamp;

/// The hub holding the singleton lease.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaderInfo {
    /// Its name.
    pub hub: String,
    /// Its API address (empty when it serves no HTTP API).
    pub address: String,
    /// Raised each time the lease changed hands.
    pub term: u64,
}

/// A hub seen lately.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HubInfo {
    /// Its name.
    pub name: String,
    /// Its API address (empty when it serves no HTTP API).
    pub address: String,
    /// When it last renewed its entry.
    pub last_seen: Timestamp,
}

/// What this hub knows of the others.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClusterView {
    /// This hub's name.
    pub hub: String,
    /// Who holds the lease (`None`: nobody, for now).
    pub leader: Option<LeaderInfo>,
    /// Hubs seen lately, this one included.
    pub hubs: Vec<HubInfo>,
}

impl ClusterView {
    /// Whether this hub holds the lease.
    pub fn is_self(&self) -> bool {
        self.leader.as_ref().is_some_and(|l| l.hub == self.hub)
    }
}

/// The view and the leadership flag the singleton work waits on.
pub struct Cluster {
    view: RwLock<Option<ClusterView>>,
    leader: tokio::sync::watch::Sender<bool>,
}

impl Default for Cluster {
    /// Alone: the leader, with no view.
    fn default() -> Self {
        Self {
            view: RwLock::new(None),
            leader: tokio::sync::watch::Sender::new(true),
        }
    }
}

impl Cluster {
    /// The view, when this daemon shares its store.
    pub fn view(&self) -> Option<ClusterView> {
        self.view
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the view and the leadership flag (the lease keeper, after each renewal).
    pub fn set(&self, view: ClusterView, leader: bool) {
        *self.view.write().unwrap_or_else(PoisonError::into_inner) = Some(view);
        self.set_leader(leader);
    }

    /// Sets whether this daemon runs the singleton work.
    pub fn set_leader(&self, leader: bool) {
        self.leader.send_if_modified(|now| {
            let moved = *now != leader;
            *now = leader;
            moved
        });
    }

    /// Whether this daemon runs the singleton work now.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Wakes when the leadership flag changes.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<bool> {
        self.leader.subscribe()
    }
}
