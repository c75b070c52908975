//! `cobrowse-proxy loadtest`: the fixture origin and the proxy on loopback, N virtual visitors loading a
//! page and its assets for a bounded time through the proxy, then the same load against the origin direct,
//! in the same run; requests/s, MB/s, latency percentiles, errors and the proxied/direct ratios.
//!
//! `stack` starts the servers, `target` makes a visitor's connections, `visitor` is the browser-like
//! script, `pace` its schedule when paced, `stats` the counters and histograms, `cpu` the CPU time used
//! and the machine's share, `speed` how fast one core runs, `report` the table and JSON, `memory` the
//! resident-memory measurements (a proxy in its own process). Loopback only; every loop is bounded by
//! the deadline.

mod cpu;
mod memory;
mod pace;
mod report;
mod speed;
mod stack;
mod stats;
mod target;
mod visitor;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

pub use cpu::CpuUse;
pub use memory::{measure as measure_memory, MemoryOptions, MemoryReport, StreamReport};
pub use report::{Ratios, Report, Round, VariantReport};
pub use stats::RunStats;

use stack::Stack;
use target::{Target, Via};

/// The load-test site (no cache headers) and its cacheable twin (`public, max-age=3600`).
const SITE: &str = "load.shop.test";
const CACHED_SITE: &str = "cached.shop.test";

/// What is measured through the proxy (the direct side is always the origin itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// The rewriting proxy: a proxy host per origin, every page rewritten, uncacheable assets.
    Rewrite,
    /// The forward proxy, absolute-form plain HTTP (the agent injected, nothing rewritten).
    Forward,
    /// The forward proxy with CONNECT and TLS interception; direct is TLS to the origin.
    ForwardTls,
    /// The rewriting proxy on cacheable assets, each request made unique so every lookup misses.
    CacheCold,
    /// The rewriting proxy on cacheable assets after a warm-up: assets are cache hits.
    CacheWarm,
    /// The rewriting proxy serving only the 100 KB page, each visitor one connection loading it back to
    /// back: the measure of the pages/s and added-latency targets, and of the peers it compares.
    Page,
    /// The rewriting proxy serving one cacheable 4 KiB image alone, back to back after a warm-up: every
    /// request a cache hit, against the origin serving it from memory (the cache-hit target).
    CacheHit,
    /// `page` paced: each visitor's connection sends the page at random times, all together at
    /// `Options::rate` pages/s on both sides; the added latency at that load (`pace.rs`).
    PagePaced,
}

impl Variant {
    pub const ALL: [Variant; 8] = [
        Variant::Page,
        Variant::PagePaced,
        Variant::CacheHit,
        Variant::Rewrite,
        Variant::Forward,
        Variant::ForwardTls,
        Variant::CacheCold,
        Variant::CacheWarm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Rewrite => "rewrite",
            Variant::Forward => "forward",
            Variant::ForwardTls => "forward-tls",
            Variant::CacheCold => "cache-cold",
            Variant::CacheWarm => "cache-warm",
            Variant::Page => "page",
            Variant::PagePaced => "page-paced",
            Variant::CacheHit => "cache-hit",
        }
    }

    /// What each visitor loads first (and, for `page` and `cache-hit`, only).
    fn path(self) -> &'static str {
        match self {
            Variant::CacheHit => "/img/p0.png",
            _ => "/",
        }
    }
}

impl FromStr for Variant {
    type Err = String;
    fn from_str(s: &str) -> Result<Variant, String> {
        Variant::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| format!("unknown variant {s:?} (page, page-paced, cache-hit, rewrite, forward, forward-tls, cache-cold, cache-warm, all)"))
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Concurrent virtual visitors (each with up to six connections).
    pub visitors: usize,
    /// Measured time per side (proxied and direct) in each round of a variant.
    pub duration: Duration,
    /// Rounds of both sides per variant, in alternating order; the ratios reported are their medians.
    pub rounds: usize,
    /// Unmeasured load before each side of the first round: connections made, caches filled.
    pub warmup: Duration,
    /// Pages per second offered in all by the `page-paced` visitors, on each side.
    pub rate: f64,
    pub variants: Vec<Variant>,
    /// The fixture sites (`fixtures/sites`).
    pub sites: PathBuf,
}

impl Options {
    /// Rounds per variant: at least one, whatever was asked.
    fn rounds(&self) -> usize {
        self.rounds.max(1)
    }
}

/// Why a load test could not run (failed requests are counted, not raised).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("set-up: {0}")]
    Setup(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("status {0} for {1}")]
    Status(u16, String),
    #[error("histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
    #[error("pooling rounds: {0}")]
    Pooling(#[from] hdrhistogram::AdditionError),
}

/// Runs every variant in `options`, each proxied then direct, in one process.
pub async fn run(options: &Options) -> Result<Report, LoadError> {
    let paced = options.variants.contains(&Variant::PagePaced);
    if paced && !pace::is_rate(options.rate) {
        return Err(LoadError::Setup(format!(
            "the page-paced rate must be a positive number of pages/s, not {}",
            options.rate
        )));
    }
    let load_before = report::load_average();
    let page = std::fs::read(options.sites.join(SITE).join("index.html"))
        .map_err(|e| LoadError::Setup(format!("the load page: {e}")))?;
    let page = bytes::Bytes::from(page);
    let stack = Stack::start(options.sites.clone()).await?;
    let mut variants = Vec::new();
    for &variant in &options.variants {
        let result = run_variant(&stack, variant, &page, options).await;
        match result {
            Ok(r) => variants.push(r),
            Err(e) => {
                stack.stop().await;
                return Err(e);
            }
        }
    }
    stack.stop().await;
    Ok(Report {
        visitors: options.visitors,
        duration_s: options.duration.as_secs_f64(),
        rounds: options.rounds(),
        load_average_before: load_before,
        load_average_after: report::load_average(),
        variants,
        memory: None,
    })
}

