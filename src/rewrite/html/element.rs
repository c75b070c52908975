//! The one element handler: every attribute of every start tag is looked at once, in a single pass.
//!
//! lol_html's cost grows with the number of selectors, not with the work of a handler: each selector is
//! matched against every start tag, and attribute selectors parse attributes for it. Twenty `[href]`-style
//! selectors cost more than the rewriting itself (`docs/PERFORMANCE.md`), so the agent injection's `*`
//! handler, which runs on every element anyway, also classifies each attribute by name and skips it on a
//! cheap check of its raw value. Relative and root-relative URLs resolve correctly on a per-origin proxy
//! host, so the common case is a name compare and a byte check, with no allocation beyond lol_html's own.

use lol_html::html_content::Element;
use lol_html::send::SendHandlerTypes;

use super::{escape_attribute, lock, Doc, ScriptKind, Shared};
use crate::rewrite::css::rewrite_css_str;
use crate::rewrite::{js, srcset};
use crate::url_codec::needs_resolving;

type El<'r, 't> = Element<'r, 't, SendHandlerTypes>;

/// What an attribute holds, for the rewriter.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum AttrKind {
    /// One URL (`href`, `src`, …).
    Url,
    /// A candidate list (`srcset`, `imagesrcset`).
    Srcset,
    /// Space-separated URLs (`ping`).
    List,
    /// Declarations (`style`).
    Style,
    /// Script (`onclick`, …).
    Handler,
}

/// The attribute `name` (lowercase) on a `tag` element, if it can carry something we rewrite. HTML, SVG
/// and obsolete attributes that browsers still load.
fn classify(name: &str, tag: &str) -> Option<AttrKind> {
    let kind = match name {
        "href" | "src" | "action" | "formaction" | "poster" | "cite" | "background"
        | "longdesc" | "icon" | "lowsrc" | "xlink:href" => AttrKind::Url,
        "data" if tag == "object" => AttrKind::Url,
        "codebase" if tag == "object" || tag == "applet" => AttrKind::Url,
        "manifest" if tag == "html" => AttrKind::Url,
        "srcset" | "imagesrcset" => AttrKind::Srcset,
        "ping" => AttrKind::List,
        "style" => AttrKind::Style,
        _ if name.len() > 2 && name.starts_with("on") => AttrKind::Handler,
        _ => return None,
    };
    Some(kind)
}

impl AttrKind {
    /// Whether the raw (still entity-encoded) value could need rewriting; `false` means it is fine as written.
    fn may_need_work(self, raw: &str) -> bool {
        match self {
            // An entity can spell a scheme (`https&colon;//`), so any `&` takes the slow path.
            AttrKind::Url => raw.contains('&') || needs_resolving(raw),
            AttrKind::Srcset => {
                raw.contains('&')
                    || raw.contains('\\')
                    || raw.split(',').any(|c| needs_resolving(c.trim_start()))
            }
            AttrKind::List => {
                raw.contains('&') || raw.split_ascii_whitespace().any(needs_resolving)
            }
            // Only url(), image-set() and the like can carry a URL, and they all need a parenthesis.
            AttrKind::Style => raw.contains('('),
            AttrKind::Handler => js::mentions_anything(raw),
        }
    }
}

/// An attribute that needs rewriting, read out before the element is changed.
struct Pending {
    kind: AttrKind,
    name: String,
    raw: String,
}

/// The `*` handler: agent injection, every URL-bearing attribute, then the elements with a job of their
/// own (`<base>`, `<meta http-equiv>`, `integrity`, the kind of a `<script>`), in that order, so `<base>`
/// sees its own `href` already rewritten as the separate handlers did.
pub(super) fn on_element(el: &mut El<'_, '_>, doc: &Shared, agent_tag: &str) {
    let tag = el.tag_name();
    let pending = pending_attributes(el, &tag);
    {
        let mut d = lock(doc);
        if !d.injected {
            d.injected = super::place_agent(el, agent_tag);
        }
        for p in pending {
            apply(el, &d, p);
        }
    }
    match tag.as_str() {
        "base" if el.has_attribute("href") => super::set_base(el, doc),
        "meta" if el.has_attribute("http-equiv") && el.has_attribute("content") => {
            super::rewrite_meta(el, doc)
        }
        "link" if el.has_attribute("integrity") => super::drop_integrity(el),
        "script" => {
            if el.has_attribute("integrity") {
                super::drop_integrity(el);
            }
            let kind = el.get_attribute("type").unwrap_or_default();
            lock(doc).script = ScriptKind::of(&kind);
        }
        _ => {}
    }
}

