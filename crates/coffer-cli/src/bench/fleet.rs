//! `coffer bench fleet`: a crowd of simulated nodes against one hub. Each simulated node has
//! its own X25519 key, its own TLS key and certificate (it enrolls with a join token like a
//! real node) and its own stream, all in this one process. It reports the enrollment rate;
//! for one change assigned to every node, the time until each node has opened it (p50, p99,
//! max); the hub's CPU time and resident memory per connected node; the hub's store reads
//! per change (which must not grow with the nodes: the hub fans out from memory); and, on a
//! hub it started itself, the reconnect storm after a restart.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use coffer_client::Client;
use coffer_crypto::SecretBytes;
use coffer_fleet::pki::TlsKey;
use coffer_fleet::wire::{self, ToHub, ToNode};
use coffer_fleet::{Binding, NodeKey};
use coffer_server::fleet::link;
use tokio::sync::mpsc;

use super::hubproc::{HubProc, Usage};

/// The secret every simulated node is assigned.
const NAME: &str = "fleet-bench/value";
/// Its tag, and the simulated nodes'.
const TAG: &str = "fleet-bench";

/// Options of `coffer bench fleet`.
#[derive(Args, Debug)]
pub struct FleetBenchArgs {
    /// Simulated nodes, each with its own key, certificate and stream
    #[arg(long, value_name = "N", default_value_t = 1000)]
    nodes: usize,
    /// A hub already running: its fleet listener (then --hub-ca, and the global --socket
    /// for its admin socket, as root). It writes `fleet-bench/value` there and removes its
    /// simulated nodes at the end. Without it, the bench starts a hub of its own (a SQLite
    /// store, audit log on, as shipped) and also measures the reconnect storm after
    /// restarting it
    #[arg(long, value_name = "ADDR", requires = "hub_ca")]
    hub: Option<String>,
    /// The hub's CA certificate (`DATA_DIR/fleet/ca.pem` on the hub)
    #[arg(long, value_name = "FILE")]
    hub_ca: Option<PathBuf>,
    /// Enrollments in flight at once
    #[arg(long, value_name = "N", default_value_t = 64)]
    enroll_concurrency: usize,
    /// Changes to time, one after another (each assigned to every node)
    #[arg(long, value_name = "N", default_value_t = 3)]
    changes: usize,
}

/// What a simulated node tells the bench.
enum Seen {
    /// A stream caught up (its first `synced` since it opened).
    Synced,
    /// The bench secret's version `v`, opened with the node's key.
    Value(u32, Instant),
    /// The stream ended.
    Lost,
}

struct Sim {
    /// Its own loopback address when the hub is on loopback (so the hub sees as many peers
    /// as there are nodes); the machine's own otherwise.
    from: Option<IpAddr>,
    id: String,
    key: NodeKey,
    tls: TlsKey,
    cert: Vec<u8>,
}

