//! Which endpoints a webhook may have: `https://`, or `http://` to loopback only.

use std::net::IpAddr;

/// The longest endpoint URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// Checks an endpoint: `https://`, or `http://` only to a loopback address (127.0.0.0/8,
/// ::1, localhost); no credentials in it, no fragment, no spaces.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!(
            "the webhook URL is longer than {MAX_URL_LEN} bytes"
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) || url.contains('#') {
        return Err("the webhook URL may not hold spaces, control characters or a fragment".into());
    }
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err("the webhook URL must start with https:// (or http:// to loopback)".into());
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.contains('@') {
        return Err("the webhook URL may not carry credentials (user@host)".into());
    }
    let host = host_of(authority).ok_or("the webhook URL has no host")?;
    if !https && !is_loopback(host) {
        return Err(
            "plain http:// is only allowed to a loopback address (127.0.0.0/8, ::1, \
             localhost); use https:// for any other host"
                .to_owned(),
        );
    }
    Ok(())
}

/// The host of an authority (`host`, `host:port`, `[v6]:port`), without brackets.
pub fn host_of(authority: &str) -> Option<&str> {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.split(':').next()?,
    };
    (!host.is_empty()).then_some(host)
}

/// Whether `host` is loopback: `localhost`, 127.0.0.0/8 or ::1.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
