//! coffer's listeners, and the [`Daemon`] that assembles them around the service.
//!
//! The source follows a request's path: [`listener`] accepts and limits, `connection`
//! frames with [`framing`], [`peer`] identifies the caller, [`protocol`] parses and answers
//! through `coffer_core::Service::call`; [`handler`] is what they share; [`socket_dir`]
//! keeps the socket's directory the daemon's own. [`credentials`] serves systemd's
//! `LoadCredential=` on a socket of its own, through the same service. [`http`] is the
//! Vault-compatible API on the same service. [`floor`] is the no-work handler `coffer bench`
//! compares against.
#![forbid(unsafe_code)]

mod connection;
pub mod credentials;
pub mod daemon;
pub mod fleet;
pub mod floor;
pub mod framing;
pub mod handler;
pub mod http;
pub mod listener;
pub mod peer;
pub mod protocol;
mod slots;
pub mod socket_dir;
pub mod webhook;

pub use daemon::{Daemon, DaemonConfig, DaemonError};
pub use handler::{Flow, Handler, Limits, Replies};
pub use listener::{bind, bind_sockets, serve_listeners, serve_sockets};
