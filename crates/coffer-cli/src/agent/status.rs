//! The agent's state: a JSON status file (what `coffer agent status` prints, and the revision
//! a restarted agent resumes after) and a Prometheus text file beside it (node_exporter's
//! textfile collector). Neither ever holds a value.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use coffer_types::Timestamp;
use serde::{Deserialize, Serialize};

use super::sink::Used;
use super::write::{Target, write};

/// The whole status file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// The agent.
    pub agent: AgentState,
    /// Each sink, in configuration order.
    pub sinks: Vec<SinkState>,
}

/// The agent itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentState {
    /// Its process id.
    pub pid: u32,
    /// Its configuration file.
    pub config: String,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// Whether every watch is open.
    pub connected: bool,
    /// Since when the daemon is unreachable, while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable_since: Option<Timestamp>,
    /// Why, while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable_error: Option<String>,
    /// The last store revision seen: a restarted agent resumes after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// The `[exec]` command's pid, while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_pid: Option<u32>,
    /// Whether it has ended (SIGTERM, SIGINT, or `--once` done).
    #[serde(default)]
    pub stopped: bool,
}

/// A sink's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SinkState {
    /// `file` or `template`.
    pub sink: String,
    /// Its destination.
    pub destination: String,
    /// The last successful render.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendered_at: Option<Timestamp>,
    /// The last time the file changed (written or removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<Timestamp>,
    /// The secret versions of the last successful render.
    #[serde(default)]
    pub versions: Vec<Used>,
    /// The last render's error, while it stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ErrorState>,
    /// Renders attempted.
    pub renders: u64,
    /// Renders that failed.
    pub errors: u64,
    /// Times the file was written or removed.
    pub changes: u64,
}

/// An error, as the status shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorState {
    /// A stable word: the daemon's code, `unreachable`, `invalid`, `write`, `render`.
    pub code: String,
    /// What happened.
    pub message: String,
    /// When.
    pub at: Timestamp,
}

impl State {
    /// Reads a status file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read(path)
            .with_context(|| format!("cannot read the agent's status file {}", path.display()))?;
        serde_json::from_slice(&text)
            .with_context(|| format!("the agent's status file {} is not valid", path.display()))
    }

    /// Writes the status file and the metrics file, each atomically.
    pub fn save(&self, status: &Path, metrics: &Path) -> anyhow::Result<()> {
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        write(&Target::own(status), &json)?;
        write(&Target::own(metrics), self.metrics().as_bytes())?;
        Ok(())
    }

    /// The Prometheus text exposition.
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        type Counter = fn(&SinkState) -> u64;
        let per_sink: [(&str, &str, Counter); 3] = [
            ("coffer_agent_renders_total", "Renders attempted.", |s| {
                s.renders
            }),
            (
                "coffer_agent_render_errors_total",
                "Renders that failed.",
                |s| s.errors,
            ),
            (
                "coffer_agent_changes_total",
                "Times the destination was written or removed.",
                |s| s.changes,
            ),
        ];
        for (name, help, get) in per_sink {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for s in &self.sinks {
                let _ = writeln!(
                    out,
                    "{name}{{destination=\"{}\"}} {}",
                    label(&s.destination),
                    get(s)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP coffer_agent_sink_ok Whether the last render succeeded.\n# TYPE coffer_agent_sink_ok gauge"
        );
        for s in &self.sinks {
            let ok = u8::from(s.last_error.is_none() && s.rendered_at.is_some());
            let _ = writeln!(
                out,
                "coffer_agent_sink_ok{{destination=\"{}\"}} {ok}",
                label(&s.destination)
            );
        }
        let _ = writeln!(
            out,
            "# HELP coffer_agent_last_revision The last store revision the agent saw.\n# TYPE coffer_agent_last_revision gauge\ncoffer_agent_last_revision {}",
            self.agent.revision.unwrap_or(0)
        );
        let _ = writeln!(
            out,
            "# HELP coffer_agent_connected Whether the agent follows the daemon's changes.\n# TYPE coffer_agent_connected gauge\ncoffer_agent_connected {}",
            u8::from(self.agent.connected)
        );
        out
    }
}

/// A label value escaped for the text format.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `coffer agent status`'s table.
pub fn table(state: &State, running: bool) -> String {
    let mut out = String::new();
    let a = &state.agent;
    let _ = writeln!(
        out,
        "agent: pid {} {}",
        a.pid,
        if running { "running" } else { "not running" }
    );
    if let Some(pid) = a.exec_pid {
        let _ = writeln!(out, "command: pid {pid}");
    }
    match (&a.unreachable_since, a.connected) {
        (_, true) => {
            let _ = writeln!(out, "daemon: connected");
        }
        (Some(t), false) => {
            let _ = writeln!(
                out,
                "daemon: unreachable since {t}{}",
                a.unreachable_error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            );
        }
        (None, false) => {
            let _ = writeln!(out, "daemon: not connected");
        }
    }
    let _ = writeln!(
        out,
        "revision: {}",
        a.revision.map_or_else(|| "-".to_owned(), |r| r.to_string())
    );
    let rows: Vec<[String; 5]> = state
        .sinks
        .iter()
        .map(|s| {
            [
                s.destination.clone(),
                s.rendered_at
                    .map_or_else(|| "never".to_owned(), |t| t.to_string()),
                s.versions
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                s.changes.to_string(),
                s.last_error
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |e| format!("{}: {}", e.code, e.message)),
            ]
        })
        .collect();
    let header = ["DESTINATION", "RENDERED", "FROM", "CHANGES", "ERROR"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(header.map(str::to_owned)).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == header.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}
