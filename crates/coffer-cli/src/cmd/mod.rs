//! One module per group of commands.

pub mod init;
pub mod secret;
pub mod serve;
pub mod status;
