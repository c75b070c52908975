//! Keeps the split's helper off the core the page's own thread is on.
//!
//! The helper is a blocking-pool thread woken just as the page's thread starts on its parts. Linux often
//! wakes it on the waker's own core (the wakee preempts the waker there), and the two then share one core
//! while the other sits idle until the load balancer moves one of them: in a scratch build, 38–42 % of
//! helpers started on the page's core at 500 pages/s, and a tenth of those only ~1.5 ms later, when the
//! page's thread had done most parts itself. A helper that finds itself there narrows its own affinity
//! to the other cores, which moves it at once, and widens it back when done (pool threads run other
//! blocking work later). Measured in `docs/PERFORMANCE.md` (sixteenth pass).

/// The core the calling thread runs on now, if the platform says.
pub(super) fn current_core() -> Option<usize> {
    #[cfg(target_os = "linux")]
    return Some(rustix::thread::sched_getcpu());
    #[cfg(not(target_os = "linux"))]
    None
}

/// While held, the calling thread runs on any allowed core but `core`, if it was on it.
pub(super) struct AwayFrom {
    #[cfg(target_os = "linux")]
    restore: Option<rustix::thread::CpuSet>,
}

impl AwayFrom {
    pub(super) fn core(core: Option<usize>) -> AwayFrom {
        #[cfg(target_os = "linux")]
        {
            let restore = core.and_then(move_off);
            AwayFrom { restore }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = core;
            AwayFrom {}
        }
    }
}

/// Narrows this thread's affinity to exclude `core` when it runs there and another core is allowed;
/// returns the affinity to restore. Failures leave the thread where it is: the split still works, only
/// slower.
#[cfg(target_os = "linux")]
fn move_off(core: usize) -> Option<rustix::thread::CpuSet> {
    use rustix::thread::{sched_getaffinity, sched_getcpu, sched_setaffinity};
    if sched_getcpu() != core {
        return None;
    }
    let allowed = sched_getaffinity(None).ok()?;
    let mut others = allowed;
    others.unset(core);
    if others.count() == 0 {
        return None;
    }
    sched_setaffinity(None, &others).ok()?;
    Some(allowed)
}

#[cfg(target_os = "linux")]
impl Drop for AwayFrom {
    fn drop(&mut self) {
        if let Some(allowed) = self.restore.take() {
            let _ = rustix::thread::sched_setaffinity(None, &allowed);
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use rustix::thread::sched_getaffinity;

    #[test]
    fn a_thread_on_the_core_leaves_it_and_gets_its_affinity_back() {
        // A thread of its own: the test harness's threads keep their affinity whatever happens here.
        std::thread::spawn(|| {
            let before = sched_getaffinity(None).unwrap();
            if before.count() < 2 {
                return; // one core allowed: nowhere to go, and `move_off` leaves it be
            }
            // The thread may move between reading its core and the guard's check; then try again.
            let moved = (0..100).any(|_| {
                let here = current_core().unwrap();
                let away = AwayFrom::core(Some(here));
                if away.restore.is_none() {
                    return false;
                }
                assert_ne!(current_core(), Some(here), "moved off its core");
                assert!(!sched_getaffinity(None).unwrap().is_set(here));
                drop(away);
                assert_eq!(
                    sched_getaffinity(None).unwrap(),
                    before,
                    "affinity restored"
                );
                true
            });
            assert!(moved, "never found on the core it had just read");
            // Not on that core (no thread is on this one): nothing changes.
            let away = AwayFrom::core(Some(usize::MAX));
            assert!(away.restore.is_none());
            assert_eq!(sched_getaffinity(None).unwrap(), before);
        })
        .join()
        .unwrap();
    }
}
