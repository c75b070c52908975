use super::*;
use crate::url_codec::{PublicOrigin, SessionId};
use bytes::Bytes;
use lol_html::AsciiCompatibleEncoding;
use rand::{Rng, SeedableRng};

const P: &str = "http://cdn.shop.test.k3x9q2m7wa-s.localhost:8080";
const TAG: &str = "<script src=\"http://localhost:8080/__cobrowse/agent.js\" data-cobrowse-session=\"k3x9q2m7wa\" nonce=\"N\"></script>";

/// The rewriter for a page whose Content-Type header declared `encoding`.
fn transform(encoding: &'static encoding_rs::Encoding) -> HtmlTransform {
    transform_with(Charset {
        encoding: AsciiCompatibleEncoding::new(encoding).unwrap(),
        declared: true,
    })
}

fn transform_with(charset: Charset) -> HtmlTransform {
    let url = Url::parse("https://www.shop.test/dir/page.html").unwrap();
    HtmlTransform::new(HtmlContext {
        map: ProxyMap::new(
            std::sync::Arc::new(PublicOrigin::parse("http://localhost:8080").unwrap()),
            SessionId::parse("k3x9q2m7wa").unwrap(),
        ),
        target: TargetOrigin::from_url(&url).unwrap(),
        url,
        agent_tag: TAG.into(),
        agent: csp::AgentSources {
            nonce: "N".into(),
            origin: "http://localhost:8080".into(),
        },
        charset,
        memory_limit: 16 << 20,
        inline_limit: 1 << 20,
        scripts: std::sync::Arc::new(crate::rewrite::script::ScriptCache::new(1 << 20)),
    })
}

fn run_chunks(
    input: &[u8],
    sizes: &mut dyn FnMut() -> usize,
    encoding: &'static encoding_rs::Encoding,
) -> Vec<u8> {
    let mut t = transform(encoding);
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let n = sizes().clamp(1, rest.len());
        t.write(Bytes::copy_from_slice(&rest[..n]), &mut out)
            .unwrap();
        rest = &rest[n..];
    }
    t.end(&mut out).unwrap();
    out
}

/// Rewrites `input` whole, then split at random sizes with several seeds; all must agree.
fn rewrite_bytes(input: &[u8], encoding: &'static encoding_rs::Encoding) -> Vec<u8> {
    let whole = run_chunks(input, &mut || usize::MAX, encoding);
    for seed in 0..8u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let max = [1, 2, 3, 7, 16, 64, 256, 4096][seed as usize];
        let split = run_chunks(input, &mut || rng.gen_range(1..=max), encoding);
        assert_eq!(
            String::from_utf8_lossy(&split),
            String::from_utf8_lossy(&whole),
            "seed {seed}"
        );
    }
    whole
}

fn rewrite(input: &str) -> String {
    String::from_utf8(rewrite_bytes(input.as_bytes(), encoding_rs::UTF_8)).unwrap()
}

#[test]
fn relative_urls_are_untouched_and_agent_goes_first_in_head() {
    let input = "<!doctype html><html><head><meta charset=utf-8><script src=/app.js></script></head><body><a href=\"a/b?c=d&amp;e=f\">x</a><img src='../i.png'></body></html>";
    let out = rewrite(input);
    assert_eq!(out, input.replace("<head>", &format!("<head>{TAG}")));
}

#[test]
fn absolute_urls_in_every_url_attribute() {
    let input = r#"<a href="https://cdn.shop.test/a">a</a><img src="//cdn.shop.test/i.png"><form action="https://cdn.shop.test/f"><button formaction="https://cdn.shop.test/b"></button></form><video poster="https://cdn.shop.test/p.png"></video><object data="https://cdn.shop.test/o.svg"></object><blockquote cite="https://cdn.shop.test/q"></blockquote><table background="https://cdn.shop.test/bg.png"></table><a ping="https://cdn.shop.test/ping">p</a><svg><image href="https://cdn.shop.test/s.png"/><use xlink:href="https://cdn.shop.test/sprite.svg#i"/></svg><iframe src="https://cdn.shop.test/frame"></iframe><link rel=icon href="https://cdn.shop.test/fav.ico">"#;
    let out = rewrite(input);
    for path in [
        "/a",
        "/i.png",
        "/f",
        "/b",
        "/p.png",
        "/o.svg",
        "/q",
        "/bg.png",
        "/ping",
        "/s.png",
        "/sprite.svg#i",
        "/frame",
        "/fav.ico",
    ] {
        assert!(
            out.contains(&format!("\"{P}{path}\"")),
            "{path} not rewritten in {out}"
        );
    }
    assert!(!out.contains("\"https://cdn.shop.test"), "{out}");
}

