//! The results: one row per side and variant, the proxied/direct ratios, JSON for machines.

use std::fmt::Write;

use serde::Serialize;

use super::memory::MemoryReport;
use super::speed::Speed;
use super::stats::RunStats;
use super::Variant;

/// Everything one `loadtest` run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub visitors: usize,
    pub duration_s: f64,
    /// `/proc/loadavg` before and after: the machine is shared, so read the figures with these.
    pub load_average_before: String,
    pub load_average_after: String,
    pub variants: Vec<VariantReport>,
    pub memory: Option<MemoryReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VariantReport {
    pub variant: Variant,
    /// Pages/s offered in all when paced (`page-paced`); `None` back to back.
    pub offered_pages_per_s: Option<f64>,
    /// How fast a core ran before and after (`speed.rs`): read every other figure with it.
    pub core_speed: Speed,
    pub proxied: RunStats,
    pub direct: RunStats,
    pub ratio: Ratios,
}

/// Proxied against direct: throughput as a fraction of direct, latency as milliseconds added.
#[derive(Debug, Clone, Serialize)]
pub struct Ratios {
    pub requests_per_s: f64,
    pub pages_per_s: f64,
    pub mb_per_s: f64,
    pub p50_added_ms: f64,
    pub p99_added_ms: f64,
    pub page_p50_added_ms: f64,
    pub page_p99_added_ms: f64,
    /// CPU time per page, proxied less direct: about what the proxy itself spends on a page.
    pub cpu_ms_per_page_added: f64,
}

impl VariantReport {
    pub(super) fn new(
        variant: Variant,
        offered_pages_per_s: Option<f64>,
        core_speed: Speed,
        proxied: RunStats,
        direct: RunStats,
    ) -> VariantReport {
        let frac = |p: f64, d: f64| if d > 0.0 { p / d } else { 0.0 };
        let ratio = Ratios {
            requests_per_s: frac(proxied.requests_per_s, direct.requests_per_s),
            pages_per_s: frac(proxied.pages_per_s, direct.pages_per_s),
            mb_per_s: frac(proxied.mb_per_s, direct.mb_per_s),
            p50_added_ms: proxied.p50_ms - direct.p50_ms,
            p99_added_ms: proxied.p99_ms - direct.p99_ms,
            page_p50_added_ms: proxied.page_p50_ms - direct.page_p50_ms,
            page_p99_added_ms: proxied.page_p99_ms - direct.page_p99_ms,
            cpu_ms_per_page_added: proxied.cpu_ms_per_page - direct.cpu_ms_per_page,
        };
        VariantReport {
            variant,
            offered_pages_per_s,
            core_speed,
            proxied,
            direct,
            ratio,
        }
    }
}

impl Report {
    /// Total failed requests over every variant and side.
    pub fn errors(&self) -> u64 {
        self.variants
            .iter()
            .map(|v| v.proxied.errors + v.direct.errors)
            .sum()
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} visitors, {:.1} s per side; load average before {} / after {}",
            self.visitors, self.duration_s, self.load_average_before, self.load_average_after
        );
        let _ = writeln!(
            out,
            "cpu/page: this process's CPU ms per page (generator, origin and proxy); cores: CPU time over \
             wall time; steal% / other%: the machine's time taken by the hypervisor / other processes"
        );
        let _ = writeln!(
            out,
            "{:<12} {:<8} {:>9} {:>8} {:>8} {:>7} {:>7} {:>7} {:>9} {:>9} {:>7} {:>8} {:>6} {:>6} {:>6}",
            "variant",
            "side",
            "req/s",
            "pages/s",
            "MB/s",
            "p50ms",
            "p99ms",
            "p99.9ms",
            "page p50",
            "page p99",
            "errors",
            "cpu/page",
            "cores",
            "steal%",
            "other%"
        );
        for v in &self.variants {
            for (side, s) in [("proxied", &v.proxied), ("direct", &v.direct)] {
                let _ = writeln!(
                    out,
                    "{:<12} {:<8} {:>9.0} {:>8.1} {:>8.1} {:>7.2} {:>7.2} {:>7.2} {:>9.2} {:>9.2} {:>7} {:>8.3} {:>6.2} {:>6.1} {:>6.1}",
                    v.variant.name(),
                    side,
                    s.requests_per_s,
                    s.pages_per_s,
                    s.mb_per_s,
                    s.p50_ms,
                    s.p99_ms,
                    s.p999_ms,
                    s.page_p50_ms,
                    s.page_p99_ms,
                    s.errors,
                    s.cpu_ms_per_page,
                    s.cpu.cores,
                    s.cpu.steal_pct,
                    s.cpu.others_pct
                );
            }
            let r = &v.ratio;
            let _ = writeln!(
                out,
                "{:<12} {:<8} {:>9.2} {:>8.2} {:>8.2} {:>+7.2} {:>+7.2} {:>7} {:>+9.2} {:>+9.2} {:>7} {:>+8.3}",
                v.variant.name(),
                "ratio",
                r.requests_per_s,
                r.pages_per_s,
                r.mb_per_s,
                r.p50_added_ms,
                r.p99_added_ms,
                "",
                r.page_p50_added_ms,
                r.page_p99_added_ms,
                "",
                r.cpu_ms_per_page_added
            );
            let _ = writeln!(
                out,
                "  core speed (lol_html passing the page through, one core; the issue's reference ~1,500 \
                 MB/s): {:.0} MB/s before, {:.0} after",
                v.core_speed.before_mb_per_s, v.core_speed.after_mb_per_s
            );
            if let Some(rate) = v.offered_pages_per_s {
                let _ = writeln!(
                    out,
                    "  paced: {rate:.0} pages/s offered in all at random times; pages that waited for the \
                     one before on their connection: proxied {}, direct {}",
                    v.proxied.waited_pages, v.direct.waited_pages
                );
            }
            for sample in v
                .proxied
                .error_samples
                .iter()
                .chain(&v.direct.error_samples)
            {
                let _ = writeln!(out, "  error: {sample}");
            }
        }
        if let Some(m) = &self.memory {
            out.push_str(&m.table());
        }
        out
    }
}

/// The first three fields of `/proc/loadavg` (empty where there is none).
pub(super) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
