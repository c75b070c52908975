//! How long each kind of record is kept, and the decision "is this record past it?". Pure functions on
//! the injected clock's time; the store applies them twice: a sweep deletes (at start and every
//! [`SWEEP_EVERY`]), and every read filters, so a late sweep never serves an expired record.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Visitor metadata is kept 30 days after the visitor was last seen.
pub const VISITOR_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// The debug event log keeps each event 7 days.
pub const EVENT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often the sweeper deletes what has expired. Reads filter in between, so this bounds disk
/// lingering only, never what the API serves.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Milliseconds since the Unix epoch: the unit every stored time uses (0 for times before it).
pub fn unix_ms(t: SystemTime) -> i64 {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// The time a stored millisecond count stands for.
pub fn from_unix_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Records whose reference time is before this are expired at `now`: a record lives for exactly
/// `ttl`, so at `now - ttl` it has just gone.
pub fn cutoff(now: SystemTime, ttl: Duration) -> i64 {
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    unix_ms(now).saturating_sub(ttl_ms)
}

/// Whether a record last touched at `at` (ms) has expired at `now`.
pub fn is_expired(at: i64, now: SystemTime, ttl: Duration) -> bool {
    at <= cutoff(now, ttl)
}

/// When a record last touched at `at` (ms) expires.
pub fn expires_at(at: i64, ttl: Duration) -> SystemTime {
    from_unix_ms(at) + ttl
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    #[test]
    fn a_visitor_is_kept_29_days_and_gone_at_30() {
        let seen = SystemTime::now();
        let at = unix_ms(seen);
        assert!(!is_expired(at, seen, VISITOR_TTL));
        assert!(!is_expired(at, seen + 29 * DAY, VISITOR_TTL));
        assert!(!is_expired(
            at,
            seen + 30 * DAY - Duration::from_millis(1),
            VISITOR_TTL
        ));
        assert!(is_expired(at, seen + 30 * DAY, VISITOR_TTL));
        assert!(is_expired(at, seen + 400 * DAY, VISITOR_TTL));
    }

    #[test]
    fn an_event_is_kept_under_7_days() {
        let at = unix_ms(SystemTime::now());
        let then = from_unix_ms(at);
        assert!(!is_expired(at, then + 6 * DAY, EVENT_TTL));
        assert!(is_expired(at, then + 7 * DAY, EVENT_TTL));
    }

    #[test]
    fn expiry_time_matches_the_decision() {
        let at = unix_ms(SystemTime::now());
        let end = expires_at(at, VISITOR_TTL);
        assert!(is_expired(at, end, VISITOR_TTL));
        assert!(!is_expired(at, end - Duration::from_millis(1), VISITOR_TTL));
    }

    #[test]
    fn times_round_trip_and_never_panic() {
        let t = from_unix_ms(1_700_000_000_123);
        assert_eq!(unix_ms(t), 1_700_000_000_123);
        assert_eq!(unix_ms(UNIX_EPOCH - DAY), 0);
        assert_eq!(from_unix_ms(-5), UNIX_EPOCH);
        assert_eq!(cutoff(UNIX_EPOCH, VISITOR_TTL), -(30 * 24 * 3600 * 1000));
    }
}
