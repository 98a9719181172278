//! The checkpoint's anchor in a monotonic counter (a TPM NV counter, where a TPM is present):
//! the checkpoint records the counter value it was written under, so an audit directory
//! rolled back together with its anchor copy (or both deleted) is detected at unseal.
//!
//! The daemon hands the log an [`AuditCounter`]; this crate knows nothing of TPMs.
//!
//! Order of writes, so that a kill -9 at any moment never raises a false alarm:
//! - First use (the counter is missing or was never incremented): define it, write the
//!   checkpoint marked `pending`, increment the counter (its first value is chosen by the
//!   TPM), then write the checkpoint with that value.
//! - An advance (at most once per `counter_interval` when records were checkpointed since
//!   the last one, and at shutdown and seal): write the checkpoint with the value V+1 first,
//!   then increment the counter from V to V+1.
//! - Any other checkpoint carries the counter's current value V.
//!
//! So at rest the newest checkpoint's counter C and the TPM's value V satisfy C == V, or
//! C == V + 1 (killed between the write and the increment; the check at open then does the
//! increment), or C is `pending` (killed during first use). A TPM value V > C means the
//! checkpoint is older than one the daemon wrote: the directory and its anchor were rolled
//! back (or deleted: no checkpoint while V exists). See `judge`.

use std::fmt;

/// Where a counter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterState {
    /// Not defined.
    Missing,
    /// Defined, never incremented.
    Unset,
    /// Its value.
    At(u64),
}

/// A monotonic counter the checkpoint is anchored in (the daemon's is the TPM's NV counter,
/// `coffer_tpm::NvCounter`). Calls block; they are made from the syncer thread and at
/// unseal, never per record.
pub trait AuditCounter: Send + Sync + fmt::Debug {
    /// Where the counter stands.
    fn state(&self) -> Result<CounterState, String>;
    /// Defines it when missing.
    fn define(&self) -> Result<(), String>;
    /// Increments it; answers the new value.
    fn increment(&self) -> Result<u64, String>;
    /// What it is, for messages ("TPM NV counter 0x01530000").
    fn describe(&self) -> String;
}

/// The counter value a checkpoint was written under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Count {
    /// First use: the counter's first value was not known yet.
    Pending,
    /// The value.
    At(u64),
}

impl Count {
    pub(crate) fn text(self) -> String {
        match self {
            Self::Pending => "pending".to_owned(),
            Self::At(v) => v.to_string(),
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            digits if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                digits.parse().ok().map(Self::At)
            }
            _ => None,
        }
    }
}

/// What the check at open concludes from the counter and the newest checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Consistent; the counter's value (`None`: first use still to be done) and whether the
    /// interrupted increment of an advance must be done now.
    Fine { value: Option<u64>, finish: bool },
    /// Rolled back or deleted: what to tell the operator, and the counter's value.
    Rolled { missing: String, value: Option<u64> },
}

/// Judges the counter against the newest checkpoint's count (`None` inside: a checkpoint
/// without one; `cp` `None`: no checkpoint at all).
pub(crate) fn judge(state: CounterState, cp: Option<Option<Count>>) -> Verdict {
    let count = cp.flatten();
    let rolled = |missing: String, value| Verdict::Rolled { missing, value };
    match (state, count) {
        (CounterState::Missing, Some(c)) => rolled(
            format!(
                "the TPM counter is gone (the checkpoint was written under {}): it was \
                 undefined, or this is another TPM",
                c.text()
            ),
            None,
        ),
        (CounterState::Unset, Some(Count::At(m))) => rolled(
            format!(
                "the TPM counter was redefined (never incremented; the checkpoint was written \
                 under {m})"
            ),
            None,
        ),
        (CounterState::Missing | CounterState::Unset, _) => Verdict::Fine {
            value: None,
            finish: false,
        },
        (CounterState::At(v), None) => rolled(
            match cp {
                None => format!("deleted: TPM counter {v}, no checkpoint"),
                Some(_) => format!("rolled back: TPM counter {v}, checkpoint from before it"),
            },
            Some(v),
        ),
        (CounterState::At(v), Some(Count::Pending)) => Verdict::Fine {
            value: Some(v),
            finish: false,
        },
        (CounterState::At(v), Some(Count::At(m))) if m == v => Verdict::Fine {
            value: Some(v),
            finish: false,
        },
        (CounterState::At(v), Some(Count::At(m))) if Some(m) == v.checked_add(1) => Verdict::Fine {
            value: Some(v),
            finish: true,
        },
        (CounterState::At(v), Some(Count::At(m))) if m < v => rolled(
            format!("rolled back: TPM counter {v}, checkpoint {m}"),
            Some(v),
        ),
        (CounterState::At(v), Some(Count::At(m))) => rolled(
            format!(
                "the TPM counter ({v}) is behind the checkpoint ({m}): another TPM, or the \
                 counter was redefined"
            ),
            Some(v),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fine(v: Option<u64>, finish: bool) -> Verdict {
        Verdict::Fine { value: v, finish }
    }

    #[test]
    fn every_crash_point_is_fine_and_every_rollback_is_not() {
        use CounterState::*;
        // First use: before the define, after it, after the pending checkpoint, after the
        // first increment, after the first valued checkpoint.
        assert_eq!(judge(Missing, None), fine(None, false));
        assert_eq!(judge(Missing, Some(None)), fine(None, false));
        assert_eq!(judge(Unset, Some(None)), fine(None, false));
        assert_eq!(judge(Unset, Some(Some(Count::Pending))), fine(None, false));
        assert_eq!(
            judge(At(7), Some(Some(Count::Pending))),
            fine(Some(7), false)
        );
        assert_eq!(judge(At(7), Some(Some(Count::At(7)))), fine(Some(7), false));
        // An advance: written, not yet incremented.
        assert_eq!(judge(At(7), Some(Some(Count::At(8)))), fine(Some(7), true));
        // Rollbacks and deletions.
        assert!(
            matches!(judge(At(9), Some(Some(Count::At(7)))), Verdict::Rolled { ref missing, .. } if missing == "rolled back: TPM counter 9, checkpoint 7")
        );
        assert!(
            matches!(judge(At(9), None), Verdict::Rolled { ref missing, .. } if missing.starts_with("deleted"))
        );
        assert!(matches!(judge(At(9), Some(None)), Verdict::Rolled { .. }));
        assert!(matches!(
            judge(Missing, Some(Some(Count::At(3)))),
            Verdict::Rolled { .. }
        ));
        assert!(matches!(
            judge(Unset, Some(Some(Count::At(3)))),
            Verdict::Rolled { .. }
        ));
        assert!(matches!(
            judge(At(1), Some(Some(Count::At(3)))),
            Verdict::Rolled { .. }
        ));
        assert!(matches!(
            judge(At(u64::MAX), Some(Some(Count::At(3)))),
            Verdict::Rolled { .. }
        ));
    }

    #[test]
    fn counts_round_trip() {
        for c in [Count::Pending, Count::At(0), Count::At(u64::MAX)] {
            assert_eq!(Count::parse(&c.text()), Some(c));
        }
        assert_eq!(Count::parse(""), None);
        assert_eq!(Count::parse("-1"), None);
        assert_eq!(Count::parse("+1"), None);
    }
}
