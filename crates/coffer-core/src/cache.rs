//! The JIT cache of decrypted values in front of the store (DESIGN.md, Cache and memory).
//!
//! Entries live `ttl` (300 s by default; 0 turns the cache off), the cache is bounded in
//! entries and bytes (oldest inserted leave first), writes invalidate their entry, and seal
//! flushes everything. Values are `SecretBytes` behind an `Arc`: a hit shares the cached
//! allocation rather than copying the plaintext again, and the bytes are zeroized when the
//! last holder (the cache or a reply being written) lets go.
//!
//! A read that raced a write must not put the old value back after the write invalidated it:
//! every invalidation bumps an epoch, and a value read from the store is cached only if the
//! epoch is still the one seen before the read.
//!
//! Nor may a read answer the old value once the write has committed: the store publishes the
//! change's event at its commit, and a watcher that reads at once must see the new value. So
//! a write marks its key for its whole duration ([`JitCache::writing`]): while marked, the key
//! is neither served from the cache nor put back into it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockWriteGuard};
use std::time::{Duration, Instant};

use std::sync::Arc;

use coffer_crypto::SecretBytes;
use coffer_types::{Kind, Namespace, SecretName, Timestamp, Version};

/// What the cache is keyed by.
pub type CacheKey = (Namespace, SecretName);

/// A cached value.
#[derive(Clone)]
pub struct Cached {
    /// The value, shared with the cache.
    pub value: Arc<SecretBytes>,
    /// Its version.
    pub version: Version,
    /// Its kind.
    pub kind: Kind,
    /// What KV v2 says beside it.
    pub facts: Arc<Facts>,
}

/// What a KV v2 read shows beside a value: never secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// When the version was written.
    pub created: Timestamp,
    /// When it is to be soft-deleted.
    pub deletion: Option<Timestamp>,
    /// The secret's custom metadata.
    pub custom_metadata: std::collections::BTreeMap<String, String>,
}

struct Entry {
    cached: Cached,
    at: Instant,
    generation: u64,
}

#[derive(Default)]
struct Inner {
    /// foldhash is randomly seeded per map, like std's SipHash, so names chosen to collide
    /// cannot be precomputed; it is several times cheaper per lookup.
    map: HashMap<CacheKey, Entry, foldhash::fast::RandomState>,
    /// Insertion order; items whose generation no longer matches the map are stale.
    order: VecDeque<(CacheKey, u64)>,
    bytes: usize,
    next_generation: u64,
    /// Keys with writes in progress, and how many.
    writing: HashMap<CacheKey, usize, foldhash::fast::RandomState>,
}

impl Inner {
    fn remove(&mut self, key: &CacheKey) {
        if let Some(old) = self.map.remove(key) {
            self.bytes -= old.cached.value.len();
        }
    }
}

/// Cache limits.
#[derive(Debug, Clone, Copy)]
pub struct CacheLimits {
    /// How long an entry is served. Zero disables the cache.
    pub ttl: Duration,
    /// Most entries.
    pub max_entries: usize,
    /// Most bytes of values.
    pub max_bytes: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(300),
            max_entries: 10_000,
            max_bytes: 16 << 20,
        }
    }
}

/// The cache.
pub struct JitCache {
    limits: CacheLimits,
    epoch: AtomicU64,
    inner: RwLock<Inner>,
}

impl JitCache {
    /// An empty cache.
    pub fn new(limits: CacheLimits) -> Self {
        Self {
            limits,
            epoch: AtomicU64::new(0),
            inner: RwLock::new(Inner::default()),
        }
    }

    fn inner(&self) -> RwLockWriteGuard<'_, Inner> {
        // Every mutation keeps `map`, `order` and `bytes` consistent before it can panic.
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The time to live.
    pub fn ttl(&self) -> Duration {
        self.limits.ttl
    }

    /// A copy of a fresh entry. Readers share the lock; only an expired entry takes it alone.
    pub fn get(&self, key: &CacheKey) -> Option<Cached> {
        if self.limits.ttl.is_zero() {
            return None;
        }
        {
            let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
            if inner.writing.contains_key(key) {
                return None;
            }
            let entry = inner.map.get(key)?;
            // A version scheduled for deletion leaves the cache when its time comes.
            let deleted = || {
                entry
                    .cached
                    .facts
                    .deletion
                    .is_some_and(|d| d <= Timestamp::now())
            };
            if entry.at.elapsed() < self.limits.ttl && !deleted() {
                return Some(entry.cached.clone());
            }
        }
        let mut inner = self.inner();
        if inner
            .map
            .get(key)
            .is_some_and(|e| e.at.elapsed() >= self.limits.ttl || e.cached.facts.deletion.is_some())
        {
            inner.remove(key);
        }
        None
    }

