//! The results: one row per side and variant, the proxied/direct ratios, JSON for machines.

use std::fmt::Write;

use serde::Serialize;

use super::memory::MemoryReport;
use super::stats::{Measured, RunStats};
use super::{LoadError, Variant};

/// Everything one `loadtest` run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub visitors: usize,
    /// Measured seconds per side in each round.
    pub duration_s: f64,
    pub rounds: usize,
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
    /// How fast a core ran (`speed.rs`), MB/s: before the first round and after each. Read every other
    /// figure with it.
    pub core_speed_mb_per_s: Vec<f64>,
    /// Each side with every round pooled: counts over their time together, percentiles over all requests.
    pub proxied: RunStats,
    pub direct: RunStats,
    /// The median over rounds of each round's ratio: the figure to read. A round's two sides ran
    /// seconds apart, so its ratio is what the machine's drift disturbs least.
    pub ratio: Ratios,
    pub rounds: Vec<Round>,
}

/// Both sides once, back to back in the order given.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub proxied_first: bool,
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

impl Ratios {
    fn between(proxied: &RunStats, direct: &RunStats) -> Ratios {
        let frac = |p: f64, d: f64| if d > 0.0 { p / d } else { 0.0 };
        Ratios {
            requests_per_s: frac(proxied.requests_per_s, direct.requests_per_s),
            pages_per_s: frac(proxied.pages_per_s, direct.pages_per_s),
            mb_per_s: frac(proxied.mb_per_s, direct.mb_per_s),
            p50_added_ms: proxied.p50_ms - direct.p50_ms,
            p99_added_ms: proxied.p99_ms - direct.p99_ms,
            page_p50_added_ms: proxied.page_p50_ms - direct.page_p50_ms,
            page_p99_added_ms: proxied.page_p99_ms - direct.page_p99_ms,
            cpu_ms_per_page_added: proxied.cpu_ms_per_page - direct.cpu_ms_per_page,
        }
    }

    /// Each figure's median over `rounds` (figure by figure, so not necessarily one round's).
    fn median(rounds: &[Ratios]) -> Ratios {
        let of = |figure: fn(&Ratios) -> f64| median(rounds.iter().map(figure).collect());
        Ratios {
            requests_per_s: of(|r| r.requests_per_s),
            pages_per_s: of(|r| r.pages_per_s),
            mb_per_s: of(|r| r.mb_per_s),
            p50_added_ms: of(|r| r.p50_added_ms),
            p99_added_ms: of(|r| r.p99_added_ms),
            page_p50_added_ms: of(|r| r.page_p50_added_ms),
            page_p99_added_ms: of(|r| r.page_p99_added_ms),
            cpu_ms_per_page_added: of(|r| r.cpu_ms_per_page_added),
        }
    }
}

/// The middle value, or the mean of the two middle ones; 0 for none.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[mid],
        _ => (values[mid - 1] + values[mid]) / 2.0,
    }
}

impl VariantReport {
    /// `rounds`: whether the proxied side went first, then the proxied and the direct measurement.
    pub(super) fn new(
        variant: Variant,
        offered_pages_per_s: Option<f64>,
        core_speed_mb_per_s: Vec<f64>,
        rounds: Vec<(bool, Measured, Measured)>,
    ) -> Result<VariantReport, LoadError> {
        let proxied = Measured::pooled(&rounds.iter().map(|(_, p, _)| p).collect::<Vec<_>>())?;
        let direct = Measured::pooled(&rounds.iter().map(|(_, _, d)| d).collect::<Vec<_>>())?;
        let rounds: Vec<Round> = rounds
            .iter()
            .map(|(proxied_first, p, d)| {
                let (proxied, direct) = (p.summary(), d.summary());
                Round {
                    proxied_first: *proxied_first,
                    ratio: Ratios::between(&proxied, &direct),
                    proxied,
                    direct,
                }
            })
            .collect();
        let ratio = Ratios::median(&rounds.iter().map(|r| r.ratio.clone()).collect::<Vec<_>>());
        Ok(VariantReport {
            variant,
            offered_pages_per_s,
            core_speed_mb_per_s,
            proxied,
            direct,
            ratio,
            rounds,
        })
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
            "{} visitors, {:.1} s per side per round, {} round(s) per variant (sides alternating which \
             goes first; the ratio is the median over rounds); load average before {} / after {}",
            self.visitors,
            self.duration_s,
            self.rounds,
            self.load_average_before,
            self.load_average_after
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
            if v.rounds.len() > 1 {
                for (i, round) in v.rounds.iter().enumerate() {
                    let order = if round.proxied_first { "p,d" } else { "d,p" };
                    ratio_row(
                        &mut out,
                        v.variant,
                        &format!("r{} {order}", i + 1),
                        &round.ratio,
                    );
                }
                ratio_row(&mut out, v.variant, "median", &v.ratio);
            } else {
                ratio_row(&mut out, v.variant, "ratio", &v.ratio);
            }
            let speeds: Vec<String> = v
                .core_speed_mb_per_s
                .iter()
                .map(|s| format!("{s:.0}"))
                .collect();
            let _ = writeln!(
                out,
                "  core speed (lol_html passing the page through, one core; the issue's reference ~1,500 \
                 MB/s), before the first round and after each: {} MB/s",
                speeds.join(", ")
            );
            if let Some(line) = phases_line(&v.proxied) {
                out.push_str(&line);
            }
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

/// Where a proxied page's time went by the proxy's own `Server-Timing` (`headers/timing.rs`), if its
/// pages named it.
fn phases_line(proxied: &RunStats) -> Option<String> {
    let fetch = proxied.page_fetch?;
    let rewrite = proxied.page_rewrite.map_or_else(String::new, |r| {
        format!(
            "; rewrite (head to first rewritten bytes) {:.2} / {:.2} ms",
            r.p50_ms, r.p99_ms
        )
    });
    Some(format!(
        "  proxied pages by the proxy's Server-Timing, p50 / p99: fetch (request in to response head in \
         hand) {:.2} / {:.2} ms{rewrite}\n",
        fetch.p50_ms, fetch.p99_ms
    ))
}

/// One line of ratios under a variant's two sides (`label`: `ratio`, `median` or a round).
fn ratio_row(out: &mut String, variant: Variant, label: &str, r: &Ratios) {
    let _ = writeln!(
        out,
        "{:<12} {:<8} {:>9.2} {:>8.2} {:>8.2} {:>+7.2} {:>+7.2} {:>7} {:>+9.2} {:>+9.2} {:>7} {:>+8.3}",
        variant.name(),
        label,
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
}

/// The first three fields of `/proc/loadavg` (empty where there is none).
pub(super) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_no_values() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(vec![-1.5]), -1.5);
        assert_eq!(median(Vec::new()), 0.0);
    }

    #[test]
    fn ratios_take_each_figure_median_on_its_own() {
        let r = |rps: f64, p50: f64| Ratios {
            requests_per_s: rps,
            pages_per_s: rps,
            mb_per_s: rps,
            p50_added_ms: p50,
            p99_added_ms: p50,
            page_p50_added_ms: p50,
            page_p99_added_ms: p50,
            cpu_ms_per_page_added: p50,
        };
        // The round with the best throughput is not the one with the lowest latency.
        let m = Ratios::median(&[r(0.7, 2.0), r(0.5, 1.0), r(0.6, 3.0)]);
        assert_eq!(m.requests_per_s, 0.6);
        assert_eq!(m.page_p50_added_ms, 2.0);
    }
}
