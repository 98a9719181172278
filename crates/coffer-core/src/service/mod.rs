//! The service: the one path every request takes, whatever listener it came through.
//!
//! [`Service::call`] walks DESIGN.md's gates in order, cheapest first:
//! 1 sealed/unavailable · 2 identity · 3 namespace · 4 rate limit · 5 policy ·
//! 6 validation · 7 the store (behind the JIT cache).
//!
//! A refusal names its gate. Every request that reaches the gates leaves exactly one audit
//! record, and the audit log fails closed: a request is refused before it is carried out
//! when the log cannot be written (`audit_unavailable`), and a reply is withheld when its own
//! record cannot be written. The work of a request that passed the gates, and its record,
//! run in a task of their own: a client that goes away (half-close, reset, timeout) or a
//! daemon told to stop cannot separate a change the store committed from its record; only
//! a read answered from the cache, which never waits, is answered in place.
//!
//! Where the work lives: `call` (the path and shutdown's drain), `state` (what the service
//! holds), `gates` (1 to 6), `record` (the audit record and the counters), `secret` and
//! `list` (the data plane), `admin` and `tokens` (the daemon's own records).

mod admin;
mod approle;
mod backup;
mod call;
mod fleet;
mod fleet_join;
mod fleet_sync;
mod follow;
mod gates;
mod hook;
mod list;
mod nslock;
mod record;
mod rotation;
mod scheduled;
mod secret;
mod state;
mod token_roles;
mod tokens;
mod watch;
mod webhooks;
mod wrapping;

pub use crate::op::{DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT};
pub use crate::schedule::{BackupStats, RotationStats};
pub use fleet_sync::{CatalogEntry, FLEET_ACTOR};
pub use state::{RequestCount, Service, ServiceConfig};
