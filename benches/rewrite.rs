//! HTML and CSS rewriting throughput on realistic pages (fixtures/corpus), side by side in one run:
//! a plain copy, lol_html passing the bytes through with no handlers, lol_html with one no-op handler on
//! every tag (`*`) and with one attribute selector (the floor of any rewrite that reads attributes), a
//! naive lol_html rewrite (prefix every URL attribute, inject a script), the same resolving each URL, and
//! ours. Read the ratios, not the numbers; for figures that do not move with the machine's load, count
//! instructions (`docs/PERFORMANCE.md`: callgrind on one bench function).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use cobrowse_proxy::headers::csp::AgentSources;
use cobrowse_proxy::rewrite::css::CssRewriter;
use cobrowse_proxy::rewrite::html::{HtmlContext, HtmlTransform};
use cobrowse_proxy::rewrite::script::ScriptCache;
use cobrowse_proxy::rewrite::Transform;
use cobrowse_proxy::url_codec::{ProxyMap, PublicOrigin, SessionId, TargetOrigin};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lol_html::html_content::ContentType;
use lol_html::{element, HtmlRewriter, Settings};
use url::Url;

const CHUNK: usize = 16 << 10;
const PAGES: [&str; 3] = ["shop-100k", "news-300k", "docs-1m"];
const URL_ATTRS: [&str; 6] = ["href", "src", "srcset", "action", "poster", "data"];

fn map() -> ProxyMap {
    ProxyMap::new(
        Arc::new(PublicOrigin::parse("http://localhost:8080").unwrap()),
        SessionId::parse("k3x9q2m7wa").unwrap(),
    )
}

/// One page through our rewriter. The script cache is shared across pages, as the proxy shares one:
/// building it per page (a moka cache) would charge every document a cost production pays once.
#[inline(never)] // a frame of its own, for profiles
fn ours(page: &[u8], url: &Url, scripts: &Arc<ScriptCache>) -> usize {
    let map = map();
    let mut t = HtmlTransform::new(HtmlContext {
        agent_tag: cobrowse_proxy::agent::script_tag(map.public(), map.session(), "nonce"),
        map,
        url: url.clone(),
        target: TargetOrigin::from_url(url).unwrap(),
        agent: AgentSources {
            nonce: "nonce".into(),
            origin: "http://localhost:8080".into(),
        },
        // As the fixture origin serves the corpus pages: `text/html; charset=utf-8`.
        charset: cobrowse_proxy::rewrite::Charset {
            encoding: lol_html::AsciiCompatibleEncoding::new(encoding_rs::UTF_8).unwrap(),
            declared: true,
        },
        memory_limit: 16 << 20,
        inline_limit: 4 << 20,
        scripts: scripts.clone(),
    });
    // A new buffer per chunk, handed on and dropped, as the proxy's body stream does.
    let mut n = 0;
    for chunk in page.chunks(CHUNK) {
        let mut out = Vec::new();
        t.write(chunk, &mut out).unwrap();
        n += std::hint::black_box(out).len();
    }
    let mut out = Vec::new();
    t.end(&mut out).unwrap();
    n + out.len()
}

#[inline(never)] // a frame of its own, for profiles
fn passthrough(page: &[u8]) -> usize {
    drive(Settings::new(), page)
}

/// One page through lol_html with `settings`, in the chunks the proxy's body stream uses; the bytes out.
fn drive(settings: Settings<'_, '_>, page: &[u8]) -> usize {
    let mut n = 0;
    let mut r = HtmlRewriter::new(settings, |c: &[u8]| n += c.len());
    for chunk in page.chunks(CHUNK) {
        r.write(chunk).unwrap();
    }
    r.end().unwrap();
    n
}

/// lol_html with one `*` element handler that does nothing: the floor of any design that looks at every
/// start tag, as ours does.
#[inline(never)] // a frame of its own, for profiles
fn star_noop(page: &[u8]) -> usize {
    let settings = Settings::new().append_element_content_handler(element!("*", |_el| Ok(())));
    drive(settings, page)
}

/// lol_html with one attribute selector that matches nothing: what reading every tag's attributes
/// costs, before any handler runs (about the same as the `*` floor: the lexing is the cost).
#[inline(never)] // a frame of its own, for profiles
fn attr_selector_noop(page: &[u8]) -> usize {
    let settings =
        Settings::new().append_element_content_handler(element!("[data-never-set]", |_el| Ok(())));
    drive(settings, page)
}

/// The baseline the issue measured: every URL attribute prefixed, a script injected into <head>; with
/// `resolve`, each URL is also resolved against the page URL first.
#[inline(never)] // a frame of its own, for profiles
fn naive(page: &[u8], base: &Url, resolve: bool) -> usize {
    let mut settings = Settings::new().append_element_content_handler(element!("head", |el| {
        el.prepend("<script src=\"/agent.js\"></script>", ContentType::Html);
        Ok(())
    }));
    for attr in URL_ATTRS {
        let selector = format!("[{attr}]");
        settings =
            settings.append_element_content_handler(element!(selector.as_str(), move |el| {
                if let Some(v) = el.get_attribute(attr) {
                    let v = if resolve {
                        base.join(&v).map(String::from).unwrap_or(v)
                    } else {
                        v
                    };
                    el.set_attribute(attr, &format!("http://proxy.localhost/{v}"))?;
                }
                Ok(())
            }));
    }
    drive(settings, page)
}

fn html(c: &mut Criterion) {
    let url = Url::parse("https://www.shop.test/").unwrap();
    let scripts = Arc::new(ScriptCache::new(1 << 20));
    for name in PAGES {
        let path = format!("{}/fixtures/corpus/{name}.html", env!("CARGO_MANIFEST_DIR"));
        let page = std::fs::read(path).unwrap();
        let mut g = c.benchmark_group(format!("html/{name}"));
        g.throughput(Throughput::Bytes(page.len() as u64));
        g.sample_size(20);
        g.measurement_time(std::time::Duration::from_secs(3));
        g.bench_function("copy", |b| {
            b.iter(|| std::hint::black_box(page.as_slice()).to_vec())
        });
        g.bench_function("lol_html_passthrough", |b| b.iter(|| passthrough(&page)));
        g.bench_function("lol_html_star_noop", |b| b.iter(|| star_noop(&page)));
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
    g.bench_function("cobrowse", |b| b.iter(|| ours(b"", &url, &scripts)));
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
