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
use std::time::{Duration, Instant};

use cobrowse_proxy::rewrite::script::ScriptCache;
use rewriters::{env_or, median, naive, ours, page, page_filter, star_noop, PAGES};
use url::Url;

const NAMES: [&str; 4] = ["ours", "naive prefix", "naive resolve", "lol_html * floor"];

fn main() {
    let wanted = page_filter();
    let rounds: usize = env_or("PAIRED_ROUNDS", 300);
    let budget = Duration::from_secs(env_or("PAIRED_SECS", 8));
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
    for name in PAGES {
        if !wanted(name) {
            continue;
        }
        let page = page(name);
        let run = |which: usize| -> Duration {
            let start = Instant::now();
            black_box(match which {
                0 => ours(&page, &url, &scripts),
                1 => naive(&page, &url, false),
                2 => naive(&page, &url, true),
                _ => star_noop(&page),
            });
            start.elapsed()
        };
        for which in 0..NAMES.len() {
            for _ in 0..5 {
                run(which);
            }
        }
        let mut times: [Vec<f64>; 4] = Default::default();
        let (mut prefix_ratio, mut resolve_ratio) = (Vec::new(), Vec::new());
        let started = Instant::now();
        for round in 0..rounds {
            if started.elapsed() > budget {
                break;
            }
            let mut t = [0.0; 4];
            for k in 0..NAMES.len() {
                let which = (round + k) % NAMES.len();
                t[which] = run(which).as_secs_f64() * 1e6;
            }
            for (all, one) in times.iter_mut().zip(t) {
                all.push(one);
            }
            prefix_ratio.push(t[1] / t[0]);
            resolve_ratio.push(t[2] / t[0]);
        }
        let done = prefix_ratio.len();
        let [a, b, c, d] = times.map(median);
        println!(
            "{name:10} {done:>6}  {a:>10.0} {b:>13.0} {c:>14.0} {d:>17.0}  {:>13.3} {:>14.3}",
            median(prefix_ratio),
            median(resolve_ratio)
        );
    }
}