    /// The epoch to pass to [`JitCache::insert`] after reading the store.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Caches a value read from the store, unless a write happened since `epoch`.
    pub fn insert(&self, key: CacheKey, cached: &Cached, epoch: u64) {
        let value = &cached.value;
        let limits = self.limits;
        if limits.ttl.is_zero() || value.len() > limits.max_bytes / 4 {
            return;
        }
        let mut inner = self.inner();
        if self.epoch.load(Ordering::Acquire) != epoch || inner.writing.contains_key(&key) {
            return;
        }
        inner.remove(&key);
        let generation = inner.next_generation;
        inner.next_generation += 1;
        inner.bytes += value.len();
        inner.order.push_back((key.clone(), generation));
        inner.map.insert(
            key,
            Entry {
                cached: cached.clone(),
                at: Instant::now(),
                generation,
            },
        );
        while inner.map.len() > limits.max_entries || inner.bytes > limits.max_bytes {
            let Some((old, generation)) = inner.order.pop_front() else {
                break;
            };
            if inner
                .map
                .get(&old)
                .is_some_and(|e| e.generation == generation)
            {
                inner.remove(&old);
            }
        }
        // Stale order items accumulate when entries are replaced; drop them in bulk.
        if inner.order.len() > 2 * limits.max_entries.max(16) {
            let Inner { map, order, .. } = &mut *inner;
            order.retain(|(k, g)| map.get(k).is_some_and(|e| e.generation == *g));
        }
    }

    /// Marks `key` as being written until the guard is dropped: it is not served from the
    /// cache nor cached meanwhile, and its entry is forgotten at both ends.
    pub fn writing(&self, key: &CacheKey) -> Writing<'_> {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let mut inner = self.inner();
        inner.remove(key);
        *inner.writing.entry(key.clone()).or_insert(0) += 1;
        Writing {
            cache: self,
            key: key.clone(),
        }
    }

    /// Forgets one entry after a write.
    pub fn invalidate(&self, key: &CacheKey) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.inner().remove(key);
    }

    /// Forgets everything (seal), zeroizing every value.
    pub fn flush(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let mut inner = self.inner();
        inner.map.clear();
        inner.order.clear();
        inner.bytes = 0;
    }

    /// Forgets every entry of `namespace` at once (the namespace was locked), zeroizing
    /// each value once no reply holds it; a read in flight does not put one back (the epoch).
    pub fn flush_namespace(&self, namespace: &Namespace) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let mut inner = self.inner();
        let gone: Vec<CacheKey> = inner
            .map
            .keys()
            .filter(|(ns, _)| ns == namespace)
            .cloned()
            .collect();
        for key in &gone {
            inner.remove(key);
        }
        inner.order.retain(|(key, _)| &key.0 != namespace);
    }

    /// Entries and bytes held.
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        (inner.map.len(), inner.bytes)
    }
}

