//! The load generator: N clients, each a task, driving one socket for a fixed time.
//!
//! Connection-per-request mode opens, writes one request, reads to end of stream and closes,
//! as the device daemon's clients do. Keep-alive mode opens once and sends newline-delimited
//! requests with `"keep_alive": true`, reading one line per reply. Latencies are recorded
//! per request, after the warm-up, in microseconds.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// How requests travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One connection per request.
    PerRequest,
    /// One connection per client, newline-delimited requests.
    KeepAlive,
}

impl Mode {
    pub fn label(self) -> &'static str {
        match self {
            Self::PerRequest => "conn-per-request",
            Self::KeepAlive => "keep-alive",
        }
    }
}

/// What one run does.
#[derive(Debug, Clone)]
pub struct Workload {
    pub mode: Mode,
    pub clients: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Percentage of requests that are `set` (the rest are `get`).
    pub set_percent: u32,
    pub keys: usize,
    pub value_size: usize,
    /// The namespace the requests name (`None`: the default one).
    pub namespace: Option<String>,
}

/// What one run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub ops: u64,
    pub errors: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub p50_us: u32,
    pub p99_us: u32,
}

struct Requests {
    gets: Vec<Vec<u8>>,
    sets: Vec<Vec<u8>>,
}

fn requests(w: &Workload) -> Requests {
    let value: String = "v".repeat(w.value_size);
    let mut ka = if w.mode == Mode::KeepAlive {
        ",\"keep_alive\":true".to_owned()
    } else {
        String::new()
    };
    if let Some(ns) = &w.namespace {
        // As JSON: the operator may have named it (--namespace).
        let quoted = serde_json::to_string(ns).unwrap_or_else(|_| "\"\"".to_owned());
        ka.push_str(&format!(",\"namespace\":{quoted}"));
    }
    let gets = (0..w.keys)
        .map(|i| format!("{{\"action\":\"get\",\"name\":\"bench-{i}\"{ka}}}\n").into_bytes())
        .collect();
    let sets = (0..w.keys)
        .map(|i| {
            format!("{{\"action\":\"set\",\"name\":\"bench-{i}\",\"value\":\"{value}\"{ka}}}\n")
                .into_bytes()
        })
        .collect();
    Requests { gets, sets }
}

#[derive(Default)]
struct Tally {
    latencies: Vec<u32>,
    errors: u64,
}

/// Runs `workload` against `socket`.
pub async fn run(socket: &Path, workload: &Workload) -> std::io::Result<Outcome> {
    let reqs = Arc::new(requests(workload));
    let start = Instant::now();
    let measure_from = start + workload.warmup;
    let end = measure_from + workload.duration;
    let mut tasks = Vec::with_capacity(workload.clients);
    for c in 0..workload.clients {
        let socket = socket.to_owned();
        let reqs = reqs.clone();
        let w = workload.clone();
        tasks.push(tokio::spawn(async move {
            client(socket, reqs, w, c, measure_from, end).await
        }));
    }
    let mut all = Tally::default();
    for t in tasks {
        let tally = t.await.map_err(std::io::Error::other)??;
        all.latencies.extend(tally.latencies);
        all.errors += tally.errors;
    }
    all.latencies.sort_unstable();
    let pct = |p: f64| -> u32 {
        if all.latencies.is_empty() {
            return 0;
        }
        let i = ((all.latencies.len() as f64 - 1.0) * p).round() as usize;
        all.latencies[i]
    };
    let seconds = workload.duration.as_secs_f64();
    let ops = all.latencies.len() as u64;
    Ok(Outcome {
        ops,
        errors: all.errors,
        seconds,
        ops_per_sec: ops as f64 / seconds,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    })
}

fn ok(reply: &[u8]) -> bool {
    reply.starts_with(b"{\"ok\":true")
}

async fn client(
    socket: PathBuf,
    reqs: Arc<Requests>,
    w: Workload,
    seed: usize,
    measure_from: Instant,
    end: Instant,
) -> std::io::Result<Tally> {
    let mut tally = Tally::default();
    let mut n = seed.wrapping_mul(7919);
    let mut next = || {
        n = n.wrapping_add(1);
        let key = n % reqs.gets.len().max(1);
        // Spread sets evenly: request n is a set when n*p/100 crosses an integer.
        let is_set = (n as u64 * u64::from(w.set_percent)) / 100
            != ((n as u64 - 1) * u64::from(w.set_percent)) / 100;
        if is_set {
            &reqs.sets[key]
        } else {
            &reqs.gets[key]
        }
    };
    let mut reply = Vec::with_capacity(256);
    match w.mode {
        Mode::PerRequest => loop {
            let t0 = Instant::now();
            if t0 >= end {
                break;
            }
            let req = next();
            let mut s = UnixStream::connect(&socket).await?;
            s.write_all(req).await?;
            reply.clear();
            s.read_to_end(&mut reply).await?;
            record(&mut tally, t0, measure_from, ok(&reply));
        },
        Mode::KeepAlive => {
            let s = UnixStream::connect(&socket).await?;
            let (r, mut wr) = s.into_split();
            let mut r = BufReader::new(r);
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                wr.write_all(next()).await?;
                reply.clear();
                if r.read_until(b'\n', &mut reply).await? == 0 {
                    return Err(std::io::Error::other(
                        "the server closed a keep-alive connection",
                    ));
                }
                record(&mut tally, t0, measure_from, ok(&reply));
            }
        }
    }
    Ok(tally)
}

fn record(tally: &mut Tally, t0: Instant, measure_from: Instant, ok: bool) {
    if t0 < measure_from {
        return;
    }
    if ok {
        let us = t0.elapsed().as_micros();
        tally.latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
    } else {
        tally.errors += 1;
    }
}
