//! Gate 4: a token bucket per identity (a uid, or a token's accessor), so one noisy caller
//! is refused with `rate_limited` while every other is served as before (reference 003's
//! per-requester limit). Buckets of callers gone quiet are dropped now and then, so the map
//! does not grow without bound.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::{DefaultKeyedRateLimiter, Quota};

/// Who a bucket belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// A socket peer without a token.
    Uid(u32),
    /// A token.
    Token(String),
    /// A systemd unit asking through the credentials socket (never exempt).
    Unit(String),
}

/// Rate limit settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Sustained requests per second per identity; 0 turns the gate off.
    pub per_second: u32,
    /// Requests an identity may send at once above the sustained rate.
    pub burst: u32,
    /// Whether root and the daemon's own user are exempt (they can stop the daemon anyway).
    pub exempt_root: bool,
}

impl Default for RateLimits {
    fn default() -> Self {
        // Far above what an application asking for its secrets does, low enough that one
        // runaway client cannot starve the rest.
        Self {
            per_second: 2_000,
            burst: 4_000,
            exempt_root: true,
        }
    }
}

/// The limiter.
pub struct RateLimiter {
    limiter: Option<DefaultKeyedRateLimiter<RateKey>>,
    exempt: Vec<u32>,
    checks: AtomicU64,
}

/// How many checks pass between sweeps of idle buckets.
const SWEEP_EVERY: u64 = 1 << 16;

impl RateLimiter {
    /// A limiter for `limits`; `daemon_uid` is exempt with root when `exempt_root`.
    pub fn new(limits: RateLimits, daemon_uid: u32) -> Self {
        let limiter = NonZeroU32::new(limits.per_second).map(|rate| {
            let burst = NonZeroU32::new(limits.burst.max(limits.per_second)).unwrap_or(rate);
            governor::RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Self {
            limiter,
            exempt: if limits.exempt_root {
                vec![0, daemon_uid]
            } else {
                Vec::new()
            },
            checks: AtomicU64::new(0),
        }
    }

    /// Whether to admit one more request from `key`.
    pub fn admit(&self, key: &RateKey) -> bool {
        let Some(limiter) = &self.limiter else {
            return true;
        };
        if let RateKey::Uid(uid) = key
            && self.exempt.contains(uid)
        {
            return true;
        }
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.retain_recent();
        }
        limiter.check_key(key).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_identity_over_its_burst_does_not_slow_another() {
        let r = RateLimiter::new(
            RateLimits {
                per_second: 1,
                burst: 5,
                exempt_root: true,
            },
            1000,
        );
        let noisy = RateKey::Uid(65534);
        let admitted = (0..20).filter(|_| r.admit(&noisy)).count();
        assert_eq!(admitted, 5);
        assert!(r.admit(&RateKey::Uid(65533)));
        assert!(r.admit(&RateKey::Token("acc".into())));
        assert!(
            (0..100).all(|_| r.admit(&RateKey::Uid(0))),
            "root is exempt"
        );
        assert!(
            (0..100).all(|_| r.admit(&RateKey::Uid(1000))),
            "so is the daemon's user"
        );
        let off = RateLimiter::new(
            RateLimits {
                per_second: 0,
                ..RateLimits::default()
            },
            1000,
        );
        assert!((0..10_000).all(|_| off.admit(&noisy)));
    }
}
