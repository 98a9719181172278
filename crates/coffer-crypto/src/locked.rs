//! Locking the pages that hold secrets, so they are never written to swap.
//!
//! `mlock` works on whole pages and does not nest: unlocking a page unlocks it for every
//! allocation on it. Secrets share pages with each other and with ordinary heap data, so each
//! page carries a count of the live secrets on it; the page is locked whenever the count
//! leaves 0. When it returns to 0 the page is left locked, idle, while at most [`MAX_IDLE`]
//! pages are (past that it is unlocked at once): a request's short-lived secrets (its token,
//! a value on its way out) come and go on the same few pages, and unlocking a page costs the
//! next `mlock` on it a fault-in and a split of the mapping, several microseconds, where
//! locking a page that is still locked costs one quick system call. The next secret on an
//! idle page locks it again all the same, because the allocator may have given the page
//! back to the kernel meanwhile (a trimmed heap), and a page mapped anew is not locked.
//! The counts are kept in shards chosen by page address, so threads creating and dropping
//! secrets at once rarely wait for each other.
//!
//! When the kernel refuses (RLIMIT_MEMLOCK, commonly 8 MiB for an unprivileged user), the
//! secret is still zeroized on drop; coffer warns once and [`stats`] reports it so `coffer
//! status` can show it. This is the one module of coffer-crypto that needs `unsafe`.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};

static PAGE_SIZE: LazyLock<usize> = LazyLock::new(|| {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| n.is_power_of_two())
        .unwrap_or(4096)
});

const SHARDS: usize = 64;

/// Live secrets per locked page, keyed by page address, sharded by page.
static PAGES: LazyLock<[Mutex<HashMap<usize, u32>>; SHARDS]> =
    LazyLock::new(|| std::array::from_fn(|_| Mutex::new(HashMap::new())));

fn shard(page: usize) -> std::sync::MutexGuard<'static, HashMap<usize, u32>> {
    let index = (page / *PAGE_SIZE) % SHARDS;
    PAGES[index].lock().unwrap_or_else(PoisonError::into_inner)
}
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// Pages left locked with no secret on them, at most (256 KiB with 4 KiB pages: a small part
/// of the common 8 MiB RLIMIT_MEMLOCK).
pub const MAX_IDLE: usize = 64;

/// Pages locked now with no secret on them.
static IDLE: AtomicUsize = AtomicUsize::new(0);
static WARNED: AtomicBool = AtomicBool::new(false);

/// How much secret memory is locked now, and whether the kernel ever refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockStats {
    /// Pages currently holding at least one secret.
    pub pages: usize,
    /// The page size in bytes.
    pub page_size: usize,
    /// How many times `mlock` was refused since start.
    pub refused: u64,
}

/// Current locking figures.
pub fn stats() -> LockStats {
    let pages = PAGES
        .iter()
        .map(|m| {
            let shard = m.lock().unwrap_or_else(PoisonError::into_inner);
            shard.values().filter(|n| **n > 0).count()
        })
        .sum();
    LockStats {
        pages,
        page_size: *PAGE_SIZE,
        refused: REFUSED.load(Ordering::Relaxed),
    }
}

fn pages_of(ptr: *const u8, len: usize) -> impl Iterator<Item = usize> {
    let size = *PAGE_SIZE;
    let start = (ptr as usize) & !(size - 1);
    let end = (ptr as usize).saturating_add(len);
    (start..end).step_by(size)
}

/// Counts `[ptr, ptr+len)` as holding a secret, locking pages that were not yet locked.
pub(crate) fn lock(ptr: *const u8, len: usize) {
    if len == 0 {
        return;
    }
    let size = *PAGE_SIZE;
    for page in pages_of(ptr, len) {
        let mut pages = shard(page);
        let (count, idle) = match pages.entry(page) {
            std::collections::hash_map::Entry::Occupied(e) => (e.into_mut(), true),
            std::collections::hash_map::Entry::Vacant(e) => (e.insert(0), false),
        };
        if *count == 0 && idle {
            IDLE.fetch_sub(1, Ordering::Relaxed);
        }
        *count += 1;
        if *count == 1 {
            // SAFETY: mlock only changes how the kernel pages this range; it reads and writes
            // no memory. The page belongs to a live allocation (it holds part of `ptr..len`),
            // and a failure is reported as an error, never as undefined behaviour.
            let locked = unsafe { nix::sys::mman::mlock(non_null(page), size) };
            if let Err(errno) = locked {
                refused(errno);
            }
        }
    }
}

