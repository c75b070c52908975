//! Property: a page rewritten in parts (`src/rewrite/html/split.rs`), cut at any start tags, comes out
//! exactly as one rewriter gives it, and nothing panics.
#![no_main]

mod common;

use cobrowse_proxy::rewrite::Transform;
use libfuzzer_sys::fuzz_target;

/// The page's first bytes, as their own chunk: the agent goes in there, as on most pages.
const HEAD: &[u8] = b"<!doctype html><html><head><title>t</title></head><body>";

/// Cuts at the start tags the `picks` bytes choose (each picks the next `<` followed by a letter at
/// least that many tags on), each running to its first `>`, in order and not overlapping.
fn cuts(html: &[u8], picks: &[u8]) -> Vec<(usize, usize)> {
    let starts: Vec<usize> = (1..html.len())
        .filter(|&i| html[i] == b'<' && html.get(i + 1).is_some_and(u8::is_ascii_alphabetic))
        .collect();
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    let mut next = 0;
    for &pick in picks.iter().take(8) {
        next += usize::from(pick % 16);
        let Some(&at) = starts.get(next) else { break };
        next += 1;
        let Some(gt) = html[at..].iter().position(|&b| b == b'>') else { break };
        let end = at + gt + 1;
        if end < html.len() && cuts.last().is_none_or(|&(_, e)| e <= at) {
            cuts.push((at, end));
        }
    }
    cuts
}

fuzz_target!(|input: (Vec<u8>, Vec<u8>)| {
    let (picks, html) = input;
    let mut whole = Vec::new();
    let mut one = common::html_transform(true);
    let _ = one.write(bytes::Bytes::from_static(HEAD), &mut whole);
    if one.write(bytes::Bytes::copy_from_slice(&html), &mut whole).is_err() {
        return;
    }
    let _ = one.end(&mut whole);

    let mut parts = Vec::new();
    // Declared, as a split needs.
    let mut split = common::html_transform(true);
    let _ = split.write(bytes::Bytes::from_static(HEAD), &mut parts);
    let cuts = cuts(&html, &picks);
    if split
        .write_in_parts(bytes::Bytes::copy_from_slice(&html), &cuts, &mut parts)
        .is_err()
    {
        return;
    }
    let _ = split.end(&mut parts);
    assert_eq!(whole, parts, "cuts {cuts:?}");
});
