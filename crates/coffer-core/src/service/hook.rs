//! A rotation hook: run with the new value on its standard input only, and what its end
//! means for the audit record.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use coffer_crypto::SecretBytes;
use coffer_types::Version;

use crate::cache::CacheKey;

/// How long a hook may run before it is killed and the rotation fails.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// How a hook ended.
pub(super) enum HookEnd {
    Ok,
    Failed(String),
}

/// Runs the hook with `value` on its standard input only, with the secret's namespace, name
/// and the new version number in its environment (nothing else of the daemon's), its output
/// discarded (it could echo the value), killed after [`HOOK_TIMEOUT`]. Blocking.
pub(super) fn run_hook(
    command: &str,
    key: &CacheKey,
    version: Version,
    value: &SecretBytes,
) -> HookEnd {
    use std::process::{Command, Stdio};
    // Checked again now: a file swapped or loosened since the policy named it is not run.
    if !crate::op::hook_path::trusted(command) {
        return HookEnd::Failed(
            "the hook is no longer a file only root or the daemon's user may change".to_owned(),
        );
    }
    let child = Command::new(command)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("COFFER_NAMESPACE", key.0.as_str())
        .env("COFFER_SECRET_NAME", key.1.as_str())
        .env("COFFER_VERSION", version.to_string())
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return HookEnd::Failed(format!("the hook could not be started ({})", e.kind())),
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its input gets a broken pipe here; its exit decides.
        let _ = stdin.write_all(value.expose_secret());
        drop(stdin);
    }
    let start = std::time::Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                use std::os::unix::process::ExitStatusExt;
                return match (status.code(), status.signal()) {
                    (Some(0), _) => HookEnd::Ok,
                    (Some(code), _) => {
                        HookEnd::Failed(format!("the hook exited with status {code}"))
                    }
                    (None, Some(sig)) => {
                        HookEnd::Failed(format!("the hook was killed by signal {sig}"))
                    }
                    (None, None) => HookEnd::Failed("the hook ended abnormally".to_owned()),
                };
            }
            Ok(None) if start.elapsed() >= HOOK_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return HookEnd::Failed(format!(
                    "the hook did not finish within {} seconds",
                    HOOK_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return HookEnd::Failed(format!("the hook could not be waited for ({})", e.kind()));
            }
        }
    }
}

/// The audit record's `gate` for a failure reason: a short fixed word (the record keeps
/// static words only; the full reason is in the secret's rotation state). Exit statuses and
/// signals are few, so each is made once and kept.
pub(super) fn reason_word(reason: &str) -> &'static str {
    static WORDS: Mutex<Option<HashMap<String, &'static str>>> = Mutex::new(None);
    let word = reason
        .strip_prefix("the hook exited with status ")
        .map(|c| format!("hook_exit_{c}"))
        .or_else(|| {
            reason
                .strip_prefix("the hook was killed by signal ")
                .map(|s| format!("hook_signal_{s}"))
        });
    let Some(word) = word.filter(|w| w.len() <= 24) else {
        return if reason.contains("within") {
            "hook_timeout"
        } else if reason.contains("stopped") {
            "hook_interrupted"
        } else if reason.contains("write came after") {
            "rotation_superseded"
        } else {
            "hook_failed"
        };
    };
    let mut words = WORDS.lock().unwrap_or_else(PoisonError::into_inner);
    let words = words.get_or_insert_with(HashMap::new);
    if let Some(w) = words.get(&word) {
        return w;
    }
    // At most 256 exit statuses and 64 signals: a bounded set of small strings.
    let leaked: &'static str = Box::leak(word.clone().into_boxed_str());
    words.insert(word, leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_words_are_short_and_fixed() {
        assert_eq!(reason_word("the hook exited with status 1"), "hook_exit_1");
        assert_eq!(reason_word("the hook exited with status 1"), "hook_exit_1");
        assert_eq!(
            reason_word("the hook was killed by signal 9"),
            "hook_signal_9"
        );
        assert_eq!(
            reason_word("the hook did not finish within 60 seconds"),
            "hook_timeout"
        );
    }
}
