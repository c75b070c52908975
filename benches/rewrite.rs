//! HTML and CSS rewriting throughput on realistic pages (fixtures/corpus), side by side in one run:
//! a plain copy, lol_html passing the bytes through with no handlers, lol_html with one no-op handler on
//! every tag (`*`) and with one attribute selector (the floor of any rewrite that reads attributes), a
//! naive lol_html rewrite (prefix every URL attribute, inject a script), the same resolving each URL, and
//! ours. Read the ratios, not the numbers; for figures that do not move with the machine's load, count
//! instructions (`docs/PERFORMANCE.md`: callgrind on one bench function).

#![allow(clippy::unwrap_used)]

mod rewriters;

use std::sync::Arc;

use cobrowse_proxy::rewrite::css::CssRewriter;
use cobrowse_proxy::rewrite::script::ScriptCache;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rewriters::{
    attr_selector_noop, map, naive, ours, page, passthrough, star_noop, star_noop_lexer, CHUNK,
    PAGES,
};
use url::Url;

fn html(c: &mut Criterion) {
    let url = Url::parse("https://www.shop.test/").unwrap();
    let scripts = Arc::new(ScriptCache::new(1 << 20));
    for name in PAGES {
        let page = page(name);
        let mut g = c.benchmark_group(format!("html/{name}"));
        g.throughput(Throughput::Bytes(page.len() as u64));
        g.sample_size(20);
        g.measurement_time(std::time::Duration::from_secs(3));
        g.bench_function("copy", |b| {
            b.iter(|| std::hint::black_box(&page[..]).to_vec())
        });
        g.bench_function("lol_html_passthrough", |b| b.iter(|| passthrough(&page)));
        g.bench_function("lol_html_star_noop", |b| b.iter(|| star_noop(&page)));
        g.bench_function("lol_html_star_noop_lexer", |b| {
            b.iter(|| star_noop_lexer(&page))
        });
        g.bench_function("lol_html_attr_selector_noop", |b| {
            b.iter(|| attr_selector_noop(&page))
        });
        g.bench_function("naive_prefix", |b| b.iter(|| naive(&page, &url, false)));
        g.bench_function("naive_resolve", |b| b.iter(|| naive(&page, &url, true)));
        g.bench_function("cobrowse", |b| b.iter(|| ours(&page, &url, &scripts)));
        g.finish();
    }
}

/// The fixed cost of one document: building the rewriter (selector compilation) and ending it.
fn setup(c: &mut Criterion) {
    let url = Url::parse("https://www.shop.test/").unwrap();
    let scripts = Arc::new(ScriptCache::new(1 << 20));
    let mut g = c.benchmark_group("html/per_document");
    g.sample_size(20);
    g.measurement_time(std::time::Duration::from_secs(2));
    g.bench_function("lol_html_passthrough", |b| b.iter(|| passthrough(b"")));
    g.bench_function("naive_prefix", |b| b.iter(|| naive(b"", &url, false)));
    g.bench_function("cobrowse", |b| {
        b.iter(|| ours(&bytes::Bytes::new(), &url, &scripts))
    });
    g.finish();
}

fn stylesheet() -> String {
    let mut css = String::new();
    for i in 0..4000 {
        css.push_str(&format!(
            ".c{i}{{color:#{:06x};background:url(/img/{i}.png) no-repeat;margin:{}px}}\n",
            i * 97 % 0xffffff,
            i % 17
        ));
        if i % 20 == 0 {
            css.push_str(&format!("@font-face{{font-family:f{i};src:url(https://cdn.shop.test/f/{i}.woff2) format(\"woff2\")}}\n"));
        }
    }
    css
}

fn css(c: &mut Criterion) {
    let sheet = stylesheet();
    let base = Url::parse("https://cdn.shop.test/css/site.css").unwrap();
    let mut g = c.benchmark_group("css");
    g.throughput(Throughput::Bytes(sheet.len() as u64));
    g.sample_size(20);
    g.measurement_time(std::time::Duration::from_secs(3));
    g.bench_function("copy", |b| {
        b.iter(|| std::hint::black_box(sheet.as_bytes()).to_vec())
    });
    g.bench_with_input(
        BenchmarkId::new("cobrowse", sheet.len()),
        &sheet,
        |b, sheet| {
            b.iter(|| {
                let mut r = CssRewriter::new(map(), base.clone(), 4 << 20);
                let mut out = Vec::with_capacity(sheet.len() + 4096);
                for chunk in sheet.as_bytes().chunks(CHUNK) {
                    r.write(chunk, &mut out).unwrap();
                }
                r.end(&mut out).unwrap();
                out.len()
            })
        },
    );
    g.finish();
}

fn codec(c: &mut Criterion) {
    let map = map();
    let base = Url::parse("https://www.shop.test/dir/page.html").unwrap();
    let mut g = c.benchmark_group("url_codec");
    g.bench_function("relative_fast_path", |b| {
        b.iter(|| map.rewrite_reference(&base, "/img/1234-photo.jpg"))
    });
    g.bench_function("absolute_rewrite", |b| {
        b.iter(|| map.rewrite_reference(&base, "https://cdn.shop.test/img/1234.jpg"))
    });
    let host = "www.shop.test.k3x9q2m7wa-s.localhost:8080";
    g.bench_function("decode_host", |b| {
        b.iter(|| map.public().decode_authority(host).unwrap())
    });
    g.finish();
}

/// A script of ordinary code where every tenth function touches `location` or `postMessage`.
fn script() -> String {
    let mut js = String::new();
    for i in 0..3000 {
        js.push_str(&format!(
            "function f{i}(a, b) {{ var s = a + b * {i}; if (s > 10) {{ return [s, 'item-{i}'].join('-'); }} return s; }}\n"
        ));
        if i % 10 == 0 {
            js.push_str(&format!("if (location.hash === '#{i}') {{ window.parent.postMessage('{i}', 'https://www.shop.test'); }}\n"));
        }
    }
    js
}

fn javascript(c: &mut Criterion) {
    let js = script();
    let mut g = c.benchmark_group("javascript");
    g.throughput(Throughput::Bytes(js.len() as u64));
    g.sample_size(20);
    g.measurement_time(std::time::Duration::from_secs(3));
    g.bench_function("rewrite_uncached", |b| {
        b.iter(|| cobrowse_proxy::rewrite::js::rewrite(&js))
    });
    let cache = cobrowse_proxy::rewrite::script::ScriptCache::new(64 << 20);
    g.bench_function("rewrite_cached", |b| b.iter(|| cache.rewrite(&js)));
    g.finish();
}

criterion_group!(benches, html, setup, css, codec, javascript);
criterion_main!(benches);
