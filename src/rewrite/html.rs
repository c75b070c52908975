//! HTML, streamed through lol_html: URL-bearing attributes, `<base>`, `<meta http-equiv>`, inline styles and
//! `<style>` (through the CSS rewriter), import maps, `integrity`, and the agent `<script>` injected once,
//! before any page script.
//!
//! Most URLs in a page are relative or root-relative; on a per-origin proxy host those resolve correctly
//! as written, so the element handler (`html/element.rs`, one `*` selector for everything) first asks
//! `needs_resolving` on the raw value and moves on. Only values naming another origin are entity-decoded,
//! resolved and rewritten.

use std::sync::Arc;

use bytes::Bytes;
use lol_html::html_content::{ContentType, Element, TextChunk};
use lol_html::send::{HtmlRewriter, Settings};
use lol_html::{element, end, text, MemorySettings};
use url::Url;

use super::css::rewrite_css_str;
use super::script::ScriptCache;
use super::{Charset, RewriteError, Transform};
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
    pub charset: Charset,
    pub memory_limit: usize,
    /// Cap on one `<style>`, script or import map held for rewriting; larger ones pass as they are.
    pub inline_limit: usize,
    /// Rewritten scripts by content hash (shared with external scripts).
    pub scripts: Arc<ScriptCache>,
}

/// Per-document state the handlers share, lent to the thread while lol_html runs them (`scope.rs`).
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
    /// A rewrite of the rest of this chunk speculatively started on another thread (`split.rs`).
    split: Option<split::Pending>,
    /// What is known of lol_html's namespace stack (`split.rs`).
    foreign: split::Foreign,
}

impl Doc {
    /// The state a rewrite starting at a start tag mid-document needs, given that this document's
    /// rewrite reaches that tag with the agent injected and no `<base>` after `base_seen`'s value.
    fn fork(&self) -> Doc {
        Doc {
            map: self.map.clone(),
            url: self.url.clone(),
            target: self.target.clone(),
            agent: self.agent.clone(),
            base: self.base.clone(),
            base_seen: self.base_seen,
            injected: true,
            inline: String::new(),
            inline_overflow: false,
            inline_limit: self.inline_limit,
            script: ScriptKind::Other,
            scripts: self.scripts.clone(),
            input: raw::RawInput::default(),
            split: None,
            // The fork is used only if the first rewriter reaches its tag with the stack plain HTML.
            foreign: split::Foreign::Clear,
        }
    }
}

/// The rewriter, behind the [`Transform`] interface the body pipeline drives.
pub struct HtmlTransform {
    rewriter: Option<HtmlRewriter<'static, scope::Sink>>,
    /// The full rewrite's state, which is handed each input chunk (see `raw.rs`) and lent to the handlers
    /// during each call (`scope.rs`); `None` for the injection-only rewrite.
    doc: Option<Box<Doc>>,
    /// How to start a second rewriter mid-document, for splitting a large chunk across two cores
    /// (`split.rs`); `None` for the injection-only rewrite and for pages whose encoding may still change.
    recipe: Option<Recipe>,
}

/// What builds a full rewriter: the same for the document's first rewriter and any started mid-way.
#[derive(Clone)]
struct Recipe {
    agent_tag: Arc<str>,
    charset: Charset,
    memory_limit: usize,
}

impl Recipe {
    fn rewriter(&self) -> HtmlRewriter<'static, scope::Sink> {
        HtmlRewriter::new(full_settings(self), scope::Sink)
    }
}

impl HtmlTransform {
    pub fn new(ctx: HtmlContext) -> HtmlTransform {
        let recipe = Recipe {
            agent_tag: ctx.agent_tag.into(),
            charset: ctx.charset,
            memory_limit: ctx.memory_limit,
        };
        let doc = Box::new(Doc {
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
            split: None,
            foreign: split::Foreign::Clear,
        });
        HtmlTransform {
            rewriter: Some(recipe.rewriter()),
            doc: Some(doc),
            // A `<meta charset>` may switch an undeclared encoding mid-document, which a rewriter started
            // after it would not know.
            recipe: recipe.charset.declared.then_some(recipe),
        }
    }

