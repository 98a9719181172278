//! Timestamps as stored (Unix milliseconds) and shown (RFC 3339).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time, in milliseconds since the Unix epoch. Serialized as RFC 3339 text
/// (`2026-11-22T18:02:00.123Z`); read from that or from a number of milliseconds.
///
/// Every timestamp lies between 1970 and the end of 9999 (what RFC 3339 text, as written
/// here, can show): values outside are clamped when made, so arithmetic on them and their
/// text can never overflow or panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The earliest timestamp: the Unix epoch.
    pub const MIN: Timestamp = Timestamp(0);
    /// The latest timestamp: 9999-12-31T23:59:59.999Z.
    pub const MAX: Timestamp = Timestamp(253_402_300_799_999);

    /// The current time.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// From Unix milliseconds, clamped to [`Timestamp::MIN`]..=[`Timestamp::MAX`].
    pub const fn from_millis(ms: i64) -> Self {
        if ms < Self::MIN.0 {
            Self::MIN
        } else if ms > Self::MAX.0 {
            Self::MAX
        } else {
            Self(ms)
        }
    }

    /// This time plus `seconds`, saturating at [`Timestamp::MAX`].
    pub fn saturating_add_secs(self, seconds: u64) -> Self {
        let ms = i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
        Self::from_millis(self.0.saturating_add(ms))
    }

    /// As Unix milliseconds.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// As a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        // Never negative: construction clamps at the epoch.
        UNIX_EPOCH + Duration::from_millis(self.0.unsigned_abs())
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self::from_millis(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Err(e) => {
                Self::from_millis(-i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX))
            }
        }
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with milliseconds, e.g. `2026-11-22T18:02:00.123Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_rfc3339_millis(self.to_system_time()).fmt(f)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Either<'a> {
            Millis(i64),
            Text(std::borrow::Cow<'a, str>),
        }
        match Either::deserialize(d)? {
            Either::Millis(ms) => Ok(Self::from_millis(ms)),
            Either::Text(t) => humantime::parse_rfc3339(&t)
                .map(Self::from)
                .map_err(|_| serde::de::Error::custom("not an RFC 3339 time")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extremes_clamp_and_format_without_panicking() {
        assert_eq!(Timestamp::from_millis(i64::MAX), Timestamp::MAX);
        assert_eq!(Timestamp::from_millis(i64::MIN), Timestamp::MIN);
        assert_eq!(Timestamp::MAX.to_string(), "9999-12-31T23:59:59.999Z");
        assert_eq!(Timestamp::MIN.to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp::now().saturating_add_secs(u64::MAX),
            Timestamp::MAX
        );
        let far: Timestamp = serde_json::from_str(&i64::MAX.to_string()).unwrap();
        assert_eq!(far, Timestamp::MAX);
    }

    #[test]
    fn formats_as_rfc3339() {
        assert_eq!(
            Timestamp::from_millis(1_700_000_000_123).to_string(),
            "2023-11-14T22:13:20.123Z"
        );
        let now = Timestamp::now();
        assert_eq!(Timestamp::from(now.to_system_time()), now);
        let json = serde_json::to_string(&now).unwrap();
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), now);
        assert_eq!(
            serde_json::from_str::<Timestamp>("1700000000123").unwrap(),
            Timestamp::from_millis(1_700_000_000_123)
        );
    }
}
