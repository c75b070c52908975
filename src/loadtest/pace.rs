//! Paced visitors, for latency at a given load rather than at saturation.
//!
//! Back-to-back visitors measure throughput: with 8 requests always in flight, a page's latency is just
//! 8 / pages-per-second (Little's law), whatever the proxy adds to one page. A paced visitor instead
//! sends its pages at random (Poisson) times at a set mean rate, the same for the proxied and the direct
//! side, so the difference in latency is what the proxy adds to a page at that load, queueing included.
//!
//! A page's latency is what it would have been had it been sent exactly when due: the time it took from
//! its send to its last byte, plus however long the previous page on its connection, timed the same way,
//! would still have been loading then. Counting only from the send would hide a slow page's cost to the
//! next ("coordinated omission"); counting from when it was due would also charge the generator's own
//! timer, which wakes up to a millisecond late, to whatever is measured.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

/// No gap is longer than this many mean gaps, so a run's rate cannot hinge on one unlucky draw.
const MAX_GAP_IN_MEANS: f64 = 10.0;

/// One visitor's schedule: when each of its pages is due, and when its connection would be free.
pub(super) struct Pace {
    mean_gap: Duration,
    rng: StdRng,
    /// `None` once the schedule runs past what an `Instant` can hold (an absurdly low rate).
    due: Option<Instant>,
    /// When the last page would have finished, had every page been sent when due or when the one
    /// before it finished, whichever was later.
    free_at: Option<Instant>,
}

/// Whether `rate` (pages/s) can pace anything: a positive, finite number.
pub(super) fn is_rate(rate: f64) -> bool {
    rate.is_finite() && rate > 0.0
}

impl Pace {
    /// `rate` pages per second in total over `visitors` visitors; `id` staggers and seeds each visitor.
    /// `None` for a rate that is not [`is_rate`].
    pub(super) fn new(rate: f64, visitors: usize, id: u64, start: Instant) -> Option<Pace> {
        if !is_rate(rate) {
            return None;
        }
        let mean_gap = Duration::try_from_secs_f64(visitors.max(1) as f64 / rate).ok()?;
        let mut pace = Pace {
            mean_gap,
            rng: StdRng::seed_from_u64(id),
            due: None,
            free_at: None,
        };
        pace.due = pace.gap().and_then(|gap| start.checked_add(gap));
        Some(pace)
    }

    /// When the next page is due, moving on to the one after; `None` if it is due only after `deadline`.
    pub(super) fn next_before(&mut self, deadline: Instant) -> Option<Instant> {
        let due = self.due.filter(|&due| due < deadline)?;
        self.due = self.gap().and_then(|gap| due.checked_add(gap));
        Some(due)
    }

    /// The latency of the page that was due at `due` and took `took` from its send to its last byte, and
    /// whether it had to wait for the one before it.
    pub(super) fn latency(&mut self, due: Instant, took: Duration) -> (Duration, bool) {
        let start = self.free_at.map_or(due, |free| free.max(due));
        let done = start + took;
        self.free_at = Some(done);
        (done - due, start > due)
    }

    /// The page failed: the connection is made again, and nothing waits on it.
    pub(super) fn failed(&mut self) {
        self.free_at = None;
    }

    /// An exponentially distributed gap (Poisson arrivals), capped; `None` past what a `Duration` holds.
    fn gap(&mut self) -> Option<Duration> {
        let uniform: f64 = self.rng.gen();
        let means = (-(1.0 - uniform).ln()).min(MAX_GAP_IN_MEANS);
        Duration::try_from_secs_f64(self.mean_gap.as_secs_f64() * means).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_average_to_the_rate_over_the_visitors() {
        let start = Instant::now();
        // 400 pages/s over 8 visitors: one page each 20 ms on average.
        let mut pace = Pace::new(400.0, 8, 3, start).expect("valid rate");
        let far = start + Duration::from_secs(1_000_000);
        let mut last = start;
        for _ in 0..20_000 {
            last = pace.next_before(far).expect("before the deadline");
        }
        let mean_ms = (last - start).as_secs_f64() * 1000.0 / 20_000.0;
        assert!((19.0..21.0).contains(&mean_ms), "mean gap {mean_ms} ms");
    }

    #[test]
    fn gaps_vary_and_are_capped() {
        let start = Instant::now();
        let mut pace = Pace::new(100.0, 1, 7, start).expect("valid rate");
        let far = start + Duration::from_secs(1_000_000);
        let (mut shortest, mut longest) = (Duration::MAX, Duration::ZERO);
        let mut last = start;
        for _ in 0..10_000 {
            let due = pace.next_before(far).expect("before the deadline");
            shortest = shortest.min(due - last);
            longest = longest.max(due - last);
            last = due;
        }
        // Mean 10 ms: Poisson arrivals give gaps well under and well over it, never above the cap.
        assert!(shortest < Duration::from_millis(1), "{shortest:?}");
        assert!(longest > Duration::from_millis(40), "{longest:?}");
        assert!(longest <= Duration::from_millis(100), "{longest:?}");
    }

    #[test]
    fn visitors_are_seeded_apart() {
        let start = Instant::now();
        let far = start + Duration::from_secs(60);
        let mut a = Pace::new(100.0, 2, 0, start).expect("valid rate");
        let mut b = Pace::new(100.0, 2, 1, start).expect("valid rate");
        assert_ne!(a.next_before(far), b.next_before(far));
    }

    #[test]
    fn nothing_is_due_after_the_deadline() {
        let start = Instant::now();
        let deadline = start + Duration::from_millis(100);
        let mut pace = Pace::new(1000.0, 1, 0, start).expect("valid rate");
        let mut pages = 0;
        while let Some(due) = pace.next_before(deadline) {
            assert!(due < deadline);
            pages += 1;
            assert!(
                pages < 1_000,
                "a 100 ms schedule at 1,000/s cannot hold 1,000 pages"
            );
        }
        // About 100 pages are due in 100 ms at 1,000 a second.
        assert!((50..150).contains(&pages), "{pages}");
    }

    #[test]
    fn rates_that_are_not_positive_numbers_are_refused() {
        let start = Instant::now();
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(Pace::new(rate, 8, 0, start).is_none(), "{rate}");
        }
    }

    #[test]
    fn an_absurdly_low_rate_schedules_nothing_rather_than_overflowing() {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(10);
        for rate in [1e-18, f64::MIN_POSITIVE] {
            if let Some(mut pace) = Pace::new(rate, 8, 0, start) {
                assert_eq!(pace.next_before(deadline), None, "{rate}");
            }
        }
    }

    #[test]
    fn a_page_waits_for_the_one_before_it_on_its_connection() {
        let start = Instant::now();
        let mut pace = Pace::new(100.0, 1, 0, start).expect("valid rate");
        let ms = Duration::from_millis;
        // Due at 0 ms, took 5: free at 5.
        assert_eq!(pace.latency(start, ms(5)), (ms(5), false));
        // Due at 2 ms: it waits 3 ms, then takes 4.
        assert_eq!(pace.latency(start + ms(2), ms(4)), (ms(7), true));
        // Due at 20 ms, long after the connection was free (at 9): its own time only, however late the
        // generator's timer actually sent it.
        assert_eq!(pace.latency(start + ms(20), ms(1)), (ms(1), false));
        // After a failure nothing waits on the connection.
        pace.failed();
        assert_eq!(pace.latency(start + ms(20), ms(2)), (ms(2), false));
    }
}
