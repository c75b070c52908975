//! Properties: the HTML rewriter never panics, and its output does not depend on how the input is split.
#![no_main]

mod common;

use cobrowse_proxy::rewrite::Transform;
use libfuzzer_sys::fuzz_target;

fn run(parts: &[&[u8]]) -> Vec<u8> {
    // Undeclared, so `<meta charset>` may switch the encoding mid-document, as it does for such pages.
    let mut t = common::html_transform(false);
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
