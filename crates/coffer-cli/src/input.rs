//! Reading secrets from a person or a pipe, never from argv.
//!
//! On a terminal, a hidden prompt on `/dev/tty`; otherwise standard input. What is read goes
//! into `SecretBytes`, and every buffer it passed through is zeroized.

use std::io::{self, BufRead, IsTerminal, Read};

use anyhow::{Context, bail};
use coffer_crypto::SecretBytes;
use zeroize::{Zeroize, Zeroizing};

/// Whether standard input is a terminal (so secrets are prompted for).
pub fn interactive() -> bool {
    io::stdin().is_terminal()
}

fn prompt(text: &str) -> anyhow::Result<SecretBytes> {
    let answer = rpassword::prompt_password(text).context("cannot read from the terminal")?;
    Ok(SecretBytes::from_string(answer))
}

fn strip_newline(mut s: SecretBytes) -> SecretBytes {
    let bytes = s.expose_secret();
    let cut = if bytes.ends_with(b"\r\n") {
        2
    } else if bytes.ends_with(b"\n") {
        1
    } else {
        0
    };
    let len = s.len() - cut;
    s.truncate(len);
    s
}

/// All of standard input, at most `max` bytes.
fn read_all(max: usize) -> anyhow::Result<SecretBytes> {
    let mut buf = Zeroizing::new(Vec::with_capacity(4096));
    let mut chunk = Zeroizing::new([0u8; 8192]);
    let mut stdin = io::stdin().lock();
    loop {
        let n = stdin
            .read(&mut chunk[..])
            .context("cannot read standard input")?;
        if n == 0 {
            break;
        }
        if buf.len() + n > max {
            bail!("standard input holds more than {max} bytes");
        }
        if buf.capacity() - buf.len() < n {
            let mut bigger = Vec::with_capacity((buf.capacity() * 2).max(buf.len() + n));
            bigger.extend_from_slice(&buf);
            buf.zeroize();
            *buf = bigger;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(SecretBytes::copy_from(&buf))
}

/// One line of standard input, without its newline.
fn read_line() -> anyhow::Result<SecretBytes> {
    let mut line = String::with_capacity(4096);
    let n = io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read standard input")?;
    if n == 0 {
        bail!("standard input ended before the expected line");
    }
    Ok(strip_newline(SecretBytes::from_string(line)))
}

/// A secret value for `set`: a hidden prompt, or all of standard input. `keep_newline` keeps
/// a final newline that `echo` and heredocs add (dropped by default). An empty value is
/// refused (`invalid_request`) unless `allow_empty`.
pub fn value(
    what: &str,
    keep_newline: bool,
    allow_empty: bool,
    max: usize,
) -> anyhow::Result<SecretBytes> {
    let v = if interactive() {
        prompt(&format!("Value for {what} (input hidden): "))?
    } else {
        let v = read_all(max)?;
        if keep_newline { v } else { strip_newline(v) }
    };
    if v.is_empty() && !allow_empty {
        let source = if interactive() {
            "nothing was entered"
        } else {
            "standard input was empty"
        };
        return Err(coffer_core::CoreError::InvalidRequest(format!(
            "the value for {what} is empty ({source}); nothing was stored. Give a value, \
             or pass --allow-empty to store an empty one"
        ))
        .into());
    }
    Ok(v)
}

/// A passphrase or key to unseal with: a hidden prompt, or the first line of standard input.
pub fn line_secret(prompt_text: &str) -> anyhow::Result<SecretBytes> {
    let v = if interactive() {
        prompt(prompt_text)?
    } else {
        read_line()?
    };
    if v.is_empty() {
        bail!("nothing entered");
    }
    Ok(v)
}

/// A new passphrase: asked twice on a terminal, one line of standard input otherwise.
pub fn new_passphrase() -> anyhow::Result<SecretBytes> {
    if !interactive() {
        let p = read_line()?;
        if p.is_empty() {
            bail!("the passphrase on standard input is empty");
        }
        return Ok(p);
    }
    let first = prompt("New passphrase (input hidden): ")?;
    if first.len() < 8 {
        bail!("the passphrase is shorter than 8 characters; choose a longer one");
    }
    let second = prompt("Repeat the passphrase: ")?;
    if !first.ct_eq(&second) {
        bail!("the two passphrases differ; nothing was changed");
    }
    Ok(first)
}

/// Asks the operator to type `phrase` to go on.
pub fn confirm(question: &str, phrase: &str) -> anyhow::Result<bool> {
    eprint!("{question}\nType '{phrase}' to continue: ");
    let typed = if interactive() {
        let mut line = String::new();
        io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the confirmation")?;
        line
    } else {
        let line = read_line()?;
        line.expose_str().unwrap_or_default().to_owned()
    };
    eprintln!();
    Ok(typed.trim() == phrase)
}
