//! Properties: the forward proxy's injector (`src/rewrite/inject.rs`) never panics; its output does not
//! depend on how the input is split; and stopping after the head gives exactly what lexing the whole
//! page gives on any page without a `<meta>` (the one tag after the head that lexing it all would
//! change, and that browsers ignore there).
#![no_main]

use cobrowse_proxy::headers::csp::AgentSources;
use cobrowse_proxy::rewrite::inject::{transform, transform_lexing_all, InjectContext};
use cobrowse_proxy::rewrite::{Charset, Transform};
use cobrowse_proxy::url_codec::TargetOrigin;
use libfuzzer_sys::fuzz_target;

mod common;

fn context() -> InjectContext {
    let url = url::Url::parse("https://www.shop.test/").expect("fixed URL");
    InjectContext {
        target: TargetOrigin::from_url(&url).expect("fixed origin"),
        url,
        agent_tag: "<script src=\"https://www.shop.test/__cobrowse/agent.js\"></script>".into(),
        agent: AgentSources {
            nonce: "n".into(),
            origin: "https://www.shop.test".into(),
        },
        charset: Charset {
            encoding: lol_html::AsciiCompatibleEncoding::new(encoding_rs::UTF_8).expect("utf-8"),
            declared: false,
        },
        memory_limit: 1 << 20,
    }
}

/// The injector's output for `chunks`, or `None` if it gave up (then nothing is compared).
fn run(mut t: cobrowse_proxy::rewrite::html::HtmlTransform, chunks: &[&[u8]]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for chunk in chunks {
        t.write(bytes::Bytes::copy_from_slice(chunk), &mut out)
            .ok()?;
    }
    t.end(&mut out).ok()?;
    Some(out)
}

fuzz_target!(|input: (Vec<u8>, Vec<u8>)| {
    let (sizes, html) = input;
    let Some(whole) = run(transform(context()), &[&html]) else {
        return;
    };
    if let Some(split) = run(transform(context()), &common::chunks(&html, &sizes)) {
        assert_eq!(whole, split);
    }
    let has_meta = html.windows(5).any(|w| w.eq_ignore_ascii_case(b"<meta"));
    if !has_meta {
        if let Some(lexed) = run(transform_lexing_all(context()), &[&html]) {
            assert_eq!(whole, lexed);
        }
    }
});
