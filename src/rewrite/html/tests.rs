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

/// The rewriter keeps a (no-op) doctype handler to stay in lol_html's lexer; a doctype it captures must
/// still come out exactly as written, however it is spelled.
#[test]
fn doctypes_pass_byte_for_byte() {
    for doctype in [
        "<!DOCTYPE html>",
        "<!DoCtYpE   HTML  >",
        "<!doctype html PUBLIC \"-//W3C//DTD XHTML 1.0 Strict//EN\" \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd\">",
        "<!doctype html SYSTEM 'about:legacy-compat'>",
        "<!doctype>",
        "<!DOCTYPE html><!DOCTYPE again>",
    ] {
        let input = format!("{doctype}<html><head><title>t</title></head><body><p>x</p></body></html>");
        let out = rewrite(&input);
        assert_eq!(out, input.replace("<head>", &format!("<head>{TAG}")), "{doctype}");
    }
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

/// Browsers decode entities in a `style` value before CSS reads it, so a parenthesis spelled `&lpar;`
/// opens `url(` all the same.
#[test]
fn entities_cannot_hide_a_url_in_a_style() {
    let out = rewrite(
        r#"<div style="background:url&lpar;https://cdn.shop.test/a.png&rpar;">x</div><p style="margin:0">y</p>"#,
    );
    assert!(out.contains(&format!("{P}/a.png")), "{out}");
    assert!(out.contains("<p style=\"margin:0\">"), "{out}");
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

mod split_tests {
    //! A split rewrite (`split.rs`) must give exactly one rewriter's output, wherever it is tried.

    use super::*;
    use crate::rewrite::html::split::{cut_points, split_with, Helper};

    #[derive(Debug, PartialEq, Eq)]
    enum Split {
        Joined,
        FellBack,
    }

    fn whole(input: &[u8]) -> Vec<u8> {
        run_chunks(input, &mut || usize::MAX, encoding_rs::UTF_8)
    }

    /// `input` in two chunks (`head`, then the rest split at `<` number `at`), with the given helper.
    fn split_at(input: &[u8], head: usize, at: usize, helper: Helper<'_>) -> (Vec<u8>, Split) {
        let mut t = transform(encoding_rs::UTF_8);
        let mut out = Vec::new();
        t.write(Bytes::copy_from_slice(&input[..head]), &mut out)
            .unwrap();
        let chunk = Bytes::copy_from_slice(&input[head..]);
        let tag_end = chunk[at..]
            .iter()
            .position(|&b| b == b'>')
            .map_or(chunk.len(), |i| at + i + 1);
        let joined = split_with(&mut t, chunk, &[(at, tag_end)], helper, &mut out).unwrap();
        t.end(&mut out).unwrap();
        let how = if joined == 1 {
            Split::Joined
        } else {
            Split::FellBack
        };
        (out, how)
    }

    /// Tries a split at every start tag of `input` after `head` (every `step`th), with a helper
    /// thread, with it ahead of this one, and with none; each output must equal the one-rewriter output.
    /// Returns how many splits joined with the helper ahead, and how many were tried so.
    fn every_tag(input: &[u8], head: usize, step: usize) -> (usize, usize) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let expected = whole(input);
        let (mut joined, mut tried) = (0, 0);
        // Start tags only: at an end tag or `<!` the first rewriter's element handler never fires.
        let positions: Vec<usize> = memchr::memchr_iter(b'<', &input[head..])
            .filter(|&i| input.get(head + i + 1).is_some_and(u8::is_ascii_alphabetic))
            .collect();
        for &at in positions.iter().step_by(step).filter(|&&at| at > 0) {
            for helper in [Helper::Pool(runtime.handle()), Helper::Ahead, Helper::Never] {
                let (out, how) = split_at(input, head, at, helper);
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&expected),
                    "split at {} of {:?}",
                    head + at,
                    String::from_utf8_lossy(&input[head + at..(head + at + 40).min(input.len())])
                );
                // Only a helper that has done the part before this thread gets there joins for sure.
                if matches!(helper, Helper::Ahead) {
                    tried += 1;
                    joined += usize::from(how == Split::Joined);
                }
            }
        }
        (joined, tried)
    }

    const HEAD: &str = "<!doctype html><html><head><title>t</title></head><body>";

    /// Every context a `<` can be in that is no tag to the tokenizer, or that a fresh rewriter would
    /// read differently, with ordinary tags (which should join) between them.
    const TRICKY: &[&str] = &[
        "<div><a href=\"http://abs.test/a?x=1&amp;y=2\">a</a></div>",
        "<script>var s = \"<div class=x>\"; if (a<b) {}</script><div>x</div>",
        "<!-- <div> <a href=\"http://c.test/\"> --><p>after comment</p>",
        "<p title=\"<div> <a href='http://q.test/'>\">quoted</p>",
        "<textarea><div><a href=\"http://t.test/\"></textarea><li>x</li>",
        "<title><div></title>",
        "<style>div { background: url(http://s.test/i.png) } <div></style><span>s</span>",
        "<noscript><div><a href=\"http://n.test/\"></noscript><p>n</p>",
        "<iframe><div></iframe><xmp><div><a href=\"http://x.test/\"></xmp><td>t</td>",
        "<svg><div></div><style><a href=\"http://svg.test/\"></style></svg><div>after svg</div>",
        "<svg><foreignObject><div><p>in</p></div></foreignObject><![CDATA[<div>]]></svg><p>p</p>",
        "<math><mi><div>m</div></mi></math><ul><li>l</li></ul>",
        "<img src=\"http://i.test/a.png\" srcset=\"http://i.test/b.png 2x\" onclick=\"location='http://j.test/'\">",
        "<a href=\"x<div>\">unfinished <div> inside a value</a>",
        "<meta http-equiv=\"refresh\" content=\"0; url=http://r.test/\"><span style=\"background:url(http://st.test/x)\">s</span>",
        "<script type=\"importmap\">{\"imports\":{\"a\":\"http://im.test/a.js\"}}</script><div>i</div>",
        "<link rel=stylesheet href=\"http://l.test/s.css\" integrity=\"sha256-x\"><table><tr><td>c</td></tr></table>",
    ];

    #[test]
    fn a_split_anywhere_gives_one_rewriters_output() {
        let mut page = String::from(HEAD);
        for fragment in TRICKY {
            page.push_str(fragment);
            page.push('\n');
        }
        page.push_str("</body></html>");
        let (joined, tried) = every_tag(page.as_bytes(), HEAD.len(), 1);
        // Not vacuous: ordinary tags before the `<svg>` join, and tags in other contexts or after the
        // `<svg>` fall back.
        assert!(joined >= 15, "{joined} of {tried} joined");
        assert!(joined < tried, "{joined} of {tried} joined");
    }

    /// Foreign content lol_html's namespace stack may not have left where a fresh rewriter would start
    /// in plain HTML: a `<style>`, CDATA or absolute URL after the split tells them apart.
    const FOREIGN: &[&str] = &[
        "<svg viewBox=\"0 0 1 1\"><path d=\"M0\"/></svg><div>clean region</div>",
        "<svg><foreignObject><div>a</div></svg><div>s</div></foreignObject><style><a href=\"http://f1.test/\"></style><![CDATA[ > <a href=\"http://c1.test/\"> ]]><div>t</div>",
        "<svg><svg></svg><div>s</div><style><a href=\"http://f2.test/\"></style></svg><div>t</div>",
        "<div><svg><g></div><div>s</div><style><a href=\"http://f3.test/\"></style></svg><div>t</div>",
        "<svg/><span>s</span><style><a href=\"http://f4.test/\"></style><div>t</div>",
        "<math><mi></math><div>s</div></mi><style><a href=\"http://f5.test/\"></style><div>t</div>",
        "<svg><title>t</title></svg><div>s</div><style><a href=\"http://f6.test/\"></style>",
        "<svg><p>breakout</p><g></g></svg><div>s</div><style><a href=\"http://f7.test/\"></style>",
        "<math><annotation-xml encoding=\"text/html\"><div>x</div></math><div>s</div></annotation-xml><style><a href=\"http://f8.test/\"></style>",
        "<svg><a href=\"http://f9.test/\"><g><section>s</section><style><a href=\"http://f10.test/\"></style></g></a></svg>",
    ];

    #[test]
    fn foreign_content_in_an_earlier_chunk_or_this_one_never_misleads_a_split() {
        for fragment in FOREIGN {
            let page = format!("{HEAD}<p>before</p>{fragment}<p>after <a href=\"http://after.test/\">a</a></p></body>");
            let bytes = page.as_bytes();
            let expected = whole(bytes);
            // Every chunk boundary at a start tag, and every split point after it.
            let starts: Vec<usize> = memchr::memchr_iter(b'<', bytes)
                .filter(|&i| {
                    bytes.get(i + 1).is_some_and(u8::is_ascii_alphabetic) && i > HEAD.len()
                })
                .collect();
            for &head in &starts {
                for &at in starts.iter().filter(|&&at| at > head) {
                    let (out, _) = split_at(bytes, head, at - head, Helper::Ahead);
                    assert_eq!(
                        String::from_utf8_lossy(&out),
                        String::from_utf8_lossy(&expected),
                        "chunk from {head}, split at {at}: {fragment}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_cleanly_closed_svg_lets_later_tags_join_and_others_do_not() {
        for (svg, expected) in [
            ("<svg><path d=\"M0\"/></svg>", Split::Joined),
            ("<svg><title>t</title></svg>", Split::FellBack),
        ] {
            let page = format!("{HEAD}{svg}<p>x</p><div>s</div></body>");
            let at = page.find("<div>").unwrap();
            let head = page.find("<p>x").unwrap();
            assert_eq!(
                split_at(page.as_bytes(), head, at - head, Helper::Ahead).1,
                expected,
                "{svg}"
            );
        }
    }

    #[test]
    fn tags_inside_other_contexts_never_join() {
        for (fragment, needle) in [
            ("<script>var s = \"<div class=x>\";</script>", "<div"),
            ("<!-- <div> -->", "<div"),
            ("<p title=\"<div>\">q</p>", "<div"),
            ("<textarea><div></textarea>", "<div"),
            ("<noscript><div></noscript>", "<div"),
            ("<svg><g></g><div>x</div></svg>", "<div"),
            ("<math><mi>x</mi><div>x</div></math>", "<div"),
            ("<plaintext><div>", "<div"),
        ] {
            let page = format!("{HEAD}<p>x</p>{fragment}<p>y</p></body>");
            let head = HEAD.len();
            let at = page[head..].find(needle).unwrap();
            let (out, how) = split_at(page.as_bytes(), head, at, Helper::Ahead);
            assert_eq!(how, Split::FellBack, "{fragment}");
            assert_eq!(out, whole(page.as_bytes()), "{fragment}");
        }
    }

    #[test]
    fn a_base_before_the_split_falls_back_in_the_same_chunk_and_joins_from_an_earlier_one() {
        let page = format!(
            "{HEAD}<base href=\"http://other.test/dir/\"><p>x</p><div><a href=\"//abs.test/y\">y</a></div></body>"
        );
        let at = page.find("<div>").unwrap();
        let head = HEAD.len();
        let (out, how) = split_at(page.as_bytes(), head, at - head, Helper::Ahead);
        assert_eq!(how, Split::FellBack);
        assert_eq!(out, whole(page.as_bytes()));
        let head = page.find("<p>x").unwrap();
        let (out, how) = split_at(page.as_bytes(), head, at - head, Helper::Ahead);
        assert_eq!(how, Split::Joined);
        assert_eq!(out, whole(page.as_bytes()));
    }

    #[test]
    fn no_split_before_the_agent_is_in() {
        // The first element is the split's tag: the agent would go in front of it, so the first
        // rewriter has to handle it.
        let page = "just text, then <div>a</div><div>b</div>";
        let at = page.find("<div>").unwrap();
        let (out, how) = split_at(page.as_bytes(), 1, at - 1, Helper::Ahead);
        assert_eq!(how, Split::FellBack);
        assert_eq!(out, whole(page.as_bytes()));
    }

    #[test]
    fn corpus_pages_split_anywhere_give_one_rewriters_output() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/corpus");
        let page = std::fs::read(root.join("shop-100k.html")).unwrap();
        // The first 2 KB as its own chunk (the agent goes in there), the rest as one chunk split at
        // every 97th `<` (a debug build is slow), with a helper thread, with it ahead, and with none.
        let (joined, tried) = every_tag(&page, 2048, 97);
        assert!(joined * 10 >= tried * 9, "{joined} of {tried} joined");
    }

    #[test]
    fn no_cuts_is_one_rewriters_output() {
        let page = format!("{HEAD}<div><a href=\"http://abs.test/\">a</a></div></body>");
        let mut t = transform(encoding_rs::UTF_8);
        let mut out = Vec::new();
        let chunk = Bytes::copy_from_slice(page.as_bytes());
        let joined = t.write_in_parts(chunk, &[], &mut out).unwrap();
        t.end(&mut out).unwrap();
        assert_eq!(joined, 0);
        assert_eq!(out, whole(page.as_bytes()));
    }

    #[test]
    fn cuts_are_ordinary_start_tags_near_even_parts() {
        let mut chunk = vec![b'x'; 26_000];
        chunk.extend_from_slice(b"<svg></svg><divx><div class=a>after</div>");
        chunk.extend_from_slice(&[b'y'; 24_000]);
        let cuts = cut_points(&chunk);
        assert_eq!(cuts.len(), 1);
        let (at, end) = cuts[0];
        assert_eq!(&chunk[at..end], b"<div class=a>");
        // Nothing to cut at near the middle: no cut.
        let mut early = b"<div>".to_vec();
        early.extend_from_slice(&[b'x'; 50_000]);
        assert!(cut_points(&early).is_empty());
        // A tag whose `>` is the chunk's last byte leaves nothing for the part after it.
        let mut last = vec![b'x'; 48_000];
        last.extend_from_slice(b"<p>");
        assert!(cut_points(&last).is_empty());
        // A 100 KB page of tags: four parts, cuts in order.
        let page: Vec<u8> = b"<li>item</li>".repeat(100_000 / 13);
        let cuts = cut_points(&page);
        assert_eq!(cuts.len(), 3);
        assert!(cuts.windows(2).all(|w| w[0].1 <= w[1].0));
    }

    /// Several cuts at once, at random start tags, with the helper, with it ahead and with none: one rewriter's output.
    #[test]
    fn many_cuts_give_one_rewriters_output() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/corpus");
        let shop = std::fs::read(root.join("shop-100k.html")).unwrap();
        let mut tricky = String::from(HEAD);
        for fragment in TRICKY.iter().chain(FOREIGN) {
            tricky.push_str(fragment);
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for (page, head, rounds) in [
            (shop.as_slice(), 2048, 6),
            (tricky.as_bytes(), HEAD.len(), 60),
        ] {
            let expected = whole(page);
            let chunk = Bytes::copy_from_slice(&page[head..]);
            let starts: Vec<usize> = memchr::memchr_iter(b'<', &chunk)
                .filter(|&i| i > 0 && chunk.get(i + 1).is_some_and(u8::is_ascii_alphabetic))
                .collect();
            let mut joined_any = 0;
            for round in 0..rounds {
                let mut picked: Vec<usize> = (0..rng.gen_range(2..6))
                    .map(|_| starts[rng.gen_range(0..starts.len())])
                    .collect();
                picked.sort_unstable();
                picked.dedup();
                let mut cuts: Vec<(usize, usize)> = Vec::new();
                for at in picked {
                    let Some(gt) = chunk[at..].iter().position(|&b| b == b'>') else {
                        continue;
                    };
                    let end = at + gt + 1;
                    if end < chunk.len() && cuts.last().is_none_or(|&(_, e)| e <= at) {
                        cuts.push((at, end));
                    }
                }
                let mut t = transform(encoding_rs::UTF_8);
                let mut out = Vec::new();
                t.write(Bytes::copy_from_slice(&page[..head]), &mut out)
                    .unwrap();
                let helper = match round % 3 {
                    0 => Helper::Pool(runtime.handle()),
                    1 => Helper::Ahead,
                    _ => Helper::Never,
                };
                joined_any += split_with(&mut t, chunk.clone(), &cuts, helper, &mut out).unwrap();
                t.end(&mut out).unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&expected),
                    "cuts {cuts:?}"
                );
            }
            assert!(joined_any > 0);
        }
    }
}
