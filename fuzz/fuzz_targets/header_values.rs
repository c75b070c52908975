//! Property: no header value from an upstream makes a header rewriter panic.
#![no_main]

mod common;

use cobrowse_proxy::headers::{cookie, csp, link, refresh};
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
});
