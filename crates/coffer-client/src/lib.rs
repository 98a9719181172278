//! A blocking client for coffer's local socket protocol (DESIGN.md, Local socket protocol;
//! docs/protocol.md).
//!
//! [`Client`] makes the protocol's ordinary call, one request per connection as the device
//! daemon's clients do, and offers one method per action, grouped by area: [`secrets`],
//! [`admin`], [`tokens`], [`slots`]. Replies that carry no secret come back as the types the
//! daemon writes them from (`coffer_types::reply`). [`Client::stream`] reads the many replies
//! of one request (a `watch`) and [`Client::session`] keeps a connection open for several
//! requests ([`stream`]).
//!
//! Values travel in `SecretBytes`; request and reply buffers are sized before a value goes in
//! and zeroized after.
#![forbid(unsafe_code)]

pub mod admin;
pub mod approle;
pub mod backup;
pub mod error;
pub mod fleet;
pub mod reply;
pub mod request;
pub mod secrets;
pub mod slots;
pub mod stream;
pub mod tokens;
pub mod watch;
pub mod webhooks;

pub use admin::AuditHashes;
pub use approle::{AppRoleReply, RoleSettings};
pub use backup::{BackupDone, BackupTo};
pub use error::ClientError;
pub use reply::Reply;
pub use request::{Client, RequestBuilder};
pub use secrets::{ListOptions, Page, RotationRequest, WriteOptions, Written};
pub use slots::{AddedSlot, NewSlot};
pub use stream::{Replies, Session};
pub use tokens::{CreatedToken, TokenRequest};
pub use watch::WatchFrom;
pub use webhooks::{AddedWebhook, NewWebhook};
