//! Properties: the HTML rewriter never panics, and its output does not depend on how the input is split.
#![no_main]

mod common;

use cobrowse_proxy::headers::csp::AgentSources;
use cobrowse_proxy::rewrite::html::{HtmlContext, HtmlTransform};
use cobrowse_proxy::rewrite::Transform;
use cobrowse_proxy::url_codec::TargetOrigin;
use libfuzzer_sys::fuzz_target;

fn run(parts: &[&[u8]]) -> Vec<u8> {
    let url = url::Url::parse("https://www.shop.test/").expect("fixed URL");
    let mut t = HtmlTransform::new(HtmlContext {
        map: common::map(),
        target: TargetOrigin::from_url(&url).expect("fixed origin"),
        url,
        agent_tag: "<script src=\"http://localhost:8080/a.js\"></script>".into(),
        agent: AgentSources {
            nonce: "n".into(),
            origin: "http://localhost:8080".into(),
        },
        // Undeclared, so `<meta charset>` may switch the encoding mid-document, as it does for such pages.
        charset: cobrowse_proxy::rewrite::Charset {
            encoding: lol_html::AsciiCompatibleEncoding::new(encoding_rs::UTF_8).expect("utf-8"),
            declared: false,
        },
        memory_limit: 1 << 20,
        inline_limit: 64 << 10,
        scripts: std::sync::Arc::new(cobrowse_proxy::rewrite::script::ScriptCache::new(1 << 20)),
    });
    let mut out = Vec::new();
    for part in parts {
        if t.write(bytes::Bytes::copy_from_slice(part), &mut out).is_err() {
            return out;
        }
    }
    let _ = t.end(&mut out);
    out
}

fuzz_target!(|input: (Vec<u8>, Vec<u8>)| {
    let (sizes, html) = input;
    let whole = run(&[&html]);
    let split = run(&common::chunks(&html, &sizes));
    assert_eq!(whole, split);
});
