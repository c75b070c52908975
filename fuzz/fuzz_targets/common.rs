use std::sync::Arc;

use cobrowse_proxy::headers::csp::AgentSources;
use cobrowse_proxy::rewrite::html::{HtmlContext, HtmlTransform};
use cobrowse_proxy::url_codec::{ProxyMap, PublicOrigin, SessionId, TargetOrigin};

pub fn map() -> ProxyMap {
    let public = PublicOrigin::parse("http://localhost:8080").expect("fixed public URL");
    ProxyMap::new(Arc::new(public), SessionId::parse("k3x9q2m7wa").expect("fixed id"))
}

/// The HTML rewriter for a page of `https://www.shop.test/` in UTF-8; `declared`: whether the header
/// named the charset (if not, a `<meta charset>` may switch it mid-document; if so, the page may be split
/// over two cores).
#[allow(dead_code)] // used by the HTML targets
pub fn html_transform(declared: bool) -> HtmlTransform {
    let url = url::Url::parse("https://www.shop.test/").expect("fixed URL");
    HtmlTransform::new(HtmlContext {
        map: map(),
        target: TargetOrigin::from_url(&url).expect("fixed origin"),
        url,
        agent_tag: "<script src=\"http://localhost:8080/a.js\"></script>".into(),
        agent: AgentSources {
            nonce: "n".into(),
            origin: "http://localhost:8080".into(),
        },
        charset: cobrowse_proxy::rewrite::Charset {
            encoding: lol_html::AsciiCompatibleEncoding::new(encoding_rs::UTF_8).expect("utf-8"),
            declared,
        },
        memory_limit: 1 << 20,
        inline_limit: 64 << 10,
        scripts: Arc::new(cobrowse_proxy::rewrite::script::ScriptCache::new(1 << 20)),
    })
}

/// Splits `data` into chunks whose sizes come from `sizes` (cycled), so a target checks every boundary.
#[allow(dead_code)] // used by some targets, not all
pub fn chunks<'a>(data: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = (*sizes.get(i % sizes.len().max(1)).unwrap_or(&7) as usize).clamp(1, rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
    out
}
