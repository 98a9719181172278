//! Durations as requests give them: a number of seconds, or text such as `90s`, `3h25m19s`,
//! `768h`, `30d` (Go's and humantime's forms, which Vault's clients send). Parsing never
//! panics; the operation layer bounds what it accepts ([`MAX_SECONDS`]).

/// The longest duration any setting takes: 100 years. Times computed from it stay far
/// inside the range of a [`crate::Timestamp`].
pub const MAX_SECONDS: u64 = 100 * 365 * 24 * 3600;

/// A duration that is not a number of seconds or a duration's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a duration: give a number of seconds or text such as 90s, 3h25m19s or 30d")]
pub struct DurationError;

/// Parses a duration's text into whole seconds (empty text: 0). A fraction of a second
/// rounds up, so a short duration never reads as 0 (which settings take as "never").
pub fn parse_seconds(text: &str) -> Result<u64, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    if let Ok(n) = text.parse::<u64>() {
        return Ok(n);
    }
    let d = humantime::parse_duration(text).map_err(|_| DurationError)?;
    d.as_secs()
        .checked_add(u64::from(d.subsec_nanos() > 0))
        .ok_or(DurationError)
}

/// Go's duration text (`3h25m19s`, `0s`), which Vault's clients parse.
pub fn go_text(secs: u64) -> String {
    if secs == 0 {
        return "0s".to_owned();
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}s"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_write_as_vault_clients_expect() {
        assert_eq!(parse_seconds("3h25m19s"), Ok(12_319));
        assert_eq!(parse_seconds("768h"), Ok(768 * 3600));
        assert_eq!(parse_seconds(" 30 "), Ok(30));
        assert_eq!(parse_seconds(""), Ok(0));
        assert_eq!(parse_seconds("30d"), Ok(30 * 86_400));
        assert_eq!(parse_seconds("500ms"), Ok(1));
        assert_eq!(parse_seconds("1s 1ms"), Ok(2));
        assert!(parse_seconds("18446744073709551615s 1ns").is_err());
        assert!(parse_seconds("soon").is_err());
        // Huge values parse (or fail) without panicking; the operation layer bounds them.
        let _ = parse_seconds("99999999999999h");
        let _ = parse_seconds("999999999999999999999999h");
        assert_eq!(go_text(0), "0s");
        assert_eq!(go_text(12_319), "3h25m19s");
        assert_eq!(go_text(3600), "1h0m0s");
    }
}
