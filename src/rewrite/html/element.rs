//! The one element handler: every attribute of every start tag is looked at once, in a single pass.
//!
//! lol_html's cost grows with the number of selectors, not with the work of a handler: each selector is
//! matched against every start tag, and attribute selectors parse attributes for it. Twenty `[href]`-style
//! selectors cost more than the rewriting itself (`docs/PERFORMANCE.md`), so the agent injection's `*`
//! handler, which runs on every element anyway, also classifies each attribute by name and skips it on a
//! cheap check of its raw value. Relative and root-relative URLs resolve correctly on a per-origin proxy
//! host, so the common case is a name compare and a byte check. Names and values are read in place from
//! the input (`raw.rs`), so an attribute that needs no work costs no allocation either; only the tag's
//! attribute list itself is materialised by lol_html.

use lol_html::html_content::{Element, SourceLocation};
use lol_html::send::SendHandlerTypes;

use super::raw::RawInput;
use super::{escape_attribute, split, unescape_attribute, Doc, ScriptKind};
use crate::byte_set::byte_set;
use crate::rewrite::css::rewrite_css_str;
use crate::rewrite::{js, srcset};
use crate::url_codec::{needs_resolving_bytes, SPECIAL_SCHEMES};

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

/// The elements whose name changes what the handler does with them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tag {
    Html,
    Head,
    Base,
    Meta,
    Link,
    Script,
    Object,
    Applet,
    /// Roots of foreign content, which lol_html reads in another namespace (`split.rs` tracks them).
    Svg,
    Math,
    Other,
}

