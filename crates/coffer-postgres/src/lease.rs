//! Leases: singleton work (the rotation scheduler, webhook delivery, scheduled backups,
//! expiry) runs on the one hub holding the lease, like OpenBao's `ha_locks` row.
//!
//! A lease is a row: its holder, a term (raised at every change of holder) and when it
//! expires, by the database's clock so the hubs' clocks do not matter. The holder renews it
//! well before it expires; another hub takes it only once it has expired. A hub that cannot
//! renew stops its singleton work when its own reckoning of the expiry passes, before any
//! other hub may take the lease.

use std::sync::Arc;
use std::time::Duration;

use coffer_store::StoreError;
use postgres::Client;

use crate::connect::Connector;
use crate::ops::db;

/// The database's clock, in milliseconds since the epoch.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// Who holds a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The holding hub's name.
    pub holder: String,
    /// Raised each time the lease changes hands.
    pub term: u64,
    /// How long the lease still runs, by the database's clock.
    pub remaining: Duration,
}

/// One named lease, as seen by one hub.
pub struct Lease {
    connector: Arc<Connector>,
    client: Option<Client>,
    name: String,
    hub: String,
    ttl: Duration,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("name", &self.name)
            .field("hub", &self.hub)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn holder_of(r: &postgres::Row) -> LeaseHolder {
    LeaseHolder {
        holder: r.get(0),
        term: u64::try_from(r.get::<_, i64>(1)).unwrap_or(0),
        remaining: Duration::from_millis(u64::try_from(r.get::<_, i64>(2)).unwrap_or(0)),
    }
}

impl Lease {
    /// The lease `name` for hub `hub`, held for `ttl` at a time once taken.
    pub fn new(connector: Arc<Connector>, name: &str, hub: &str, ttl: Duration) -> Self {
        Self {
            connector,
            client: None,
            name: name.to_owned(),
            hub: hub.to_owned(),
            ttl,
        }
    }

    fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(self.connector.connect()?);
        }
        self.client
            .as_mut()
            .ok_or_else(|| StoreError::unavailable("taking a lease", "no connection"))
    }

    /// Takes the lease when it is free or expired, renews it when this hub holds it; answers
    /// the holder afterwards (this hub or another).
    pub fn acquire(&mut self) -> Result<LeaseHolder, StoreError> {
        let ttl = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        let (name, hub) = (self.name.clone(), self.hub.clone());
        let client = self.client()?;
        let taken = client
            .query_opt(
                &format!(
                    "INSERT INTO leases AS l (name, holder, term, expires)
                     VALUES ($1, $2, 1, {NOW_MS} + $3)
                     ON CONFLICT (name) DO UPDATE SET
                         holder = excluded.holder,
                         term = CASE WHEN l.holder = excluded.holder THEN l.term
                                     ELSE l.term + 1 END,
                         expires = excluded.expires
                     WHERE l.holder = excluded.holder OR l.expires < {NOW_MS}
                     RETURNING holder, term, expires - {NOW_MS}"
                ),
                &[&name, &hub, &ttl],
            )
            .map_err(db("taking a lease"))?;
        match taken {
            Some(r) => Ok(holder_of(&r)),
            None => self.holder()?.ok_or_else(|| {
                StoreError::unavailable("taking a lease", "the lease vanished meanwhile")
            }),
        }
    }

    /// Who holds the lease now (`None`: nobody ever took it, or it expired).
    pub fn holder(&mut self) -> Result<Option<LeaseHolder>, StoreError> {
        let name = self.name.clone();
        let client = self.client()?;
        Ok(client
            .query_opt(
                &format!(
                    "SELECT holder, term, expires - {NOW_MS} FROM leases
                     WHERE name = $1 AND expires >= {NOW_MS}"
                ),
                &[&name],
            )
            .map_err(db("reading a lease"))?
            .map(|r| holder_of(&r)))
    }

    /// Gives the lease up if this hub holds it (a clean shutdown: another hub takes it at
    /// once rather than after it expires).
    pub fn release(&mut self) -> Result<(), StoreError> {
        let (name, hub) = (self.name.clone(), self.hub.clone());
        let client = self.client()?;
        client
            .execute(
                "DELETE FROM leases WHERE name = $1 AND holder = $2",
                &[&name, &hub],
            )
            .map(drop)
            .map_err(db("releasing a lease"))
    }

    /// Records that this hub (serving its API at `address`) is alive, and answers the hubs
    /// seen within `recent`: (name, address, last seen in milliseconds since the epoch).
    pub fn heartbeat(
        &mut self,
        address: &str,
        recent: Duration,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        let hub = self.hub.clone();
        let recent = i64::try_from(recent.as_millis()).unwrap_or(i64::MAX);
        let client = self.client()?;
        client
            .execute(
                &format!(
                    "INSERT INTO hubs AS h (name, address, started, seen)
                     VALUES ($1, $2, {NOW_MS}, {NOW_MS})
                     ON CONFLICT (name) DO UPDATE SET address = excluded.address,
                                                      seen = excluded.seen"
                ),
                &[&hub, &address],
            )
            .map_err(db("recording this hub"))?;
        Ok(client
            .query(
                &format!(
                    "SELECT name, address, seen FROM hubs WHERE seen >= {NOW_MS} - $1
                     ORDER BY name"
                ),
                &[&recent],
            )
            .map_err(db("listing the hubs"))?
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// This hub's name.
    pub fn hub(&self) -> &str {
        &self.hub
    }

    /// How long the lease is held at a time.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}
