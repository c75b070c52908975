//! What one run measured: counters and latency histograms shared by every visitor, and their summary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::cpu::CpuUse;
use super::LoadError;
use crate::headers::timing::Phases;

/// Most error messages kept as examples; the count covers the rest.
const ERROR_SAMPLES: usize = 5;
/// Latencies are recorded in microseconds, up to a minute (anything longer is clamped there).
const MAX_MICROS: u64 = 60_000_000;

/// Shared by the visitors of one run. The histograms sit behind a mutex: a record is a few nanoseconds
/// against requests of tens of microseconds, so the lock is not what the run measures.
pub(super) struct Stats {
    requests: AtomicU64,
    pages: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    waited: AtomicU64,
    all: Mutex<Histogram<u64>>,
    page: Mutex<Histogram<u64>>,
    /// The proxy's own account of each page (`Server-Timing`, `headers/timing.rs`); empty direct.
    page_fetch: Mutex<Histogram<u64>>,
    page_rewrite: Mutex<Histogram<u64>>,
    samples: Mutex<Vec<String>>,
}

impl Stats {
    pub(super) fn new() -> Result<Stats, hdrhistogram::CreationError> {
        let hist = || Histogram::new_with_bounds(1, MAX_MICROS, 3);
        Ok(Stats {
            requests: AtomicU64::new(0),
            pages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            waited: AtomicU64::new(0),
            all: Mutex::new(hist()?),
            page: Mutex::new(hist()?),
            page_fetch: Mutex::new(hist()?),
            page_rewrite: Mutex::new(hist()?),
            samples: Mutex::new(Vec::new()),
        })
    }

    /// One successful response of `bytes` body bytes that took `took`; `page` for the HTML document.
    pub(super) fn response(&self, took: Duration, bytes: usize, page: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        let micros = micros(took);
        record(&self.all, micros);
        if page {
            record(&self.page, micros);
        }
    }

    /// The phases a page's `Server-Timing` named.
    pub(super) fn page_phases(&self, phases: Phases) {
        if let Some(fetch) = phases.fetch {
            record(&self.page_fetch, micros(fetch));
        }
        if let Some(rewrite) = phases.rewrite {
            record(&self.page_rewrite, micros(rewrite));
        }
    }

    /// A page and all its assets loaded.
    pub(super) fn page_loaded(&self) {
        self.pages.fetch_add(1, Ordering::Relaxed);
    }

    /// A paced page that had to wait for the previous one on its connection (`pace.rs`).
    pub(super) fn waited(&self) {
        self.waited.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() < ERROR_SAMPLES {
            samples.push(what);
        }
    }

