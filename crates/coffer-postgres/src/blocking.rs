//! Where the blocking client may run.

/// Runs `f` (which uses or drops blocking clients) where that is allowed: a blocking client
/// runs its own small runtime, and tokio refuses to start one on a thread that drives
/// another. On such a thread `f` runs on a thread of its own, waited for.
pub(crate) fn off_runtime(f: impl FnOnce() + Send + 'static) {
    if tokio::runtime::Handle::try_current().is_ok() {
        let _ = std::thread::spawn(f).join();
    } else {
        f();
    }
}
