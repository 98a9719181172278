//! Locking the pages that hold secrets, so they are never written to swap.
//!
//! `mlock` works on whole pages and does not nest: unlocking a page unlocks it for every
//! allocation on it. Secrets share pages with each other and with ordinary heap data, so each
//! page carries a count of the live secrets on it; the page is locked when the count leaves 0
//! and unlocked when it returns to 0. Allocators reuse pages, so after warm-up almost no
//! allocation needs a system call. The counts are kept in shards chosen by page address, so
//! threads creating and dropping secrets at once rarely wait for each other.
//!
//! When the kernel refuses (RLIMIT_MEMLOCK, commonly 8 MiB for an unprivileged user), the
//! secret is still zeroized on drop; coffer warns once and [`stats`] reports it so `coffer
//! status` can show it. This is the one module of coffer-crypto that needs `unsafe`.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
        .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner).len())
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
        let count = pages.entry(page).or_insert(0);
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
        *count -= 1;
        if *count == 0 {
            pages.remove(&page);
            // SAFETY: as for mlock; munlock of a page that was never locked is harmless.
            let _ = unsafe { nix::sys::mman::munlock(non_null(page), size) };
        }
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
        assert!(!shard(page).contains_key(&page));
    }
}
