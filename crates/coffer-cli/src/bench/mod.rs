//! `coffer bench`: measures coffer's socket protocol against a floor server in one run.
//!
//! By default it starts two child processes from this same binary, `coffer serve` on a
//! temporary data directory and `coffer bench floor` (the same listener answering a fixed
//! body), fills the store, and runs each workload against the floor and coffer in alternating
//! rounds (so drift in the machine's load hits both alike), printing for each target its
//! median round's ops/s, p50 and p99, and the coffer/floor ratio. `--target` measures a daemon already
//! running instead, in a scratch namespace it creates (`bench-scratch-<hex>`, which needs
//! `sudo` on `sys/namespaces`) and whose secrets it deletes at the end, so a live store's
//! secrets are never touched; or, with `--no-fill --namespace NS`, in a namespace the
//! operator filled with `bench-0..N` for it.
//!
//! Its own store is filled before the daemon starts, by [`fill`] (`coffer bench fill`),
//! which writes straight into the temporary data directory: a million secrets in about a
//! minute, where sets through the socket would take many.

mod child;
mod fill;
mod fleet;
mod hubproc;
mod load;
mod watch;

use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use coffer_crypto::SecretBytes;
use coffer_server::floor::FloorHandler;

use crate::config::parse_duration;
use child::{spawn, wait_for};
use load::{Mode, Outcome, Workload};

/// Options of `coffer bench`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    /// Measure the daemon at this socket instead of starting one
    #[arg(long, value_name = "PATH")]
    target: Option<PathBuf>,
    /// Workloads to run: get-conn, get-keepalive, set-conn, set-keepalive, mix-keepalive
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "get-conn,get-keepalive,set-keepalive,set-conn"
    )]
    workloads: Vec<String>,
    /// Concurrent clients
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Measured time per round, workload and target
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured time before each measurement
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Alternating rounds per workload; each target reports its median round
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Distinct secrets the workloads use
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// Bytes per value
    #[arg(long, default_value_t = 32)]
    value_size: usize,
    /// Percentage of sets in the mix workload
    #[arg(long, default_value_t = 10)]
    mix_set_percent: u32,
    /// Print results as JSON
    #[arg(long)]
    json: bool,
    /// Do not write the secrets `bench-0..N` before measuring (they must exist already; with
    /// --target, in the namespace --namespace names)
    #[arg(long)]
    no_fill: bool,
    /// With --target --no-fill: the namespace holding `bench-0..N` (set workloads overwrite
    /// them). Without --no-fill, --target works in a scratch namespace of its own
    #[arg(long, short = 'n', requires = "no_fill")]
    namespace: Option<String>,
    /// Writer threads of the fill of the bench's own store
    #[arg(long, default_value_t = 64)]
    fill_threads: usize,
    /// Start the daemon without its audit log, to measure what the audit costs
    #[arg(long, conflicts_with = "target")]
    danger_no_audit: bool,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Event-to-watcher latency: many socket watchers, many changes.
    Watch(watch::WatchBenchArgs),
    /// A fleet hub against many simulated nodes: time for a change to reach them all, the
    /// hub's CPU and memory per node, its store reads per change, the reconnect storm.
    Fleet(fleet::FleetBenchArgs),
    /// Run the floor server in the foreground: the same listener as coffer, answering a
    /// fixed body and doing no other work.
    Floor {
        /// Where to listen
        #[arg(long, value_name = "PATH")]
        socket: PathBuf,
    },
    /// Write `bench-0..N` straight into a data directory no daemon is serving (for bench
    /// stores: no request is served, so no audit record is written).
    #[command(hide = true)]
    Fill {
        /// The data directory (a new store is made there, with a key file slot)
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Secrets to write
        #[arg(long, default_value_t = 1000)]
        keys: usize,
        /// Bytes per value
        #[arg(long, default_value_t = 32)]
        value_size: usize,
        /// Concurrent writers
        #[arg(long, default_value_t = 64)]
        threads: usize,
        /// Versions written per secret
        #[arg(long, default_value_t = 1)]
        versions: usize,
    },
}

fn workload(name: &str, args: &BenchArgs) -> anyhow::Result<(Workload, bool)> {
    let (mode, set_percent, compare) = match name {
        "get-conn" => (Mode::PerRequest, 0, true),
        "get-keepalive" => (Mode::KeepAlive, 0, true),
        "set-conn" => (Mode::PerRequest, 100, false),
        "set-keepalive" => (Mode::KeepAlive, 100, false),
        "mix-keepalive" => (Mode::KeepAlive, args.mix_set_percent.min(100), true),
        other => bail!("unknown workload `{other}`"),
    };
    Ok((
        Workload {
            mode,
            clients: args.clients.max(1),
            warmup: args.warmup,
            duration: args.duration,
            set_percent,
            keys: args.keys.max(1),
            value_size: args.value_size,
            namespace: None,
        },
        compare,
    ))
}

