//! Where stored responses live: a moka cache bounded by total bytes (a weigher), keyed by the absolute
//! target URL, each key holding the few variants its `Vary` selects. It owns the per-object size cap and
//! the absolute lifetime cap (24 hours by default, measured with the injectable [`Clock`]), and keeps the
//! stored-bytes and eviction counters in step with moka.
//!
//! It does not decide what may be stored or whether an entry is fresh: that is `policy`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_cache_semantics::CachePolicy;
use moka::notification::RemovalCause;
use moka::ops::compute::{CompResult, Op};
use moka::Expiry;

use super::clock::Clock;
use crate::metrics::CacheMetrics;

/// Most variants kept per URL; storing one more drops the oldest.
const MAX_VARIANTS: usize = 4;
/// A rough per-entry overhead (key, policy, bookkeeping), so empty bodies still weigh something.
const ENTRY_OVERHEAD: usize = 512;

/// One stored response, exactly as the origin sent it (still content-encoded).
#[derive(Debug)]
pub struct Stored {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub policy: CachePolicy,
    /// When the body was stored. A 304 refresh keeps it: the lifetime cap counts from here.
    pub stored_at: SystemTime,
    /// When it stops being fresh (`policy::fresh_until`), for the stale windows.
    pub fresh_until: SystemTime,
    /// The request values of the `Vary`'d headers, to replace the same variant when storing again.
    pub variant: Vec<Option<http::HeaderValue>>,
}

impl Stored {
    fn weight(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        ENTRY_OVERHEAD + headers + self.body.len()
    }
}

/// The variants stored for one URL, newest first.
#[derive(Debug, Default)]
pub struct Variants {
    pub list: Vec<Arc<Stored>>,
    weight: u32,
}

