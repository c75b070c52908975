//! How many of the runtime's worker threads are running tasks right now, counted by tokio's park and
//! unpark hooks (`main.rs`). `rewrite/html/split.rs` spreads a page over two cores only when another
//! worker is idle: with every worker busy (a browser-like load of assets), a helper thread would only
//! take a core from them, and the page would wait for its part.

use std::sync::atomic::{AtomicUsize, Ordering};

static BUSY: AtomicUsize = AtomicUsize::new(0);

/// A worker woke up to run tasks.
pub fn unparked() {
    BUSY.fetch_add(1, Ordering::Relaxed);
}

/// A worker found nothing to do and parks. Workers run before their first park uncounted, so the count
/// never goes below zero.
pub fn parked() {
    let _ = BUSY.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
}

/// Whether a worker besides the caller's is running tasks (always `false` outside the hooked runtime).
pub fn others_busy() -> bool {
    BUSY.load(Ordering::Relaxed) > 1
}
