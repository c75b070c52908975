//! HTML, streamed through lol_html: URL-bearing attributes, `<base>`, `<meta http-equiv>`, inline styles and
//! `<style>` (through the CSS rewriter), import maps, `integrity`, and the agent `<script>` injected once,
//! before any page script.
//!
//! Most URLs in a page are relative or root-relative; on a per-origin proxy host those resolve correctly
//! as written, so the element handler (`html/element.rs`, one `*` selector for everything) first asks
//! `needs_resolving` on the raw value and moves on. Only values naming another origin are entity-decoded,
//! resolved and rewritten.

use std::sync::{Arc, Mutex, MutexGuard};

use lol_html::html_content::{ContentType, Element, TextChunk};
use lol_html::send::{HtmlRewriter, Settings};
use lol_html::{element, end, text, AsciiCompatibleEncoding, MemorySettings};
use url::Url;

use super::css::rewrite_css_str;
use super::script::ScriptCache;
use super::{RewriteError, Transform};
use crate::headers::{csp, refresh};
use crate::url_codec::{ProxyMap, TargetOrigin};

/// Everything one document's rewrite needs.
pub struct HtmlContext {
    pub map: ProxyMap,
    /// The document's target URL.
    pub url: Url,
    pub target: TargetOrigin,
    /// The agent `<script>` tag, injected once.
    pub agent_tag: String,
    pub agent: csp::AgentSources,
    pub encoding: AsciiCompatibleEncoding,
    pub memory_limit: usize,
    /// Cap on one `<style>`, script or import map held for rewriting; larger ones pass as they are.
    pub inline_limit: usize,
    /// Rewritten scripts by content hash (shared with external scripts).
    pub scripts: Arc<ScriptCache>,
}

/// Per-document state the handlers share. Handlers run one at a time, so the lock is never contended.
struct Doc {
    map: ProxyMap,
    url: Url,
    target: TargetOrigin,
    agent: csp::AgentSources,
    /// What relative URLs resolve against: the document URL until a `<base href>` says otherwise.
    base: Url,
    base_seen: bool,
    injected: bool,
    inline: String,
    inline_overflow: bool,
    inline_limit: usize,
    /// What the `<script>` being read holds: its text is rewritten as JavaScript, as an import map, or not.
    script: ScriptKind,
    scripts: Arc<ScriptCache>,
    /// The input being parsed, for reading attributes without lol_html's allocating accessors.
    input: raw::RawInput,
}

type Shared = Arc<Mutex<Doc>>;

fn lock(doc: &Shared) -> MutexGuard<'_, Doc> {
    // A panic cannot happen inside a handler holding the lock; recover the data regardless.
    doc.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The rewriter, behind the [`Transform`] interface the body pipeline drives.
pub struct HtmlTransform {
    rewriter: Option<HtmlRewriter<'static, Sink>>,
    output: Arc<Mutex<Vec<u8>>>,
    /// The full rewrite's state, which is handed each input chunk (see `raw.rs`); `None` for the
    /// injection-only rewrite.
    doc: Option<Shared>,
}

pub struct Sink(Arc<Mutex<Vec<u8>>>);

/// The most output buffer a rewriter starts each chunk with: the size chunks usually come in; a larger
/// one (one big write) is not kept for the rest of the document.
const OUTPUT_CAPACITY_MAX: usize = 64 << 10;

impl lol_html::OutputSink for Sink {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(chunk);
    }
}

impl HtmlTransform {
    pub fn new(ctx: HtmlContext) -> HtmlTransform {
        let (settings, doc) = settings(ctx);
        let mut transform = HtmlTransform::with_settings(settings);
        transform.doc = Some(doc);
        transform
    }

    pub(super) fn with_settings(settings: Settings<'static, 'static>) -> HtmlTransform {
        let output = Arc::new(Mutex::new(Vec::with_capacity(16 << 10)));
        let rewriter = HtmlRewriter::new(settings, Sink(output.clone()));
        HtmlTransform {
            rewriter: Some(rewriter),
            output,
            doc: None,
        }
    }

    /// Moves what lol_html wrote into `out`: the buffer itself when `out` is empty (as the body stream
    /// hands it), so a rewritten page is not copied once more on its way out.
    fn drain(&self, out: &mut Vec<u8>) {
        let mut buffered = self.output.lock().unwrap_or_else(|p| p.into_inner());
        if out.is_empty() {
            let capacity = buffered.capacity().min(OUTPUT_CAPACITY_MAX);
            *out = std::mem::replace(&mut *buffered, Vec::with_capacity(capacity));
        } else {
            out.append(&mut buffered);
        }
    }
}

impl Transform for HtmlTransform {
    fn write(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        let result = match self.rewriter.as_mut() {
            Some(r) => {
                if let Some(doc) = &self.doc {
                    lock(doc).input.push(chunk);
                }
                r.write(chunk)
            }
            None => {
                out.extend_from_slice(chunk);
                return Ok(());
            }
        };
        self.drain(out);
        result.map_err(|e| {
            // With graceful bail-out the rewriter already flushed the unprocessed input as it was.
            self.rewriter = None;
            RewriteError::Html(e.to_string())
        })
    }

