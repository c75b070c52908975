//! The HTML rewriters the benches compare, each driving one whole page the way the proxy's body stream
//! does (16 KiB chunks): ours, lol_html passing bytes through, lol_html's floors (a no-op `*` handler,
//! one attribute selector), and the naive rewrite the targets name (every URL attribute prefixed, a
//! script injected; `resolve` also resolves each URL against the page first). Shared by
//! `benches/rewrite.rs` (criterion), and `benches/rewrite_paired.rs` and `benches/rewrite_split.rs`
//! (back-to-back pairs).

#![allow(clippy::unwrap_used, dead_code)]

use std::sync::Arc;

use cobrowse_proxy::headers::csp::AgentSources;
use cobrowse_proxy::rewrite::html::{HtmlContext, HtmlTransform};
use cobrowse_proxy::rewrite::script::ScriptCache;
use cobrowse_proxy::rewrite::Transform;
use cobrowse_proxy::url_codec::{ProxyMap, PublicOrigin, SessionId, TargetOrigin};
use lol_html::html_content::ContentType;
use lol_html::{element, HtmlRewriter, Settings};
use url::Url;

pub const CHUNK: usize = 16 << 10;

/// `name` from the environment, parsed, or `default`: the paired benches' bounds.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Page names to run, from the arguments (`cargo bench` passes `--bench`; any other argument filters).
pub fn page_filter() -> impl Fn(&str) -> bool {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    move |name| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()))
}
pub const PAGES: [&str; 3] = ["shop-100k", "news-300k", "docs-1m"];

/// The corpus pages to run in the paired benches: [`PAGES`] filtered by the arguments, each loaded.
pub fn wanted_pages() -> impl Iterator<Item = (&'static str, bytes::Bytes)> {
    let wanted = page_filter();
    PAGES
        .into_iter()
        .filter(move |name| wanted(name))
        .map(|name| (name, page(name)))
}

/// The paired benches' rounds on one page: five warm-up rounds, then `after_warm_up`, then each of the
/// `N` runs timed once per round, back to back in an order that rotates from round to round, for
/// `PAIRED_ROUNDS` rounds (300) or `PAIRED_SECS` seconds (8), whichever ends first. The µs each run
/// took, per round.
pub fn paired_rounds<const N: usize>(
    mut run: impl FnMut(usize),
    after_warm_up: impl FnOnce(),
) -> Vec<[f64; N]> {
    let rounds: usize = env_or("PAIRED_ROUNDS", 300);
    let budget = std::time::Duration::from_secs(env_or("PAIRED_SECS", 8));
    for _ in 0..5 {
        (0..N).for_each(&mut run);
    }
    after_warm_up();
    let started = std::time::Instant::now();
    let mut times = Vec::new();
    for round in 0..rounds {
        if started.elapsed() > budget {
            break;
        }
        let mut t = [0.0; N];
        for k in 0..N {
            let which = (round + k) % N;
            let start = std::time::Instant::now();
            run(which);
            t[which] = start.elapsed().as_secs_f64() * 1e6;
        }
        times.push(t);
    }
    times
}
const URL_ATTRS: [&str; 6] = ["href", "src", "srcset", "action", "poster", "data"];

pub fn map() -> ProxyMap {
    ProxyMap::new(
        Arc::new(PublicOrigin::parse("http://localhost:8080").unwrap()),
        SessionId::parse("k3x9q2m7wa").unwrap(),
    )
}

/// Our rewriter for a page of `url`, as the proxy builds it for the fixture origin's pages.
pub fn our_transform(url: &Url, scripts: &Arc<ScriptCache>) -> HtmlTransform {
    let map = map();
    HtmlTransform::new(HtmlContext {
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
    })
}

/// One page through our rewriter as one chunk, the way the proxy most often gets a page from an origin
/// nearby; split across two cores or not.
#[inline(never)] // a frame of its own, for profiles
pub fn ours_one_chunk(
    page: &bytes::Bytes,
    url: &Url,
    scripts: &Arc<ScriptCache>,
    split: bool,
) -> usize {
    let t = our_transform(url, scripts);
    let mut t = if split { t } else { t.on_one_core() };
    let mut out = Vec::new();
    t.write(page.clone(), &mut out).unwrap();
    t.end(&mut out).unwrap();
    std::hint::black_box(out).len()
}