/// A write in progress on one key ([`JitCache::writing`]).
#[must_use = "the key is marked only while the guard lives"]
pub struct Writing<'c> {
    cache: &'c JitCache,
    key: CacheKey,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        // Whatever the outcome: a failed commit may still have reached the disk.
        self.cache.epoch.fetch_add(1, Ordering::AcqRel);
        let mut inner = self.cache.inner();
        inner.remove(&self.key);
        if let Some(n) = inner.writing.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                inner.writing.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: &str) -> CacheKey {
        (Namespace::default(), SecretName::parse(n).unwrap())
    }

    fn cached(v: &[u8], deletion: Option<Timestamp>) -> Cached {
        Cached {
            value: Arc::new(SecretBytes::copy_from(v)),
            version: Version::FIRST,
            kind: Kind::Text,
            facts: Arc::new(Facts {
                created: Timestamp::now(),
                deletion,
                custom_metadata: Default::default(),
            }),
        }
    }

    fn put(cache: &JitCache, n: &str, v: &[u8]) {
        cache.insert(key(n), &cached(v, None), cache.epoch());
    }

    #[test]
    fn a_version_leaves_when_its_deletion_comes() {
        let cache = JitCache::new(limits(60_000, 10, 1000));
        let soon = Timestamp::from_millis(Timestamp::now().as_millis() + 100);
        cache.insert(key("a"), &cached(b"v", Some(soon)), cache.epoch());
        assert!(cache.get(&key("a")).is_some());
        std::thread::sleep(Duration::from_millis(150));
        assert!(cache.get(&key("a")).is_none());
        assert_eq!(cache.usage(), (0, 0));
    }

    fn limits(ttl_ms: u64, entries: usize, bytes: usize) -> CacheLimits {
        CacheLimits {
            ttl: Duration::from_millis(ttl_ms),
            max_entries: entries,
            max_bytes: bytes,
        }
    }

    #[test]
    fn hits_until_the_ttl_then_refetches() {
        let cache = JitCache::new(limits(80, 10, 1000));
        put(&cache, "a", b"v");
        assert_eq!(cache.get(&key("a")).unwrap().value.expose_secret(), b"v");
        std::thread::sleep(Duration::from_millis(120));
        assert!(cache.get(&key("a")).is_none());
        assert_eq!(cache.usage(), (0, 0));
    }

    #[test]
    fn a_key_being_written_is_neither_served_nor_cached() {
        let cache = JitCache::new(limits(60_000, 10, 1000));
        put(&cache, "a", b"old");
        put(&cache, "b", b"other");
        let guard = cache.writing(&key("a"));
        // Between the commit (and its event) and the end of the write, the old value must
        // not be answered, and a read of the store must not put anything back.
        assert!(cache.get(&key("a")).is_none());
        let epoch = cache.epoch();
        cache.insert(key("a"), &cached(b"old", None), epoch);
        assert!(cache.get(&key("a")).is_none());
        // Other keys are served as before.
        assert!(cache.get(&key("b")).is_some());
        // Two writes on one key: marked until the last ends.
        let second = cache.writing(&key("a"));
        drop(guard);
        put(&cache, "a", b"x");
        assert!(cache.get(&key("a")).is_none());
        drop(second);
        put(&cache, "a", b"new");
        assert_eq!(cache.get(&key("a")).unwrap().value.expose_secret(), b"new");
    }

    #[test]
    fn zero_ttl_disables() {
        let cache = JitCache::new(limits(0, 10, 1000));
        put(&cache, "a", b"v");
        assert!(cache.get(&key("a")).is_none());
    }

    #[test]
    fn bounded_by_entries_and_bytes_oldest_first() {
        let cache = JitCache::new(limits(60_000, 3, 1000));
        for n in ["a", "b", "c", "d"] {
            put(&cache, n, b"v");
        }
        assert!(cache.get(&key("a")).is_none());
        assert!(cache.get(&key("d")).is_some());
        assert_eq!(cache.usage().0, 3);

        let cache = JitCache::new(limits(60_000, 100, 400));
        for n in ["a", "b", "c", "d", "e"] {
            put(&cache, n, &[0u8; 100]);
        }
        assert_eq!(cache.usage(), (4, 400));
        assert!(cache.get(&key("a")).is_none());
        // Too big for the cache at all.
        put(&cache, "big", &[0u8; 101]);
        assert!(cache.get(&key("big")).is_none());
    }

    #[test]
    fn a_write_during_a_read_keeps_the_old_value_out() {
        let cache = JitCache::new(limits(60_000, 10, 1000));
        let seen = cache.epoch();
        cache.invalidate(&key("a"));
        cache.insert(key("a"), &cached(b"old", None), seen);
        assert!(cache.get(&key("a")).is_none());
    }

    #[test]
    fn flushing_a_namespace_forgets_only_its_entries() {
        let cache = JitCache::new(limits(60_000, 10, 1 << 20));
        put(&cache, "a", b"1");
        let other: CacheKey = (
            Namespace::parse("other").expect("valid"),
            SecretName::parse("a").expect("valid"),
        );
        cache.insert(other.clone(), &cached(b"2", None), cache.epoch());
        cache.flush_namespace(&Namespace::default_namespace());
        assert!(cache.get(&key("a")).is_none());
        assert!(cache.get(&other).is_some());
        assert_eq!(cache.usage(), (1, 1));
    }

    #[test]
    fn flush_forgets_everything() {
        let cache = JitCache::new(limits(60_000, 10, 1000));
        put(&cache, "a", b"v");
        put(&cache, "b", b"v");
        cache.flush();
        assert_eq!(cache.usage(), (0, 0));
        assert!(cache.get(&key("a")).is_none());
    }

    #[test]
    fn replacing_entries_does_not_grow_the_order_queue_without_bound() {
        let cache = JitCache::new(limits(60_000, 4, 1000));
        for _ in 0..1000 {
            put(&cache, "a", b"v");
        }
        assert!(cache.inner().order.len() <= 2 * 16 + 1);
        assert_eq!(cache.usage(), (1, 1));
    }
}
