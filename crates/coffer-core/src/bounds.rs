//! Gate 0, before the seal and identity gates: what one peer (a uid on the socket, a source
//! address over HTTP) may cost the daemon before anything about it is known.
//!
//! - a token bucket per peer for every request it sends, whatever token it carries;
//! - a budget of refusals at the identity gate (bad or missing tokens): a peer that spends
//!   it is refused (`rate_limited`) before its token is looked at, until the budget refills;
//! - a budget of unseal attempts per peer and for the whole daemon (each attempt costs an
//!   Argon2id run of 64 MiB and about 130 ms);
//! - refusals condensed: the first few refusals of one kind (code and action) from one peer
//!   in a window are recorded one by one, the rest are counted into one summary record for
//!   the window, so an anonymous flood cannot fill the audit disk.
//!
//! Root and the daemon's own user are exempt on the socket (they can stop the daemon anyway).
//! Every map here is bounded: idle entries are swept, and past [`MAX_PEERS`] distinct peers
//! new ones share one entry.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use coffer_types::{Action, ErrorCode};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};

use crate::Identity;

/// Distinct peers tracked at once by the back-off and condensing maps; past it, new peers
/// share one entry (an attacker with many addresses is then limited as one).
pub const MAX_PEERS: usize = 16_384;

/// The limits of gate 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerLimits {
    /// Sustained requests per second per peer (any request, any token); 0 turns it off.
    pub per_second: u32,
    /// Requests a peer may send at once above the sustained rate.
    pub burst: u32,
    /// Refusals at the identity gate a peer may collect at once before it is backed off.
    pub failure_burst: u32,
    /// Time after which a backed-off peer gets one more identity refusal's worth of budget.
    pub failure_period: Duration,
    /// Unseal attempts one peer may make at once.
    pub unseal_burst: u32,
    /// Time after which a peer may make one more unseal attempt.
    pub unseal_period: Duration,
    /// Unseal attempts every peer together may make at once (root and the daemon's user
    /// on the socket are not counted).
    pub unseal_global_burst: u32,
    /// Time after which one more unseal attempt is allowed to all peers together.
    pub unseal_global_period: Duration,
    /// Refusals of one kind from one peer recorded one by one in a window; the rest are
    /// counted into one summary record. 0 records every refusal.
    pub refusals_recorded: u32,
    /// The window of `refusals_recorded`.
    pub refusal_window: Duration,
}

impl Default for PeerLimits {
    fn default() -> Self {
        Self {
            per_second: 1_000,
            burst: 2_000,
            failure_burst: 20,
            failure_period: Duration::from_secs(1),
            unseal_burst: 5,
            unseal_period: Duration::from_secs(2),
            unseal_global_burst: 20,
            unseal_global_period: Duration::from_millis(500),
            refusals_recorded: 20,
            refusal_window: Duration::from_secs(60),
        }
    }
}

/// Who a peer is, for gate 0: a uid, or a source address (IPv6 by its /64, which one
/// machine usually holds whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerKey {
    /// A socket peer.
    Uid(u32),
    /// An HTTP client's address.
    Addr(IpAddr),
    /// Every peer past [`MAX_PEERS`].
    Many,
}

impl PeerKey {
    /// The key of `who`.
    pub fn of(who: &Identity) -> Self {
        match who.remote {
            None => Self::Uid(who.uid),
            Some(addr) => Self::Addr(match addr.ip() {
                IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) => IpAddr::V4(v4),
                    None => {
                        let bits = u128::from(v6) & !((1u128 << 64) - 1);
                        IpAddr::V6(bits.into())
                    }
                },
                v4 => v4,
            }),
        }
    }
}

fn quota(burst: u32, period: Duration) -> Option<Quota> {
    let burst = NonZeroU32::new(burst)?;
    Quota::with_period(period).map(|q| q.allow_burst(burst))
}

/// A refusal kind's window for one peer.
struct Window {
    started: Instant,
    recorded: u32,
    suppressed: u64,
    /// The peer as last seen (for the summary record's actor).
    who: Arc<Identity>,
    gate: &'static str,
}

/// Refusals one peer made and that were not recorded one by one: what a summary record says.
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    pub who: Arc<Identity>,
    pub action: Action,
    pub code: ErrorCode,
    pub gate: &'static str,
    pub count: u64,
}

type Kind = (PeerKey, ErrorCode, Action);

