//! Measures what the name index costs a name: the heap an `EncryptedStore` holds once its
//! index of 20,000 names is built, counted by a global allocator that also estimates glibc's
//! per-block overhead (a block of `n` bytes takes `max(32, n + 8 rounded up to 16)`).
//!
//! Run with `--nocapture` to see the figures; the assertion only guards against a regression
//! well past the documented cost (68 bytes a name for 20-byte names).
// A counting allocator is the one way to see the heap from inside; each `unsafe` below only
// forwards to the system allocator with the caller's own arguments.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use coffer_crypto::{MasterKey, SecretBytes};
use coffer_store::{EncryptedStore, ListQuery, MemoryBackend, SecretStore, Write};
use coffer_types::{Namespace, SecretName};

struct Counting;

/// Bytes requested and not yet freed.
static REQUESTED: AtomicIsize = AtomicIsize::new(0);
/// The same, as glibc's blocks.
static BLOCKS: AtomicIsize = AtomicIsize::new(0);

fn block(size: usize) -> isize {
    ((size + 8).div_ceil(16) * 16).max(32) as isize
}

fn count(size: usize, sign: isize) {
    REQUESTED.fetch_add(sign * size as isize, Ordering::Relaxed);
    BLOCKS.fetch_add(sign * block(size), Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout, passed on unchanged.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size(), 1);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size(), 1);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(layout.size(), -1);
        // SAFETY: `ptr` came from this allocator, which is the system's, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's arguments, passed on unchanged.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(layout.size(), -1);
            count(new_size, 1);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn the_name_index_costs_about_seventy_bytes_a_name() {
    const N: usize = 20_000;
    let ns = Namespace::default_namespace();
    let backend = Arc::new(MemoryBackend::new());
    let master = MasterKey::generate().unwrap();
    let value = SecretBytes::copy_from(b"v");
    {
        let store = EncryptedStore::open(backend.clone(), master.duplicate()).unwrap();
        store
            .create_namespace(&ns, coffer_store::Change::by("uid:0"))
            .unwrap();
        for i in 0..N {
            // 20-byte names, as in `payments/key-012345`.
            let name = SecretName::parse(&format!("payments/key-{i:06}")).unwrap();
            store.set(&ns, &name, Write::new(&value, "uid:0")).unwrap();
        }
    }
    let (requested, blocks) = (
        REQUESTED.load(Ordering::SeqCst),
        BLOCKS.load(Ordering::SeqCst),
    );
    let store = EncryptedStore::open(backend.clone(), master.duplicate()).unwrap();
    let query = ListQuery {
        limit: 1,
        ..ListQuery::default()
    };
    // Waits for the index to be built; the build frees its scan before it is ready.
    let page = store.list(&ns, &query).unwrap();
    assert_eq!(page.items.len(), 1);
    drop(page);
    let per_name = |now: isize, then: isize| (now - then) as f64 / N as f64;
    let requested = per_name(REQUESTED.load(Ordering::SeqCst), requested);
    let blocks = per_name(BLOCKS.load(Ordering::SeqCst), blocks);
    println!("name index: {requested:.1} bytes a name requested, {blocks:.1} in malloc blocks");
    assert!(blocks < 100.0, "{blocks:.1} bytes a name");
    drop(store);
}