    /// Rewrites `chunk` cut at `cuts` (`(tag start, tag end)` pairs in order, as `split.rs` picks them),
    /// all on this thread; returns how many cuts joined. For checking that a split rewrite is always one
    /// rewriter's (the `html_split` fuzz target); the proxy splits through [`Transform::write`].
    pub fn write_in_parts(
        &mut self,
        chunk: Bytes,
        cuts: &[(usize, usize)],
        out: &mut Vec<u8>,
    ) -> Result<usize, RewriteError> {
        split::split_with(self, chunk, cuts, split::Helper::Ahead, out)
    }

    /// Never splits a chunk across two cores (`split.rs`): for comparing the two in benches.
    pub fn on_one_core(mut self) -> HtmlTransform {
        self.recipe = None;
        self
    }

    pub(super) fn with_settings(settings: Settings<'static, 'static>) -> HtmlTransform {
        HtmlTransform {
            rewriter: Some(HtmlRewriter::new(settings, scope::Sink)),
            doc: None,
            recipe: None,
        }
    }
}

impl HtmlTransform {
    /// Hands `chunk` to the rewriter whole: the input kept for the handlers, then one `write`.
    fn feed_whole(&mut self, chunk: Bytes, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        if let Some(doc) = self.doc.as_mut() {
            doc.input.push(chunk.clone());
        }
        self.feed(&chunk, out)
    }

    /// One `write` of bytes already in the kept input, with the output and document lent to the handlers.
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        let Some(rewriter) = self.rewriter.as_mut() else {
            out.extend_from_slice(bytes);
            return Ok(());
        };
        let result = {
            let _lent = scope::lend(out, &mut self.doc);
            rewriter.write(bytes)
        };
        result.or_else(|e| {
            // With graceful bail-out the rewriter already flushed the unprocessed input as it was.
            self.rewriter = None;
            match e {
                lol_html::errors::RewritingError::ContentHandlerError(ref why)
                    if why.is::<RestUnchanged>() =>
                {
                    Ok(())
                }
                e => Err(RewriteError::Html(e.to_string())),
            }
        })
    }
}

impl Transform for HtmlTransform {
    fn write(&mut self, chunk: Bytes, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        if self.rewriter.is_none() {
            out.extend_from_slice(&chunk);
            return Ok(());
        }
        // A rewritten page is a little longer than the original: one allocation, not a doubling series.
        out.reserve(chunk.len() + chunk.len() / 8);
        let _running = split::Running::enter();
        match split::worth_splitting(self, &chunk) {
            Some(cuts) => split::write_split(self, chunk, &cuts, out),
            None => self.feed_whole(chunk, out),
        }
    }

    fn end(&mut self, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        let Some(rewriter) = self.rewriter.take() else {
            return Ok(());
        };
        let _lent = scope::lend(out, &mut self.doc);
        rewriter
            .end()
            .map_err(|e| RewriteError::Html(e.to_string()))
    }
}

/// The full rewrite's handlers around one document state lent per call (`scope.rs`).
fn full_settings(recipe: &Recipe) -> Settings<'static, 'static> {
    let agent_tag = recipe.agent_tag.clone();
    let agent_tag_end = recipe.agent_tag.clone();
    let settings = base_settings(recipe.charset, recipe.memory_limit)
        // The only element selector: see `element.rs` for why one catch-all beats one selector per attribute.
        .append_element_content_handler(element!("*", move |el| {
            scope::with_doc(|doc| element::on_element(el, doc, &agent_tag));
            Ok(())
        }))
        .append_document_content_handler(end!(move |end| {
            if scope::with_doc(|doc| !doc.injected).unwrap_or(false) {
                end.append(&agent_tag_end, ContentType::Html);
            }
            Ok(())
        }));
    add_inline_text(settings)
}

/// A handler's error that means the rest of the document needs no rewriting: lol_html (with graceful
/// bail-out on handler errors) flushes what it has not emitted as it is, and every later chunk passes
/// untouched (`inject.rs`, once the head is done).
#[derive(Debug, thiserror::Error)]
#[error("the rest of the document needs no rewriting")]
pub(super) struct RestUnchanged;