#[derive(serde::Serialize)]
struct Row {
    workload: String,
    target: &'static str,
    clients: usize,
    #[serde(flatten)]
    outcome: Outcome,
}

pub fn run(socket: Option<PathBuf>, args: BenchArgs) -> anyhow::Result<()> {
    match &args.command {
        Some(BenchCommand::Fleet(fleet)) => return fleet::run(socket, fleet),
        Some(BenchCommand::Floor { socket }) => return floor(socket),
        Some(BenchCommand::Watch(watch)) => return watch::run(watch),
        Some(BenchCommand::Fill {
            data_dir,
            keys,
            value_size,
            threads,
            versions,
        }) => {
            let filled = fill::fill(data_dir, *keys, *value_size, *threads, *versions)?;
            report_fill(&filled);
            return Ok(());
        }
        None => {}
    }
    let tmp = tempfile::Builder::new()
        .prefix("coffer-bench-")
        .tempdir()
        .context("cannot make a temporary directory")?;
    let floor_socket = tmp.path().join("floor.sock");
    let _floor = spawn(&[
        "bench",
        "floor",
        "--socket",
        &floor_socket.to_string_lossy(),
    ])?;
    let (_daemon, coffer_socket) = match &args.target {
        Some(target) => (None, target.clone()),
        None => {
            let socket = tmp.path().join("coffer.sock");
            let data = tmp.path().join("data");
            if !args.no_fill {
                let filled = fill::fill(
                    &data,
                    args.keys.max(1),
                    args.value_size,
                    args.fill_threads,
                    1,
                )?;
                report_fill(&filled);
            }
            let data = data.to_string_lossy();
            let socket_text = socket.to_string_lossy();
            let mut serve = vec!["serve", "--data-dir", &data, "--socket", &socket_text];
            if args.danger_no_audit {
                serve.push("--danger-no-audit");
            }
            let daemon = spawn(&serve)?;
            (Some(daemon), socket)
        }
    };
    wait_for(&floor_socket)?;
    wait_for(&coffer_socket)?;
    // A live store: a scratch namespace of bench's own, emptied at the end, or the one the
    // operator filled for it.
    let scratch = match (&args.target, args.no_fill) {
        (Some(_), false) => Some(Scratch::make(&coffer_socket, args.keys.max(1))?),
        (Some(_), true) if args.namespace.is_none() => bail!(
            "--target --no-fill measures secrets bench-0..N that already exist, and set \
             workloads overwrite them: name their namespace with --namespace (without \
             --no-fill, bench works in a scratch namespace of its own)"
        ),
        _ => None,
    };
    let namespace = match &scratch {
        Some(s) => Some(s.namespace.clone()),
        None => args.namespace.clone(),
    };
    let filled = match &scratch {
        Some(s) => fill_through(
            &coffer_socket,
            &s.namespace,
            args.keys.max(1),
            args.value_size,
        ),
        None => Ok(()),
    };
    let measured = filled.and_then(|()| measure(&args, &floor_socket, &coffer_socket, namespace));
    if let Some(s) = scratch {
        s.empty()?;
    }
    let rows = measured?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_table(&rows);
    }
    Ok(())
}

/// A scratch namespace on a live store: made for the run, its secrets deleted after it.
struct Scratch {
    client: coffer_client::Client,
    namespace: String,
    keys: usize,
}

impl Scratch {
    fn make(socket: &Path, keys: usize) -> anyhow::Result<Self> {
        let client = coffer_client::Client::new(socket);
        let suffix = SecretBytes::random(4)
            .map(|b| data_encoding::HEXLOWER.encode(b.expose_secret()))
            .context("cannot draw a random namespace name")?;
        let namespace = format!("bench-scratch-{suffix}");
        client.create_namespace(&namespace).with_context(|| {
            format!(
                "--target works in a scratch namespace of its own, and cannot create \
                 {namespace} (it needs `sudo` on sys/namespaces); or fill one yourself and \
                 pass --no-fill --namespace NS"
            )
        })?;
        eprintln!("measuring in the scratch namespace {namespace}");
        Ok(Self {
            client,
            namespace,
            keys,
        })
    }

