//! coffer's listeners. The source follows a request's path: [`listener`] accepts and limits,
//! `connection` frames with [`framing`], [`peer`] identifies the caller, [`protocol`] parses
//! and answers through `coffer_core::Service`. [`floor`] is the no-work handler `coffer bench`
//! compares against.
#![forbid(unsafe_code)]

mod connection;
pub mod floor;
pub mod framing;
pub mod http;
pub mod listener;
pub mod peer;
pub mod protocol;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

pub use listener::{Flow, Handler, Limits, bind};

/// Serves `handler` on every socket in `paths` until `shutdown` turns true, then removes the
/// socket files. Binding errors are returned before anything is served.
pub async fn serve_sockets<H: Handler>(
    handler: Arc<H>,
    paths: &[PathBuf],
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let mut listeners = Vec::with_capacity(paths.len());
    for path in paths {
        let listener = bind(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {}: {e}", path.display()),
            )
        })?;
        tracing::info!(socket = %path.display(), "listening");
        listeners.push(listener);
    }
    let tasks: Vec<_> = listeners
        .into_iter()
        .map(|l| {
            tokio::spawn(listener::serve(
                l,
                handler.clone(),
                limits,
                shutdown.clone(),
            ))
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    for path in paths {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}
