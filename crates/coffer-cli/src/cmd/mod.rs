//! One module per group of commands.

pub mod approle;
pub mod audit;
pub mod backup;
pub mod compute;
pub mod config;
pub mod fleet;
pub mod init;
mod json;
pub mod master;
mod missing;
pub mod namespaces;
pub mod policy;
pub mod run;
pub mod secret;
pub mod secrets;
pub mod serve;
pub mod shell;
pub mod slots;
pub mod status;
mod table;
pub mod token;
pub mod watch;
pub mod webhooks;
