//! Response headers from the target (which names its own hosts) to the browser (which must stay on proxy
//! hosts).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use url::Url;

use super::{cookie, csp, link, refresh, remove_hop_by_hop};
use crate::url_codec::{ProxyMap, TargetOrigin};

/// Everything the response rewrite needs to know about the exchange.
pub struct ResponseContext<'a> {
    pub map: &'a ProxyMap,
    /// The origin that answered.
    pub target: &'a TargetOrigin,
    /// The target URL of this response: what relative references resolve against.
    pub url: &'a Url,
    pub agent: &'a csp::LazyAgentSources<'a>,
}

/// Headers that would pin the proxy host to the target's transport or report to the target about it.
/// Names, not strings: removing by a string parses and checks the name first, on every response.
const DROPPED: [HeaderName; 9] = [
    header::STRICT_TRANSPORT_SECURITY,
    HeaderName::from_static("alt-svc"),
    HeaderName::from_static("expect-ct"),
    HeaderName::from_static("public-key-pins"),
    HeaderName::from_static("public-key-pins-report-only"),
    HeaderName::from_static("nel"),
    HeaderName::from_static("report-to"),
    HeaderName::from_static("reporting-endpoints"),
    // `cookies` here would clear every site of the session, since they share a registrable proxy domain.
    HeaderName::from_static("clear-site-data"),
];

const URL_VALUED: [HeaderName; 4] = [
    header::LOCATION,
    header::CONTENT_LOCATION,
    HeaderName::from_static("sourcemap"),
    HeaderName::from_static("x-sourcemap"),
];
const REFRESH: HeaderName = HeaderName::from_static("refresh");
const TIMING_ALLOW_ORIGIN: HeaderName = HeaderName::from_static("timing-allow-origin");

pub fn rewrite(headers: &mut HeaderMap, ctx: &ResponseContext, body_changes: bool, upgrade: bool) {
    remove_hop_by_hop(headers, upgrade);
    for name in &DROPPED {
        headers.remove(name);
    }
    for name in &URL_VALUED {
        map_each(headers, name, |v| {
            ctx.map.rewrite_reference(ctx.url, v.trim())
        });
    }
    map_each(headers, &REFRESH, |v| refresh::rewrite(v, ctx.map, ctx.url));
    map_each(headers, &header::LINK, |v| {
        link::rewrite(v, ctx.map, ctx.url)
    });
    map_each(headers, &header::ACCESS_CONTROL_ALLOW_ORIGIN, |v| {
        map_origin_list(v, ctx.map)
    });
    map_each(headers, &TIMING_ALLOW_ORIGIN, |v| {
        map_origin_list(v, ctx.map)
    });
    map_each(headers, &header::X_FRAME_OPTIONS, |v| {
        map_allow_from(v, ctx)
    });
    for name in [
        header::CONTENT_SECURITY_POLICY,
        header::CONTENT_SECURITY_POLICY_REPORT_ONLY,
    ] {
        map_each(headers, &name, |v| {
            Some(csp::rewrite(v, ctx.map, ctx.target, ctx.url, ctx.agent))
        });
    }
    rewrite_set_cookies(headers, ctx);
    if body_changes {
        drop_body_description(headers);
    }
}

fn drop_body_description(headers: &mut HeaderMap) {
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::CONTENT_ENCODING);
    headers.remove("content-md5");
    weaken_etag(headers);
}

/// The forward proxy's version: the target's hosts are the browser's hosts, so URLs and cookies stay as
/// they are; the policy only lets the agent in, and a changed body loses what described the old one.
/// Alt-Svc goes too: an alternative service (HTTP/3) would take the browser around the proxy.
pub fn rewrite_forward(
    headers: &mut HeaderMap,
    page: &TargetOrigin,
    url: &Url,
    agent: &csp::LazyAgentSources<'_>,
    body_changes: bool,
    upgrade: bool,
) {
    remove_hop_by_hop(headers, upgrade);
    headers.remove("alt-svc");
    if !body_changes {
        // Nothing is injected, so the policy stays the origin's own (and a cache stores it as sent).
        return;
    }
    for name in [
        header::CONTENT_SECURITY_POLICY,
        header::CONTENT_SECURITY_POLICY_REPORT_ONLY,
    ] {
        map_each(headers, &name, |v| {
            Some(csp::allow_agent_only(v, page, url, agent))
        });
    }
    drop_body_description(headers);
}

/// Replaces every value of `name` for which `f` returns a new one; values `f` leaves alone stay as they are.
fn map_each(headers: &mut HeaderMap, name: &HeaderName, mut f: impl FnMut(&str) -> Option<String>) {
    if !headers.contains_key(name) {
        return;
    }
    let old: Vec<HeaderValue> = headers.get_all(name).iter().cloned().collect();
    let new: Vec<HeaderValue> = old
        .into_iter()
        .map(|v| match v.to_str().ok().and_then(&mut f) {
            Some(s) => HeaderValue::from_str(&s).unwrap_or(v),
            None => v,
        })
        .collect();
    headers.remove(name);
    for v in new {
        headers.append(name.clone(), v);
    }
}

/// `Access-Control-Allow-Origin` / `Timing-Allow-Origin`: origins become proxy origins; `*` and `null` stay.
fn map_origin_list(value: &str, map: &ProxyMap) -> Option<String> {
    let mapped: Vec<String> = value
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|s| !s.is_empty())
        .map(|o| map_one_origin(o, map).unwrap_or_else(|| o.to_owned()))
        .collect();
    Some(mapped.join(" "))
}

fn map_one_origin(origin: &str, map: &ProxyMap) -> Option<String> {
    let url = Url::parse(origin).ok()?;
    let target = TargetOrigin::from_url(&url).ok()?;
    Some(map.proxy_origin(&target))
}

fn map_allow_from(value: &str, ctx: &ResponseContext) -> Option<String> {
    let (directive, uri) = value.trim().split_once(char::is_whitespace)?;
    if !directive.eq_ignore_ascii_case("allow-from") {
        return None;
    }
    let new = ctx.map.rewrite_reference(ctx.url, uri.trim())?;
    Some(format!("{directive} {new}"))
}

fn rewrite_set_cookies(headers: &mut HeaderMap, ctx: &ResponseContext) {
    let old: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    if old.is_empty() {
        return;
    }
    headers.remove(header::SET_COOKIE);
    for value in old {
        let Ok(text) = value.to_str() else {
            continue;
        };
        match cookie::rewrite_set_cookie(text, ctx.target, ctx.map) {
            Ok(None) => {
                headers.append(header::SET_COOKIE, value);
            }
            Ok(Some(new)) => {
                if let Ok(v) = HeaderValue::from_str(&new) {
                    headers.append(header::SET_COOKIE, v);
                }
            }
            // The reason only: a cookie's name or value never reaches a log.
            Err(reason) => tracing::debug!(%reason, "dropped a Set-Cookie"),
        }
    }
}

/// A rewritten body is a different representation: its validator may only claim weak equivalence.
fn weaken_etag(headers: &mut HeaderMap) {
    let Some(etag) = headers.get(header::ETAG) else {
        return;
    };
    if etag.as_bytes().starts_with(b"W/") {
        return;
    }
    let mut weak = b"W/".to_vec();
    weak.extend_from_slice(etag.as_bytes());
    if let Ok(v) = HeaderValue::from_bytes(&weak) {
        headers.insert(header::ETAG, v);
    }
}
