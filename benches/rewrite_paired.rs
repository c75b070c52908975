//! Our HTML rewrite against the naive lol_html rewrite and lol_html's floor, timed in pairs.
//!
//! On shared cores the machine's speed moves from second to second (other tenants, the hypervisor's
//! steal time), so criterion's runs of two functions, taken seconds apart, can differ by a third for
//! the same code (docs/PERFORMANCE.md). Here each round times every rewriter once on the same page,
//! back to back, in an order that rotates from round to round, and the ratios are taken within each
//! round; their median cancels the drift that separate runs cannot. Bounded: `PAIRED_ROUNDS` rounds
//! (default 300) or `PAIRED_SECS` seconds per page (default 8), whichever ends first.
//!
//! `cargo bench --bench rewrite_paired` prints, per corpus page, the median time per page of each
//! rewriter, and the median per-round ratio of the naive rewrites' time to ours (above 1: ours is faster).

#![allow(clippy::unwrap_used)]

mod rewriters;

use std::hint::black_box;
use std::sync::Arc;

use cobrowse_proxy::rewrite::script::ScriptCache;
use rewriters::{median, naive, ours, paired_rounds, star_noop, wanted_pages};
use url::Url;

const NAMES: [&str; 4] = ["ours", "naive prefix", "naive resolve", "lol_html * floor"];

fn main() {
    let url = Url::parse("https://www.shop.test/").unwrap();
    let scripts = Arc::new(ScriptCache::new(1 << 20));
    println!(
        "{:10} {:>6}  {:>10} {:>13} {:>14} {:>17}  {:>13} {:>14}",
        "page",
        "rounds",
        "ours µs",
        "naive pfx µs",
        "naive res µs",
        "lol_html * µs",
        "pfx / ours",
        "res / ours"
    );
    for (name, page) in wanted_pages() {
        let run = |which: usize| {
            black_box(match which {
                0 => ours(&page, &url, &scripts),
                1 => naive(&page, &url, false),
                2 => naive(&page, &url, true),
                _ => star_noop(&page),
            });
        };
        let rounds: Vec<[f64; NAMES.len()]> = paired_rounds(run, || ());
        let column =
            |f: &dyn Fn(&[f64; NAMES.len()]) -> f64| median(rounds.iter().map(f).collect());
        let [a, b, c, d] = [0, 1, 2, 3].map(|i| column(&|t| t[i]));
        println!(
            "{name:10} {:>6}  {a:>10.0} {b:>13.0} {c:>14.0} {d:>17.0}  {:>13.3} {:>14.3}",
            rounds.len(),
            column(&|t| t[1] / t[0]),
            column(&|t| t[2] / t[0])
        );
    }
}
