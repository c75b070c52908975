//! The public asset cache (`docs/cache.md`): one entry point, [`Cache::fetch`], sits where the proxy
//! would send a request upstream and answers from memory when RFC 9111 allows it.
//!
//! It stores upstream responses exactly as received (status, headers, still-encoded body), so the proxy
//! rewrites a cached response per session just as a fresh one, and no session's host names are ever
//! stored. What may be stored and when it is fresh is `policy`; where it lives, its byte bound and the
//! 24-hour cap is `store`; storing while streaming is `tee`; coalescing is `flight`; stale entries are
//! `revalidate`; the response field is `status`; the time is `clock`.

mod clock;
mod conditional;
mod flight;
mod policy;
mod revalidate;
mod status;
mod store;
mod tee;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::{request, Method, Request, Response};
use http_cache_semantics::BeforeRequest;

use crate::body::{boxed, empty, full, ProxyBody};
use crate::config::CacheConfig;
use crate::metrics::CacheMetrics;
use crate::upstream::{IdleTimeoutBody, UpstreamError};
use flight::{FlightGuard, Flights, Join};
use revalidate::{revalidation_request, Revalidation};
use store::{Store, Stored};

pub use clock::{Clock, ManualClock, SystemClock};
pub use status::{CacheStatus, Fwd, CACHE_STATUS};

/// Where a miss goes: the upstream client in the proxy, a fake in unit tests.
pub trait Origin: Send + Sync + 'static {
    fn send(
        &self,
        req: Request<ProxyBody>,
        upgrade: bool,
    ) -> impl Future<Output = Result<Response<ProxyBody>, UpstreamError>> + Send;
}

impl Origin for crate::Shared {
    /// The upstream client, with the body-idle timeout on the body (it then guards the tee too).
    async fn send(
        &self,
        req: Request<ProxyBody>,
        upgrade: bool,
    ) -> Result<Response<ProxyBody>, UpstreamError> {
        let idle = self.upstream.timeouts().body_idle();
        let response = self.upstream.send(req, upgrade).await?;
        Ok(response.map(|body| boxed(IdleTimeoutBody::new(body, idle))))
    }
}

pub type Fetched = Result<(Response<ProxyBody>, CacheStatus), UpstreamError>;

/// A cheap handle; clones share one store.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    flights: Flights,
    enabled: bool,
    /// The longest a request waits for another one's fetch of the same URL.
    wait: Duration,
    metrics: CacheMetrics,
}

/// What the store has for a request.
enum Lookup {
    Fresh(Arc<Stored>),
    /// Stored but not usable as is; the parts are the revalidation request.
    Stale(Arc<Stored>, Box<request::Parts>),
    VaryMiss,
    UriMiss,
}

impl Cache {
    pub fn new(
        config: &CacheConfig,
        wait: Duration,
        clock: Arc<dyn Clock>,
        metrics: CacheMetrics,
    ) -> Cache {
        let limits = store::Limits {
            max_bytes: config.max_bytes,
            max_object_bytes: config.max_object_bytes,
            max_age: config.max_age(),
        };
        Cache {
            inner: Arc::new(Inner {
                store: Store::new(limits, clock, metrics.clone()),
                flights: Flights::default(),
                enabled: config.enabled,
                wait,
                metrics,
            }),
        }
    }

    /// Answers `req` (whose URI is the absolute target URL) from the cache or from `origin`.
    pub async fn fetch<O: Origin>(
        &self,
        req: Request<ProxyBody>,
        origin: &Arc<O>,
        websocket: bool,
    ) -> Fetched {
        if !self.inner.enabled || websocket {
            return forward(origin, req, websocket, CacheStatus::forward(Fwd::Bypass)).await;
        }
        if !req.method().is_safe() {
            return self.unsafe_method(req, origin).await;
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return forward(origin, req, false, CacheStatus::forward(Fwd::Method)).await;
        }
        if let Some(why) = bypass_reason(req.headers()) {
            let status = CacheStatus::forward(Fwd::Bypass).with_detail(why);
            return forward(origin, req, false, status).await;
        }
        self.cacheable(req, origin).await
    }

    /// Forgets every variant stored for `url`; true when something was stored.
    pub fn purge(&self, url: &str) -> bool {
        self.inner.store.remove(url)
    }

    /// Forgets everything; returns how many URLs were stored.
    pub fn purge_all(&self) -> u64 {
        self.inner.store.clear()
    }

