//! Connection slots: at most `total` connections at once, at most `per_peer` from one peer
//! (a uid on the socket, an address over HTTP), and the last `reserved` slots kept for
//! privileged peers (root and the daemon's own user), so no other peer can take every slot
//! and lock the operator out.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

/// Why a connection was not given a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// Every slot a peer of its kind may take is taken.
    All,
    /// The peer holds as many as one peer may.
    Peer,
}

impl Full {
    /// The message a refused client is told.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::All => "too many connections to coffer; retry shortly",
            Self::Peer => "too many connections from this peer; close some and retry",
        }
    }
}

struct Used<K> {
    total: usize,
    by_peer: HashMap<K, usize>,
}

/// The slots of one listener.
pub(crate) struct Slots<K> {
    total: usize,
    per_peer: usize,
    reserved: usize,
    used: Mutex<Used<K>>,
}

/// A slot held by one connection; given back when dropped.
pub(crate) struct Slot<K: Hash + Eq + Clone> {
    slots: Arc<Slots<K>>,
    peer: K,
}

impl<K: Hash + Eq + Clone> Slots<K> {
    /// Slots for `total` connections, `per_peer` from one peer, `reserved` of them kept
    /// for privileged peers.
    pub(crate) fn new(total: usize, per_peer: usize, reserved: usize) -> Arc<Self> {
        Arc::new(Self {
            total,
            per_peer: per_peer.max(1),
            reserved: reserved.min(total.saturating_sub(1)),
            used: Mutex::new(Used {
                total: 0,
                by_peer: HashMap::new(),
            }),
        })
    }

    /// A slot for `peer`; a privileged peer is not held to the per-peer cap and may take
    /// the reserved slots.
    pub(crate) fn take(self: &Arc<Self>, peer: K, privileged: bool) -> Result<Slot<K>, Full> {
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        let limit = if privileged {
            self.total
        } else {
            self.total - self.reserved
        };
        if used.total >= limit {
            return Err(Full::All);
        }
        let mine = used.by_peer.get(&peer).copied().unwrap_or(0);
        if !privileged && mine >= self.per_peer {
            return Err(Full::Peer);
        }
        used.total += 1;
        used.by_peer.insert(peer.clone(), mine + 1);
        Ok(Slot {
            slots: Arc::clone(self),
            peer,
        })
    }

    /// Slots free for anyone.
    pub(crate) fn free(&self) -> usize {
        let used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        self.total.saturating_sub(used.total)
    }
}

impl<K: Hash + Eq + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut used = self
            .slots
            .used
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        used.total = used.total.saturating_sub(1);
        if let Some(n) = used.by_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                used.by_peer.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_peer_cannot_take_the_slots_kept_for_others_or_root() {
        let slots = Slots::new(4, 2, 1);
        let a: Vec<_> = (0..2).map(|_| slots.take(65534, false).unwrap()).collect();
        assert_eq!(slots.take(65534, false).err(), Some(Full::Peer));
        let b = slots.take(1000, false).unwrap();
        assert_eq!(
            slots.take(1001, false).err(),
            Some(Full::All),
            "one is reserved"
        );
        let root = slots.take(0, true).unwrap();
        assert_eq!(slots.take(0, true).err(), Some(Full::All));
        drop((a, b, root));
        assert_eq!(slots.free(), 4);
    }
}
