//! Counters for `/metrics` (Prometheus text). Labels are content-free: route and status class only.

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub class: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub rewritten_bodies: Counter,
    pub cache: CacheMetrics,
}

/// The public asset cache's counters (`cobrowse_cache_*`).
#[derive(Clone, Debug, Default)]
pub struct CacheMetrics {
    /// Responses served from a stored entry without waiting for the origin.
    pub hits: Counter,
    /// Cacheable requests that had to go to the origin (no entry, another variant, or stale).
    pub misses: Counter,
    /// Bytes held (bodies, headers and a per-entry overhead), as the byte bound weighs them.
    pub stored_bytes: Gauge,
    /// Entries dropped to stay within the byte bound.
    pub evictions: Counter,
}

impl CacheMetrics {
    fn register(registry: &mut Registry) -> CacheMetrics {
        let m = CacheMetrics::default();
        let cache = registry.sub_registry_with_prefix("cache");
        cache.register("hits", "Responses served from the cache", m.hits.clone());
        cache.register(
            "misses",
            "Cacheable requests sent to the origin",
            m.misses.clone(),
        );
        cache.register(
            "stored_bytes",
            "Bytes held by the cache",
            m.stored_bytes.clone(),
        );
        cache.register(
            "evictions",
            "Entries evicted by the byte bound",
            m.evictions.clone(),
        );
        m
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("cobrowse");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route and status class",
            requests.clone(),
        );
        let rewritten_bodies = Counter::default();
        registry.register(
            "rewritten_bodies",
            "Response bodies streamed through a rewriter",
            rewritten_bodies.clone(),
        );
        let cache = CacheMetrics::register(&mut registry);
        // Process-wide, as the rewriters that count them are (a split is a property of the rewrite).
        let (joined, fell_back) = crate::rewrite::html::split_counters();
        registry.register(
            "html_splits_joined",
            "Cuts of a large HTML chunk where the next part, rewritten on another core, was used",
            joined,
        );
        registry.register(
            "html_splits_fell_back",
            "Cuts where the next part was dropped and the rewriter before went on through it",
            fell_back,
        );
        Metrics {
            registry,
            requests,
            rewritten_bodies,
            cache,
        }
    }

    pub fn count_request(&self, route: &'static str, status: http::StatusCode) {
        let class = match status.as_u16() {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests
            .get_or_create(&RequestLabels { route, class })
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}