    /// GET or HEAD: look up, coalesce misses, store what may be stored.
    async fn cacheable<O: Origin>(&self, req: Request<ProxyBody>, origin: &Arc<O>) -> Fetched {
        let key = req.uri().to_string();
        let head = req.method() == Method::HEAD;
        let (parts, body) = req.into_parts();
        // The request as the rules see it, built only when the crate must decide (`lookup`).
        let mut presented = None;
        let mut collapsed = None;
        loop {
            let fwd = match self.lookup(&key, &parts, &mut presented) {
                Lookup::Fresh(s) => return Ok(self.hit(&s, &parts.headers, head, collapsed)),
                Lookup::Stale(s, revalidation) => {
                    let ctx = Revalidation {
                        key,
                        presented: presented.unwrap_or_else(|| policy::presented_request(&parts)),
                        revalidation: *revalidation,
                        stored: s,
                        head,
                    };
                    return self.stale(ctx, parts, body, origin).await;
                }
                Lookup::VaryMiss => Fwd::VaryMiss,
                Lookup::UriMiss => Fwd::UriMiss,
            };
            let mut status = CacheStatus::forward(fwd);
            if head {
                self.inner.metrics.misses.inc();
                return forward(origin, Request::from_parts(parts, body), false, status).await;
            }
            let guard = match (collapsed, self.inner.flights.join(&key)) {
                (None, Join::Follower(waiter)) => {
                    waiter.wait(self.inner.wait).await;
                    collapsed = Some(true);
                    continue;
                }
                (_, Join::Leader(guard)) => Some(guard),
                (Some(_), Join::Follower(_)) => None,
            };
            status.collapsed = collapsed.map(|_| false);
            self.inner.metrics.misses.inc();
            let res = origin
                .send(Request::from_parts(parts.clone(), body), false)
                .await?;
            return Ok(self.admit(key, &parts, res, status, guard));
        }
    }

    /// `presented` is `parts` as the rules see it ([`policy::presented_request`]), made here the first
    /// time a stored variant needs the crate's decision; the usual hit never does.
    fn lookup(
        &self,
        key: &str,
        parts: &request::Parts,
        presented: &mut Option<request::Parts>,
    ) -> Lookup {
        let Some(variants) = self.inner.store.get(key) else {
            return Lookup::UriMiss;
        };
        let now = self.inner.store.now();
        for stored in &variants.list {
            // `Host` is the one header `presented` drops, and the shortcut does not read it.
            if policy::plainly_fresh(&parts.headers, &stored.headers, stored.fresh_until, now) {
                debug_assert!(matches!(
                    stored.policy.before_request(
                        &policy::matching_request(
                            &policy::presented_request(parts),
                            &stored.headers
                        ),
                        now
                    ),
                    BeforeRequest::Fresh(_)
                ));
                return Lookup::Fresh(stored.clone());
            }
            let presented = presented.get_or_insert_with(|| policy::presented_request(parts));
            let matching = policy::matching_request(presented, &stored.headers);
            match stored.policy.before_request(&matching, now) {
                BeforeRequest::Fresh(_) => return Lookup::Fresh(stored.clone()),
                BeforeRequest::Stale {
                    request,
                    matches: true,
                } => {
                    let revalidation = revalidation_request(presented, &request.headers);
                    return Lookup::Stale(stored.clone(), Box::new(revalidation));
                }
                BeforeRequest::Stale { .. } => {}
            }
        }
        Lookup::VaryMiss
    }

    /// `request` is the request's headers: only its conditionals are read (`serve`).
    fn hit(
        &self,
        stored: &Stored,
        request: &HeaderMap,
        head: bool,
        collapsed: Option<bool>,
    ) -> (Response<ProxyBody>, CacheStatus) {
        self.inner.metrics.hits.inc();
        let mut status = CacheStatus::hit(self.ttl(stored));
        if collapsed.is_some() {
            status = CacheStatus {
                hit: false,
                fwd: Some(Fwd::UriMiss),
                collapsed,
                ..status
            };
        }
        (self.serve(stored, request, head), status)
    }

    /// A stored response as the client gets it: the origin's headers with a current `Age`, or a `304`
    /// when the client's conditional request says it holds that response already.
    fn serve(&self, stored: &Stored, presented: &HeaderMap, head: bool) -> Response<ProxyBody> {
        let now = self.inner.store.now();
        let mut headers = stored.headers.clone();
        headers.insert(
            header::AGE,
            HeaderValue::from(stored.policy.age(now).as_secs()),
        );
        if stored.status == http::StatusCode::OK && conditional::client_has_it(presented, &headers)
        {
            return conditional::not_modified(&headers);
        }
        let body = if head {
            empty()
        } else {
            full(stored.body.clone())
        };
        let mut response = Response::new(body);
        *response.status_mut() = stored.status;
        *response.headers_mut() = headers;
        response
    }

