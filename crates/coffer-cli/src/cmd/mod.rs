//! One module per group of commands.

pub mod compute;
pub mod init;
pub mod namespaces;
pub mod run;
pub mod secret;
pub mod secrets;
pub mod serve;
pub mod slots;
pub mod status;
mod table;
