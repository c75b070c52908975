//! Request headers from the browser (which speaks proxy hosts) to the target (which must see itself).

use http::header::{self, HeaderMap, HeaderValue};
use url::Url;

use super::{cookie, remove_hop_by_hop};
use crate::url_codec::ProxyMap;

/// Content codings the body pipeline can decode; anything else the target might pick would be opaque to
/// the rewriters.
const DECODABLE: [&str; 4] = ["gzip", "deflate", "br", "zstd"];

/// Rewrites request headers in place. `Host` is left to the upstream client, which sets it from the target.
pub fn rewrite(headers: &mut HeaderMap, map: &ProxyMap, websocket: bool) {
    remove_hop_by_hop(headers, websocket);
    headers.remove(header::HOST);
    map_origin(headers, map);
    map_referer(headers, map);
    limit_accept_encoding(headers);
    cookie::strip_reserved(headers);
}

/// The forward proxy's version: the browser already speaks the target's own origins, so only the hop
/// changes (and codings are limited, since HTML bodies are rewritten).
pub fn rewrite_forward(headers: &mut HeaderMap, websocket: bool) {
    remove_hop_by_hop(headers, websocket);
    headers.remove(header::HOST);
    limit_accept_encoding(headers);
}

/// This proxy's `Via` member (RFC 9110 §7.6.3) under its per-process name, which is how a request that
/// loops back through us is recognised; `None` for a name no header could carry.
pub fn via_value(name: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("1.1 {name}")).ok()
}

/// Adds this proxy to `Via`: the value is built once per process ([`via_value`]), not per request.
pub fn add_via(headers: &mut HeaderMap, via: &HeaderValue) {
    headers.append(header::VIA, via.clone());
}

/// Whether the request already passed through the proxy called `name`.
pub fn has_looped(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get_all(header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|hop| hop.split_ascii_whitespace().nth(1) == Some(name))
}

/// `Origin` names the page's proxy origin; the target must see its own. A request from anywhere else (the
/// console, another session) is sent as an opaque origin rather than leaking the proxy's host names.
fn map_origin(headers: &mut HeaderMap, map: &ProxyMap) {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return;
    };
    if origin.as_bytes() == b"null" {
        return;
    }
    let mapped = origin
        .to_str()
        .ok()
        .and_then(|o| Url::parse(o).ok())
        .and_then(|u| map.to_target(&u))
        .map(|t| t.origin().ascii_serialization());
    let value = mapped
        .and_then(|m| HeaderValue::from_str(&m).ok())
        .unwrap_or(HeaderValue::from_static("null"));
    headers.insert(header::ORIGIN, value);
}

/// `Referer` becomes the target URL it stands for, or is dropped when it is not one of this session's pages.
fn map_referer(headers: &mut HeaderMap, map: &ProxyMap) {
    let Some(referer) = headers.remove(header::REFERER) else {
        return;
    };
    let mapped = referer
        .to_str()
        .ok()
        .and_then(|r| Url::parse(r).ok())
        .and_then(|u| map.to_target(&u));
    if let Some(value) = mapped.and_then(|t| HeaderValue::from_str(t.as_str()).ok()) {
        headers.insert(header::REFERER, value);
    }
}

fn limit_accept_encoding(headers: &mut HeaderMap) {
    let Some(value) = headers.remove(header::ACCEPT_ENCODING) else {
        return;
    };
    let kept: Vec<&str> = value
        .to_str()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|coding| {
            let name = coding.split(';').next().unwrap_or_default().trim();
            DECODABLE.iter().any(|d| d.eq_ignore_ascii_case(name))
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&kept.join(", ")) {
        if !kept.is_empty() {
            headers.insert(header::ACCEPT_ENCODING, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::url_codec::test_map as map;

    fn run(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        rewrite(&mut h, &map(), false);
        h
    }

    #[test]
    fn origin_and_referer_map_back() {
        let h = run(&[
            ("host", "www.shop.test.k3x9q2m7wa-s.localhost:8080"),
            ("origin", "http://www.shop.test.k3x9q2m7wa-s.localhost:8080"),
            (
                "referer",
                "http://www.shop.test.k3x9q2m7wa-s.localhost:8080/cart?x=1",
            ),
        ]);
        assert!(h.get("host").is_none());
        assert_eq!(h.get("origin").unwrap(), "https://www.shop.test");
        assert_eq!(h.get("referer").unwrap(), "https://www.shop.test/cart?x=1");
    }

    #[test]
    fn foreign_origin_and_referer_do_not_leak() {
        let h = run(&[
            ("origin", "http://localhost:8080"),
            ("referer", "http://localhost:8080/console"),
        ]);
        assert_eq!(h.get("origin").unwrap(), "null");
        assert!(h.get("referer").is_none());
        let h = run(&[("origin", "http://www.shop.test.aaaaaaaaaa-s.localhost:8080")]);
        assert_eq!(
            h.get("origin").unwrap(),
            "null",
            "another session's origin is foreign"
        );
    }

    #[test]
    fn forward_mode_keeps_the_sites_own_origin_referer_and_cookies() {
        let mut h = HeaderMap::new();
        h.insert("origin", HeaderValue::from_static("https://www.shop.test"));
        h.insert(
            "referer",
            HeaderValue::from_static("https://www.shop.test/a"),
        );
        h.insert("cookie", HeaderValue::from_static("sid=1"));
        h.insert(
            "proxy-authorization",
            HeaderValue::from_static("Basic eDp5"),
        );
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        rewrite_forward(&mut h, false);
        assert_eq!(h.get("origin").unwrap(), "https://www.shop.test");
        assert_eq!(h.get("referer").unwrap(), "https://www.shop.test/a");
        assert_eq!(h.get("cookie").unwrap(), "sid=1");
        assert!(h.get("proxy-authorization").is_none());
        assert!(h.get("proxy-connection").is_none());
    }

    #[test]
    fn via_names_this_proxy_and_detects_a_loop() {
        let mut h = HeaderMap::new();
        h.insert(
            "via",
            HeaderValue::from_static("1.0 fred, 1.1 p.example (Apache/1.1)"),
        );
        assert!(!has_looped(&h, "cobrowse-1234abcd"));
        add_via(&mut h, &via_value("cobrowse-1234abcd").unwrap());
        assert!(has_looped(&h, "cobrowse-1234abcd"));
        assert!(!has_looped(&h, "cobrowse-ffffffff"));
    }

    #[test]
    fn accept_encoding_limited_to_decodable() {
        let h = run(&[(
            "accept-encoding",
            "gzip, deflate, br, zstd, dcb, dcz, compress;q=0.1",
        )]);
        assert_eq!(h.get("accept-encoding").unwrap(), "gzip, deflate, br, zstd");
        let h = run(&[("accept-encoding", "dcb")]);
        assert!(h.get("accept-encoding").is_none());
    }
}
