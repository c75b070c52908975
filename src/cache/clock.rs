//! The clock behind every freshness, age and 24-hour-cap decision of the cache.
//!
//! It is injectable so tests can jump a day ahead without waiting; moka's own timers (a memory backstop
//! only) keep using the monotonic clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Wall-clock time as the cache sees it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that stands still until told to move: fixed at its creation time plus every
/// [`advance`](ManualClock::advance) so far. For tests (public so integration tests can inject it).
#[derive(Debug)]
pub struct ManualClock {
    start: SystemTime,
    offset_ms: AtomicU64,
}

impl ManualClock {
    pub fn new() -> ManualClock {
        ManualClock {
            start: SystemTime::now(),
            offset_ms: AtomicU64::new(0),
        }
    }

    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> ManualClock {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        self.start + Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::new();
        let t0 = clock.now();
        assert_eq!(clock.now(), t0);
        clock.advance(Duration::from_secs(25 * 3600));
        assert_eq!(clock.now(), t0 + Duration::from_secs(25 * 3600));
    }
}
