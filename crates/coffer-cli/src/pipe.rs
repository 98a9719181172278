//! A closed standard output is a clean end, never a panic.
//!
//! `coffer secrets list | head -1` closes the pipe after one line. `println!` panics when a
//! write fails (EPIPE, as Rust ignores SIGPIPE), and explicit writes return the error; both
//! end here: the process exits 0, quietly, as `cat` or `ls` would after `head` has read
//! what it wanted. Every other panic keeps the default report.

use std::io;

/// Installs the panic hook that turns a failed print on a closed pipe into exit 0.
pub fn install() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let text = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if is_closed_pipe_panic(text) {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Whether a panic message is the standard library's report of a print to a closed pipe
/// (`failed printing to stdout: Broken pipe (os error 32)`).
fn is_closed_pipe_panic(text: &str) -> bool {
    text.starts_with("failed printing to std") && text.contains("os error 32")
}

/// Whether an error (or one of its causes) is a write to a closed pipe, and not a broken
/// connection to the daemon (a request that may not have arrived is no clean end).
pub fn is_closed_pipe(e: &anyhow::Error) -> bool {
    if e.chain()
        .any(|cause| cause.downcast_ref::<coffer_client::ClientError>().is_some())
    {
        return false;
    }
    e.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_librarys_message_is_recognised() {
        assert!(is_closed_pipe_panic(
            "failed printing to stdout: Broken pipe (os error 32)"
        ));
        assert!(!is_closed_pipe_panic("index out of bounds"));
        assert!(!is_closed_pipe_panic(
            "failed printing to stdout: No space left on device (os error 28)"
        ));
    }

    #[test]
    fn a_broken_pipe_cause_is_found() {
        let e = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe))
            .context("cannot write to standard output");
        assert!(is_closed_pipe(&e));
        assert!(!is_closed_pipe(&anyhow::anyhow!("other")));
        let daemon = anyhow::Error::from(coffer_client::ClientError::Io(io::Error::from(
            io::ErrorKind::BrokenPipe,
        )));
        assert!(!is_closed_pipe(&daemon));
    }
}