    /// Adds `other`'s counts, latencies and error samples to these: rounds of one side pooled.
    pub(super) fn absorb(&self, other: &Stats) -> Result<(), hdrhistogram::AdditionError> {
        for (mine, theirs) in [
            (&self.requests, &other.requests),
            (&self.pages, &other.pages),
            (&self.bytes, &other.bytes),
            (&self.errors, &other.errors),
            (&self.waited, &other.waited),
        ] {
            mine.fetch_add(theirs.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        for (mine, theirs) in [
            (&self.all, &other.all),
            (&self.page, &other.page),
            (&self.page_fetch, &other.page_fetch),
            (&self.page_rewrite, &other.page_rewrite),
        ] {
            let theirs = theirs.lock().unwrap_or_else(|p| p.into_inner());
            let mut mine = mine.lock().unwrap_or_else(|p| p.into_inner());
            // Same bounds on both sides (`Stats::new`), so every value fits.
            mine.add(&*theirs)?;
        }
        let theirs = other.samples.lock().unwrap_or_else(|p| p.into_inner());
        let mut mine = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let room = ERROR_SAMPLES.saturating_sub(mine.len());
        mine.extend(theirs.iter().take(room).cloned());
        Ok(())
    }

    pub(super) fn summary(&self, elapsed: Duration, cpu: CpuUse) -> RunStats {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let all = self.all.lock().unwrap_or_else(|p| p.into_inner());
        let page = self.page.lock().unwrap_or_else(|p| p.into_inner());
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let requests = self.requests.load(Ordering::Relaxed);
        let pages = self.pages.load(Ordering::Relaxed);
        let bytes = self.bytes.load(Ordering::Relaxed);
        let per = |n: u64| {
            if n > 0 {
                cpu.process_s * 1000.0 / n as f64
            } else {
                0.0
            }
        };
        RunStats {
            seconds: secs,
            requests,
            pages,
            errors: self.errors.load(Ordering::Relaxed),
            waited_pages: self.waited.load(Ordering::Relaxed),
            bytes,
            requests_per_s: requests as f64 / secs,
            pages_per_s: pages as f64 / secs,
            mb_per_s: bytes as f64 / secs / 1e6,
            p50_ms: ms(&all, 0.5),
            p99_ms: ms(&all, 0.99),
            p999_ms: ms(&all, 0.999),
            page_p50_ms: ms(&page, 0.5),
            page_p99_ms: ms(&page, 0.99),
            page_p999_ms: ms(&page, 0.999),
            page_fetch: Phase::of(&self.page_fetch),
            page_rewrite: Phase::of(&self.page_rewrite),
            cpu_ms_per_request: per(requests),
            cpu_ms_per_page: per(pages),
            cpu,
            error_samples: self
                .samples
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// One measured stretch of one side, kept whole so that rounds can be pooled.
pub(super) struct Measured {
    pub(super) stats: Arc<Stats>,
    pub(super) elapsed: Duration,
    pub(super) cpu: CpuUse,
}

impl Measured {
    pub(super) fn summary(&self) -> RunStats {
        self.stats.summary(self.elapsed, self.cpu)
    }

    /// Every stretch as one: counts and latencies together, over their time together.
    pub(super) fn pooled(all: &[&Measured]) -> Result<RunStats, LoadError> {
        let pooled = Stats::new()?;
        for m in all {
            pooled.absorb(&m.stats)?;
        }
        let elapsed = all.iter().map(|m| m.elapsed).sum();
        let cpu = CpuUse::pooled(all.iter().map(|m| (m.cpu, m.elapsed)));
        Ok(pooled.summary(elapsed, cpu))
    }
}

/// Microseconds, clamped to what the histograms hold.
fn micros(took: Duration) -> u64 {
    u64::try_from(took.as_micros())
        .unwrap_or(MAX_MICROS)
        .clamp(1, MAX_MICROS)
}

fn record(hist: &Mutex<Histogram<u64>>, micros: u64) {
    let mut h = hist.lock().unwrap_or_else(|p| p.into_inner());
    // In bounds by construction (clamped above), so saturating never changes a value.
    h.saturating_record(micros);
}

/// One side (proxied or direct) of one variant.
#[derive(Debug, Clone, Serialize)]
pub struct RunStats {
    pub seconds: f64,
    pub requests: u64,
    /// Pages loaded with all their assets.
    pub pages: u64,
    pub errors: u64,
    /// Paced pages that, sent when due, would have waited for the previous page on their connection (the
    /// wait is part of their latency); always 0 back to back.
    pub waited_pages: u64,
    /// Response body bytes.
    pub bytes: u64,
    pub requests_per_s: f64,
    pub pages_per_s: f64,
    pub mb_per_s: f64,
    /// Latency of every request (page and assets), first byte sent to last byte read.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// Latency of the HTML document alone.
    pub page_p50_ms: f64,
    pub page_p99_ms: f64,
    pub page_p999_ms: f64,
    /// The proxy's own timing of the page (`Server-Timing`): until the response head was in hand, and
    /// from there until the first rewritten bytes; `None` where no response named it (direct).
    pub page_fetch: Option<Phase>,
    pub page_rewrite: Option<Phase>,
    /// This process's CPU time (generator, origin and proxy together) per request and per page loaded.
    pub cpu_ms_per_request: f64,
    pub cpu_ms_per_page: f64,
    /// CPU time, cores kept busy, and what steal and other processes took of the machine meanwhile.
    pub cpu: CpuUse,
    pub error_samples: Vec<String>,
}

/// One phase of the proxy's timing, over the pages that named it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Phase {
    pub pages: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Phase {
    fn of(hist: &Mutex<Histogram<u64>>) -> Option<Phase> {
        let h = hist.lock().unwrap_or_else(|p| p.into_inner());
        (!h.is_empty()).then(|| Phase {
            pages: h.len(),
            p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
            p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(latencies_ms: &[u64], secs: u64, cpu_s: f64) -> Measured {
        let stats = Stats::new().expect("histogram");
        for &ms in latencies_ms {
            stats.response(Duration::from_millis(ms), 1_000, true);
            stats.page_loaded();
        }
        stats.error(format!("error after {secs} s"));
        Measured {
            stats: Arc::new(stats),
            elapsed: Duration::from_secs(secs),
            cpu: CpuUse {
                process_s: cpu_s,
                cores: cpu_s / secs as f64,
                steal_pct: 0.0,
                others_pct: 0.0,
            },
        }
    }

    #[test]
    fn the_proxys_phases_pool_and_are_absent_where_nothing_named_them() {
        let direct = measured(&[1, 1], 1, 0.1);
        assert!(direct.summary().page_fetch.is_none() && direct.summary().page_rewrite.is_none());
        let proxied = measured(&[2, 2], 1, 0.1);
        for ms in [1, 3, 3] {
            proxied.stats.page_phases(Phases {
                fetch: Some(Duration::from_millis(ms)),
                rewrite: (ms > 1).then(|| Duration::from_millis(ms * 10)),
            });
        }
        let pooled = Measured::pooled(&[&direct, &proxied]).expect("pooled");
        let (fetch, rewrite) = (pooled.page_fetch.unwrap(), pooled.page_rewrite.unwrap());
        assert_eq!((fetch.pages, rewrite.pages), (3, 2));
        assert!((fetch.p50_ms - 3.0).abs() < 0.01, "{fetch:?}");
        assert!((rewrite.p99_ms - 30.0).abs() < 0.05, "{rewrite:?}");
    }

    #[test]
    fn pooled_rounds_count_and_rank_every_request_together() {
        let fast = measured(&[1, 1, 1], 1, 0.5);
        let slow = measured(&[9, 9, 9, 9, 9], 3, 1.5);
        let pooled = Measured::pooled(&[&fast, &slow]).expect("pooled");
        assert_eq!(pooled.requests, 8);
        assert_eq!(pooled.pages, 8);
        assert_eq!(pooled.errors, 2);
        assert_eq!(pooled.error_samples.len(), 2);
        assert_eq!(pooled.bytes, 8_000);
        assert!((pooled.requests_per_s - 2.0).abs() < 1e-9);
        // Five of the eight took 9 ms: the pooled median is theirs, not an average of two medians.
        assert!(
            (pooled.page_p50_ms - 9.0).abs() < 0.01,
            "{}",
            pooled.page_p50_ms
        );
        assert!((pooled.cpu.cores - 0.5).abs() < 1e-9);
        assert!((pooled.cpu_ms_per_page - 250.0).abs() < 1e-9);
    }
}
