//! Retention: after a rotation, the oldest audit files beyond `keep_files` or
//! `max_total_bytes` are removed (never the current file).
//!
//! Before any file is removed, a MAC'd `retention` record is written and synced, naming the
//! seq the log will start with (`"oldest"`) and the files removed. The verifier accepts a log
//! that does not start at record 1 only when its newest `retention` record names exactly the
//! seq it starts with: files removed by retention are not a gap, files removed by hand are
//! detected. A crash between the record and the removal leaves older files in place, which
//! verifies too (the log then still starts at record 1, or at an older retention's seq).

use std::path::Path;

use crate::AuditError;
use crate::chain::{self, AuditFile};

/// The files to remove so the limits hold again, oldest first, and the seq the log starts
/// with afterwards.
fn plan(
    dir: &Path,
    current: &Path,
    keep_files: usize,
    max_total_bytes: u64,
) -> Result<(Vec<(AuditFile, u64)>, u64), AuditError> {
    let mut files = Vec::new();
    for f in chain::list(dir)? {
        let len = std::fs::metadata(&f.path).map_or(0, |m| m.len());
        files.push((f, len));
    }
    let mut total: u64 = files.iter().map(|(_, len)| len).sum();
    let mut count = files.len();
    let mut victims = Vec::new();
    for (f, len) in files {
        let over = (keep_files > 0 && count > keep_files)
            || (max_total_bytes > 0 && total > max_total_bytes);
        if !over || f.path == current {
            break;
        }
        total -= len;
        count -= 1;
        victims.push((f, len));
    }
    let oldest = chain::list(dir)?
        .into_iter()
        .find(|f| !victims.iter().any(|(v, _)| v.path == f.path))
        .map_or(0, |f| f.first_seq);
    Ok((victims, oldest))
}

/// What retention is to do.
pub(crate) struct Due {
    /// The files to remove, oldest first, with their sizes.
    pub(crate) victims: Vec<(AuditFile, u64)>,
    /// The seq the log starts with afterwards.
    pub(crate) oldest: u64,
    /// The body of the `retention` record announcing it.
    pub(crate) body: Vec<u8>,
}

/// What retention is to do; `None` when the limits hold.
pub(crate) fn prepare(
    dir: &Path,
    current: &Path,
    keep_files: usize,
    max_total_bytes: u64,
) -> Result<Option<Due>, AuditError> {
    let (victims, oldest) = plan(dir, current, keep_files, max_total_bytes)?;
    if victims.is_empty() {
        return Ok(None);
    }
    let removed: Vec<String> = victims
        .iter()
        .map(|(f, _)| chain::file_name(f.first_seq))
        .collect();
    let body = serde_json::json!({
        "time": coffer_types::Timestamp::now(),
        "event": "retention",
        "oldest": oldest,
        "removed": removed,
    });
    let body = serde_json::to_vec(&body).map_err(|e| AuditError::Encode {
        reason: e.to_string(),
    })?;
    Ok(Some(Due {
        victims,
        oldest,
        body,
    }))
}

/// Removes the files once their `retention` record is written and synced.
pub(crate) fn remove(dir: &Path, victims: &[(AuditFile, u64)]) -> Result<(), AuditError> {
    for (f, len) in victims {
        std::fs::remove_file(&f.path).map_err(|e| AuditError::unavailable(&f.path, &e))?;
        tracing::info!(path = %f.path.display(), bytes = len, "audit file removed by retention");
    }
    crate::checkpoint::sync_dir(dir).map_err(|e| AuditError::unavailable(dir, &e))
}