impl Tag {
    /// From a tag name in any case (as written, or as lol_html reports it).
    fn of(name: &[u8]) -> Tag {
        const NAMES: [(&[u8], Tag); 10] = [
            (b"html", Tag::Html),
            (b"head", Tag::Head),
            (b"base", Tag::Base),
            (b"meta", Tag::Meta),
            (b"link", Tag::Link),
            (b"script", Tag::Script),
            (b"object", Tag::Object),
            (b"applet", Tag::Applet),
            (b"svg", Tag::Svg),
            (b"math", Tag::Math),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(Tag::Other, |&(_, tag)| tag)
    }

    /// The element's tag, from its name as written ([`Written::tag_name`]), or through lol_html's
    /// allocating `tag_name()` if the input is gone.
    fn of_element(el: &El<'_, '_>, written_name: Option<&[u8]>) -> Tag {
        let tag = written_name.map_or_else(|| Tag::of(el.tag_name().as_bytes()), Tag::of);
        debug_assert_eq!(tag, Tag::of(el.tag_name().as_bytes()));
        tag
    }
}

/// The attribute `name` (lowercase) on a `tag` element, if it can carry something we rewrite. HTML, SVG
/// and obsolete attributes that browsers still load.
fn classify(name: &[u8], tag: Tag) -> Option<AttrKind> {
    let kind = match name {
        b"href" | b"src" | b"action" | b"formaction" | b"poster" | b"cite" | b"background"
        | b"longdesc" | b"icon" | b"lowsrc" | b"xlink:href" => AttrKind::Url,
        b"data" if tag == Tag::Object => AttrKind::Url,
        b"codebase" if tag == Tag::Object || tag == Tag::Applet => AttrKind::Url,
        b"manifest" if tag == Tag::Html => AttrKind::Url,
        b"srcset" | b"imagesrcset" => AttrKind::Srcset,
        b"ping" => AttrKind::List,
        b"style" => AttrKind::Style,
        _ if name.len() > 2 && name.starts_with(b"on") => AttrKind::Handler,
        _ => return None,
    };
    Some(kind)
}

/// [`classify`] for a name as written (any case), without allocating. `None` for a name that is not
/// ASCII: the caller then asks lol_html, which decodes it in the document's encoding.
fn classify_written(name: &[u8], tag: Tag) -> Option<Option<AttrKind>> {
    if !name.is_ascii() {
        return None;
    }
    let mut lower = [0u8; 16];
    let Some(buf) = lower.get_mut(..name.len()) else {
        // Longer than any name in `classify`: only the `on…` rule can apply.
        let handler = name.len() > 2 && name[..2].eq_ignore_ascii_case(b"on");
        return Some(handler.then_some(AttrKind::Handler));
    };
    for (l, b) in buf.iter_mut().zip(name) {
        *l = b.to_ascii_lowercase();
    }
    Some(classify(buf, tag))
}

impl AttrKind {
    /// Whether the raw (still entity-encoded) value could need rewriting; `false` means it is fine as
    /// written. Only ASCII is looked at, so these are the bytes as written in any encoding lol_html takes.
    /// Every `true` needs a byte or word that [`tag_may_need_work`] looks for.
    fn may_need_work(self, raw: &[u8]) -> bool {
        let has = |b| memchr::memchr(b, raw).is_some();
        match self {
            // An entity can spell a scheme (`https&colon;//`), so any `&` takes the slow path.
            AttrKind::Url => has(b'&') || needs_resolving_bytes(raw),
            AttrKind::Srcset => {
                has(b'&')
                    || has(b'\\')
                    || raw
                        .split(|&b| b == b',')
                        .any(|c| needs_resolving_bytes(c.trim_ascii_start()))
            }
            AttrKind::List => {
                has(b'&')
                    || raw
                        .split(|b| b.is_ascii_whitespace())
                        .any(needs_resolving_bytes)
            }
            // Only url(), image-set() and the like can carry a URL, and they all need a parenthesis.
            // An entity can spell the parenthesis too (`url&lpar;…`).
            AttrKind::Style => has(b'(') || has(b'&'),
            AttrKind::Handler => js::mentions_anything_in(raw),
        }
    }
}

/// Whether any attribute of a start tag, as written, could pass `may_need_work`: each `true` there needs
/// one of these bytes or words somewhere in the tag (a special scheme its name right before a `:`, an
/// authority `//` or `\\`, a stripped tab or newline itself, an entity `&`, a style a `(` somewhere after
/// the name `style`, a handler one of [`js::WORDS`] after its `on…` name).
/// Most tags have none, and for those lol_html need not even build the attribute list. One pass over the
/// tag, which runs on every start tag of every page: the bytes it stops at are rare in tags, and the
/// words are looked for only after an `on…` name, since only a handler's value can need them (looking
/// for their first letters everywhere stopped five times a tag, each a mispredicted branch).
fn tag_may_need_work(tag: &[u8]) -> bool {
    let mut handler_seen = false;
    // Where the tag first names `style`, looked for once, at its first `(`: a search at every `(` would
    // make a tag of many parentheses cost the square of its length.
    let mut first_style: Option<Option<usize>> = None;
    for (i, &b) in tag.iter().enumerate() {
        if !SCAN_BYTES[usize::from(b)] {
            continue;
        }
        let needs_work = match b {
            b'/' => tag.get(i + 1) == Some(&b'/'),
            b':' => ends_with_special_scheme(&tag[..i]),
            b'(' => first_style
                .get_or_insert_with(|| first_style_name(tag))
                .is_some_and(|at| at + STYLE.len() <= i),
            b'o' | b'O' => {
                // The first handler's name starts the part of the tag where every handler value lies.
                let first = !handler_seen && starts_handler_name(tag, i);
                handler_seen |= first;
                first && js::mentions_anything_in(&tag[i..])
            }
            _ => true,
        };
        if needs_work {
            return true;
        }
    }
    false
}

/// Whether `before` a `:` ends with a special scheme's name, any case: only those make a URL that needs
/// work (`needs_resolving_bytes`), and a scheme is written right before its `:` (a tab or newline inside
/// it stops the scan on its own). Colons in `style="margin:0"` or `content="width=device-width"` do not.
#[inline(never)]
fn ends_with_special_scheme(before: &[u8]) -> bool {
    SPECIAL_SCHEMES.iter().any(|scheme| {
        before
            .len()
            .checked_sub(scheme.len())
            .is_some_and(|from| before[from..].eq_ignore_ascii_case(scheme))
    })
}

const STYLE: &[u8] = b"style";

/// Where `tag` first names `style`, any case. A `(` needs work only after it: only a style's value needs
/// a parenthesis, and the value comes after its name. `onclick="add(this)"` does not.
#[inline(never)]
fn first_style_name(tag: &[u8]) -> Option<usize> {
    memchr::memchr2_iter(b's', b'S', tag).find(|&i| {
        tag.get(i..i + STYLE.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(STYLE))
    })
}

/// The bytes [`tag_may_need_work`] stops at: a table lookup per byte, then a closer look at the few.
const SCAN_BYTES: [bool; 256] = byte_set(b"&\\:(\t\n\r/oO");

/// Whether an attribute name starting `on` begins at `tag[i]`: after whitespace (tab, newline and
/// carriage return already stopped the scan), a quote that closed a value, or a `/`, which is where the
/// tokenizer starts a name (HTML §13.2.5.32, .39, .40).
fn starts_handler_name(tag: &[u8], i: usize) -> bool {
    let after_separator = i
        .checked_sub(1)
        .and_then(|p| tag.get(p))
        .is_some_and(|b| matches!(b, b' ' | b'\x0c' | b'"' | b'\'' | b'/'));
    after_separator && matches!(tag.get(i + 1), Some(b'n' | b'N'))
}

/// A start tag as written: its bytes in the input, and the document offset they begin at. One lookup in
/// the input per tag; every attribute's name and value is a slice of it.
#[derive(Clone, Copy)]
struct Written<'a> {
    bytes: &'a [u8],
    start: usize,
}