/// Releases `[ptr, ptr+len)`, unlocking pages no other secret uses. The caller has
/// already zeroized the bytes.
pub(crate) fn unlock(ptr: *const u8, len: usize) {
    if len == 0 {
        return;
    }
    let size = *PAGE_SIZE;
    for page in pages_of(ptr, len) {
        let mut pages = shard(page);
        let Some(count) = pages.get_mut(&page) else {
            continue;
        };
        *count = count.saturating_sub(1);
        if *count > 0 {
            continue;
        }
        if IDLE.fetch_add(1, Ordering::Relaxed) < MAX_IDLE {
            // Left locked, idle, for the next secret on it (which locks it again).
            continue;
        }
        IDLE.fetch_sub(1, Ordering::Relaxed);
        pages.remove(&page);
        // SAFETY: as for mlock; munlock of a page that was never locked is harmless.
        let _ = unsafe { nix::sys::mman::munlock(non_null(page), size) };
    }
}

fn non_null(page: usize) -> NonNull<c_void> {
    // Page addresses come from live allocations, which are never at address 0.
    NonNull::new(page as *mut c_void).unwrap_or(NonNull::dangling())
}

fn refused(errno: nix::errno::Errno) {
    REFUSED.fetch_add(1, Ordering::Relaxed);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            %errno,
            "could not lock secret memory; secrets may reach swap. Raise the memlock limit \
             (LimitMEMLOCK= in the unit, ulimit -l) or grant CAP_IPC_LOCK"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_counted_and_released() {
        // Large enough for the allocator to map it privately, so no other test's secret
        // shares the pages in its middle.
        let buf = vec![0u8; 64 * *PAGE_SIZE];
        let mid = buf[32 * *PAGE_SIZE..].as_ptr();
        let page = (mid as usize) & !(*PAGE_SIZE - 1);
        lock(buf.as_ptr(), buf.len());
        lock(mid, 10);
        assert_eq!(shard(page).get(&page), Some(&2));
        unlock(mid, 10);
        assert_eq!(shard(page).get(&page), Some(&1));
        unlock(buf.as_ptr(), buf.len());
        // Idle (still locked, no secret on it) or unlocked, by how many pages are idle.
        assert!(shard(page).get(&page).is_none_or(|n| *n == 0));
    }

    #[test]
    fn idle_pages_are_bounded_and_counted_as_free() {
        let size = *PAGE_SIZE;
        let buf = vec![0u8; (2 * MAX_IDLE + 2) * size];
        let first = (buf.as_ptr() as usize + size) & !(size - 1);
        let page = |i: usize| first + i * size;
        let before = stats().pages;
        for i in 0..2 * MAX_IDLE {
            lock(page(i) as *const u8, 1);
        }
        assert!(stats().pages >= before + 2 * MAX_IDLE);
        for i in 0..2 * MAX_IDLE {
            unlock(page(i) as *const u8, 1);
        }
        let kept = (0..2 * MAX_IDLE)
            .filter(|i| shard(page(*i)).contains_key(&page(*i)))
            .count();
        assert!(kept <= MAX_IDLE, "{kept} idle pages kept");
        assert!(IDLE.load(Ordering::Relaxed) <= MAX_IDLE);
        // An idle page takes its next secret (locked again) and counts as in use.
        if let Some(i) = (0..2 * MAX_IDLE).find(|i| shard(page(*i)).contains_key(&page(*i))) {
            lock(page(i) as *const u8, 1);
            assert_eq!(shard(page(i)).get(&page(i)), Some(&1));
            unlock(page(i) as *const u8, 1);
        }
        drop(buf);
    }
}
