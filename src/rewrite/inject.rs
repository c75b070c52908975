//! The forward proxy's HTML transform: the page already names its real hosts, so nothing is rewritten
//! except that the agent `<script>` is injected once (where the full rewriter puts it) and a
//! `<meta http-equiv>` policy lets it in.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use lol_html::html_content::ContentType;
use lol_html::{element, end};
use url::Url;

use super::html::{base_settings, place_agent, HtmlTransform};
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

pub fn transform(ctx: InjectContext) -> HtmlTransform {
    let tag: Arc<str> = ctx.agent_tag.into();
    let injected = Arc::new(AtomicBool::new(false));
    let (tag_el, done_el) = (tag.clone(), injected.clone());
    let policy = Arc::new((ctx.target, ctx.url, ctx.agent));
    let settings = base_settings(ctx.charset, ctx.memory_limit)
        .append_element_content_handler(element!("*", move |el| {
            if !done_el.load(Ordering::Relaxed) && place_agent(el, &tag_el) {
                done_el.store(true, Ordering::Relaxed);
            }
            Ok(())
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
            if !injected.load(Ordering::Relaxed) {
                end.append(&tag, ContentType::Html);
            }
            Ok(())
        }));
    HtmlTransform::with_settings(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::Transform;

    const TAG: &str = "<script src=\"https://www.shop.test/__cobrowse/agent.js\"></script>";

    fn run(page: &str, chunk: usize) -> String {
        let url = Url::parse("https://www.shop.test/a/").unwrap();
        let mut t = transform(InjectContext {
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
        });
        let mut out = Vec::new();
        for part in page.as_bytes().chunks(chunk.max(1)) {
            t.write(bytes::Bytes::copy_from_slice(part), &mut out)
                .unwrap();
        }
        t.end(&mut out).unwrap();
        String::from_utf8(out).unwrap()
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