    /// Deletes every secret bench wrote (all their versions). The namespace itself stays,
    /// empty: coffer cannot remove a namespace yet.
    fn empty(self) -> anyhow::Result<()> {
        for i in 0..self.keys {
            match self
                .client
                .del(Some(&self.namespace), &format!("bench-{i}"))
            {
                Ok(()) => {}
                Err(e) if e.code() == coffer_types::ErrorCode::NotFound => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot empty the scratch namespace {}", self.namespace)
                    });
                }
            }
        }
        eprintln!(
            "deleted the {} secrets of the scratch namespace {} (the empty namespace remains: \
             coffer cannot remove a namespace yet)",
            self.keys, self.namespace
        );
        Ok(())
    }
}

/// Runs every workload in alternating rounds against the floor and coffer.
fn measure(
    args: &BenchArgs,
    floor_socket: &Path,
    coffer_socket: &Path,
    namespace: Option<String>,
) -> anyhow::Result<Vec<Row>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut rows = Vec::new();
    for name in &args.workloads {
        let (mut w, compare) = workload(name, args)?;
        w.namespace.clone_from(&namespace);
        let label = format!("{name} ({})", w.mode.label());
        let mut targets: Vec<(&'static str, &Path)> = Vec::new();
        if compare {
            targets.push(("floor", floor_socket));
        }
        targets.push(("coffer", coffer_socket));
        let mut measured: Vec<Vec<Outcome>> = vec![Vec::new(); targets.len()];
        for round in 0..args.rounds.max(1) {
            for (i, (target, socket)) in targets.iter().enumerate() {
                let outcome = runtime
                    .block_on(load::run(socket, &w))
                    .with_context(|| format!("workload {name} against {target} failed"))?;
                if !args.json {
                    eprintln!(
                        "{label:<34} {target:<7} round {round}: {:>10.0} ops/s  p50 {:>6} us  \
                         p99 {:>6} us  errors {}",
                        outcome.ops_per_sec, outcome.p50_us, outcome.p99_us, outcome.errors
                    );
                }
                measured[i].push(outcome);
            }
        }
        for ((target, _), mut outcomes) in targets.iter().zip(measured) {
            outcomes.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
            let median = outcomes.swap_remove(outcomes.len() / 2);
            rows.push(Row {
                workload: name.clone(),
                target,
                clients: w.clients,
                outcome: median,
            });
        }
    }
    Ok(rows)
}

fn report_fill(filled: &fill::Filled) {
    eprintln!(
        "filled {} secrets in {:.1} s ({:.0} secrets/s)",
        filled.keys,
        filled.seconds,
        filled.keys as f64 / filled.seconds.max(1e-9)
    );
}

/// Writes `bench-0..keys` into `namespace` through a running daemon, one set at a time.
fn fill_through(socket: &Path, namespace: &str, keys: usize, size: usize) -> anyhow::Result<()> {
    let client = coffer_client::Client::new(socket);
    let value = SecretBytes::copy_from("v".repeat(size).as_bytes());
    for i in 0..keys {
        client
            .set(Some(namespace), &format!("bench-{i}"), &value, None)
            .with_context(|| format!("cannot fill the store at {}", socket.display()))?;
    }
    Ok(())
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<16} {:<7} {:>7} {:>12} {:>9} {:>9} {:>7} {:>8}",
        "workload", "target", "clients", "ops/s", "p50 us", "p99 us", "errors", "ratio"
    );
    for row in rows {
        let floor = rows
            .iter()
            .find(|r| r.workload == row.workload && r.target == "floor");
        let ratio = match (row.target, floor) {
            ("coffer", Some(f)) if f.outcome.ops_per_sec > 0.0 => {
                format!("{:.2}", row.outcome.ops_per_sec / f.outcome.ops_per_sec)
            }
            _ => String::new(),
        };
        println!(
            "{:<16} {:<7} {:>7} {:>12.0} {:>9} {:>9} {:>7} {:>8}",
            row.workload,
            row.target,
            row.clients,
            row.outcome.ops_per_sec,
            row.outcome.p50_us,
            row.outcome.p99_us,
            row.outcome.errors,
            ratio
        );
    }
}

fn floor(socket: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            let _ = stop.send(true);
        });
        coffer_server::serve_sockets(
            Arc::new(FloorHandler),
            &[socket.to_owned()],
            coffer_server::Limits::for_values(1 << 20),
            stopped,
        )
        .await?;
        anyhow::Ok(())
    })
}
