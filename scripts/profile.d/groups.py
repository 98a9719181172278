#!/usr/bin/env python3
"""Sums `perf report --no-children --sort dso,symbol -g none` lines (stdin) by area.

The first rule whose pattern occurs in the DSO or symbol wins; the order matters (a symbol
under `coffer_audit` that is BLAKE3's compression counts as hashing).
"""
import re
import sys

RULES = [
    ("kernel: Unix socket send/receive", "k", r"unix_|sock_|(?<![a-z])sk_|skb|__sys_sendto|__sys_recvfrom|sock_read|sock_write|_copy_to_iter|_copy_from_iter|copy_user|memcg|kmem_cache|__alloc_skb|consume_skb|kfree|__kmalloc|scm_|__check_object_size|__virt_addr_valid|check_heap_object|security_socket|apparmor|selinux"),
    ("kernel: scheduling, wake-ups, futex, epoll", "k", r"schedule|switch|futex|wake|ttwu|enqueue|dequeue|pick_next|update_|epoll|ep_|select_task|idle|cpuidle|hrtimer|tick_|irq|rcu|load_balance|psi_|cgroup|sched|task|native_|__smp|ipi|timer"),
    ("kernel: file write (audit log)", "k", r"ext4|xfs|btrfs|jbd2|vfs_write|generic_perform_write|filemap|page_cache|iomap|folio|file_|fdget|ksys_write|__x64_sys_write|new_sync_write|fsnotify|inode|mark_buffer|block_"),
    ("kernel: syscall entry/exit", "k", r"entry_SYSCALL|syscall|do_syscall|exit_to_user|__x64_sys|fpregs|restore_|srso|retbleed|clear_bhb|__rseq|rseq"),
    ("kernel: other", "k", r""),
    ("hashing (BLAKE3, HMAC/SHA-256, foldhash)", "u", r"blake3|hmac|sha2|Sha256|sha256|compress256|foldhash|digest::"),
    ("AEAD (AES-GCM)", "u", r"aes|gcm|ghash|polyval"),
    ("JSON (serde_json)", "u", r"serde_json|serde::"),
    ("allocation (malloc/free)", "u", r"malloc|_int_free|cfree|__libc_free|realloc|calloc|alloc::alloc|__rust_alloc|__rust_dealloc|__rust_realloc|tcache|arena_|sysmalloc|unlink_chunk|RawVec|raw_vec|drop_in_place"),
    ("locks and atomics (std sync, pthread, parking)", "u", r"pthread_mutex|pthread_cond|std::sys::sync|RwLock|Mutex|futex|parking|Condvar|__lll_lock|lll_"),
    ("memcpy/memset/memcmp", "u", r"__memmove|__memcpy|__memset|__memcmp|memmove|memcpy|memset|memcmp|bcmp|strlen"),
    ("time (clock_gettime, vDSO, formatting)", "u", r"clock_gettime|vdso|Timestamp|time::|Instant|SystemTime|__vdso"),
    ("tokio runtime and I/O driver", "u", r"tokio::|mio::"),
    ("coffer-audit (record, queue, writer)", "u", r"coffer_audit"),
    ("coffer-core (service, gates, cache)", "u", r"coffer_core"),
    ("coffer-server (framing, protocol)", "u", r"coffer_server"),
    ("coffer-types", "u", r"coffer_types"),
    ("libc other (write/read wrappers, etc.)", "u", r"libc"),
    ("other user space", "u", r""),
]

LINE = re.compile(r"^\s*([0-9.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)$")


def main():
    totals = {name: 0.0 for name, _, _ in RULES}
    top = {name: [] for name, _, _ in RULES}
    for line in sys.stdin:
        m = LINE.match(line)
        if not m:
            continue
        pct, dso, kind = float(m.group(1)), m.group(2), m.group(3)
        sym = re.split(r"\s{2,}", m.group(4).strip())[0]
        space = "k" if kind == "k" or "kernel" in dso else "u"
        text = f"{dso} {sym}"
        for name, where, pattern in RULES:
            if where != space:
                continue
            if pattern == "" or re.search(pattern, text):
                totals[name] += pct
                top[name].append((pct, sym))
                break
    for name, total in sorted(totals.items(), key=lambda kv: -kv[1]):
        if total < 0.05:
            continue
        names = ", ".join(s[:60] for _, s in sorted(top[name], reverse=True)[:3])
        print(f"{total:6.2f}%  {name}  [{names}]")


if __name__ == "__main__":
    main()