    fn end(&mut self, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        let result = match self.rewriter.take() {
            Some(r) => r.end(),
            None => Ok(()),
        };
        self.drain(out);
        result.map_err(|e| RewriteError::Html(e.to_string()))
    }
}

fn settings(ctx: HtmlContext) -> (Settings<'static, 'static>, Shared) {
    let agent_tag: Arc<str> = ctx.agent_tag.into();
    let agent_tag_end = agent_tag.clone();
    let doc: Shared = Arc::new(Mutex::new(Doc {
        map: ctx.map,
        base: ctx.url.clone(),
        url: ctx.url,
        target: ctx.target,
        agent: ctx.agent,
        base_seen: false,
        injected: false,
        inline: String::new(),
        inline_overflow: false,
        inline_limit: ctx.inline_limit,
        script: ScriptKind::Other,
        scripts: ctx.scripts,
        input: raw::RawInput::default(),
    }));
    let mut settings = base_settings(ctx.encoding, ctx.memory_limit);
    let (d_el, d_end) = (doc.clone(), doc.clone());
    settings = settings
        // The only element selector: see `element.rs` for why one catch-all beats one selector per attribute.
        .append_element_content_handler(element!("*", move |el| {
            element::on_element(el, &d_el, &agent_tag);
            Ok(())
        }))
        .append_document_content_handler(end!(move |end| {
            if !lock(&d_end).injected {
                end.append(&agent_tag_end, ContentType::Html);
            }
            Ok(())
        }));
    (add_inline_text(settings, &doc), doc)
}

/// What every document rewrite starts from: its encoding, a memory cap, and bail-out to passthrough
/// (the rest of the document unchanged) rather than a broken page.
pub(super) fn base_settings(
    encoding: AsciiCompatibleEncoding,
    memory_limit: usize,
) -> Settings<'static, 'static> {
    let memory = MemorySettings::new()
        .with_max_allowed_memory_usage(memory_limit)
        .with_graceful_bail_out_on_memory_limit_exceeded(true);
    Settings::new_send()
        .with_encoding(encoding)
        .with_memory_settings(memory)
        .with_adjust_charset_on_meta_tag(true)
        .with_strict(false)
        .with_graceful_bail_out_on_content_handler_error(true)
}

/// The agent goes first: into `<head>`, or before the first element that is not `<html>`. Returns whether
/// it was placed at `el` (a document with no elements at all gets it at the end instead).
pub(super) fn place_agent(
    el: &mut Element<'_, '_, lol_html::send::SendHandlerTypes>,
    tag: &str,
) -> bool {
    let name = el.tag_name();
    place_agent_at(el, &name, tag)
}

/// [`place_agent`] for an element whose (lowercase) name is already known.
fn place_agent_at(
    el: &mut Element<'_, '_, lol_html::send::SendHandlerTypes>,
    name: &str,
    tag: &str,
) -> bool {
    match name {
        "html" => false,
        "head" => {
            el.prepend(tag, ContentType::Html);
            true
        }
        _ => {
            el.before(tag, ContentType::Html);
            true
        }
    }
}

/// Raw text of `<style>` and `<script>`: gathered whole, then rewritten as CSS, JavaScript or an import map.
fn add_inline_text(
    settings: Settings<'static, 'static>,
    doc: &Shared,
) -> Settings<'static, 'static> {
    let (d_style, d_script) = (doc.clone(), doc.clone());
    settings
        .append_element_content_handler(text!("style", move |chunk| {
            rewrite_inline_text(chunk, &d_style, |doc, text| {
                match rewrite_css_str(&doc.map, &doc.base, text) {
                    std::borrow::Cow::Owned(s) => Some(s),
                    std::borrow::Cow::Borrowed(_) => None,
                }
            });
            Ok(())
        }))
        .append_element_content_handler(text!("script", move |chunk| {
            // Set by the element handler, which runs on the start tag before any of its text.
            let kind = lock(&d_script).script;
            match kind {
                ScriptKind::JavaScript => rewrite_inline_text(chunk, &d_script, |doc, text| {
                    doc.scripts.rewrite(text).map(|s| s.to_string())
                }),
                ScriptKind::ImportMap => rewrite_inline_text(chunk, &d_script, |doc, text| {
                    super::importmap::rewrite(text, &doc.map, &doc.base)
                }),
                ScriptKind::Other => {}
            }
            Ok(())
        }))
}

/// What a `<script>` element's text is, by its `type`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ScriptKind {
    JavaScript,
    ImportMap,
    /// JSON, templates, unknown types: passed as they are.
    Other,
}

impl ScriptKind {
    fn of(kind: &str) -> ScriptKind {
        if is_javascript_type(kind) {
            ScriptKind::JavaScript
        } else if kind.trim().eq_ignore_ascii_case("importmap") {
            ScriptKind::ImportMap
        } else {
            ScriptKind::Other
        }
    }
}