impl<'a> Written<'a> {
    fn of(el: &El<'_, '_>, input: &'a RawInput) -> Option<Written<'a>> {
        let range = el.source_location().bytes();
        let start = range.start;
        input.get(range).map(|bytes| Written { bytes, start })
    }

    /// The name as written: `<name` up to whitespace, `/` or `>`, as the tokenizer ends it.
    fn tag_name(self) -> Option<&'a [u8]> {
        let name = self.bytes.strip_prefix(b"<")?;
        let end = name
            .iter()
            .position(|&b| b.is_ascii_whitespace() || b == b'/' || b == b'>')
            .unwrap_or(name.len());
        Some(&name[..end])
    }

    /// The bytes at `location` (an attribute's name or value within this tag).
    fn at(self, location: SourceLocation) -> Option<&'a [u8]> {
        let range = location.bytes();
        let from = range.start.checked_sub(self.start)?;
        let to = range.end.checked_sub(self.start)?;
        self.bytes.get(from..to)
    }
}

/// An attribute that needs rewriting, read out before the element is changed: its name and its value
/// (entity-encoded), borrowed from the input where they are ASCII as written, else lol_html's decoding.
struct Pending<'a> {
    kind: AttrKind,
    name: std::borrow::Cow<'a, str>,
    raw: std::borrow::Cow<'a, str>,
}

/// The `*` handler: agent injection, every URL-bearing attribute, then the elements with a job of their
/// own (`<base>`, `<meta http-equiv>`, `integrity`, the kind of a `<script>`), in that order, so `<base>`
/// sees its own `href` already rewritten as the separate handlers did.
pub(super) fn on_element(el: &mut El<'_, '_>, d: &mut Doc, agent_tag: &str) {
    let written = Written::of(el, &d.input);
    if let Some(pending) = d.split.as_mut() {
        // Rewritten as ever after the mark: the output is cut at the mark if the next part joins there,
        // and the mark taken out if this rewriter goes on instead.
        split::mark_if_handed_over(el, pending, (d.injected, d.base_seen, d.foreign));
    }
    let name = written.and_then(Written::tag_name);
    let tag = Tag::of_element(el, name);
    if matches!(tag, Tag::Svg | Tag::Math) || d.foreign != split::Foreign::Clear {
        split::track_foreign(el, &mut d.foreign, name);
    }
    let pending = if written.is_some_and(|w| !tag_may_need_work(w.bytes)) {
        debug_assert!(pending_attributes(el, tag, written).is_empty());
        Vec::new()
    } else {
        pending_attributes(el, tag, written)
    };
    if !d.injected {
        d.injected = match tag {
            Tag::Html => false,
            Tag::Head => super::place_agent_at(el, "head", agent_tag),
            _ => super::place_agent_at(el, "", agent_tag),
        };
    }
    for p in pending {
        apply(el, d, p);
    }
    match tag {
        Tag::Base if el.has_attribute("href") => super::set_base(el, d),
        Tag::Meta if el.has_attribute("http-equiv") && el.has_attribute("content") => {
            super::rewrite_meta(el, d)
        }
        Tag::Link if el.has_attribute("integrity") => super::drop_integrity(el),
        Tag::Script => {
            if el.has_attribute("integrity") {
                super::drop_integrity(el);
            }
            let kind = el.get_attribute("type").unwrap_or_default();
            d.script = ScriptKind::of(&kind);
        }
        _ => {}
    }
}