/// Gate 0's state.
pub(crate) struct PeerGuard {
    limits: PeerLimits,
    exempt: [u32; 2],
    requests: Option<DefaultKeyedRateLimiter<PeerKey>>,
    failures: Option<DefaultKeyedRateLimiter<PeerKey>>,
    /// Peers backed off after spending their refusal budget, until when.
    blocked: Mutex<HashMap<PeerKey, Instant>>,
    unseal_peer: Option<DefaultKeyedRateLimiter<PeerKey>>,
    unseal_all: Option<DefaultDirectRateLimiter>,
    windows: Mutex<HashMap<Kind, Window>>,
    checks: AtomicU64,
    /// When windows were last looked over for summaries (ms since `born`).
    swept: AtomicU64,
    born: Instant,
}

/// How many checks pass between sweeps of idle token buckets.
const SWEEP_EVERY: u64 = 1 << 14;

impl PeerGuard {
    pub(crate) fn new(limits: PeerLimits, daemon_uid: u32) -> Self {
        let keyed = |q: Option<Quota>| q.map(governor::RateLimiter::keyed);
        Self {
            requests: keyed(NonZeroU32::new(limits.per_second).map(|rate| {
                Quota::per_second(rate)
                    .allow_burst(NonZeroU32::new(limits.burst).unwrap_or(rate).max(rate))
            })),
            failures: keyed(quota(limits.failure_burst, limits.failure_period)),
            blocked: Mutex::new(HashMap::new()),
            unseal_peer: keyed(quota(limits.unseal_burst, limits.unseal_period)),
            unseal_all: quota(limits.unseal_global_burst, limits.unseal_global_period)
                .map(governor::RateLimiter::direct),
            windows: Mutex::new(HashMap::new()),
            checks: AtomicU64::new(0),
            swept: AtomicU64::new(0),
            born: Instant::now(),
            exempt: [0, daemon_uid],
            limits,
        }
    }

    fn exempt(&self, key: PeerKey) -> bool {
        matches!(key, PeerKey::Uid(uid) if self.exempt.contains(&uid))
    }

    /// Gate 0 for any request: the peer is not backed off and is within its rate.
    pub(crate) fn admit(&self, who: &Identity) -> bool {
        let key = PeerKey::of(who);
        if self.exempt(key) {
            return true;
        }
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep_buckets();
        }
        if self.backed_off(key) {
            return false;
        }
        self.requests
            .as_ref()
            .is_none_or(|l| l.check_key(&key).is_ok())
    }

    /// Whether `key` is backed off now (without spending anything).
    fn backed_off(&self, key: PeerKey) -> bool {
        let blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        blocked
            .get(&key)
            .is_some_and(|until| *until > Instant::now())
    }

    /// Whether `who` may be identified now (the back-off alone, spending nothing): for a
    /// listener that asks before reading a request's body.
    pub(crate) fn may_identify(&self, who: &Identity) -> bool {
        let key = PeerKey::of(who);
        self.exempt(key) || !self.backed_off(key)
    }

    /// The identity gate refused `who`: spends one of its refusals, and backs it off when
    /// none is left.
    pub(crate) fn failed(&self, who: &Identity) {
        let key = PeerKey::of(who);
        let Some(failures) = &self.failures else {
            return;
        };
        if self.exempt(key) {
            return;
        }
        if let Err(not_until) = failures.check_key(&key) {
            let wait = not_until
                .wait_time_from(DefaultClock::default().now())
                .max(Duration::from_millis(100));
            let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
            if blocked.len() >= MAX_PEERS {
                let now = Instant::now();
                blocked.retain(|_, until| *until > now);
            }
            let key = if blocked.len() >= MAX_PEERS && !blocked.contains_key(&key) {
                PeerKey::Many
            } else {
                key
            };
            blocked.insert(key, Instant::now() + wait);
        }
    }

    /// An unseal attempt from `who`: within its own budget and the daemon's.
    pub(crate) fn unseal(&self, who: &Identity) -> bool {
        let key = PeerKey::of(who);
        if self.exempt(key) {
            return true;
        }
        if let Some(peer) = &self.unseal_peer
            && peer.check_key(&key).is_err()
        {
            return false;
        }
        self.unseal_all.as_ref().is_none_or(|l| l.check().is_ok())
    }

    fn sweep_buckets(&self) {
        for limiter in [&self.requests, &self.failures, &self.unseal_peer]
            .into_iter()
            .flatten()
        {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        let now = Instant::now();
        self.blocked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, until| *until > now);
    }

    /// Whether this refusal is to be recorded on its own (else it is counted for its
    /// window's summary). Answers the summary of the window it closed, if any.
    pub(crate) fn condense(
        &self,
        who: &Arc<Identity>,
        action: Action,
        code: ErrorCode,
        gate: &'static str,
    ) -> (bool, Option<Summary>) {
        let key = PeerKey::of(who);
        if self.limits.refusals_recorded == 0 || self.exempt(key) {
            return (true, None);
        }
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let mut kind = (key, code, action);
        if windows.len() >= MAX_PEERS && !windows.contains_key(&kind) {
            kind.0 = PeerKey::Many;
        }
        let window = windows.entry(kind).or_insert_with(|| Window {
            started: now,
            recorded: 0,
            suppressed: 0,
            who: Arc::clone(who),
            gate,
        });
        let mut closed = None;
        if now.duration_since(window.started) >= self.limits.refusal_window {
            closed = summary(kind, window);
            window.started = now;
            window.recorded = 0;
            window.suppressed = 0;
        }
        window.who = Arc::clone(who);
        window.gate = gate;
        if window.recorded < self.limits.refusals_recorded {
            window.recorded += 1;
            (true, closed)
        } else {
            window.suppressed += 1;
            (false, closed)
        }
    }

    /// The summaries of windows that ended (at most one look a second), dropping the
    /// windows that ended; with `all`, of every window (at shutdown).
    pub(crate) fn ended(&self, all: bool) -> Vec<Summary> {
        let now = Instant::now();
        let elapsed = u64::try_from(now.duration_since(self.born).as_millis()).unwrap_or(u64::MAX);
        if !all {
            let last = self.swept.load(Ordering::Relaxed);
            if elapsed.saturating_sub(last) < 1_000
                || self
                    .swept
                    .compare_exchange(last, elapsed, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                return Vec::new();
            }
        }
        let window = self.limits.refusal_window;
        let mut out = Vec::new();
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        windows.retain(|kind, w| {
            if all || now.duration_since(w.started) >= window {
                out.extend(summary(*kind, w));
                false
            } else {
                true
            }
        });
        out
    }
}