/// The attributes of `el` that may need work, in document order.
fn pending_attributes(el: &El<'_, '_>, tag: &str) -> Vec<Pending> {
    let attributes = el.attributes();
    let mut pending = Vec::new();
    for (i, a) in attributes.iter().enumerate() {
        let name = a.name();
        let Some(kind) = classify(&name, tag) else {
            continue;
        };
        let raw = a.value();
        if !kind.may_need_work(&raw) {
            continue;
        }
        // `set_attribute` changes the first attribute of a name, and browsers use the first: a repeat is
        // not what the page means. Rare enough (only values that need work get here) to check this way.
        if attributes[..i].iter().any(|b| b.name() == name) {
            continue;
        }
        pending.push(Pending { kind, name, raw });
    }
    pending
}

fn apply(el: &mut El<'_, '_>, d: &Doc, p: Pending) {
    let decoded = if p.raw.contains('&') {
        htmlize::unescape_attribute(&p.raw)
    } else {
        std::borrow::Cow::Borrowed(p.raw.as_str())
    };
    let new = match p.kind {
        AttrKind::Url => d.map.rewrite_reference(&d.base, &decoded),
        AttrKind::Srcset => srcset::rewrite(&decoded, |u| d.map.rewrite_reference(&d.base, u)),
        AttrKind::List => {
            super::rewrite_url_list(&decoded, |u| d.map.rewrite_reference(&d.base, u))
        }
        AttrKind::Style => match rewrite_css_str(&d.map, &d.base, &decoded) {
            std::borrow::Cow::Owned(s) => Some(s),
            std::borrow::Cow::Borrowed(_) => None,
        },
        AttrKind::Handler => js::rewrite_handler(&decoded, &d.scripts),
    };
    if let Some(new) = new {
        let _ = el.set_attribute(&p.name, &escape_attribute(&new));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_name_and_tag() {
        assert_eq!(classify("href", "a"), Some(AttrKind::Url));
        assert_eq!(classify("xlink:href", "use"), Some(AttrKind::Url));
        assert_eq!(classify("data", "object"), Some(AttrKind::Url));
        assert_eq!(classify("data", "div"), None);
        assert_eq!(classify("manifest", "html"), Some(AttrKind::Url));
        assert_eq!(classify("manifest", "div"), None);
        assert_eq!(classify("imagesrcset", "link"), Some(AttrKind::Srcset));
        assert_eq!(classify("onclick", "button"), Some(AttrKind::Handler));
        assert_eq!(classify("on", "button"), None);
        assert_eq!(classify("class", "a"), None);
    }

    #[test]
    fn relative_values_need_no_work() {
        assert!(!AttrKind::Url.may_need_work("/img/a.png"));
        assert!(!AttrKind::Url.may_need_work("b.html#x"));
        assert!(AttrKind::Url.may_need_work("https://cdn.shop.test/a"));
        assert!(AttrKind::Url.may_need_work("//cdn.shop.test/a"));
        assert!(AttrKind::Url.may_need_work("https&colon;//cdn.shop.test/a"));
        assert!(!AttrKind::Srcset.may_need_work("/a.png 1x, /b.png 2x"));
        assert!(AttrKind::Srcset.may_need_work("/a.png 1x, https://c.test/b.png 2x"));
        assert!(!AttrKind::Style.may_need_work("color: red"));
        assert!(!AttrKind::Handler.may_need_work("hover()"));
    }
}
