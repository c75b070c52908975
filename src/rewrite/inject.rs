//! The forward proxy's HTML transform: the page already names its real hosts, so nothing is rewritten
//! except that the agent `<script>` is injected once (where the full rewriter puts it) and a
//! `<meta http-equiv>` policy lets it in.
//!
//! Both are head matters: browsers enforce a `<meta>` policy only as a child of `<head>` (HTML
//! §4.2.5.3), and the agent goes in at the first element. So once the agent is in and a start tag
//! that only a body can hold arrives (anything but `<base>`, `<link>`, `<meta>`, `<script>`,
//! `<style>`, `<title>` and the like, which the parser still puts in the head), the handler stops
//! lol_html, which flushes the rest of the chunk as it is, and every later chunk passes untouched: the
//! body is not lexed at all. `<template>` and `<noscript>` in the head hold tags that do not end it, so
//! a page that opens one before the body is lexed to the end as before.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use lol_html::html_content::{ContentType, Element};
use lol_html::send::SendHandlerTypes;
use lol_html::{element, end};
use url::Url;

use super::html::{base_settings, place_agent, HtmlTransform, RestUnchanged};
use super::Charset;
use crate::headers::csp;
use crate::url_codec::TargetOrigin;

pub struct InjectContext {
    /// The document's URL (the base for policy values).
    pub url: Url,
    pub target: TargetOrigin,
    pub agent_tag: String,
    pub agent: csp::AgentSources,
    pub charset: Charset,
    pub memory_limit: usize,
}

/// The injection's state, as bits: the agent is in the output.
const AGENT_IN: u8 = 1;
/// A `<template>` or `<noscript>` came before the body (or the tests' oracle): lexed to the end.
const LEX_ALL: u8 = 2;

/// Start tags the parser keeps in the head (HTML §13.2.6.4.4, "in head" and "after head"); any other
/// ends it.
const HEAD_TAGS: [&str; 13] = [
    "html", "head", "base", "basefont", "bgsound", "link", "meta", "noframes", "script", "style",
    "template", "title", "noscript",
];

pub fn transform(ctx: InjectContext) -> HtmlTransform {
    build(ctx, true)
}

/// [`transform`] lexing the whole page, as it did before it stopped after the head: the oracle of the
/// `inject` fuzz target (the same output wherever a page has no `<meta>` after its head).
pub fn transform_lexing_all(ctx: InjectContext) -> HtmlTransform {
    build(ctx, false)
}

/// The transform; `stop_after_head` false lexes the whole page.
fn build(ctx: InjectContext, stop_after_head: bool) -> HtmlTransform {
    let tag: Arc<str> = ctx.agent_tag.into();
    let state = Arc::new(AtomicU8::new(if stop_after_head { 0 } else { LEX_ALL }));
    let (tag_el, state_el) = (tag.clone(), state.clone());
    let policy = Arc::new((ctx.target, ctx.url, ctx.agent));
    let settings = base_settings(ctx.charset, ctx.memory_limit)
        .with_graceful_bail_out_on_content_handler_error(true)
        .append_element_content_handler(element!("*", move |el| {
            on_start_tag(el, &state_el, &tag_el)
        }))
        .append_element_content_handler(element!("meta[http-equiv][content]", move |el| {
            let equiv = el.get_attribute("http-equiv").unwrap_or_default();
            if !equiv.trim().eq_ignore_ascii_case("content-security-policy") {
                return Ok(());
            }
            let value = el.get_attribute("content").unwrap_or_default();
            let (target, url, agent) = &*policy;
            let allowed = csp::allow_agent_only(&value, target, url, agent);
            el.set_attribute("content", &allowed)?;
            Ok(())
        }))
        .append_document_content_handler(end!(move |end| {
            if state.load(Ordering::Relaxed) & AGENT_IN == 0 {
                end.append(&tag, ContentType::Html);
            }
            Ok(())
        }));
    HtmlTransform::with_settings(settings)
}

