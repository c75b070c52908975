//! A page's rewrite as one chunk, on one core against split across two (`src/rewrite/html/split.rs`),
//! timed in pairs: wall-clock time per page, which is what the split buys (its CPU is a little more).
//!
//! Each round times both once on the same page, back to back, the order alternating; the ratio is taken
//! within each round and the median of those is reported (see `rewrite_paired.rs` for why). The rewrites
//! run inside a tokio runtime, as in the proxy, whose blocking pool lends the second core's thread.
//! Bounded: `PAIRED_ROUNDS` rounds (default 300) or `PAIRED_SECS` seconds per page (default 8).
//!
//! `cargo bench --bench rewrite_split` prints per page the median µs of each and one ÷ two cores.

#![allow(clippy::unwrap_used)]

mod rewriters;

use std::sync::Arc;

use cobrowse_proxy::rewrite::script::ScriptCache;
use rewriters::{median, ours_one_chunk, paired_rounds, wanted_pages};
use url::Url;

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _inside = runtime.enter();
    let url = Url::parse("https://www.shop.test/").unwrap();
    let scripts = Arc::new(ScriptCache::new(1 << 20));
    let (joined, fell_back) = cobrowse_proxy::rewrite::html::split_counters();
    println!(
        "{:10} {:>6}  {:>12} {:>12}  {:>10}  {:>12}",
        "page", "rounds", "1 core µs", "2 cores µs", "1 ÷ 2", "joined/tried"
    );
    for (name, page) in wanted_pages() {
        let run = |which: usize| {
            ours_one_chunk(&page, &url, &scripts, which == 1);
        };
        let mut before = (0, 0);
        let rounds: Vec<[f64; 2]> = paired_rounds(run, || before = (joined.get(), fell_back.get()));
        let (joins, falls) = (joined.get() - before.0, fell_back.get() - before.1);
        let column = |f: fn(&[f64; 2]) -> f64| median(rounds.iter().map(f).collect());
        println!(
            "{name:10} {:>6}  {:>12.0} {:>12.0}  {:>10.3}  {:>6}/{}",
            rounds.len(),
            column(|t| t[0]),
            column(|t| t[1]),
            column(|t| t[0] / t[1]),
            joins,
            joins + falls
        );
    }
}
