//! `coffer bench watch`: event-to-watcher latency. Starts a daemon on a temporary store (audit
//! log on, as shipped) or uses `--target`, opens `--watchers` socket watches, then makes
//! `--changes` writes from a few writer sessions, and reports for every (watcher, event)
//! pair the time from the write being sent, and from its acknowledgement, to the watcher
//! reading the event: p50, p99 and max.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use coffer_client::{Client, WatchFrom};
use coffer_crypto::SecretBytes;
use coffer_types::WatchLine;

/// Options of `coffer bench watch`.
#[derive(Args, Debug)]
pub struct WatchBenchArgs {
    /// Measure the daemon at this socket instead of starting one (writes `watch-bench-*`)
    #[arg(long, value_name = "PATH")]
    target: Option<PathBuf>,
    /// Watchers connected at once
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Changes made while they watch
    #[arg(long, default_value_t = 10_000)]
    changes: usize,
    /// Writer sessions making the changes
    #[arg(long, default_value_t = 4)]
    writers: usize,
}

/// When each change was sent and acknowledged, by name.
type Sent = HashMap<String, (Instant, Instant)>;

pub fn run(args: &WatchBenchArgs) -> anyhow::Result<()> {
    if args.watchers == 0 || args.changes == 0 || args.writers == 0 {
        bail!("--watchers, --changes and --writers must be at least 1");
    }
    let tmp = tempfile::Builder::new()
        .prefix("coffer-bench-watch-")
        .tempdir()
        .context("cannot make a temporary directory")?;
    let (_daemon, socket) = match &args.target {
        Some(target) => (None, target.clone()),
        None => {
            let socket = tmp.path().join("coffer.sock");
            let data = tmp.path().join("data");
            let daemon = super::child::spawn(&[
                "serve",
                "--data-dir",
                &data.to_string_lossy(),
                "--socket",
                &socket.to_string_lossy(),
            ])?;
            (Some(daemon), socket)
        }
    };
    super::child::wait_for(&socket)?;
    let client = Client::new(&socket).with_timeout(Duration::from_secs(30));
    let ready = Arc::new(Barrier::new(args.watchers + 1));
    let mut watchers = Vec::new();
    for _ in 0..args.watchers {
        let (client, ready, expect) = (client.clone(), ready.clone(), args.changes);
        watchers.push(std::thread::spawn(move || watch(&client, &ready, expect)));
    }
    ready.wait();
    let sent = Arc::new(Mutex::new(Sent::new()));
    let started = Instant::now();
    let mut writers = Vec::new();
    for w in 0..args.writers {
        let (client, sent) = (client.clone(), sent.clone());
        let share = (w..args.changes).step_by(args.writers).collect::<Vec<_>>();
        writers.push(std::thread::spawn(move || write(&client, &share, &sent)));
    }
    for w in writers {
        w.join()
            .map_err(|_| anyhow::anyhow!("a writer panicked"))??;
    }
    let wrote = started.elapsed();
    let sent = sent.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let (mut from_sent, mut from_ack) = (Vec::new(), Vec::new());
    for w in watchers {
        let seen = w
            .join()
            .map_err(|_| anyhow::anyhow!("a watcher panicked"))??;
        for (name, at) in seen {
            if let Some((send, ack)) = sent.get(&name) {
                from_sent.push(at.saturating_duration_since(*send));
                from_ack.push(at.saturating_duration_since(*ack));
            }
        }
    }
    let rate = args.changes as f64 / wrote.as_secs_f64();
    println!(
        "{} watchers, {} changes by {} writers in {:.1} s ({rate:.0} changes/s), {} deliveries",
        args.watchers,
        args.changes,
        args.writers,
        wrote.as_secs_f64(),
        from_sent.len()
    );
    if from_sent.is_empty() {
        bail!("no watcher saw the benchmark's changes");
    }
    for (what, samples) in [
        ("from write sent", &mut from_sent),
        ("from write acknowledged", &mut from_ack),
    ] {
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
        println!(
            "event-to-watcher latency {what:<24} p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms",
            ms(at(0.5)),
            ms(at(0.99)),
            ms(at(1.0))
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Reads `expect` events (the benchmark's writes), noting when each arrived.
fn watch(
    client: &Client,
    ready: &Barrier,
    expect: usize,
) -> anyhow::Result<Vec<(String, Instant)>> {
    let mut lines = client.watch(&WatchFrom {
        prefix: Some("watch-bench-"),
        ..WatchFrom::default()
    })?;
    match lines.next() {
        Some(Ok(WatchLine::Started { .. })) => {}
        other => bail!("the watch did not start: {other:?}"),
    }
    ready.wait();
    let mut seen = Vec::with_capacity(expect);
    while seen.len() < expect {
        match lines.next() {
            Some(Ok(WatchLine::Event { event, .. })) => {
                seen.push((event.name.unwrap_or_default(), Instant::now()));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("the watch ended after {} events", seen.len()),
        }
    }
    Ok(seen)
}

/// Writes `watch-bench-<i>` for each `i`, on one keep-alive session.
fn write(client: &Client, share: &[usize], sent: &Mutex<Sent>) -> anyhow::Result<()> {
    let mut session = client.session()?;
    let value = SecretBytes::copy_from(b"watch-bench-value");
    for i in share {
        let name = format!("watch-bench-{i}");
        let send = Instant::now();
        session.call(
            session
                .request("set")
                .field("name", &name)
                .secret("value", &value),
        )?;
        let ack = Instant::now();
        sent.lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .insert(name, (send, ack));
    }
    Ok(())
}
