//! Properties: the CSS rewriter never panics, its streaming output equals the whole-input output, and it
//! agrees with the string form for UTF-8 input.
#![no_main]

mod common;

use cobrowse_proxy::rewrite::css::{rewrite_css_str, CssRewriter};
use libfuzzer_sys::fuzz_target;

fn run(parts: &[&[u8]], base: &url::Url) -> Option<Vec<u8>> {
    let mut r = CssRewriter::new(common::map(), base.clone(), 1 << 20);
    let mut out = Vec::new();
    for part in parts {
        r.write(part, &mut out).ok()?;
    }
    r.end(&mut out).ok()?;
    Some(out)
}

fuzz_target!(|input: (Vec<u8>, Vec<u8>)| {
    let (sizes, css) = input;
    let base = url::Url::parse("https://cdn.shop.test/css/site.css").expect("fixed base");
    let whole = run(&[&css], &base);
    let split = run(&common::chunks(&css, &sizes), &base);
    assert_eq!(whole, split);
    if let (Ok(text), Some(whole)) = (std::str::from_utf8(&css), whole) {
        assert_eq!(rewrite_css_str(&common::map(), &base, text).as_bytes(), whole.as_slice());
    }
});
