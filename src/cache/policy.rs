//! RFC 9111 decisions for a shared cache: may this response be stored, how long is it fresh, when may a
//! stale one still be served, and how a 304 refreshes stored headers.
//!
//! The core rules (cacheable methods and statuses, `no-store`, `private`, `max-age` / `s-maxage` /
//! `Expires` / `Age`, heuristic freshness, `Vary` matching, validators) come from `http-cache-semantics`
//! in shared-cache mode. This module adds the stricter public-only rules of `docs/cache.md` and the
//! `stale-while-revalidate` / `stale-if-error` windows (RFC 5861) the crate does not know. No I/O here.

use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap, HeaderName};
use http::{request, response, Method};
use http_cache_semantics::{CacheOptions, CachePolicy};

pub mod view;

/// Why a response is not stored. Each names one rule of `docs/cache.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("only GET responses are stored")]
    Method,
    #[error("the request carried Authorization")]
    Authorization,
    #[error("the response sets a cookie")]
    SetCookie,
    #[error("no-store")]
    NoStore,
    #[error("private")]
    Private,
    #[error("Vary: *")]
    VaryStar,
    #[error("the response varies on a credential")]
    VaryCredential,
    #[error("a request with cookies needs explicit shared freshness")]
    CookieWithoutExplicit,
    #[error("not storable under RFC 9111")]
    Rules,
    #[error("never reusable: no freshness, no validator, no stale window")]
    Useless,
}

impl Refusal {
    /// A token for the `detail` parameter of `Cache-Status`.
    pub fn detail(self) -> &'static str {
        match self {
            Refusal::Method => "method",
            Refusal::Authorization => "authorization",
            Refusal::SetCookie => "set-cookie",
            Refusal::NoStore => "no-store",
            Refusal::Private => "private",
            Refusal::VaryStar => "vary-star",
            Refusal::VaryCredential => "vary-credential",
            Refusal::CookieWithoutExplicit => "cookie",
            Refusal::Rules => "not-storable",
            Refusal::Useless => "no-freshness",
        }
    }
}

/// Shared-cache evaluation: `private` is not storable and `s-maxage` wins over `max-age`.
pub fn options() -> CacheOptions {
    CacheOptions {
        shared: true,
        ..CacheOptions::default()
    }
}

/// Decides whether a GET response may be stored, and if so returns its policy. `received` is when the
/// response headers arrived (the injectable clock).
pub fn admit(
    req: &request::Parts,
    res: &response::Parts,
    received: SystemTime,
) -> Result<CachePolicy, Refusal> {
    refuse_private(req, res)?;
    let remembered = remembered_request(req, &res.headers);
    let policy = CachePolicy::new_options(&remembered, &view::response(res), received, options());
    if !policy.is_storable() {
        return Err(Refusal::Rules);
    }
    if !reusable(&policy, &res.headers, received) {
        return Err(Refusal::Useless);
    }
    Ok(policy)
}

/// A response with no freshness, no validator and no stale window could never answer a request.
fn reusable(policy: &CachePolicy, res: &HeaderMap, at: SystemTime) -> bool {
    let windows = stale_windows(res);
    policy.time_to_live(at) > Duration::ZERO
        || res.contains_key(header::ETAG)
        || res.contains_key(header::LAST_MODIFIED)
        || windows != StaleWindows::default()
}

/// The public-only rules, checked before the crate's: they are stricter than RFC 9111 (see docs/cache.md).
fn refuse_private(req: &request::Parts, response: &response::Parts) -> Result<(), Refusal> {
    let res = &response.headers;
    if req.method != Method::GET {
        return Err(Refusal::Method);
    }
    if req.headers.contains_key(header::AUTHORIZATION) {
        return Err(Refusal::Authorization);
    }
    if res.contains_key(header::SET_COOKIE) {
        return Err(Refusal::SetCookie);
    }
    let no_store =
        has_directive(res, "no-store") && !view::must_understand_allows(response.status, res);
    if no_store || has_directive(&req.headers, "no-store") {
        return Err(Refusal::NoStore);
    }
    if has_directive(res, "private") {
        return Err(Refusal::Private);
    }
    let vary = vary_names(res);
    if vary.iter().any(|n| n == "*") {
        return Err(Refusal::VaryStar);
    }
    if vary.iter().any(|n| n == "cookie" || n == "authorization") {
        return Err(Refusal::VaryCredential);
    }
    if req.headers.contains_key(header::COOKIE) && !explicitly_shared(res) {
        return Err(Refusal::CookieWithoutExplicit);
    }
    Ok(())
}

/// Explicit freshness or an explicit `public`: the origin said something about shared caching.
fn explicitly_shared(res: &HeaderMap) -> bool {
    ["public", "s-maxage", "max-age"]
        .iter()
        .any(|d| has_directive(res, d))
        || res.contains_key(header::EXPIRES)
}

/// The request as the policy remembers it: GET, the URL, and only the headers the rules read later
/// (request cache directives and the ones the response varies on). Cookies are never kept.
pub fn remembered_request(req: &request::Parts, res: &HeaderMap) -> request::Parts {
    let mut kept = HeaderMap::new();
    let names = vary_names(res);
    let wanted = names
        .iter()
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .chain([header::CACHE_CONTROL, header::PRAGMA]);
    for name in wanted {
        for value in req.headers.get_all(&name) {
            kept.append(name.clone(), view::selecting_value(name.as_str(), value));
        }
    }
    view::normalise(&mut kept);
    request_view(req, kept)
}

/// The request as presented at lookup: a HEAD is answered from a stored GET, and `Host` plays no part
/// (the key is the absolute URL).
pub fn presented_request(req: &request::Parts) -> request::Parts {
    let mut headers = req.headers.clone();
    headers.remove(header::HOST);
    request_view(req, headers)
}

