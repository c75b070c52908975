//! `Server-Timing` on every proxied response: the proxy's own account of where its time went. Browsers'
//! developer tools show it beside the request; the load test reads it to split a page's added latency
//! into its parts (docs/PERFORMANCE.md). An origin's own `Server-Timing` passes through beside it.
//!
//! - `cobrowse-fetch`: from the request's arrival to the response head in hand, from the cache or the
//!   origin (the proxy's request-side work, a lookup, and on a miss the whole exchange with the origin).
//! - `cobrowse-rewrite`, for a rewritten body only: from that head to the first rewritten bytes, which the
//!   proxy makes before it sends the head (`proxy.rs`, step 5): the header work, the wait for the body's
//!   first piece, and its rewrite. A page that arrives in one piece is rewritten whole in it.
//!
//! Durations only: no URL, no content, nothing about the visitor.

use std::fmt::Write;
use std::time::Duration;

use http::HeaderValue;

pub const FETCH: &str = "cobrowse-fetch";
pub const REWRITE: &str = "cobrowse-rewrite";

/// The header's value: `cobrowse-fetch;dur=0.245, cobrowse-rewrite;dur=0.801` (milliseconds). This runs
/// on every response, cache hits included: one allocation, handed to the header without a copy.
pub fn value(fetch: Duration, rewrite: Option<Duration>) -> HeaderValue {
    let mut value = String::with_capacity(64);
    push_metric(&mut value, FETCH, fetch);
    if let Some(rewrite) = rewrite {
        value.push_str(", ");
        push_metric(&mut value, REWRITE, rewrite);
    }
    // Only token characters, digits and `;=., ` were written.
    HeaderValue::from_maybe_shared(bytes::Bytes::from(value))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `name;dur=` with the duration in milliseconds to the microsecond, by integer arithmetic (float
/// formatting costs several times as much).
fn push_metric(out: &mut String, name: &str, took: Duration) {
    let micros = took.as_micros();
    // Writing to a String cannot fail.
    let _ = write!(out, "{name};dur={}.{:03}", micros / 1000, micros % 1000);
}

/// What a response's `Server-Timing` values say of the proxy's phases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Phases {
    pub fetch: Option<Duration>,
    pub rewrite: Option<Duration>,
}

/// Reads our two metrics out of `Server-Timing` values (any others, such as an origin's, are skipped; so
/// is anything malformed). For the load test, which reads what the proxy under test sent.
pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Phases {
    let mut phases = Phases::default();
    for metric in values.into_iter().flat_map(|v| v.split(',')) {
        let mut params = metric.split(';').map(str::trim);
        let slot = match params.next() {
            Some(FETCH) => &mut phases.fetch,
            Some(REWRITE) => &mut phases.rewrite,
            _ => continue,
        };
        let duration = params
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("dur"))
            .and_then(|(_, v)| v.trim().parse::<f64>().ok())
            .and_then(from_millis);
        if duration.is_some() {
            *slot = duration;
        }
    }
    phases
}

/// A `dur` (milliseconds, as written: `0.245`) to the nanosecond, rounded, not truncated (`0.245` is
/// not exact in binary); `None` for a negative, infinite or absurd one (over a day).
fn from_millis(ms: f64) -> Option<Duration> {
    const DAY_MS: f64 = 86_400_000.0;
    (ms.is_finite() && (0.0..=DAY_MS).contains(&ms))
        .then(|| Duration::from_nanos((ms * 1e6).round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_to_the_microsecond() {
        let v = value(
            Duration::from_micros(245),
            Some(Duration::from_micros(12_801_007)),
        );
        assert_eq!(
            v.to_str().unwrap(),
            "cobrowse-fetch;dur=0.245, cobrowse-rewrite;dur=12801.007"
        );
        let v = value(Duration::from_nanos(999), None);
        assert_eq!(v.to_str().unwrap(), "cobrowse-fetch;dur=0.000");
    }

    #[test]
    fn what_is_written_reads_back() {
        let fetch = Duration::from_micros(1_234);
        let rewrite = Duration::from_micros(56);
        let v = value(fetch, Some(rewrite));
        let phases = parse([v.to_str().unwrap()]);
        assert_eq!(phases.fetch, Some(fetch));
        assert_eq!(phases.rewrite, Some(rewrite));
    }

    #[test]
    fn other_metrics_and_garbage_are_skipped() {
        let phases = parse([
            "db;dur=53, app;desc=\"x\";dur=47.2",
            "cobrowse-fetch;desc=\"a, b\";dur=bad, cobrowse-rewrite",
            ";;;,=,cobrowse-fetch;DUR = 2.5",
            "cobrowse-rewrite;dur=-1, cobrowse-rewrite;dur=1e400",
        ]);
        assert_eq!(phases.fetch, Some(Duration::from_micros(2_500)));
        assert_eq!(phases.rewrite, None);
        assert_eq!(parse([""]), Phases::default());
    }
}