/// The attributes of `el` that may need work, in document order.
fn pending_attributes<'a>(
    el: &El<'_, '_>,
    tag: Tag,
    written: Option<Written<'a>>,
) -> Vec<Pending<'a>> {
    let at = |location: Option<SourceLocation>| written?.at(location?);
    let attributes = el.attributes();
    let mut pending = Vec::new();
    for (i, a) in attributes.iter().enumerate() {
        let written_name = at(a.name_source_location());
        let kind = written_name.and_then(|n| classify_written(n, tag));
        debug_assert!(kind.is_none_or(|k| k == classify(a.name().as_bytes(), tag)));
        let Some(kind) = kind.unwrap_or_else(|| classify(a.name().as_bytes(), tag)) else {
            continue;
        };
        let written_value = at(a.value_source_location());
        debug_assert!(written_value.is_none_or(|v| !v.is_ascii() || v == a.value().as_bytes()));
        let value = match written_value {
            Some(v) => std::borrow::Cow::Borrowed(v),
            None => std::borrow::Cow::Owned(a.value().into_bytes()),
        };
        if !kind.may_need_work(&value) {
            continue;
        }
        // A name `classify_written` took is ASCII; anything else is lol_html's decoding.
        let name = match written_name.and_then(|n| std::str::from_utf8(n).ok()) {
            Some(n) if n.is_ascii() => std::borrow::Cow::Borrowed(n),
            _ => std::borrow::Cow::Owned(a.name()),
        };
        // The value as the page's encoding decodes it: ASCII reads the same in all of them.
        let raw = match written_value.and_then(|v| std::str::from_utf8(v).ok()) {
            Some(v) if v.is_ascii() => std::borrow::Cow::Borrowed(v),
            _ => std::borrow::Cow::Owned(a.value()),
        };
        // `set_attribute` changes the first attribute of a name, and browsers use the first: a repeat is
        // not what the page means. Rare enough (only values that need work get here) to check this way.
        if attributes[..i]
            .iter()
            .any(|b| same_name(b, &name, at(b.name_source_location())))
        {
            continue;
        }
        pending.push(Pending { kind, name, raw });
    }
    pending
}

/// Whether `a` is named `name` (any case), read in place (`written`) when the input still holds it.
fn same_name(
    a: &lol_html::html_content::Attribute<'_>,
    name: &str,
    written: Option<&[u8]>,
) -> bool {
    match written {
        Some(w) if w.is_ascii() => w.eq_ignore_ascii_case(name.as_bytes()),
        _ => a.name().eq_ignore_ascii_case(name),
    }
}