pub fn run(socket: Option<PathBuf>, args: &FleetBenchArgs) -> anyhow::Result<()> {
    if args.nodes == 0 || args.changes == 0 {
        bail!("--nodes and --changes must be at least 1");
    }
    let files = link::raise_open_files();
    if (files as usize) < args.nodes + 64 {
        bail!(
            "the open-files limit is {files}, too low for {} nodes (raise the hard limit: ulimit -Hn)",
            args.nodes
        );
    }
    let tmp = tempfile::Builder::new()
        .prefix("coffer-bench-fleet-")
        .tempdir()
        .context("cannot make a temporary directory")?;
    let mut hub = match &args.hub {
        Some(addr) => HubProc::existing(
            addr,
            args.hub_ca.as_deref().context("--hub-ca is required")?,
            socket,
        )?,
        None => HubProc::start(tmp.path())?,
    };
    let client = hub.client().with_timeout(Duration::from_secs(60));
    let ca = std::fs::read_to_string(hub.ca()).context("cannot read the hub's CA")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let _guard = runtime.enter();

    // The secret, tagged for every simulated node, and their join token.
    set(&client)?;
    client.fleet(
        "secret_tag",
        &serde_json::json!({"name": NAME, "add": [TAG], "remove": []}),
    )?;
    let token = client.fleet(
        "token_create",
        &serde_json::json!({"tags": [TAG], "num_uses": args.nodes, "ttl": 86_400}),
    )?["token"]
        .as_str()
        .context("no token in the reply")?
        .to_owned();

    let started = Instant::now();
    let sims = runtime.block_on(enroll_all(&hub.fleet, &ca, &token, args))?;
    let enrolled = started.elapsed();
    println!(
        "enrolled {} nodes in {:.1} s ({:.0}/s, {} at once)",
        sims.len(),
        enrolled.as_secs_f64(),
        sims.len() as f64 / enrolled.as_secs_f64(),
        args.enroll_concurrency
    );

    // Every node's stream, caught up.
    let before = hub.usage();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let ids: Vec<String> = sims.iter().map(|s| s.id.clone()).collect();
    for (i, sim) in sims.into_iter().enumerate() {
        let (hub_addr, ca, tx) = (hub.fleet.clone(), ca.clone(), tx.clone());
        runtime.spawn(async move { stream(i, sim, hub_addr, ca, tx).await });
    }
    drop(tx);
    let n = args.nodes;
    runtime.block_on(wait_synced(&mut rx, n, Duration::from_secs(300)))?;
    let opened = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let after = hub.usage();
    println!(
        "{n} streams open and caught up in {:.1} s; hub: {} connected",
        opened.as_secs_f64(),
        connected(&client)?
    );
    report_usage(&before, &after, n);

    // Changes assigned to every node: time from the write to each node opening it.
    for change in 1..=args.changes {
        let reads = store_reads(&client)?;
        let cpu = hub.usage();
        let sent = Instant::now();
        let version = set(&client)?;
        let acked = sent.elapsed();
        let mut times = runtime.block_on(wait_version(&mut rx, n, version, sent))?;
        let cpu_after = hub.usage();
        // The audit records and heartbeats settle before the count.
        std::thread::sleep(Duration::from_millis(500));
        let reads = store_reads(&client)?.saturating_sub(reads);
        times.sort();
        println!(
            "change {change}: all {n} nodes had it {:.0} ms after the write (acknowledged in {:.1} ms): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; hub CPU {:.2} s ({:.0} µs per node); {reads} store reads",
            ms(times[n - 1]),
            ms(acked),
            ms(times[n / 2]),
            ms(times[(n * 99 / 100).min(n - 1)]),
            ms(times[n - 1]),
            cpu_after.cpu_s - cpu.cpu_s,
            (cpu_after.cpu_s - cpu.cpu_s) * 1e6 / n as f64,
        );
    }

    // The reconnect storm after a restart (a hub the bench started).
    if hub.restartable() {
        let down = Instant::now();
        hub.restart()?;
        let up = down.elapsed();
        runtime.block_on(wait_synced(&mut rx, n, Duration::from_secs(180)))?;
        let back = down.elapsed();
        println!(
            "reconnect storm: the hub was back in {:.1} s; all {n} nodes reconnected and caught up {:.1} s after it stopped",
            up.as_secs_f64(),
            back.as_secs_f64()
        );
    } else {
        println!("reconnect storm: not measured (the bench restarts only a hub it started)");
        // A hub that lives on: the simulated nodes leave its registry.
        for id in &ids {
            client.fleet("node_remove", &serde_json::json!({ "node": id }))?;
        }
        println!("removed the {} simulated nodes from the hub", ids.len());
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    drop(hub);
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Writes a new random value; answers the version now current.
fn set(client: &Client) -> anyhow::Result<u32> {
    let value = SecretBytes::random(32)?;
    client.set(None, NAME, &value, None)?;
    Ok(client.meta(None, NAME)?.current.get())
}

fn facts(client: &Client) -> anyhow::Result<coffer_types::reply::FleetFacts> {
    client
        .status()?
        .daemon
        .and_then(|d| d.fleet)
        .context("the daemon at the socket is not a fleet hub (no --fleet-listen)")
}

fn store_reads(client: &Client) -> anyhow::Result<u64> {
    Ok(facts(client)?.store_reads.unwrap_or(0))
}

fn connected(client: &Client) -> anyhow::Result<usize> {
    Ok(facts(client)?.nodes_connected.unwrap_or(0))
}

fn report_usage(before: &Usage, after: &Usage, n: usize) {
    let rss = after.rss_kib.saturating_sub(before.rss_kib);
    println!(
        "hub resident memory {} MiB ({:.1} KiB per connected node); hub CPU for the streams' opening {:.2} s ({:.0} µs per node)",
        after.rss_kib / 1024,
        rss as f64 / n as f64,
        after.cpu_s - before.cpu_s,
        (after.cpu_s - before.cpu_s) * 1e6 / n as f64
    );
}

/// Enrolls every simulated node, `--enroll-concurrency` at a time.
async fn enroll_all(
    hub: &str,
    ca: &str,
    token: &str,
    args: &FleetBenchArgs,
) -> anyhow::Result<Vec<Sim>> {
    let gate = Arc::new(tokio::sync::Semaphore::new(args.enroll_concurrency.max(1)));
    // Loopback sources only reach a hub on loopback.
    let local = tokio::net::lookup_host(hub)
        .await?
        .next()
        .is_some_and(|a| a.ip().is_loopback() && a.is_ipv4());
    let mut tasks = Vec::with_capacity(args.nodes);
    for i in 0..args.nodes {
        let (hub, ca, token, gate) = (
            hub.to_owned(),
            ca.to_owned(),
            token.to_owned(),
            gate.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            let from = local.then(|| loopback(i));
            enroll(&hub, &ca, &token, from).await
        }));
    }
    let mut sims = Vec::with_capacity(args.nodes);
    for t in tasks {
        sims.push(t.await??);
    }
    Ok(sims)
}

/// Node `i`'s loopback address: 127.1.0.1 and on (127.0.0.1 stays the hub's).
fn loopback(i: usize) -> IpAddr {
    let third = u8::try_from(i / 250 % 250).unwrap_or(0);
    let second = u8::try_from(1 + i / 62_500).unwrap_or(u8::MAX);
    let fourth = u8::try_from(i % 250 + 1).unwrap_or(1);
    IpAddr::from([127, second, third, fourth])
}

