//! `coffer agent`: secrets rendered into files and processes from the daemon's change events.

pub mod template;
