//! Property: the JavaScript rewriter never panics, and whenever a script parses, its rewrite parses too
//! (an insertion must never turn valid code into a syntax error).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxc_allocator::Allocator;
use oxc_span::SourceType;

fn parses(source: &str) -> bool {
    let allocator = Allocator::default();
    !oxc_parser::Parser::new(&allocator, source, SourceType::unambiguous())
        .parse()
        .diagnostics
        .has_errors()
}

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    if let Some(out) = cobrowse_proxy::rewrite::js::rewrite(source) {
        assert!(parses(&out), "rewrite broke a script:\n{source}\n---\n{out}");
    }
});
