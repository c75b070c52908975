//! Property: any Host header the codec accepts re-encodes to itself (one canonical proxy host per origin),
//! and any reference it rewrites maps back to the URL it resolved to.
#![no_main]

mod common;

use cobrowse_proxy::url_codec::TargetOrigin;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let map = common::map();
    if let Ok((session, origin)) = map.public().decode_authority(text) {
        let again = map.public().proxy_host(&session, &origin);
        let name = text.rsplit_once(':').map_or(text, |(n, _)| n).trim_end_matches('.').to_ascii_lowercase();
        assert_eq!(again, name);
    }
    let base = url::Url::parse("https://www.shop.test/dir/page.html").expect("fixed base");
    if let Some(proxied) = map.rewrite_reference(&base, text) {
        let proxied = url::Url::parse(&proxied).expect("rewritten references are absolute URLs");
        let target = map.to_target(&proxied).expect("a proxy URL maps back");
        let expected = base.join(text).expect("it resolved once");
        assert_eq!(TargetOrigin::from_url(&target).ok(), TargetOrigin::from_url(&expected).ok());
        assert_eq!(target.path(), expected.path());
    }
});
