//! `--json` output for scripts: pretty JSON with every object's keys in sorted order.
//!
//! The text goes through `serde_json::Value`, whose maps sort their keys, so a report prints
//! the same whichever way it was read (from the daemon, or from files here) and stays what
//! these commands printed when they passed on the daemon's JSON as it came.

use serde::Serialize;

/// Prints `value` as pretty JSON with sorted keys.
pub fn print(value: &impl Serialize) -> anyhow::Result<()> {
    let value = serde_json::to_value(value)?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}