/// Keeps lol_html in its lexer for the whole document. Without a document-level handler it scans for
/// tags only, and since both rewrites' `*` matches every start tag it switches to the lexer and back
/// around each one: two boxed directive changes and the tag's start read twice. A doctype handler (which
/// does nothing, and runs at most once) is the cheapest document-level handler that keeps the lexer on:
/// 7–8 % fewer instructions per page on the corpus (docs/PERFORMANCE.md, fourteenth pass).
fn stay_in_lexer(settings: Settings<'static, 'static>) -> Settings<'static, 'static> {
    settings.append_document_content_handler(lol_html::doctype!(|_| Ok(())))
}

/// The split counters (`split.rs`), for `/metrics`: joined, fell back.
pub fn split_counters() -> (
    prometheus_client::metrics::counter::Counter,
    prometheus_client::metrics::counter::Counter,
) {
    (split::JOINED.clone(), split::FELL_BACK.clone())
}

/// What every document rewrite starts from: its encoding (which a `<meta charset>` may change only when
/// the header did not declare one), a memory cap, and bail-out to passthrough (the rest of the document
/// unchanged) rather than a broken page.
pub(super) fn base_settings(charset: Charset, memory_limit: usize) -> Settings<'static, 'static> {
    let memory = MemorySettings::new()
        .with_max_allowed_memory_usage(memory_limit)
        .with_graceful_bail_out_on_memory_limit_exceeded(true);
    let settings = Settings::new_send()
        .with_encoding(charset.encoding)
        .with_memory_settings(memory)
        .with_adjust_charset_on_meta_tag(!charset.declared)
        .with_strict(false)
        .with_graceful_bail_out_on_content_handler_error(true);
    stay_in_lexer(settings)
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
fn add_inline_text(settings: Settings<'static, 'static>) -> Settings<'static, 'static> {
    settings
        .append_element_content_handler(text!("style", |chunk| {
            scope::with_doc(|doc| {
                rewrite_inline_text(chunk, doc, |doc, text| {
                    match rewrite_css_str(&doc.map, &doc.base, text) {
                        std::borrow::Cow::Owned(s) => Some(s),
                        std::borrow::Cow::Borrowed(_) => None,
                    }
                })
            });
            Ok(())
        }))
        .append_element_content_handler(text!("script", |chunk| {
            // The kind was set by the element handler, which runs on the start tag before any of its text.
            scope::with_doc(|doc| match doc.script {
                ScriptKind::JavaScript => rewrite_inline_text(chunk, doc, |doc, text| {
                    doc.scripts.rewrite(text).map(|s| s.to_string())
                }),
                ScriptKind::ImportMap => rewrite_inline_text(chunk, doc, |doc, text| {
                    super::importmap::rewrite(text, &doc.map, &doc.base)
                }),
                ScriptKind::Other => {}
            });
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
    doc: &Doc,
    f: impl FnOnce(&Doc, &str) -> Option<String>,
) {
    let Some(raw) = el.get_attribute(attr) else {
        return;
    };
    if let Some(new) = f(doc, &unescape_attribute(&raw)) {
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

/// An attribute value as the page means it: entities decoded, and without a copy when it has none.
fn unescape_attribute(raw: &str) -> std::borrow::Cow<'_, str> {
    if memchr::memchr(b'&', raw.as_bytes()).is_some() {
        htmlize::unescape_attribute(raw)
    } else {
        std::borrow::Cow::Borrowed(raw)
    }
}

/// lol_html escapes only `"` in values it writes; `&` must be escaped too or `&copy=1` would decode.
fn escape_attribute(value: &str) -> std::borrow::Cow<'_, str> {
    if memchr::memchr(b'&', value.as_bytes()).is_some() {
        std::borrow::Cow::Owned(value.replace('&', "&amp;"))
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

/// The first `<base href>` sets what later relative URLs resolve against (the attribute itself was
/// already rewritten by the generic handler, so the original is recovered from the proxy URL).
fn set_base(el: &mut Element<'_, '_, lol_html::send::SendHandlerTypes>, d: &mut Doc) {
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

fn rewrite_meta(el: &mut Element<'_, '_, lol_html::send::SendHandlerTypes>, doc: &Doc) {
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
    d: &mut Doc,
    f: impl FnOnce(&Doc, &str) -> Option<String>,
) {
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
    let new = f(d, &text).unwrap_or(text);
    chunk.replace(&new, ContentType::Html);
}

mod element;
mod raw;
mod scope;
mod split;

#[cfg(test)]
mod tests;
