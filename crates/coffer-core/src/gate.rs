//! The policy and rate-limit gates as seams (DESIGN.md, Identity, policy and gates).
//!
//! The policy engine and the token bucket arrive with the access-control work; until then
//! [`FirstBootPolicy`] holds: root and the daemon's own user hold `sudo`, everyone else
//! holds nothing, and [`Unlimited`] admits every request.

use coffer_types::{Capability, Namespace};

use crate::Identity;

/// What a request wants to do, for the policy gate.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    /// The capability needed.
    pub capability: Capability,
    /// The namespace, for secret operations.
    pub namespace: Option<&'a Namespace>,
    /// The raw name (validated only after the policy gate, so a refused caller learns nothing
    /// about the grammar).
    pub name: Option<&'a str>,
}

/// Decides whether an identity may do something. Deny by default.
pub trait Policy: Send + Sync {
    /// `Ok` when allowed; otherwise a message for the caller saying what is missing.
    fn check(&self, who: &Identity, access: Access<'_>) -> Result<(), String>;
}

/// The policy of a store nobody has configured: root and the daemon's user hold `sudo` over
/// everything; every other identity holds nothing.
#[derive(Debug, Clone, Copy)]
pub struct FirstBootPolicy {
    daemon_uid: u32,
}

impl FirstBootPolicy {
    /// For a daemon running as `daemon_uid`.
    pub fn new(daemon_uid: u32) -> Self {
        Self { daemon_uid }
    }
}

impl Policy for FirstBootPolicy {
    fn check(&self, who: &Identity, access: Access<'_>) -> Result<(), String> {
        if who.uid == 0 || who.uid == self.daemon_uid {
            return Ok(());
        }
        Err(format!(
            "uid {} may not {} here: no policy grants it (until policies are configured, only \
             root and the daemon's user, uid {}, may use coffer)",
            who.uid, access.capability, self.daemon_uid
        ))
    }
}

/// Decides whether an identity is within its rate.
pub trait RateLimiter: Send + Sync {
    /// Whether to admit one more request from `who`.
    fn admit(&self, who: &Identity) -> bool;
}

/// Admits everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unlimited;

impl RateLimiter for Unlimited {
    fn admit(&self, _who: &Identity) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(uid: u32) -> Identity {
        Identity::peer(uid, uid, None)
    }

    #[test]
    fn first_boot_allows_root_and_the_daemon_user_only() {
        let p = FirstBootPolicy::new(1000);
        let access = Access {
            capability: Capability::Read,
            namespace: None,
            name: Some("stripe-live-key"),
        };
        assert!(p.check(&who(0), access).is_ok());
        assert!(p.check(&who(1000), access).is_ok());
        let err = p.check(&who(65534), access).unwrap_err();
        assert!(err.contains("uid 65534 may not read"), "{err}");
        assert!(
            !err.contains("stripe"),
            "refusals do not repeat the name: {err}"
        );
    }
}