impl Variants {
    fn new(list: Vec<Arc<Stored>>) -> Variants {
        let total: usize = list.iter().map(|s| s.weight()).sum();
        Variants {
            weight: u32::try_from(total).unwrap_or(u32::MAX),
            list,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_object_bytes: u64,
    /// The absolute cap on how long after storing an entry may be served.
    pub max_age: Duration,
}

pub struct Store {
    cache: moka::sync::Cache<String, Arc<Variants>>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    metrics: CacheMetrics,
}

impl Store {
    pub fn new(limits: Limits, clock: Arc<dyn Clock>, metrics: CacheMetrics) -> Store {
        let listener_metrics = metrics.clone();
        let cache = moka::sync::Cache::builder()
            .max_capacity(limits.max_bytes)
            .weigher(|_url: &String, v: &Arc<Variants>| v.weight)
            .expire_after(CapExpiry {
                clock: clock.clone(),
                max_age: limits.max_age,
            })
            .eviction_listener(move |_url, v: Arc<Variants>, cause| {
                listener_metrics.stored_bytes.dec_by(i64::from(v.weight));
                if cause == RemovalCause::Size {
                    listener_metrics.evictions.inc();
                }
            })
            .build();
        Store {
            cache,
            clock,
            limits,
            metrics,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// Whether the cap still allows serving an entry stored at `stored_at`.
    pub fn within_cap(&self, stored_at: SystemTime) -> bool {
        self.cap_left(stored_at) > Duration::ZERO
    }

    /// How long the cap still allows serving an entry stored at `stored_at`.
    pub fn cap_left(&self, stored_at: SystemTime) -> Duration {
        cap_left(self.clock.now(), stored_at, self.limits.max_age)
    }

    /// The variants stored for `url`, past-cap ones removed first.
    pub fn get(&self, url: &str) -> Option<Arc<Variants>> {
        let variants = self.cache.get(url)?;
        if variants.list.iter().all(|s| self.within_cap(s.stored_at)) {
            return Some(variants);
        }
        self.prune(url);
        self.cache.get(url)
    }

    /// Stores a response, replacing the variant with the same `Vary`'d values. Bodies over the per-object
    /// cap are never stored.
    pub fn put(&self, url: &str, stored: Stored) {
        if stored.body.len() as u64 > self.limits.max_object_bytes {
            return;
        }
        let stored = Arc::new(stored);
        let result = self.cache.entry_by_ref(url).and_compute_with(|old| {
            let mut list = vec![stored.clone()];
            if let Some(old) = old {
                let kept = old.into_value();
                let others = kept.list.iter().filter(|s| s.variant != stored.variant);
                list.extend(others.take(MAX_VARIANTS - 1).cloned());
            }
            Op::Put(Arc::new(Variants::new(list)))
        });
        self.count_written(result);
    }

    /// Replaces `old` (after a 304) by `new`, if `old` is still stored.
    pub fn refresh(&self, url: &str, old: &Arc<Stored>, new: Stored) -> Arc<Stored> {
        let new = Arc::new(new);
        let result = self.cache.entry_by_ref(url).and_compute_with(|current| {
            let Some(current) = current else {
                return Op::Nop;
            };
            let list = current
                .into_value()
                .list
                .iter()
                .map(|s| {
                    if Arc::ptr_eq(s, old) {
                        new.clone()
                    } else {
                        s.clone()
                    }
                })
                .collect();
            Op::Put(Arc::new(Variants::new(list)))
        });
        self.count_written(result);
        new
    }

    /// Forgets every variant of `url`; true when there was one.
    pub fn remove(&self, url: &str) -> bool {
        let removed = self.cache.remove(url).is_some();
        self.cache.run_pending_tasks();
        removed
    }

    pub fn clear(&self) -> u64 {
        let count = self.cache.entry_count();
        self.cache.invalidate_all();
        self.cache.run_pending_tasks();
        count
    }

    /// Total weight stored, once moka has applied pending work.
    #[cfg(test)]
    pub fn weighted_size(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }

    /// Counts the bytes a write added (the listener takes off what it replaced), then lets moka apply its
    /// pending work so the size bound and the counters are current.
    fn count_written(&self, result: CompResult<String, Arc<Variants>>) {
        if let CompResult::Inserted(e) | CompResult::ReplacedWith(e) = result {
            self.metrics
                .stored_bytes
                .inc_by(i64::from(e.value().weight));
        }
        self.cache.run_pending_tasks();
    }

    /// Drops the variants of `url` that are past the cap.
    fn prune(&self, url: &str) {
        let result = self.cache.entry_by_ref(url).and_compute_with(|current| {
            let Some(current) = current else {
                return Op::Nop;
            };
            let kept: Vec<_> = current
                .into_value()
                .list
                .iter()
                .filter(|s| self.within_cap(s.stored_at))
                .cloned()
                .collect();
            if kept.is_empty() {
                Op::Remove
            } else {
                Op::Put(Arc::new(Variants::new(kept)))
            }
        });
        self.count_written(result);
    }
}

fn cap_left(now: SystemTime, stored_at: SystemTime, max_age: Duration) -> Duration {
    let age = now.duration_since(stored_at).unwrap_or_default();
    max_age.saturating_sub(age)
}

/// moka's own expiry, a memory backstop only: an entry leaves memory when its oldest variant reaches the
/// cap. Whether an entry may be *served* is decided with the injectable clock in [`Store::get`].
struct CapExpiry {
    clock: Arc<dyn Clock>,
    max_age: Duration,
}

impl CapExpiry {
    fn left(&self, v: &Variants) -> Duration {
        let now = self.clock.now();
        v.list
            .iter()
            .map(|s| cap_left(now, s.stored_at, self.max_age))
            .min()
            .unwrap_or(Duration::ZERO)
    }
}

impl Expiry<String, Arc<Variants>> for CapExpiry {
    fn expire_after_create(&self, _: &String, v: &Arc<Variants>, _: Instant) -> Option<Duration> {
        Some(self.left(v))
    }

    fn expire_after_update(
        &self,
        _: &String,
        v: &Arc<Variants>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.left(v))
    }
}

#[cfg(test)]
mod tests;