/// One page through our rewriter. The script cache is shared across pages, as the proxy shares one:
/// building it per page (a moka cache) would charge every document a cost production pays once.
#[inline(never)] // a frame of its own, for profiles
pub fn ours(page: &bytes::Bytes, url: &Url, scripts: &Arc<ScriptCache>) -> usize {
    let mut t = our_transform(url, scripts);
    // Shared chunks in, and a new buffer per chunk out, handed on and dropped, as the proxy's body
    // stream does.
    let mut n = 0;
    let mut rest = page.clone();
    while !rest.is_empty() {
        let chunk = rest.split_to(CHUNK.min(rest.len()));
        let mut out = Vec::new();
        t.write(chunk, &mut out).unwrap();
        n += std::hint::black_box(out).len();
    }
    let mut out = Vec::new();
    t.end(&mut out).unwrap();
    n + out.len()
}

#[inline(never)] // a frame of its own, for profiles
pub fn passthrough(page: &[u8]) -> usize {
    drive(Settings::new(), page)
}

/// One page through lol_html with `settings`, in the chunks the proxy's body stream uses; the bytes out.
/// The output is collected into a new buffer per chunk, handed on and dropped, as `ours` and the proxy
/// do: a rewrite has to deliver its page, and a sink that only counted bytes would spare the baselines
/// the copy every real rewrite makes.
fn drive(settings: Settings<'_, '_>, page: &[u8]) -> usize {
    let out = std::cell::RefCell::new(Vec::new());
    let mut n = 0;
    let mut r = HtmlRewriter::new(settings, |c: &[u8]| out.borrow_mut().extend_from_slice(c));
    for chunk in page.chunks(CHUNK) {
        r.write(chunk).unwrap();
        n += std::hint::black_box(out.take()).len();
    }
    r.end().unwrap();
    n + out.take().len()
}

/// lol_html with one `*` element handler that does nothing: the floor of any design that looks at every
/// start tag, as ours does.
#[inline(never)] // a frame of its own, for profiles
pub fn star_noop(page: &[u8]) -> usize {
    let settings = Settings::new().append_element_content_handler(element!("*", |_el| Ok(())));
    drive(settings, page)
}

/// The `*` floor with a no-op doctype handler, which keeps lol_html in its lexer instead of switching to
/// it and back around every start tag (ours does the same: `stay_in_lexer` in `src/rewrite/html.rs`).
#[inline(never)] // a frame of its own, for profiles
pub fn star_noop_lexer(page: &[u8]) -> usize {
    let settings = Settings::new()
        .append_element_content_handler(element!("*", |_el| Ok(())))
        .append_document_content_handler(lol_html::doctype!(|_| Ok(())));
    drive(settings, page)
}

/// lol_html with one attribute selector that matches nothing: what reading every tag's attributes
/// costs, before any handler runs (about the same as the `*` floor: the lexing is the cost).
#[inline(never)] // a frame of its own, for profiles
pub fn attr_selector_noop(page: &[u8]) -> usize {
    let settings =
        Settings::new().append_element_content_handler(element!("[data-never-set]", |_el| Ok(())));
    drive(settings, page)
}

/// The baseline the issue measured: every URL attribute prefixed, a script injected into <head>; with
/// `resolve`, each URL is also resolved against the page URL first.
#[inline(never)] // a frame of its own, for profiles
pub fn naive(page: &[u8], base: &Url, resolve: bool) -> usize {
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

/// A corpus page (`fixtures/corpus/<name>.html`), shared as the body stream shares its chunks.
pub fn page(name: &str) -> bytes::Bytes {
    let path = format!("{}/fixtures/corpus/{name}.html", env!("CARGO_MANIFEST_DIR"));
    bytes::Bytes::from(std::fs::read(path).unwrap())
}
