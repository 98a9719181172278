//! The socket listener can answer one request with a stream of replies (what `watch` will
//! need): a handler sends each reply as it goes, and the connection ends after the last; a
//! client that goes away ends the stream on the handler's side.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use coffer_core::Identity;
use coffer_server::{Flow, Handler, Limits, Replies, serve_sockets};

/// Answers every request with `count` numbered lines, sent one by one.
struct Counter {
    count: usize,
    /// Sends that reached the client, as the handler saw them.
    delivered: Arc<AtomicUsize>,
}

impl Handler for Counter {
    async fn handle(&self, _: &Arc<Identity>, _: &[u8], replies: &mut Replies<'_>) -> Flow {
        for i in 0..self.count {
            replies
                .buf()
                .extend_from_slice(format!("{{\"ok\":true,\"n\":{i}}}\n").as_bytes());
            if !replies.send().await {
                return Flow { keep_alive: false };
            }
            self.delivered.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        replies
            .buf()
            .extend_from_slice(b"{\"ok\":true,\"end\":true}\n");
        Flow { keep_alive: false }
    }
}

fn serve(
    count: usize,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    Arc<AtomicUsize>,
    tokio::runtime::Runtime,
    tokio::sync::watch::Sender<bool>,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let delivered = Arc::new(AtomicUsize::new(0));
    let handler = Arc::new(Counter {
        count,
        delivered: delivered.clone(),
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let paths = vec![path.clone()];
    runtime.spawn(async move {
        serve_sockets(handler, &paths, Limits::for_values(1024), stopped)
            .await
            .unwrap();
    });
    for _ in 0..100 {
        if UnixStream::connect(&path).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (dir, path, delivered, runtime, stop)
}

#[test]
fn one_request_many_replies() {
    let (_dir, path, delivered, _rt, stop) = serve(5);
    let mut s = UnixStream::connect(&path).unwrap();
    s.write_all(b"{\"action\":\"watch\"}").unwrap();
    let lines: Vec<String> = BufReader::new(s).lines().map(Result::unwrap).collect();
    assert_eq!(lines.len(), 6, "{lines:?}");
    assert_eq!(lines[0], r#"{"ok":true,"n":0}"#);
    assert_eq!(lines[4], r#"{"ok":true,"n":4}"#);
    assert_eq!(lines[5], r#"{"ok":true,"end":true}"#);
    assert_eq!(delivered.load(Ordering::Relaxed), 5);
    stop.send(true).unwrap();
}

#[test]
fn a_client_that_leaves_ends_the_stream() {
    let (_dir, path, delivered, _rt, stop) = serve(100_000);
    let mut s = UnixStream::connect(&path).unwrap();
    s.write_all(b"{\"action\":\"watch\"}").unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert_eq!(first.trim(), r#"{"ok":true,"n":0}"#);
    drop(reader);
    drop(s);
    std::thread::sleep(Duration::from_millis(300));
    let seen = delivered.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        delivered.load(Ordering::Relaxed),
        seen,
        "the handler went on sending to a client that was gone"
    );
    assert!(seen < 1000, "{seen}");
    stop.send(true).unwrap();
}