/// The presented request as one stored variant's rules compare it: its `Vary`'d values normalised the
/// way they were when that variant was stored, its directives lowercased.
pub fn matching_request(presented: &request::Parts, stored: &HeaderMap) -> request::Parts {
    let mut parts = presented.clone();
    for name in vary_names(stored) {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        let values: Vec<_> = parts
            .headers
            .get_all(&name)
            .iter()
            .map(|v| view::selecting_value(name.as_str(), v))
            .collect();
        parts.headers.remove(&name);
        for v in values {
            parts.headers.append(name.clone(), v);
        }
    }
    view::normalise(&mut parts.headers);
    parts
}

/// Whether a stored response that varies on nothing is fresh for a request that carries no cache
/// directives of its own (no `Cache-Control`, no `Pragma`). For those `before_request` matches the two
/// (the same URL, which is the key; no `Host` on either side; GET) and answers `Fresh` exactly when the
/// response is not stale, that is before `fresh_until` ([`fresh_until`]: a response ages a second per
/// second). That is the usual hit, and this spares it the matching request, the response
/// `before_request` builds only to be dropped (its headers copied, a `Date` formatted) and the crate
/// working out the freshness lifetime again. `false` says nothing: the caller asks the crate.
pub fn plainly_fresh(
    presented: &HeaderMap,
    stored: &HeaderMap,
    fresh_until: SystemTime,
    now: SystemTime,
) -> bool {
    let plain = !stored.contains_key(header::VARY)
        && !presented.contains_key(header::CACHE_CONTROL)
        && !presented.contains_key(header::PRAGMA);
    plain && now < fresh_until
}

fn request_view(req: &request::Parts, headers: HeaderMap) -> request::Parts {
    let mut parts = request::Request::new(()).into_parts().0;
    parts.method = Method::GET;
    parts.uri = req.uri.clone();
    parts.headers = headers;
    parts
}

/// The lowercased names in `Vary`.
pub fn vary_names(res: &HeaderMap) -> Vec<String> {
    res.get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect()
}

/// The value of a `Cache-Control` directive: `None` when absent, `Some(None)` when present bare.
pub fn directive(headers: &HeaderMap, name: &str) -> Option<Option<String>> {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|part| {
            let (key, value) = match part.split_once('=') {
                Some((k, v)) => (k, Some(v.trim().trim_matches('"').to_owned())),
                None => (part, None),
            };
            key.trim().eq_ignore_ascii_case(name).then_some(value)
        })
}

pub fn has_directive(headers: &HeaderMap, name: &str) -> bool {
    directive(headers, name).is_some()
}

fn seconds(headers: &HeaderMap, name: &str) -> Duration {
    let secs = directive(headers, name)
        .flatten()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    Duration::from_secs(secs)
}

/// How long past its freshness a stored response may still be served (RFC 5861).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StaleWindows {
    /// Served at once while a background request revalidates it.
    pub while_revalidate: Duration,
    /// Served when the origin fails (an error or a 5xx) on revalidation.
    pub if_error: Duration,
}

/// The stale windows a response grants. `must-revalidate`, `proxy-revalidate`, `s-maxage` (which implies
/// proxy-revalidate for a shared cache, RFC 9111 §5.2.2.10) and `no-cache` forbid serving stale at all.
pub fn stale_windows(res: &HeaderMap) -> StaleWindows {
    if !may_serve_stale(res) {
        return StaleWindows::default();
    }
    StaleWindows {
        while_revalidate: seconds(res, "stale-while-revalidate"),
        if_error: seconds(res, "stale-if-error"),
    }
}

/// Whether the response lets a cache serve it stale at all (RFC 9111 §4.2.4): not when it demands
/// revalidation.
pub fn may_serve_stale(res: &HeaderMap) -> bool {
    let strict = [
        "must-revalidate",
        "proxy-revalidate",
        "s-maxage",
        "no-cache",
    ];
    !strict.iter().any(|d| has_directive(res, d))
}

/// A request that asks for a validated or fresher answer never gets a stale one.
pub fn request_accepts_stale(req: &HeaderMap) -> bool {
    let pragma_no_cache = req
        .get(header::PRAGMA)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("no-cache"));
    !pragma_no_cache
        && !["no-cache", "max-age", "min-fresh"]
            .iter()
            .any(|d| has_directive(req, d))
}

/// When the stored response stops being fresh. When it is stale already, its lifetime is taken as zero,
/// which can only overstate how stale it is (so stale windows close early, never late).
pub fn fresh_until(policy: &CachePolicy, at: SystemTime) -> SystemTime {
    let ttl = policy.time_to_live(at);
    if ttl > Duration::ZERO {
        at + ttl
    } else {
        at.checked_sub(policy.age(at)).unwrap_or(at)
    }
}

/// Headers that describe the stored body itself and so are never taken from a 304 (RFC 9111 §3.2).
const KEEP_ON_REFRESH: [HeaderName; 4] = [
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::CONTENT_RANGE,
    header::TRANSFER_ENCODING,
];

/// The stored headers updated by a 304: every field the 304 carries replaces all stored instances of it
/// (multi-valued fields included), except the body's own; the stored `Age` goes, since the 304 is new.
pub fn refreshed_headers(stored: &HeaderMap, not_modified: &HeaderMap) -> HeaderMap {
    let mut out = stored.clone();
    out.remove(header::AGE);
    let mut update = not_modified.clone();
    crate::headers::remove_hop_by_hop(&mut update, false);
    for name in update.keys() {
        if KEEP_ON_REFRESH.contains(name) {
            continue;
        }
        out.remove(name);
        for value in update.get_all(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests;