/// Reads an attribute, entity-decodes it, lets `f` rewrite it, and writes it back escaped.
fn rewrite_attribute(
    el: &mut Element<'_, '_, lol_html::send::SendHandlerTypes>,
    attr: &str,
    doc: &Shared,
    f: impl FnOnce(&Doc, &str) -> Option<String>,
) {
    let Some(raw) = el.get_attribute(attr) else {
        return;
    };
    let has_entities = raw.contains('&');
    let decoded = if has_entities {
        htmlize::unescape_attribute(&raw)
    } else {
        std::borrow::Cow::Borrowed(raw.as_str())
    };
    let d = lock(doc);
    if let Some(new) = f(&d, &decoded) {
        let _ = el.set_attribute(attr, &escape_attribute(&new));
    }
}

/// A space-separated URL list: each URL rewritten, separators kept.
fn rewrite_url_list(value: &str, mut f: impl FnMut(&str) -> Option<String>) -> Option<String> {
    let mut changed = false;
    let parts: Vec<String> = value
        .split_ascii_whitespace()
        .map(|u| match f(u) {
            Some(new) => {
                changed = true;
                new
            }
            None => u.to_owned(),
        })
        .collect();
    changed.then(|| parts.join(" "))
}

/// lol_html escapes only `"` in values it writes; `&` must be escaped too or `&copy=1` would decode.
fn escape_attribute(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains('&') {
        std::borrow::Cow::Owned(value.replace('&', "&amp;"))
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

/// The first `<base href>` sets what later relative URLs resolve against (the attribute itself was
/// already rewritten by the generic handler, so the original is recovered from the proxy URL).
fn set_base(el: &mut Element<'_, '_, lol_html::send::SendHandlerTypes>, doc: &Shared) {
    let mut d = lock(doc);
    if d.base_seen {
        return;
    }
    d.base_seen = true;
    let Some(raw) = el.get_attribute("href") else {
        return;
    };
    let value = htmlize::unescape_attribute(&raw);
    let Ok(resolved) = d.url.join(value.trim()) else {
        return;
    };
    let base = d.map.to_target(&resolved).unwrap_or(resolved);
    if matches!(base.scheme(), "http" | "https") {
        d.base = base;
    }
}

fn rewrite_meta(el: &mut Element<'_, '_, lol_html::send::SendHandlerTypes>, doc: &Shared) {
    let Some(equiv) = el.get_attribute("http-equiv") else {
        return;
    };
    let equiv = equiv.trim().to_ascii_lowercase();
    rewrite_attribute(el, "content", doc, |d, value| match equiv.as_str() {
        "refresh" => refresh::rewrite(value, &d.map, &d.base),
        "content-security-policy" | "content-security-policy-report-only" => {
            Some(csp::rewrite(value, &d.map, &d.target, &d.base, &d.agent))
        }
        _ => None,
    });
}

/// The `type` values that make a `<script>` run as JavaScript (HTML §4.12.1.1, plus `module`).
fn is_javascript_type(kind: &str) -> bool {
    let essence = kind
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "" | "module"
            | "text/javascript"
            | "application/javascript"
            | "application/ecmascript"
            | "application/x-ecmascript"
            | "application/x-javascript"
            | "text/ecmascript"
            | "text/jscript"
            | "text/livescript"
            | "text/x-ecmascript"
            | "text/x-javascript"
            | "text/javascript1.0"
            | "text/javascript1.1"
            | "text/javascript1.2"
            | "text/javascript1.3"
            | "text/javascript1.4"
            | "text/javascript1.5"
    )
}

/// Where the body may change, a subresource hash can no longer hold.
fn drop_integrity(el: &mut Element<'_, '_, lol_html::send::SendHandlerTypes>) {
    if el.tag_name() == "link" {
        let kind = el
            .get_attribute("as")
            .unwrap_or_default()
            .to_ascii_lowercase();
        // Images and fonts pass through unchanged, so their hashes still hold.
        if kind == "image" || kind == "font" {
            return;
        }
    }
    el.remove_attribute("integrity");
}

/// Gathers a raw-text element's text (lol_html hands it over in arbitrary pieces), then rewrites it whole.
fn rewrite_inline_text(
    chunk: &mut TextChunk,
    doc: &Shared,
    f: impl FnOnce(&Doc, &str) -> Option<String>,
) {
    let mut d = lock(doc);
    if d.inline_overflow {
        if chunk.last_in_text_node() {
            d.inline_overflow = false;
        }
        return;
    }
    d.inline.push_str(chunk.as_str());
    if d.inline.len() > d.inline_limit {
        // Too large to hold: let the rest pass as it is, after re-emitting what was held.
        let held = std::mem::take(&mut d.inline);
        chunk.replace(&held, ContentType::Html);
        d.inline_overflow = !chunk.last_in_text_node();
        return;
    }
    if !chunk.last_in_text_node() {
        chunk.remove();
        return;
    }
    let text = std::mem::take(&mut d.inline);
    let new = f(&d, &text).unwrap_or(text);
    chunk.replace(&new, ContentType::Html);
}

mod element;
mod raw;

#[cfg(test)]
mod tests;
