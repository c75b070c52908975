//! Property: no header value from an upstream makes a header rewriter (or the load test's reading of
//! `Server-Timing`) panic, and no request header block from a client makes the request rewriter panic.
#![no_main]

mod common;

use cobrowse_proxy::headers::{cookie, csp, link, refresh, timing};
use cobrowse_proxy::url_codec::TargetOrigin;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else { return };
    let map = common::map();
    let url = url::Url::parse("https://www.shop.test/a/b").expect("fixed URL");
    let target = TargetOrigin::from_url(&url).expect("fixed origin");
    let _ = link::rewrite(value, &map, &url);
    let _ = refresh::rewrite(value, &map, &url);
    let _ = csp::rewrite(value, &map, &target, &url, &csp::AgentSources {
            nonce: "n".into(),
            origin: "http://localhost:8080".into(),
        });
    let _ = cookie::rewrite_set_cookie(value, &target, &map);
    let _ = timing::parse([value]);
    request_headers(value, &map);
});

/// Each `name: value` line becomes a request header.
fn request_headers(block: &str, map: &cobrowse_proxy::url_codec::ProxyMap) {
    let mut headers = http::HeaderMap::new();
    for line in block.lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.trim().as_bytes()),
            http::HeaderValue::from_str(value.trim()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    cobrowse_proxy::headers::request::rewrite(&mut headers, map, false);
}
