//! Scheduled backups (`[backup]` in the configuration file): what is made, where, how often,
//! and how many are kept. The daemon's loop is `Service::start_backups`; this module holds
//! the parts that touch only the backup directory: file names, due times and retention.
//!
//! A scheduled backup is `DIR/coffer-backup-YYYYMMDDTHHMMSSZ.age` (UTC), written as every
//! backup is (a temporary file beside it, synced, renamed). File names sort by time, so the
//! newest file tells when the last backup was made, across restarts, and retention removes
//! the oldest beyond `keep`. Only files of that exact form are ever removed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use coffer_types::Timestamp;

use super::Recipients;

/// The prefix of a scheduled backup's file name.
const PREFIX: &str = "coffer-backup-";
/// The suffix of a scheduled backup's file name.
const SUFFIX: &str = ".age";
/// The shortest interval accepted.
pub const MIN_EVERY: Duration = Duration::from_secs(1);
/// Backups kept when the configuration does not say.
pub const DEFAULT_KEEP: usize = 14;

/// The `[backup]` section, checked.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// How often a backup is made.
    pub every: Duration,
    /// Where backups are written (created 0700 when missing).
    pub dir: PathBuf,
    /// Whom they are encrypted to (X25519 recipients: a schedule holds no passphrase).
    pub recipients: Arc<Recipients>,
    /// How many scheduled backups are kept (the newest); at least 1.
    pub keep: usize,
}

impl Schedule {
    /// A schedule from the configuration's values; errors say which value is wrong.
    pub fn new(
        every: Duration,
        dir: PathBuf,
        recipients: &[String],
        keep: usize,
    ) -> Result<Self, String> {
        if every < MIN_EVERY {
            return Err(format!(
                "every = {every:?} is shorter than the shortest interval, {MIN_EVERY:?}"
            ));
        }
        if !dir.is_absolute() {
            return Err(format!(
                "dir = {:?} must be an absolute path",
                dir.display()
            ));
        }
        if keep == 0 {
            return Err("keep must be at least 1".to_owned());
        }
        let recipients = Recipients::parse(recipients).map_err(|e| e.to_string())?;
        Ok(Self {
            every,
            dir,
            recipients: Arc::new(recipients),
            keep,
        })
    }

    /// The file a backup made at `at` is written to.
    pub fn file_for(&self, at: Timestamp) -> PathBuf {
        self.dir.join(file_name(at))
    }

    /// The scheduled backups in the directory, oldest first (an unreadable or missing
    /// directory has none).
    pub fn existing(&self) -> Vec<(Timestamp, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found: Vec<(Timestamp, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name();
                let at = parse_name(name.to_str()?)?;
                Some((at, e.path()))
            })
            .collect();
        found.sort();
        found
    }

    /// When the next backup is due: `every` after the newest scheduled backup in the
    /// directory, or now when there is none (or its time is in the future: a clock set back).
    pub fn next_due(&self, now: Timestamp) -> Timestamp {
        match self.existing().last() {
            Some((at, _)) if *at <= now => Timestamp::from_millis(
                at.as_millis()
                    .saturating_add(i64::try_from(self.every.as_millis()).unwrap_or(i64::MAX)),
            ),
            _ => now,
        }
    }

    /// Removes the oldest scheduled backups beyond `keep`, and temporary files a killed
    /// backup left; answers the files removed.
    pub fn prune(&self) -> Vec<PathBuf> {
        let existing = self.existing();
        let surplus = existing.len().saturating_sub(self.keep);
        let mut removed = Vec::new();
        for (_, path) in existing.into_iter().take(surplus) {
            match std::fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(e) => tracing::warn!(
                    path = %path.display(), error = %e,
                    "an old scheduled backup could not be removed"
                ),
            }
        }
        removed
    }

    /// Removes the temporary files of scheduled backups a killed daemon left behind (call
    /// before the first backup, when none is being written).
    pub fn remove_leftovers(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            let leftover = name
                .strip_prefix('.')
                .and_then(|n| n.split_once(".partial-"))
                .is_some_and(|(file, _)| parse_name(file).is_some());
            if leftover {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// `coffer-backup-YYYYMMDDTHHMMSSZ.age` for `at`.
pub fn file_name(at: Timestamp) -> String {
    let secs = at.as_millis() / 1000;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{PREFIX}{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z{SUFFIX}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The time in a scheduled backup's file name; `None` for any other name.
fn parse_name(name: &str) -> Option<Timestamp> {
    let stamp = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let b = stamp.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = stamp.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let secs = days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss;
    let at = Timestamp::from_millis(secs.checked_mul(1000)?);
    // Only a name this module writes: 31 February does not round-trip.
    (file_name(at) == name).then_some(at)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (the inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// Where a directory for backups is made when missing.
pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_by_time() {
        for ms in [0i64, 951_782_400_000, 1_796_000_000_000, 4_102_444_799_000] {
            let at = Timestamp::from_millis(ms);
            let name = file_name(at);
            assert_eq!(parse_name(&name), Some(at), "{name}");
        }
        assert_eq!(
            file_name(Timestamp::from_millis(1_764_572_400_000)),
            "coffer-backup-20251201T070000Z.age"
        );
        let (a, b) = (
            file_name(Timestamp::from_millis(1_000_000_000_000)),
            file_name(Timestamp::from_millis(1_000_000_001_000)),
        );
        assert!(a < b);
    }

    #[test]
    fn other_names_are_not_backups() {
        for name in [
            "coffer-backup-20261301T000000Z.age",
            "coffer-backup-20260231T000000Z.age",
            "coffer-backup-2026120T1000000Z.age",
            "coffer-backup-20261201T000000Z.age.bak",
            "important.age",
            "coffer-backup-+0261201T000000Z.age",
        ] {
            assert_eq!(parse_name(name), None, "{name}");
        }
    }

    #[test]
    fn retention_keeps_the_newest_and_touches_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let key = age::x25519::Identity::generate().to_public().to_string();
        let s = Schedule::new(Duration::from_secs(60), dir.path().into(), &[key], 2).unwrap();
        for ms in [1_000_000_000_000i64, 1_000_000_060_000, 1_000_000_120_000] {
            std::fs::write(s.file_for(Timestamp::from_millis(ms)), b"x").unwrap();
        }
        std::fs::write(dir.path().join("mine.age"), b"x").unwrap();
        let leftover = dir.path().join(format!(
            ".{}.partial-abcdef",
            file_name(Timestamp::from_millis(5))
        ));
        std::fs::write(&leftover, b"x").unwrap();
        let removed = s.prune();
        assert_eq!(removed.len(), 1);
        assert_eq!(s.existing().len(), 2);
        assert_eq!(
            s.next_due(Timestamp::from_millis(1_000_000_130_000)),
            Timestamp::from_millis(1_000_000_180_000)
        );
        s.remove_leftovers();
        assert!(!leftover.exists());
        assert!(dir.path().join("mine.age").exists());
    }

    #[test]
    fn bad_values_are_refused() {
        let key = age::x25519::Identity::generate().to_public().to_string();
        let keys = [key];
        assert!(Schedule::new(Duration::from_millis(10), "/b".into(), &keys, 1).is_err());
        assert!(Schedule::new(Duration::from_secs(9), "rel".into(), &keys, 1).is_err());
        assert!(Schedule::new(Duration::from_secs(9), "/b".into(), &keys, 0).is_err());
        assert!(Schedule::new(Duration::from_secs(9), "/b".into(), &[], 1).is_err());
        assert!(
            Schedule::new(Duration::from_secs(9), "/b".into(), &["age1nope".into()], 1).is_err()
        );
    }
}
