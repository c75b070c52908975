//! Serving and revalidating a stored response that is not fresh (or that the request will not take as
//! is): `stale-while-revalidate` in the background, a conditional request now, a 304 refreshing the entry
//! (RFC 9111 §4.3.4), and `stale-if-error` when the origin fails. The decisions are `policy`'s.

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap};
use http::{request, Request, Response, StatusCode};
use http_body_util::BodyExt;

use super::store::Stored;
use super::{conditional, forward, policy, Cache, CacheStatus, Fetched, Fwd, Origin};
use crate::body::{empty, ProxyBody};

/// Everything a revalidation needs to know about the entry and the request.
#[derive(Clone)]
pub(super) struct Revalidation {
    pub(super) key: String,
    pub(super) presented: request::Parts,
    pub(super) revalidation: request::Parts,
    pub(super) stored: Arc<Stored>,
    pub(super) head: bool,
}

impl Cache {
    /// A stale (or not usable as is) entry: serve it while revalidating in the background when
    /// `stale-while-revalidate` allows, else revalidate now, falling back to it when `stale-if-error`
    /// allows.
    pub(super) async fn stale<O: Origin>(
        &self,
        ctx: Revalidation,
        parts: request::Parts,
        body: ProxyBody,
        origin: &Arc<O>,
    ) -> Fetched {
        let allowed = self.stale_allowance(&ctx.stored, &parts.headers);
        if allowed.while_revalidating {
            self.revalidate_in_background(&ctx, origin);
            self.inner.metrics.hits.inc();
            let status =
                CacheStatus::hit(self.ttl(&ctx.stored)).with_detail("stale-while-revalidate");
            return Ok((
                self.serve(&ctx.stored, &ctx.presented.headers, ctx.head),
                status,
            ));
        }
        let now = self.inner.store.now();
        let fwd = if ctx.stored.policy.is_stale(now) {
            Fwd::Stale
        } else {
            Fwd::Request
        };
        self.inner.metrics.misses.inc();
        if ctx.head {
            let status = CacheStatus::forward(fwd);
            return forward(origin, Request::from_parts(parts, body), false, status).await;
        }
        let sent = Request::from_parts(ctx.revalidation.clone(), body);
        let res = match origin.send(sent, false).await {
            Ok(res) if allowed.on_error && res.status().is_server_error() => {
                return Ok(self.stale_if_error(&ctx, fwd, Some(res.status()), "stale-if-error"));
            }
            Ok(res) => res,
            Err(_) if allowed.on_error => {
                return Ok(self.stale_if_error(&ctx, fwd, None, "stale-if-error"));
            }
            Err(_) if allowed.disconnected => {
                return Ok(self.stale_if_error(&ctx, fwd, None, "stale-disconnected"));
            }
            Err(e) => return Err(e),
        };
        let key = ctx.key.clone();
        match self.revalidated(ctx, res, fwd) {
            Revalidated::Served(response, status) => Ok((response, status)),
            Revalidated::NotOurs(mut status) => {
                // The 304 named another representation: the stored one is unknown now, so the client's
                // own request goes to the origin as it came.
                self.inner.store.remove(&key);
                let res = origin
                    .send(Request::from_parts(parts.clone(), empty()), false)
                    .await?;
                status.detail = Some("validator-mismatch");
                Ok(self.admit(key, &parts, res, status, None))
            }
        }
    }

    /// Whether the entry may be served stale now, and when.
    fn stale_allowance(&self, stored: &Stored, request: &HeaderMap) -> StaleAllowed {
        let now = self.inner.store.now();
        if !stored.policy.is_stale(now) || !policy::request_accepts_stale(request) {
            return StaleAllowed::default();
        }
        let windows = policy::stale_windows(&stored.headers);
        let staleness = now.duration_since(stored.fresh_until).unwrap_or_default();
        let within = |window: Duration| window > Duration::ZERO && staleness <= window;
        StaleAllowed {
            while_revalidating: within(windows.while_revalidate),
            on_error: within(windows.if_error),
            disconnected: policy::may_serve_stale(&stored.headers),
        }
    }

    fn stale_if_error(
        &self,
        ctx: &Revalidation,
        fwd: Fwd,
        origin_status: Option<StatusCode>,
        why: &'static str,
    ) -> (Response<ProxyBody>, CacheStatus) {
        let mut status = CacheStatus::forward(fwd).with_detail(why);
        status.fwd_status = origin_status.map(|s| s.as_u16());
        status.ttl = Some(self.ttl(&ctx.stored));
        (
            self.serve(&ctx.stored, &ctx.presented.headers, ctx.head),
            status,
        )
    }