    /// Seconds of freshness left (within the cap), negative when stale. Read off `fresh_until`, which is
    /// the policy's `time_to_live` at storing plus the time of storing: a response ages one second per
    /// second, so this is the policy's answer now without working out its freshness lifetime again
    /// (header lookups and date parsing on every hit).
    fn ttl(&self, stored: &Stored) -> i64 {
        let now = self.inner.store.now();
        let cap = self.inner.store.cap_left(stored.stored_at);
        let ttl = stored
            .fresh_until
            .duration_since(now)
            .unwrap_or_default()
            .min(cap);
        if ttl > Duration::ZERO {
            return secs(ttl);
        }
        -secs(now.duration_since(stored.fresh_until).unwrap_or_default())
    }

    /// A full response from the origin: stored while it streams to the client when the rules allow.
    fn admit(
        &self,
        key: String,
        req: &request::Parts,
        res: Response<ProxyBody>,
        mut status: CacheStatus,
        guard: Option<FlightGuard>,
    ) -> (Response<ProxyBody>, CacheStatus) {
        let received = self.inner.store.now();
        let (res_parts, body) = res.into_parts();
        let policy = match policy::admit(req, &res_parts, received) {
            Ok(policy) => policy,
            Err(refusal) => {
                status.detail = Some(refusal.detail());
                return (Response::from_parts(res_parts, body), status);
            }
        };
        let max = self.inner.store.limits().max_object_bytes;
        let length = content_length(&res_parts.headers);
        if length.is_some_and(|n| n > max) {
            status.detail = Some("too-large");
            return (Response::from_parts(res_parts, body), status);
        }
        let mut headers = res_parts.headers.clone();
        crate::headers::remove_hop_by_hop(&mut headers, false);
        let template = Stored {
            status: res_parts.status,
            headers,
            body: bytes::Bytes::new(),
            fresh_until: policy::fresh_until(&policy, received),
            variant: variant(req, &res_parts.headers),
            policy,
            stored_at: received,
        };
        status.stored = true;
        status.ttl = Some(self.ttl(&template));
        let inner = self.inner.clone();
        let commit: tee::Commit = Box::new(move |bytes| {
            inner.store.put(
                &key,
                Stored {
                    body: bytes,
                    ..template
                },
            )
        });
        let body = boxed(tee::TeeBody::new(body, max, length, commit, guard));
        (Response::from_parts(res_parts, body), status)
    }

    /// POST, PUT, DELETE, …: forwarded; a non-error answer invalidates the URL and the same-origin
    /// `Location` / `Content-Location` it names (RFC 9111 §4.4).
    async fn unsafe_method<O: Origin>(&self, req: Request<ProxyBody>, origin: &Arc<O>) -> Fetched {
        let url = req.uri().to_string();
        let res = origin.send(req, false).await?;
        if res.status().is_success() || res.status().is_redirection() {
            self.invalidate(&url, res.headers());
        }
        Ok((res, CacheStatus::forward(Fwd::Method)))
    }

    fn invalidate(&self, url: &str, headers: &HeaderMap) {
        self.inner.store.remove(url);
        let Ok(base) = url::Url::parse(url) else {
            return;
        };
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            let target = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| base.join(v).ok());
            if let Some(target) = target.filter(|t| t.origin() == base.origin()) {
                self.inner.store.remove(target.as_str());
            }
        }
    }
}

/// Requests the cache never answers nor stores for: credentials (docs/cache.md) and ranges (stored
/// entries are whole bodies; partial responses are not understood).
fn bypass_reason(headers: &HeaderMap) -> Option<&'static str> {
    if headers.contains_key(header::AUTHORIZATION) {
        return Some("authorization");
    }
    headers.contains_key(header::RANGE).then_some("range")
}

/// The request's values of the headers the response varies on.
fn variant(req: &request::Parts, res: &HeaderMap) -> Vec<Option<HeaderValue>> {
    policy::vary_names(res)
        .iter()
        .map(|name| {
            let value = req.headers.get(name.as_str())?;
            Some(policy::view::selecting_value(name, value))
        })
        .collect()
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

async fn forward<O: Origin>(
    origin: &Arc<O>,
    req: Request<ProxyBody>,
    upgrade: bool,
    status: CacheStatus,
) -> Fetched {
    Ok((origin.send(req, upgrade).await?, status))
}

#[cfg(test)]
mod tests;