#[test]
fn html_root_manifest_is_rewritten() {
    let out = rewrite(r#"<html manifest="https://cdn.shop.test/app.appcache"><p>x"#);
    assert!(
        out.contains(&format!("manifest=\"{P}/app.appcache\"")),
        "{out}"
    );
    assert!(
        out.contains(&format!("<html manifest=\"{P}/app.appcache\">{TAG}<p>")),
        "agent before the first non-html element: {out}"
    );
}

#[test]
fn srcset_and_imagesrcset() {
    let out = rewrite(
        r#"<img srcset="https://cdn.shop.test/a.png 1x, /b.png 2x"><link rel=preload as=image imagesrcset="//cdn.shop.test/c.png 100w">"#,
    );
    assert!(
        out.contains(&format!("srcset=\"{P}/a.png 1x, /b.png 2x\"")),
        "{out}"
    );
    assert!(
        out.contains(&format!("imagesrcset=\"{P}/c.png 100w\"")),
        "{out}"
    );
}

#[test]
fn entities_cannot_hide_an_absolute_url() {
    let out = rewrite(
        r#"<a href="https&#58;//cdn.shop.test/x?a=1&amp;b=2">x</a><a href="&#x2F;&#x2F;cdn.shop.test/y">y</a>"#,
    );
    assert!(
        out.contains(&format!("href=\"{P}/x?a=1&amp;b=2\"")),
        "{out}"
    );
    assert!(out.contains(&format!("href=\"{P}/y\"")), "{out}");
}

#[test]
fn base_href_is_rewritten_and_used_for_later_absolute_resolution() {
    let out = rewrite(
        r#"<head><base href="https://cdn.shop.test/js/"><script src="lib.js"></script><a href="https:x">x</a></head>"#,
    );
    assert!(out.contains(&format!("<base href=\"{P}/js/\">")), "{out}");
    assert!(
        out.contains("<script src=\"lib.js\">"),
        "relative stays relative: {out}"
    );
    assert!(
        out.contains(&format!("href=\"{P}/js/x\"")),
        "resolved against the base: {out}"
    );
}

#[test]
fn meta_refresh_and_meta_csp() {
    let out = rewrite(
        r#"<meta http-equiv="refresh" content="0; url=https://cdn.shop.test/next"><meta http-equiv="Content-Security-Policy" content="img-src https://cdn.shop.test">"#,
    );
    assert!(
        out.contains(&format!("content=\"0; url={P}/next\"")),
        "{out}"
    );
    assert!(out.contains(&format!("content=\"img-src {P}\"")), "{out}");
}

#[test]
fn integrity_removed_where_bodies_may_change() {
    let out = rewrite(
        r#"<script src="https://cdn.shop.test/a.js" integrity="sha384-x" crossorigin></script><link rel=stylesheet href="/s.css" integrity="sha384-y"><link rel=preload as=font href="/f.woff2" integrity="sha384-z">"#,
    );
    assert!(
        !out.contains("sha384-x") && !out.contains("sha384-y"),
        "{out}"
    );
    assert!(
        out.contains("sha384-z"),
        "fonts pass through unchanged: {out}"
    );
}

#[test]
fn inline_styles_and_style_elements() {
    let out = rewrite(
        r#"<div style="background:url('https://cdn.shop.test/a.png')"></div><style>@import "https://cdn.shop.test/i.css"; .x{background:url(//cdn.shop.test/b.png)} .y{background:url(/c.png)}</style>"#,
    );
    assert!(out.contains(&format!("{P}/a.png")), "{out}");
    assert!(out.contains(&format!("@import \"{P}/i.css\"")), "{out}");
    assert!(out.contains(&format!("{P}/b.png")), "{out}");
    assert!(out.contains("url(/c.png)"), "{out}");
}

#[test]
fn event_handler_attributes_and_inline_scripts() {
    let out = rewrite(
        r#"<button onclick="location.href='https://cdn.shop.test/x'; return false">go</button><a onmouseover="hover()">h</a><script>if (location.hash) top.location = '/';</script><script type="application/json">{"location": 1}</script>"#,
    );
    assert!(
        out.contains(r#"onclick="__cbLocation.href='https://cdn.shop.test/x'; return false""#),
        "{out}"
    );
    assert!(out.contains(r#"onmouseover="hover()""#), "{out}");
    assert!(
        out.contains("<script>if (__cbLocation.hash) __cbSetLocation(top, '/');</script>"),
        "{out}"
    );
    assert!(
        out.contains(r#"{"location": 1}"#),
        "JSON blocks are not script: {out}"
    );
}

#[test]
fn import_maps() {
    let out = rewrite(
        r#"<script type="importmap">{"imports":{"util":"https://cdn.shop.test/u.mjs"}}</script>"#,
    );
    assert!(out.contains(&format!("\"util\":\"{P}/u.mjs\"")), "{out}");
}

#[test]
fn agent_injected_exactly_once_without_head_or_html() {
    let out = rewrite("<p>hi</p><script>window.first = 1</script><head></head>");
    assert!(out.starts_with(&format!("{TAG}<p>")), "{out}");
    assert_eq!(out.matches("agent.js").count(), 1, "{out}");
    let out = rewrite("just text, no elements");
    assert_eq!(out, format!("just text, no elements{TAG}"));
    let out = rewrite("<!doctype html><script>1</script>");
    assert_eq!(out, format!("<!doctype html>{TAG}<script>1</script>"));
    let out = rewrite("");
    assert_eq!(out, TAG);
}

#[test]
fn non_utf8_documents_keep_their_bytes() {
    let (page, _, _) = encoding_rs::SHIFT_JIS
        .encode("<p>日本語のページ</p><a href=\"https://cdn.shop.test/x\">リンク</a>");
    let out = rewrite_bytes(&page, encoding_rs::SHIFT_JIS);
    let (text, _, errors) = encoding_rs::SHIFT_JIS.decode(&out);
    assert!(!errors, "output is valid Shift_JIS");
    assert!(
        text.contains("日本語のページ") && text.contains("リンク"),
        "{text}"
    );
    assert!(text.contains(&format!("href=\"{P}/x\"")), "{text}");
}

/// A `<meta charset>` switches the encoding only when the header named none, as in the browser: an
/// `é` in windows-1252 (byte E9) after `<meta charset=utf-8>` stays `é` under a declared windows-1252.
#[test]
fn meta_charset_yields_to_a_declared_one() {
    let page = b"<meta charset=utf-8><a href=\"https://cdn.shop.test/caf\xe9\">caf\xe9</a>";
    let run = |declared| {
        let mut t = transform_with(Charset {
            encoding: AsciiCompatibleEncoding::new(encoding_rs::WINDOWS_1252).unwrap(),
            declared,
        });
        let mut out = Vec::new();
        t.write(Bytes::from_static(&page[..]), &mut out).unwrap();
        t.end(&mut out).unwrap();
        out
    };
    let declared = run(true);
    let (text, _, _) = encoding_rs::WINDOWS_1252.decode(&declared);
    assert!(text.contains(&format!("href=\"{P}/caf%C3%A9\"")), "{text}");
    assert!(text.contains(">café</a>"), "{text}");
    // Undeclared, the meta wins: byte E9 is not UTF-8, so the URL is read as U+FFFD.
    let sniffed = String::from_utf8_lossy(&run(false)).into_owned();
    assert!(
        sniffed.contains(&format!("href=\"{P}/caf%EF%BF%BD\"")),
        "{sniffed}"
    );
}

#[test]
fn non_network_schemes_are_left_alone() {
    let input = r##"<a href="javascript:void(0)">j</a><img src="data:image/png;base64,AAAA"><a href="mailto:a@b.test">m</a><a href="#top">t</a><a href="blob:https://www.shop.test/u">b</a>"##;
    let out = rewrite(input);
    assert_eq!(out, format!("{TAG}{input}"));
}

/// Output goes to the document that made it: two documents written in turn on one thread each get
/// exactly the bytes they get alone.
#[test]
fn output_stays_with_its_document() {
    let a = b"<p><a href=\"https://cdn.shop.test/a\">a</a></p>".repeat(50);
    let b = b"<div><img src=\"//cdn.shop.test/b.png\"></div>".repeat(50);
    let alone = |page: &[u8]| run_chunks(page, &mut || 7, encoding_rs::UTF_8);
    let (mut ta, mut tb) = (transform(encoding_rs::UTF_8), transform(encoding_rs::UTF_8));
    let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
    let (mut ca, mut cb) = (a.chunks(7), b.chunks(7));
    loop {
        let (next_a, next_b) = (ca.next(), cb.next());
        if next_a.is_none() && next_b.is_none() {
            break;
        }
        if let Some(chunk) = next_a {
            ta.write(Bytes::copy_from_slice(chunk), &mut out_a).unwrap();
        }
        if let Some(chunk) = next_b {
            tb.write(Bytes::copy_from_slice(chunk), &mut out_b).unwrap();
        }
    }
    ta.end(&mut out_a).unwrap();
    tb.end(&mut out_b).unwrap();
    assert!(out_a == alone(&a), "document a's output was mixed up");
    assert!(out_b == alone(&b), "document b's output was mixed up");
    assert!(String::from_utf8_lossy(&out_b).contains(P));
}
