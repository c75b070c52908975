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
use std::time::{Duration, Instant};

use cobrowse_proxy::rewrite::script::ScriptCache;
use rewriters::{env_or, median, ours_one_chunk, page, page_filter, PAGES};
use url::Url;

fn main() {
    let wanted = page_filter();
    let rounds: usize = env_or("PAIRED_ROUNDS", 300);
    let budget = Duration::from_secs(env_or("PAIRED_SECS", 8));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _inside = runtime.enter();
    let url = Url::parse("https://www.shop.test/").unwrap();
    let scripts = Arc::new(ScriptCache::new(1 << 20));
    let (joined, fell_back) = cobrowse_proxy::rewrite::html::split_counters();
    println!(
        "{:10} {:>6}  {:>12} {:>12}  {:>10}  {:>12}",
        "page", "rounds", "1 core µs", "2 cores µs", "1 ÷ 2", "joined/tried"
    );
    for name in PAGES {
        if !wanted(name) {
            continue;
        }
        let page = page(name);
        let run = |split: bool| -> f64 {
            let start = Instant::now();
            ours_one_chunk(&page, &url, &scripts, split);
            start.elapsed().as_secs_f64() * 1e6
        };
        for _ in 0..5 {
            run(false);
            run(true);
        }
        let (joined_before, fell_back_before) = (joined.get(), fell_back.get());
        let (mut one, mut two, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
        let started = Instant::now();
        for round in 0..rounds {
            if started.elapsed() > budget {
                break;
            }
            let (a, b) = if round % 2 == 0 {
                let a = run(false);
                (a, run(true))
            } else {
                let b = run(true);
                (run(false), b)
            };
            one.push(a);
            two.push(b);
            ratio.push(a / b);
        }
        let done = ratio.len();
        let tried = joined.get() - joined_before + fell_back.get() - fell_back_before;
        println!(
            "{name:10} {done:>6}  {:>12.0} {:>12.0}  {:>10.3}  {:>6}/{}",
            median(one),
            median(two),
            median(ratio),
            joined.get() - joined_before,
            tried
        );
    }
}
