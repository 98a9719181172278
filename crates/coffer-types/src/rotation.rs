//! Scheduled rotation: a generated secret's policy (how often, which hook, how long the
//! previous version stays readable) and its state (when it is next due, a version waiting
//! for its hook, the last outcome). Kept in the secret's sealed metadata; never a value.

use crate::{GeneratorSpec, Timestamp, Version};

/// How a secret is rotated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RotationPolicy {
    /// Seconds between rotations (at least 1).
    pub every: u64,
    /// An absolute path to an executable run with the new value on its standard input; exit 0
    /// makes the new version current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Seconds after a rotation during which the version before it is readable as `previous`
    /// (0: not at all).
    #[serde(default)]
    pub grace: u64,
    /// What each rotation mints.
    pub spec: GeneratorSpec,
}

/// How the last rotation ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RotationOutcome {
    /// When it ended.
    pub time: Timestamp,
    /// `rotated` or `failed`.
    pub outcome: String,
    /// The version it made (current when rotated, dropped when failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    /// Why it failed (the hook's exit status, a timeout), never a value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl RotationOutcome {
    /// The outcome word of a rotation that made a version current.
    pub const ROTATED: &'static str = "rotated";
    /// The outcome word of a rotation whose version was dropped.
    pub const FAILED: &'static str = "failed";
}

/// A secret's rotation policy and state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RotationInfo {
    /// The policy.
    pub policy: RotationPolicy,
    /// When the next rotation is due.
    pub next_due: Timestamp,
    /// A version written by a rotation and waiting for its hook: not served by a plain read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Version>,
    /// The version a plain read serves when it is not the newest (while a version is
    /// pending, or after a pending version was dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<Version>,
    /// The version before the last rotation, readable as `previous` until `previous_until`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Version>,
    /// The end of the grace period of `previous`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_until: Option<Timestamp>,
    /// How the last rotation ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<RotationOutcome>,
}

impl RotationInfo {
    /// A new policy's state: first due one period after `now`.
    pub fn new(policy: RotationPolicy, now: Timestamp) -> Self {
        Self {
            next_due: now.saturating_add_secs(policy.every),
            policy,
            pending: None,
            serving: None,
            previous: None,
            previous_until: None,
            last: None,
        }
    }

    /// The due time after a rotation made at `now` for the period due at `due`: the first
    /// period end after `now`, so a daemon that was down for many periods rotates once and
    /// then keeps the original rhythm.
    pub fn advance(&self, due: Timestamp, now: Timestamp) -> Timestamp {
        let every_ms =
            i64::try_from(self.policy.every.max(1).saturating_mul(1000)).unwrap_or(i64::MAX);
        let late = now.as_millis().saturating_sub(due.as_millis()).max(0);
        let periods = late / every_ms + 1;
        Timestamp::from_millis(
            due.as_millis()
                .saturating_add(periods.saturating_mul(every_ms)),
        )
    }

    /// The version readable as `previous` at `now`, if the grace period still runs.
    pub fn previous_at(&self, now: Timestamp) -> Option<Version> {
        match (self.previous, self.previous_until) {
            (Some(v), Some(until)) if now < until => Some(v),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_rotation_catches_up_once_and_keeps_the_rhythm() {
        let policy = RotationPolicy {
            every: 10,
            command: None,
            grace: 0,
            spec: GeneratorSpec::default(),
        };
        let info = RotationInfo::new(policy, Timestamp::from_millis(0));
        assert_eq!(info.next_due, Timestamp::from_millis(10_000));
        let due = info.next_due;
        // On time.
        assert_eq!(
            info.advance(due, Timestamp::from_millis(10_500)),
            Timestamp::from_millis(20_000)
        );
        // Down for three and a half periods: one rotation, next due at the next boundary.
        assert_eq!(
            info.advance(due, Timestamp::from_millis(45_000)),
            Timestamp::from_millis(50_000)
        );
    }
}