async fn enroll(hub: &str, ca: &str, token: &str, from: Option<IpAddr>) -> anyhow::Result<Sim> {
    let key = NodeKey::generate()?;
    let tls = TlsKey::generate()?;
    let mut attempt = 0;
    loop {
        match enroll_once(hub, ca, token, &key, &tls, from).await {
            Ok((id, cert)) => {
                return Ok(Sim {
                    from,
                    id,
                    key,
                    tls,
                    cert,
                });
            }
            Err(e) if attempt < 5 => {
                tracing::debug!(error = %e, "an enrollment is tried again");
                tokio::time::sleep(link::backoff(attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn enroll_once(
    hub: &str,
    ca: &str,
    token: &str,
    key: &NodeKey,
    tls: &TlsKey,
    from: Option<IpAddr>,
) -> anyhow::Result<(String, Vec<u8>)> {
    let mut s = link::connect_from(hub, ca, None, from)
        .await
        .map_err(anyhow::Error::msg)?;
    let request = ToHub::Enroll {
        token: Some(token.to_owned()),
        key: key.public().to_text(),
        tls_key: data_encoding::BASE64URL_NOPAD.encode(&tls.public_raw()),
        hostname: None,
    };
    match link::enroll(&mut s, &request, key)
        .await
        .map_err(anyhow::Error::msg)?
    {
        ToNode::Enrolled { node, cert, .. } => {
            Ok((node, data_encoding::BASE64.decode(cert.as_bytes())?))
        }
        ToNode::Refused { code, message } => bail!("refused: {code}: {message}"),
        _ => bail!("no answer to the enrollment"),
    }
}

/// One simulated node's stream, opened again (with the node's backoff) whenever it ends.
async fn stream(
    i: usize,
    sim: Sim,
    hub: String,
    ca: String,
    tx: mpsc::UnboundedSender<(usize, Seen)>,
) {
    let mut since = 0u64;
    let mut held: Option<u32> = None;
    let mut attempt = 0u32;
    loop {
        let client = Some((sim.cert.as_slice(), &sim.tls));
        if let Ok(mut s) = link::connect_from(&hub, &ca, client, sim.from).await {
            let hello = ToHub::Sync {
                since,
                held: held
                    .map(|version| wire::Held {
                        namespace: "default".to_owned(),
                        name: NAME.to_owned(),
                        version,
                    })
                    .into_iter()
                    .collect(),
            };
            if wire::write(&mut s, &hello).await.is_ok() {
                let mut first = true;
                while let Ok(Some(message)) = wire::read::<_, ToNode>(&mut s).await {
                    attempt = 0;
                    match message {
                        ToNode::Put {
                            namespace,
                            name,
                            version,
                            sealed,
                            ..
                        } => {
                            let binding = Binding {
                                node: &sim.id,
                                namespace: &namespace,
                                name: &name,
                                version,
                            };
                            let opened = sim.key.open_base64(&binding, &sealed);
                            if opened.is_ok() && name == NAME {
                                held = Some(version);
                                let _ = tx.send((i, Seen::Value(version, Instant::now())));
                            }
                        }
                        ToNode::Synced { revision } => {
                            since = revision;
                            if std::mem::take(&mut first) {
                                let _ = tx.send((i, Seen::Synced));
                            }
                        }
                        _ => {}
                    }
                }
                let _ = tx.send((i, Seen::Lost));
            }
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(link::backoff(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
}

/// Waits until every node's current stream has caught up.
async fn wait_synced(
    rx: &mut mpsc::UnboundedReceiver<(usize, Seen)>,
    n: usize,
    limit: Duration,
) -> anyhow::Result<()> {
    let mut synced = vec![false; n];
    let mut count = 0;
    let deadline = tokio::time::Instant::now() + limit;
    while count < n {
        let Ok(Some((i, seen))) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            bail!("only {count} of {n} nodes caught up within {limit:?}");
        };
        match seen {
            Seen::Synced if !synced[i] => {
                synced[i] = true;
                count += 1;
            }
            Seen::Lost if synced[i] => {
                synced[i] = false;
                count -= 1;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Waits until every node has opened `version`; per node, how long after `sent`.
async fn wait_version(
    rx: &mut mpsc::UnboundedReceiver<(usize, Seen)>,
    n: usize,
    version: u32,
    sent: Instant,
) -> anyhow::Result<Vec<Duration>> {
    let mut at: Vec<Option<Duration>> = vec![None; n];
    let mut count = 0;
    let limit = Duration::from_secs(120);
    let deadline = tokio::time::Instant::now() + limit;
    while count < n {
        let Ok(Some((i, seen))) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            bail!("only {count} of {n} nodes had version {version} within {limit:?}");
        };
        if let Seen::Value(v, when) = seen
            && v >= version
            && at[i].is_none()
        {
            at[i] = Some(when.saturating_duration_since(sent));
            count += 1;
        }
    }
    Ok(at.into_iter().flatten().collect())
}
