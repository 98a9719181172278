//! The log on standard error: text for people (default) or one JSON object a line for log
//! collectors (`--log-format json`, `COFFER_LOG_FORMAT=json`, or `log_format = "json"` in
//! the configuration file). Either way the events are the same, and none carries a value.

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (colored on a terminal).
    Text,
    /// One JSON object a line: `timestamp`, `level`, `fields` (`message` among them),
    /// `target`.
    Json,
}

/// Starts the log with `default` as the filter unless `COFFER_LOG` names one.
pub fn init(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("COFFER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .init(),
        LogFormat::Json => builder
            .json()
            .with_ansi(false)
            .with_target(true)
            .with_current_span(false)
            .init(),
    }
}