    /// The origin's answer to a revalidation: a 304 about the stored response refreshes the entry and
    /// serves it; anything but a 304 is a new response, stored (replacing the variant) if it may be.
    fn revalidated(&self, ctx: Revalidation, res: Response<ProxyBody>, fwd: Fwd) -> Revalidated {
        let mut status = CacheStatus::forward(fwd);
        status.fwd_status = Some(res.status().as_u16());
        if res.status() != StatusCode::NOT_MODIFIED {
            let (response, status) = self.admit(ctx.key, &ctx.revalidation, res, status, None);
            return Revalidated::Served(response, status);
        }
        let (res_parts, _) = res.into_parts();
        if !conditional::validates(&ctx.stored.headers, &res_parts.headers) {
            return Revalidated::NotOurs(status);
        }
        let served = match self.refresh(&ctx, &res_parts) {
            Some(refreshed) => {
                status.ttl = Some(self.ttl(&refreshed));
                self.serve(&refreshed, &ctx.presented.headers, ctx.head)
            }
            None => {
                status.detail = Some("no-longer-storable");
                self.serve(&ctx.stored, &ctx.presented.headers, ctx.head)
            }
        };
        Revalidated::Served(served, status)
    }

    /// Applies a 304 to the stored entry (RFC 9111 §4.3.4). The body and its stored time stay, so the
    /// 24-hour cap still counts from when the body was stored. `None` when the updated headers forbid
    /// storing: the entry is dropped.
    fn refresh(
        &self,
        ctx: &Revalidation,
        not_modified: &http::response::Parts,
    ) -> Option<Arc<Stored>> {
        let old = &ctx.stored;
        let received = self.inner.store.now();
        let headers = policy::refreshed_headers(&old.headers, &not_modified.headers);
        let mut res = Response::new(()).into_parts().0;
        res.status = old.status;
        res.headers = headers;
        let Ok(policy) = policy::admit(&ctx.revalidation, &res, received) else {
            self.inner.store.remove(&ctx.key);
            return None;
        };
        let new = Stored {
            status: old.status,
            headers: res.headers,
            body: old.body.clone(),
            fresh_until: policy::fresh_until(&policy, received),
            policy,
            stored_at: old.stored_at,
            variant: old.variant.clone(),
        };
        Some(self.inner.store.refresh(&ctx.key, old, new))
    }

    fn revalidate_in_background<O: Origin>(&self, ctx: &Revalidation, origin: &Arc<O>) {
        let Some(guard) = self
            .inner
            .flights
            .try_lead(&format!("revalidate {}", ctx.key))
        else {
            return;
        };
        let cache = self.clone();
        let origin = origin.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let sent = Request::from_parts(ctx.revalidation.clone(), empty());
            let Ok(res) = origin.send(sent, false).await else {
                return;
            };
            let key = ctx.key.clone();
            match cache.revalidated(ctx, res, Fwd::Stale) {
                Revalidated::Served(response, _) => drain(response.into_body()).await,
                Revalidated::NotOurs(_) => {
                    cache.inner.store.remove(&key);
                }
            }
        });
    }
}

/// When a stale entry may still be served.
#[derive(Debug, Default, Clone, Copy)]
struct StaleAllowed {
    /// At once, while a background request revalidates it (`stale-while-revalidate`).
    while_revalidating: bool,
    /// When the origin answers with an error or a 5xx (`stale-if-error`).
    on_error: bool,
    /// When the origin cannot be reached at all and nothing forbids stale (RFC 9111 §4.2.4).
    disconnected: bool,
}

/// What a revalidation came to.
enum Revalidated {
    Served(Response<ProxyBody>, CacheStatus),
    /// A 304 about some other representation than the stored one.
    NotOurs(CacheStatus),
}

/// The client's request (all its header values, which the crate's copy would fold) with the crate's
/// validators (`If-None-Match`, `If-Modified-Since`) for the stored response.
pub(super) fn revalidation_request(
    presented: &request::Parts,
    validators: &HeaderMap,
) -> request::Parts {
    let mut parts = presented.clone();
    crate::headers::remove_hop_by_hop(&mut parts.headers, false);
    parts.headers.remove(header::IF_RANGE);
    for name in [header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE] {
        parts.headers.remove(&name);
        if let Some(value) = validators.get(&name) {
            parts.headers.insert(name, value.clone());
        }
    }
    parts
}

/// Reads a body to its end without keeping it (a background revalidation stores through the tee).
async fn drain(mut body: ProxyBody) {
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            return;
        }
    }
}