/// One variant: `options.rounds` rounds of both sides, the order alternating (proxied first, then direct
/// first, …) so that a machine speeding up or slowing down during the variant favours neither side. The
/// core speed (`speed.rs`) is read before the first round and after each.
async fn run_variant(
    stack: &Stack,
    variant: Variant,
    page: &bytes::Bytes,
    options: &Options,
) -> Result<VariantReport, LoadError> {
    let (proxied, direct) = targets(stack, variant).await?;
    let (proxied, direct) = (Arc::new(proxied), Arc::new(direct));
    let rate = (variant == Variant::PagePaced).then_some(options.rate);
    let mut core_speed = vec![speed::measure(page.clone()).await];
    let mut rounds = Vec::new();
    for round in 0..options.rounds() {
        // Caches and upstream connections stay filled between rounds: only the first warms up.
        let warmup = if round == 0 {
            options.warmup
        } else {
            Duration::ZERO
        };
        let side = |target| side(target, variant.path(), rate, warmup, options);
        let proxied_first = round % 2 == 0;
        let (p, d) = if proxied_first {
            let p = side(&proxied).await?;
            (p, side(&direct).await?)
        } else {
            let d = side(&direct).await?;
            (side(&proxied).await?, d)
        };
        core_speed.push(speed::measure(page.clone()).await);
        rounds.push((proxied_first, p, d));
    }
    VariantReport::new(variant, rate, core_speed, rounds)
}

/// The proxied and the direct target of a variant.
async fn targets(stack: &Stack, variant: Variant) -> Result<(Target, Target), LoadError> {
    let site = match variant {
        Variant::CacheCold | Variant::CacheWarm | Variant::CacheHit => CACHED_SITE,
        _ => SITE,
    };
    let bust = variant == Variant::CacheCold;
    let assets = !matches!(
        variant,
        Variant::Page | Variant::PagePaced | Variant::CacheHit
    );
    let plain = |addr, host: String, via, also| Target {
        addr,
        host,
        via,
        also,
        bust,
        assets,
    };
    let direct_via = match variant {
        Variant::ForwardTls => Via::Tls(target::tls_connector(&stack.origin.ca_pem)?),
        _ => Via::Plain,
    };
    let direct = plain(stack.origin.addr, site.to_owned(), direct_via, Vec::new());
    let proxied = match variant {
        Variant::Page
        | Variant::PagePaced
        | Variant::CacheHit
        | Variant::Rewrite
        | Variant::CacheCold
        | Variant::CacheWarm => {
            let host = stack.proxy_host(&format!("http://{site}/")).await?;
            let public = stack::authority(
                &url::Url::parse(&stack.public.origin())
                    .map_err(|e| LoadError::Setup(e.to_string()))?,
            )?;
            plain(stack.proxy, host, Via::Plain, vec![public])
        }
        Variant::Forward => plain(stack.proxy, site.to_owned(), Via::Absolute, Vec::new()),
        Variant::ForwardTls => {
            let tls = target::tls_connector(&stack.proxy_ca_pem)?;
            plain(stack.proxy, site.to_owned(), Via::Tunnel(tls), Vec::new())
        }
    };
    Ok((proxied, direct))
}

/// A warm-up, then `options.visitors` visitors for `options.duration`, paced at `rate` pages/s if given.
async fn side(
    target: &Arc<Target>,
    path: &str,
    rate: Option<f64>,
    warmup: Duration,
    options: &Options,
) -> Result<stats::Measured, LoadError> {
    let load = |duration| Load {
        target,
        path,
        visitors: options.visitors,
        rate,
        duration,
    };
    if !warmup.is_zero() {
        let _ = load(warmup).run().await?;
    }
    let cpu = cpu::CpuMark::now();
    let (stats, elapsed) = load(options.duration).run().await?;
    Ok(stats::Measured {
        stats,
        elapsed,
        cpu: cpu.used(),
    })
}

/// One bounded stretch of load on one side.
struct Load<'a> {
    target: &'a Arc<Target>,
    path: &'a str,
    visitors: usize,
    /// Pages/s in all when paced; back to back when `None`.
    rate: Option<f64>,
    duration: Duration,
}

impl Load<'_> {
    async fn run(self) -> Result<(Arc<stats::Stats>, Duration), LoadError> {
        let stats = Arc::new(stats::Stats::new()?);
        let started = Instant::now();
        let deadline = started + self.duration;
        let mut tasks = tokio::task::JoinSet::new();
        for id in 0..self.visitors as u64 {
            let pace = self
                .rate
                .and_then(|rate| pace::Pace::new(rate, self.visitors, id, started));
            tasks.spawn(visitor::run(
                self.target.clone(),
                self.path.to_owned(),
                deadline,
                stats.clone(),
                id,
                pace,
            ));
        }
        while tasks.join_next().await.is_some() {}
        // Visitors finish the page they are on, so the run can end a little after the deadline.
        Ok((stats, started.elapsed()))
    }
}