fn apply(el: &mut El<'_, '_>, d: &Doc, p: Pending<'_>) {
    let decoded = unescape_attribute(&p.raw);
    let new = match p.kind {
        AttrKind::Url => d.map.rewrite_reference(&d.base, &decoded),
        AttrKind::Srcset => {
            srcset::rewrite(&decoded, |u, out| d.map.write_reference(&d.base, u, out))
        }
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
        assert_eq!(classify(b"href", Tag::Other), Some(AttrKind::Url));
        assert_eq!(classify(b"xlink:href", Tag::Other), Some(AttrKind::Url));
        assert_eq!(classify(b"data", Tag::Object), Some(AttrKind::Url));
        assert_eq!(classify(b"data", Tag::Other), None);
        assert_eq!(classify(b"manifest", Tag::Html), Some(AttrKind::Url));
        assert_eq!(classify(b"manifest", Tag::Other), None);
        assert_eq!(classify(b"imagesrcset", Tag::Link), Some(AttrKind::Srcset));
        assert_eq!(classify(b"onclick", Tag::Other), Some(AttrKind::Handler));
        assert_eq!(classify(b"on", Tag::Other), None);
        assert_eq!(classify(b"class", Tag::Other), None);
    }

    #[test]
    fn classifies_written_names_in_any_case() {
        let w = |n: &str, t| classify_written(n.as_bytes(), t);
        assert_eq!(w("HREF", Tag::Other), Some(Some(AttrKind::Url)));
        assert_eq!(w("Data", Tag::Object), Some(Some(AttrKind::Url)));
        assert_eq!(
            w("onAnimationIteration", Tag::Other),
            Some(Some(AttrKind::Handler))
        );
        assert_eq!(w("data-very-long-name", Tag::Other), Some(None));
        assert_eq!(w("hréf", Tag::Other), None);
        assert_eq!(Tag::of(b"SCRIPT"), Tag::Script);
        assert_eq!(Tag::of(b"scripts"), Tag::Other);
    }

    #[test]
    fn relative_values_need_no_work() {
        assert!(!AttrKind::Url.may_need_work(b"/img/a.png"));
        assert!(!AttrKind::Url.may_need_work(b"b.html#x"));
        assert!(AttrKind::Url.may_need_work(b"https://cdn.shop.test/a"));
        assert!(AttrKind::Url.may_need_work(b"//cdn.shop.test/a"));
        assert!(AttrKind::Url.may_need_work(b"https&colon;//cdn.shop.test/a"));
        assert!(!AttrKind::Srcset.may_need_work(b"/a.png 1x, /b.png 2x"));
        assert!(AttrKind::Srcset.may_need_work(b"/a.png 1x, https://c.test/b.png 2x"));
        assert!(!AttrKind::Style.may_need_work(b"color: red"));
        assert!(!AttrKind::Handler.may_need_work(b"hover()"));
        assert!(!tag_may_need_work(
            b"<img src=\"/a.png\" srcset=\"/a.png 1x, b.png 2x\" alt=x>"
        ));
        assert!(tag_may_need_work(b"<a href=\"https://c.test/\">"));
        assert!(tag_may_need_work(b"<a href=\"//c.test/\">"));
        assert!(tag_may_need_work(b"<a href=\"\\\\c.test/\">"));
        assert!(tag_may_need_work(b"<a href=\"h\ttps://c.test/\">"));
        assert!(tag_may_need_work(b"<a onclick=\"location.href=x\">"));
        // Wherever the tokenizer starts an `on…` name: after a closing quote, a `/` or a form feed.
        assert!(tag_may_need_work(b"<a x=\"1\"onclick=\"location.href=x\">"));
        assert!(tag_may_need_work(b"<a x='1'ONCLICK='location.href=x'>"));
        assert!(tag_may_need_work(b"<a/onclick=\"location.href=x\">"));
        assert!(tag_may_need_work(b"<a\x0conclick=\"location.href=x\">"));
        assert!(tag_may_need_work(
            b"<a title=x onblur=y onclick=\"import('x')\">"
        ));
        // The words before any handler cannot be in a handler's value.
        assert!(!tag_may_need_work(
            b"<a class=\"location import\" data-x=postMessage>"
        ));
        assert!(!tag_may_need_work(b"<a data-x=location onclick=\"go\">"));
        assert!(tag_may_need_work(b"<a href=\"&#x2F;&#x2F;c.test\">"));
        // A colon needs work only after a special scheme, a parenthesis only after `style`.
        assert!(!tag_may_need_work(b"<article style=\"margin:5px\">"));
        assert!(!tag_may_need_work(b"<button onclick=\"add(this)\">"));
        assert!(!tag_may_need_work(b"<a href=\"mailto:x@y.test\">"));
        assert!(tag_may_need_work(b"<a href=\"HTTP:x\">"));
        assert!(tag_may_need_work(b"<a href=\"wss://x\">"));
        assert!(tag_may_need_work(b"<p Style=\"background:url(x)\">"));
        // The first `(` finds where `style` is; a later one after it still counts.
        assert!(tag_may_need_work(
            b"<p title=\"(\" style=\"x\" data-x=\"(\">"
        ));
        assert!(!tag_may_need_work(b"<p title=\"(\" style=\"x\">"));
        assert!(AttrKind::Style.may_need_work(b"background:url&lpar;//c.test/a&rpar;"));
    }

    /// The one-pass scan answers as the obvious definition does, on every tag of the corpus pages and
    /// on edge cases (a word or `//` at either end, a lone `/`, handlers in every position).
    #[test]
    fn tag_scan_matches_its_definition() {
        let reference = |tag: &[u8]| {
            let handler = (1..tag.len()).find(|&i| {
                matches!(tag[i - 1], b' ' | b'\x0c' | b'"' | b'\'' | b'/')
                    && tag[i..].len() > 1
                    && tag[i..i + 2].eq_ignore_ascii_case(b"on")
            });
            let lower_before = |i: usize| tag[..i].to_ascii_lowercase();
            let scheme_colon =
                |i: usize| SPECIAL_SCHEMES.iter().any(|s| lower_before(i).ends_with(s));
            let style_paren = |i: usize| memchr::memmem::find(&lower_before(i), b"style").is_some();
            tag.iter().enumerate().any(|(i, b)| match b {
                b'&' | b'\\' | b'\t' | b'\n' | b'\r' => true,
                b':' => scheme_colon(i),
                b'(' => style_paren(i),
                _ => false,
            }) || memchr::memmem::find(tag, b"//").is_some()
                || handler.is_some_and(|i| js::mentions_anything_in(&tag[i..]))
        };
        let mut tags: Vec<Vec<u8>> = [
            &b"<a href=x/"[..],
            b"//",
            b"/",
            b"<a onclick=postMessage",
            b"<a onclick=postMessag",
            b"location",
            b"<i import>",
            b"<p ",
            b"<p on",
            b"<p o",
            b"<p/On=import",
            b"<p x='1'oNx=location",
            b"<p x=1 ono=\"a\" onload=\"postMessage\"",
            b"<p style=\"margin:0\" title=\"a(b)\">",
            b"<p title=\"a(b)\" STYLE=\"x\">",
            b"<p title=\"(\" style=\"x\" data-x=\"(\">",
            b"<p title=\"s(sty(\" data-s=\"styl\">",
            b"<p STYLE=\"background:url(x)\">",
            b"<a href=\"HTTPS:x\" data-x=\"news:y\">",
            b"<a href=\"mailto:x\" onclick=\"go(1)\">",
            b"<a href=\"xhttp:x\">",
            b":",
            b"(",
        ]
        .iter()
        .map(|t| t.to_vec())
        .collect();
        let corpus = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/corpus");
        for entry in std::fs::read_dir(corpus).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "html") {
                let page = std::fs::read(path).unwrap();
                tags.extend(page.split(|&b| b == b'<').map(|t| {
                    let end = memchr::memchr(b'>', t).map_or(t.len(), |e| e + 1);
                    t[..end].to_vec()
                }));
            }
        }
        assert!(tags.len() > 1000);
        let mut needing = 0;
        for tag in &tags {
            assert_eq!(
                tag_may_need_work(tag),
                reference(tag),
                "{}",
                String::from_utf8_lossy(tag)
            );
            needing += usize::from(reference(tag));
        }
        assert!(needing > 100 && needing < tags.len());
    }
}
