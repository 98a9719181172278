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
use crate::row::get;

/// Another process with a hub's name that renewed its entry this recently is taken to be
/// running (hubs renew every second or so).
pub const TWIN: Duration = Duration::from_secs(3);

/// The database's clock, in milliseconds since the epoch.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// Who holds a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The holding hub's member id (`name@tag`, [`crate::PgBackend::hub`]).
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

impl Drop for Lease {
    /// Closes the connection, from any thread (an async runtime's included).
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            crate::blocking::off_runtime(move || drop(client));
        }
    }
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

fn holder_of(r: &postgres::Row) -> Result<LeaseHolder, StoreError> {
    Ok(LeaseHolder {
        holder: get(r, 0)?,
        term: u64::try_from(get::<i64>(r, 1)?).unwrap_or(0),
        remaining: Duration::from_millis(u64::try_from(get::<i64>(r, 2)?).unwrap_or(0)),
    })
}

impl Lease {
    /// The lease `name` for the hub whose member id is `hub` ([`crate::PgBackend::hub`]),
    /// held for `ttl` at a time once taken.
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
            Some(r) => holder_of(&r),
            None => self.holder()?.ok_or_else(|| {
                StoreError::unavailable("taking a lease", "the lease vanished meanwhile")
            }),
        }
    }

    /// Who holds the lease now (`None`: nobody ever took it, or it expired).
    pub fn holder(&mut self) -> Result<Option<LeaseHolder>, StoreError> {
        let name = self.name.clone();
        let client = self.client()?;
        client
            .query_opt(
                &format!(
                    "SELECT holder, term, expires - {NOW_MS} FROM leases
                     WHERE name = $1 AND expires >= {NOW_MS}"
                ),
                &[&name],
            )
            .map_err(db("reading a lease"))?
            .map(|r| holder_of(&r))
            .transpose()
    }

    /// Gives the lease up if this hub holds it (a clean shutdown: another hub takes it at
    /// once rather than after it expires).
    pub fn release(&mut self) -> Result<(), StoreError> {
        let (name, hub) = (self.name.clone(), self.hub.clone());
        let client = self.client()?;
        // Expired rather than deleted: the term goes on counting.
        client
            .execute(
                &format!(
                    "UPDATE leases SET expires = {NOW_MS} - 1 WHERE name = $1 AND holder = $2"
                ),
                &[&name, &hub],
            )
            .map(drop)
            .map_err(db("releasing a lease"))
    }

    /// Records that this hub (serving its API at `address`) is alive, and answers the hubs
    /// seen within `recent`: (member id, address, last seen in milliseconds since the epoch).
    /// Refuses ([`StoreError::Conflict`]) when another process with this hub's name renewed
    /// its entry within [`TWIN`]: each hub needs a name of its own.
    pub fn heartbeat(
        &mut self,
        address: &str,
        recent: Duration,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        let member = self.hub.clone();
        let name = member
            .rsplit_once('@')
            .map_or(member.as_str(), |(n, _)| n)
            .to_owned();
        let recent = i64::try_from(recent.as_millis()).unwrap_or(i64::MAX);
        let twin_ms = i64::try_from(TWIN.as_millis()).unwrap_or(i64::MAX);
        let client = self.client()?;
        let twin = client
            .query_opt(
                &format!(
                    "SELECT member FROM hubs WHERE name = $1 AND member <> $2
                     AND seen >= {NOW_MS} - $3 LIMIT 1"
                ),
                &[&name, &member, &twin_ms],
            )
            .map_err(db("recording this hub"))?;
        if twin.is_some() {
            return Err(StoreError::Conflict(
                "another running hub has this hub's name: give each hub its own --hub-name",
            ));
        }
        client
            .execute(
                &format!(
                    "INSERT INTO hubs AS h (member, name, address, started, seen)
                     VALUES ($1, $2, $3, {NOW_MS}, {NOW_MS})
                     ON CONFLICT (member) DO UPDATE SET address = excluded.address,
                                                        seen = excluded.seen"
                ),
                &[&member, &name, &address],
            )
            .map_err(db("recording this hub"))?;
        // Gone hubs' rows are dropped after a day.
        client
            .execute(
                &format!("DELETE FROM hubs WHERE seen < {NOW_MS} - 86400000"),
                &[],
            )
            .map_err(db("recording this hub"))?;
        client
            .query(
                &format!(
                    "SELECT member, address, seen FROM hubs WHERE seen >= {NOW_MS} - $1
                     ORDER BY name, member"
                ),
                &[&recent],
            )
            .map_err(db("listing the hubs"))?
            .iter()
            .map(|r| Ok((get(r, 0)?, get(r, 1)?, get(r, 2)?)))
            .collect()
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