fn summary(kind: Kind, window: &Window) -> Option<Summary> {
    (window.suppressed > 0).then(|| Summary {
        who: Arc::clone(&window.who),
        action: kind.2,
        code: kind.1,
        gate: window.gate,
        count: window.suppressed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(ip: &str) -> Arc<Identity> {
        Arc::new(Identity::remote(
            format!("{ip}:1234")
                .parse()
                .unwrap_or_else(|_| std::net::SocketAddr::from(([127, 0, 0, 1], 1234))),
        ))
    }

    #[test]
    fn a_peer_that_spends_its_refusals_is_backed_off_and_others_are_not() {
        let g = PeerGuard::new(
            PeerLimits {
                failure_burst: 3,
                failure_period: Duration::from_secs(60),
                ..PeerLimits::default()
            },
            1000,
        );
        let bad = remote("10.0.0.1");
        for _ in 0..3 {
            assert!(g.admit(&bad));
            g.failed(&bad);
        }
        assert!(g.admit(&bad), "three refusals are within the budget");
        g.failed(&bad);
        assert!(!g.admit(&bad) && !g.may_identify(&bad));
        assert!(g.admit(&remote("10.0.0.2")));
        let root = Identity::peer(0, 0, None);
        for _ in 0..10 {
            g.failed(&root);
        }
        assert!(g.admit(&root), "root is exempt");
    }

    #[test]
    fn ipv6_peers_are_keyed_by_their_64() {
        let a = PeerKey::of(&remote("[2001:db8::1]"));
        let b = PeerKey::of(&remote("[2001:db8::ffff:1]"));
        let c = PeerKey::of(&remote("[2001:db8:0:1::1]"));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn refusals_past_the_first_few_are_counted_into_one_summary() {
        let g = PeerGuard::new(
            PeerLimits {
                refusals_recorded: 2,
                refusal_window: Duration::from_secs(3600),
                ..PeerLimits::default()
            },
            1000,
        );
        let who = remote("10.0.0.1");
        let recorded = (0..100)
            .filter(|_| {
                g.condense(&who, Action::Get, ErrorCode::Unauthenticated, "identity")
                    .0
            })
            .count();
        assert_eq!(recorded, 2);
        assert!(g.ended(false).is_empty(), "the window is still open");
        let all = g.ended(true);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].count, 98);
        assert_eq!(all[0].code, ErrorCode::Unauthenticated);
    }

    #[test]
    fn unseal_attempts_are_limited_per_peer_and_overall() {
        let g = PeerGuard::new(
            PeerLimits {
                unseal_burst: 2,
                unseal_period: Duration::from_secs(60),
                unseal_global_burst: 3,
                unseal_global_period: Duration::from_secs(60),
                ..PeerLimits::default()
            },
            1000,
        );
        let a = remote("10.0.0.1");
        assert!(g.unseal(&a) && g.unseal(&a));
        assert!(!g.unseal(&a));
        let b = remote("10.0.0.2");
        assert!(g.unseal(&b));
        assert!(!g.unseal(&b), "the daemon's budget is spent");
        assert!(g.unseal(&Identity::peer(0, 0, None)), "root is exempt");
    }
}