/// Places the agent at the first element it can go in front of or into; stops the rewrite at the first
/// tag after it that starts the body.
fn on_start_tag(
    el: &mut Element<'_, '_, SendHandlerTypes>,
    state: &AtomicU8,
    tag: &str,
) -> lol_html::HandlerResult {
    let name = el.tag_name();
    let opens_raw_head = matches!(name.as_str(), "template" | "noscript");
    let now = state.load(Ordering::Relaxed);
    if now & AGENT_IN == 0 {
        // Placed (and so in the output) before a later tag's handler can stop the rewrite.
        if place_agent(el, tag) {
            state.fetch_or(AGENT_IN, Ordering::Relaxed);
        }
    } else if now & LEX_ALL == 0 && !HEAD_TAGS.contains(&name.as_str()) {
        return Err(Box::new(RestUnchanged));
    }
    if opens_raw_head {
        state.fetch_or(LEX_ALL, Ordering::Relaxed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::Transform;

    const TAG: &str = "<script src=\"https://www.shop.test/__cobrowse/agent.js\"></script>";

    fn run(page: &str, chunk: usize) -> String {
        String::from_utf8(run_bytes(page.as_bytes(), chunk, true)).unwrap()
    }

    /// `page` through the injector in chunks of `chunk` bytes; `stop_after_head` false lexes it all.
    fn run_bytes(page: &[u8], chunk: usize, stop_after_head: bool) -> Vec<u8> {
        let url = Url::parse("https://www.shop.test/a/").unwrap();
        let mut t = build(
            InjectContext {
                target: TargetOrigin::from_url(&url).unwrap(),
                url,
                agent_tag: TAG.into(),
                agent: csp::AgentSources {
                    nonce: "N".into(),
                    origin: "https://www.shop.test".into(),
                },
                charset: Charset {
                    encoding: lol_html::AsciiCompatibleEncoding::new(encoding_rs::UTF_8).unwrap(),
                    declared: false,
                },
                memory_limit: 1 << 20,
            },
            stop_after_head,
        );
        let mut out = Vec::new();
        for part in page.chunks(chunk.max(1)) {
            t.write(bytes::Bytes::copy_from_slice(part), &mut out)
                .unwrap();
        }
        t.end(&mut out).unwrap();
        out
    }

    const POLICY: &str =
        "<meta http-equiv=\"Content-Security-Policy\" content=\"script-src 'self'\">";

    /// Pages whose every head matter comes before the body, or in a head that a `<template>` or
    /// `<noscript>` keeps open past a body-like tag.
    fn pages_with_heads() -> Vec<String> {
        vec![
            format!("<!doctype html><html><head><meta charset=utf-8><title>t</title>{POLICY}<link rel=stylesheet href=/a.css></head><body><div>x</div><p>y</p></body></html>"),
            format!("<html><head><title>t</title></head>{POLICY}<body><p>after head, before body</p></body></html>"),
            format!("<head><template><div>in a template</div></template>{POLICY}</head><body><p>b</p>"),
            format!("<head><noscript><img src=/n.png></noscript>{POLICY}</head><body><p>b</p>"),
            "<div>no head</div><p>a</p><img src=x>".into(),
            "<html><body><p>body only</p><section>s</section></body></html>".into(),
            "<!-- c --><script>var a = '<div>';</script><style>p{}</style><b>bold</b><i>i</i>".into(),
            "text before any tag<span>s</span><meta http-equiv=refresh content=0>".into(),
        ]
    }

    #[test]
    fn stopping_after_the_head_gives_what_lexing_the_whole_page_gives() {
        for page in pages_with_heads() {
            let whole = run_bytes(page.as_bytes(), usize::MAX, false);
            assert_eq!(
                String::from_utf8_lossy(&whole).matches(TAG).count(),
                1,
                "{page}"
            );
            for chunk in 1..=page.len() {
                let early = run_bytes(page.as_bytes(), chunk, true);
                assert_eq!(
                    String::from_utf8_lossy(&early),
                    String::from_utf8_lossy(&whole),
                    "{page} in chunks of {chunk}"
                );
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/corpus");
        for name in ["shop-100k.html", "news-300k.html", "docs-1m.html"] {
            let page = std::fs::read(root.join(name)).unwrap();
            let whole = run_bytes(&page, usize::MAX, false);
            for chunk in [7, 64, 1000, 16 << 10, usize::MAX] {
                assert!(
                    run_bytes(&page, chunk, true) == whole,
                    "{name} in chunks of {chunk}"
                );
            }
        }
    }

    #[test]
    fn the_body_is_not_lexed_so_a_policy_there_stays_as_written() {
        // Browsers ignore a `<meta>` policy outside the head; lexing the whole page amended this one.
        let page = format!("<head>{POLICY}</head><body><p>p</p>{POLICY}</body>");
        let amended = "script-src 'self' https://www.shop.test\"";
        let whole = String::from_utf8(run_bytes(page.as_bytes(), usize::MAX, false)).unwrap();
        assert_eq!(whole.matches(amended).count(), 2, "{whole}");
        for chunk in 1..=page.len() {
            let early = run(&page, chunk);
            assert_eq!(early.matches(amended).count(), 1, "{early}");
            assert!(
                early.ends_with(&format!("<p>p</p>{POLICY}</body>")),
                "{early}"
            );
        }
    }

    #[test]
    fn injects_once_and_leaves_urls_alone() {
        let page = "<!DocType  html ><html><head><title>t</title></head><body>\
                    <a href=\"https://cdn.shop.test/x\">x</a><img src=\"//other.test/i.png\"></body></html>";
        for chunk in [1, 7, 4096] {
            let got = run(page, chunk);
            assert_eq!(got.matches(TAG).count(), 1, "{got}");
            assert!(got.starts_with(&format!("<!DocType  html ><html><head>{TAG}<title>")));
            assert!(got.contains("<a href=\"https://cdn.shop.test/x\">"));
            assert!(got.contains("<img src=\"//other.test/i.png\">"));
        }
    }

    #[test]
    fn documents_without_elements_get_the_agent_at_the_end() {
        assert_eq!(run("just text", 3), format!("just text{TAG}"));
        assert_eq!(run("", 3), TAG);
    }

    #[test]
    fn a_meta_policy_lets_the_agent_in_and_keeps_its_hosts() {
        let page = "<head><meta http-equiv=\"Content-Security-Policy\" \
                    content=\"script-src 'nonce-abc' https://cdn.shop.test\"></head>";
        let got = run(page, 5);
        assert!(
            got.contains("script-src 'nonce-abc' https://cdn.shop.test 'nonce-N'"),
            "{got}"
        );
        assert!(
            got.contains("connect-src") || !got.contains("default-src"),
            "{got}"
        );
    }
}
