//! How fast one core of this machine runs right now: lol_html passing the load page through with no
//! handlers, in MB/s, the very figure the targets were set against (~1,500 MB/s).
//!
//! The machine's two vCPUs are shared, and their speed moves by a factor of two within minutes without
//! any steal showing (docs/PERFORMANCE.md). Every figure of a run is only comparable with another run's
//! next to this index, measured between rounds when nothing else of the run is working.

use std::time::{Duration, Instant};

use lol_html::{HtmlRewriter, Settings};

/// How long one measurement runs, and at most how many passes it makes.
const SAMPLE: Duration = Duration::from_millis(300);
const MAX_PASSES: usize = 10_000;
/// Fed in chunks as a body stream would be; the size barely matters (docs/PERFORMANCE.md, seventh pass).
const CHUNK: usize = 16 * 1024;

/// MB/s of lol_html passing `page` through, on this thread (blocking for about [`SAMPLE`]).
pub(super) fn passthrough_mb_per_s(page: &[u8]) -> f64 {
    let started = Instant::now();
    let mut bytes = 0usize;
    for _ in 0..MAX_PASSES {
        bytes += pass_through(page);
        if started.elapsed() >= SAMPLE {
            break;
        }
    }
    bytes as f64 / started.elapsed().as_secs_f64().max(1e-9) / 1e6
}

/// One pass; returns the bytes written out (0 if lol_html refused the page, which the index then shows).
fn pass_through(page: &[u8]) -> usize {
    let mut written = 0;
    let mut rewriter = HtmlRewriter::new(Settings::new(), |c: &[u8]| written += c.len());
    let fed = page.chunks(CHUNK).try_for_each(|c| rewriter.write(c));
    if fed.and_then(|()| rewriter.end()).is_err() {
        return 0;
    }
    written
}

/// [`passthrough_mb_per_s`] off the async runtime's threads.
pub(super) async fn measure(page: bytes::Bytes) -> f64 {
    tokio::task::spawn_blocking(move || passthrough_mb_per_s(&page))
        .await
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_every_byte_through() {
        let page = b"<!doctype html><p class=x>caf\xc3\xa9 <a href=/b>b</a></p>".repeat(2_000);
        assert_eq!(pass_through(&page), page.len());
    }

    #[test]
    fn reports_a_positive_rate() {
        let page = b"<p>hello</p>".repeat(1_000);
        let mb_per_s = passthrough_mb_per_s(&page);
        assert!(mb_per_s.is_finite() && mb_per_s > 0.0, "{mb_per_s}");
    }
}
