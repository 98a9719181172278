//! The lease keeper of a hub sharing a PostgreSQL store with others: takes or renews the
//! singleton lease every [`RENEW`], records this hub as alive, and tells the service who
//! leads ([`coffer_core::cluster`]). The rotation scheduler, webhook delivery and scheduled
//! backups run only while this hub leads.
//!
//! Timing: the lease runs [`TTL`] by the database's clock. A hub that stops renewing (killed,
//! cut off) loses it at most [`TTL`] after its last renewal, and another hub, trying every
//! [`RENEW`], takes it at most [`RENEW`] later: under 10 s in all. A hub that cannot renew
//! stops leading once its own reckoning of the expiry, started before its last successful
//! renewal was sent, has passed, a second before the lease can change hands.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use coffer_core::Service;
use coffer_core::cluster::{ClusterView, HubInfo, LeaderInfo};
use coffer_postgres::{Connector, Lease};
use coffer_types::Timestamp;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::config::Database;

/// How long a lease runs without renewal.
pub const TTL: Duration = Duration::from_secs(5);
/// How often it is renewed (or tried for).
pub const RENEW: Duration = Duration::from_secs(1);
/// The lease's name: one lease for all singleton work.
const LEASE: &str = "singleton";
/// Hubs not seen for this long are left out of the view.
const RECENT: Duration = Duration::from_secs(30);
/// How much earlier than the database this hub stops leading when it cannot renew: a round
/// is given up after [`RENEW`], so the step down comes at least a second before the lease
/// can change hands.
const MARGIN: Duration = Duration::from_secs(2);

/// The name part of a member id (`name@tag`).
fn name_of(member: &str) -> &str {
    member.rsplit_once('@').map_or(member, |(name, _)| name)
}

/// Starts the keeper once this hub has recorded itself (refused when another running hub
/// has its name); it gives the lease up when `stopped` turns true.
pub(super) async fn spawn(
    service: Arc<Service>,
    database: &Database,
    address: String,
    mut stopped: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, coffer_store::StoreError> {
    let connector = Arc::new(Connector::new(&database.options)?);
    let hub = service
        .store_member()
        .unwrap_or_else(|| database.hub.clone());
    let lease = Arc::new(Mutex::new(Lease::new(connector, LEASE, &hub, TTL)));
    // Until the first renewal says otherwise, another hub may lead.
    service.cluster().set_leader(false);
    // A process of this name that died just now stops renewing: one more look after its
    // entry has gone stale tells it from one that runs.
    for attempt in 0..2 {
        let (l, a) = (lease.clone(), address.clone());
        let recorded = tokio::task::spawn_blocking(move || {
            l.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .heartbeat(&a, RECENT)
        })
        .await
        .map_err(|e| coffer_store::StoreError::unavailable("recording this hub", e))?;
        match recorded {
            Err(coffer_store::StoreError::Conflict(_)) if attempt == 0 => {
                tokio::time::sleep(coffer_postgres::TWIN + Duration::from_millis(500)).await;
            }
            other => {
                other?;
                break;
            }
        }
    }
    Ok(tokio::spawn(async move {
        let mut leads_until: Option<Instant> = None;
        loop {
            let sent = Instant::now();
            let (l, a) = (lease.clone(), address.clone());
            // A round that hangs (the database unreachable, a connection stuck) counts as a
            // failed one: the deadline below is checked every RENEW all the same.
            let round = tokio::time::timeout(
                RENEW,
                tokio::task::spawn_blocking(move || {
                    let mut lease = l.lock().unwrap_or_else(PoisonError::into_inner);
                    let holder = lease.acquire()?;
                    let hubs = lease.heartbeat(&a, RECENT)?;
                    Ok::<_, coffer_store::StoreError>((holder, hubs))
                }),
            )
            .await;
            match round {
                Ok(Ok(Ok((holder, hubs)))) => {
                    let mine = holder.holder == hub;
                    leads_until = mine
                        .then(|| (sent + holder.remaining.min(TTL)).checked_sub(MARGIN))
                        .flatten();
                    let leader_address = hubs
                        .iter()
                        .find(|(name, _, _)| *name == holder.holder)
                        .map(|(_, address, _)| address.clone())
                        .unwrap_or_default();
                    let view = ClusterView {
                        hub: name_of(&hub).to_owned(),
                        leader: Some(LeaderInfo {
                            hub: name_of(&holder.holder).to_owned(),
                            address: leader_address,
                            term: holder.term,
                        }),
                        hubs: hubs
                            .into_iter()
                            .map(|(member, address, seen)| HubInfo {
                                name: name_of(&member).to_owned(),
                                address,
                                last_seen: Timestamp::from_millis(seen),
                            })
                            .collect(),
                    };
                    if mine && !service.cluster().is_leader() {
                        tracing::info!(hub = %hub, term = holder.term, "this hub took the lease: it runs the singleton work");
                    }
                    service.cluster().set(view, mine);
                }
                Ok(Ok(Err(e))) => {
                    tracing::warn!(error = %e, "renewing the lease failed; retrying");
                }
                Ok(Err(e)) => tracing::error!(error = %e, "the lease keeper's task failed"),
                Err(_) => tracing::warn!("renewing the lease takes too long; retrying"),
            }
            if leads_until.is_some_and(|until| Instant::now() >= until) {
                if service.cluster().is_leader() {
                    tracing::warn!(hub = %hub, "the lease could not be renewed in time: this hub stops the singleton work");
                }
                leads_until = None;
                service.cluster().set_leader(false);
            }
            tokio::select! {
                () = tokio::time::sleep(RENEW) => {}
                _ = stopped.wait_for(|stop| *stop) => break,
            }
        }
        service.cluster().set_leader(false);
        let released = tokio::task::spawn_blocking(move || {
            lease
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .release()
        })
        .await;
        if let Ok(Err(e)) = released {
            tracing::warn!(error = %e, "releasing the lease failed; it expires by itself");
        }
    }))
}
