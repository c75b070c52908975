//! One large chunk rewritten on two cores: cut at start tags into parts, taken by this thread from the
//! front with the document's rewriter and by a helper thread from the back, each with a fresh rewriter
//! started speculatively at its part's tag.
//!
//! A page usually reaches the rewriter as one chunk (the origin's response, read at once), and lol_html
//! rewrites it on one core: about a millisecond for 100 KB here, most of a page's added latency
//! (docs/PERFORMANCE.md, tenth pass). When no other rewrite is running, the other core is idle, so the
//! chunk is cut into parts of at least [`MIN_PART`] (`parts.rs` runs them). Taking parts from both ends
//! keeps the two threads busy until they meet, however unevenly a page's cost lies (a head full of
//! inline scripts costs more per byte than a list of links).
//!
//! lol_html cannot be told what state the document is in at a tag, so a part's rewriter *assumes* a
//! fresh rewriter's: the tokenizer at a tag in the data state, HTML (not SVG or MathML) content, the agent
//! already injected, the `<base>` the document's rewriter knew when the parts were cut, and an encoding no
//! `<meta>` can change (it was declared in the header; without that there is no recipe to split with).
//! The rewriter of the part before checks each of those when it reaches the tag
//! ([`mark_if_handed_over`]): its element handler must fire for that very tag (a `<` inside a comment,
//! script, attribute value or `<textarea>` is no tag to it), with the agent injected, no `<base>` since
//! the cut, and lol_html's namespace stack plain HTML ([`Foreign`]: the one context its tokenizer keeps past a tag). The selectors
//! (`*`, and the text of `<style>` and `<script>`) need nothing of the open elements but whether the text
//! is inside a `<style>` or `<script>`, which a data-state tag rules out.
//!
//! If every check holds, the rewriter before marks the tag's place in its output. Where the helper has
//! rewritten the part after, the outputs join at the mark, and the last part's rewriter carries on with
//! the document; where this thread took the part itself, its rewriter simply goes on and the mark comes
//! out. If a check fails, the helper's part is dropped and the rewriter before goes on through it as it
//! would have without the cut. Either way the output is byte for byte one rewriter's (`tests.rs` compares
//! at every tag of the corpus pages and of pages built to trip the checks).

mod parts;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;

use lol_html::html_content::{ContentType, Element};
use lol_html::send::SendHandlerTypes;

use super::{scope, HtmlTransform};

/// The smallest part: a rewriter's setup and the other thread's wake-up cost about what rewriting a few
/// KB does, so smaller parts would eat what they save.
const MIN_PART: usize = 24 << 10;

/// The most parts a chunk is cut into: enough for the two threads to meet near the middle.
const MAX_PARTS: usize = 8;

/// How far past each even cut a tag to cut at is looked for.
const SEARCH: usize = 8 << 10;

/// A start tag longer than this is not split at.
const MAX_TAG: usize = 1 << 10;

/// Names of ordinary elements a split may start at: common, and not switching the tokenizer to raw text.
const SPLIT_TAGS: [&[u8]; 16] = [
    b"div", b"li", b"p", b"span", b"a", b"img", b"tr", b"td", b"ul", b"section", b"article", b"h2",
    b"h3", b"dd", b"dt", b"table",
];

/// Rewrites running now in this process: a split is tried only when this one is alone, so that the
/// helper has a core to itself rather than taking one from another page.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

static CORES: LazyLock<usize> =
    LazyLock::new(|| std::thread::available_parallelism().map_or(1, |n| n.get()));

/// What a part's rewriter writes before the tag the next part starts at, to find the cut in its output.
/// A comment with a per-process random number: no page can contain it.
static MARK: LazyLock<String> =
    LazyLock::new(|| format!("<!--cobrowse-split-{:032x}-->", rand::random::<u128>()));

/// Counts a rewrite as running while held.
pub(super) struct Running;

impl Running {
    pub(super) fn enter() -> Running {
        RUNNING.fetch_add(1, Ordering::Relaxed);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A cut the document's current rewriter is checking as it rewrites the part before it.
pub(super) struct Pending {
    /// Document offset (for this rewriter) of the start tag the next part begins at.
    at: usize,
    /// Whether a `<base href>` had been seen when the parts were cut.
    base_seen: bool,
    /// The rewriter reached the tag with every check holding, and marked it.
    reached: bool,
}

/// Split counts, process-wide (`cobrowse_html_splits_*` in `/metrics`).
pub(super) static JOINED: LazyLock<prometheus_client::metrics::counter::Counter> =
    LazyLock::new(Default::default);
pub(super) static FELL_BACK: LazyLock<prometheus_client::metrics::counter::Counter> =
    LazyLock::new(Default::default);

/// Where to cut `chunk`, when it is worth it now: `(tag start, tag end)` of each part after the first.
pub(super) fn worth_splitting(t: &HtmlTransform, chunk: &[u8]) -> Option<Vec<(usize, usize)>> {
    if chunk.len() < 2 * MIN_PART
        || *CORES < 2
        || t.recipe.is_none()
        || RUNNING.load(Ordering::Relaxed) > 1
        || crate::busy::others_busy()
        || !t
            .doc
            .as_ref()
            .is_some_and(|d| d.foreign != Foreign::Unknown)
    {
        return None;
    }
    let cuts = cut_points(chunk);
    (!cuts.is_empty()).then_some(cuts)
}

/// Start tags of [`SPLIT_TAGS`] near even cuts of `chunk` into parts of at least [`MIN_PART`], each
/// with its `>` in the chunk. Only candidates: whether each is a tag at all is for the rewriter before it
/// to find.
pub(super) fn cut_points(chunk: &[u8]) -> Vec<(usize, usize)> {
    let parts = (chunk.len() / MIN_PART).clamp(1, MAX_PARTS);
    let mut cuts: Vec<(usize, usize)> = Vec::with_capacity(parts);
    for i in 1..parts {
        let even = chunk.len() * i / parts;
        let after_last = cuts.last().map_or(0, |&(_, end)| end);
        if let Some(cut) = tag_near(chunk, even.max(after_last)) {
            cuts.push(cut);
        }
    }
    cuts
}

/// The first start tag of one of [`SPLIT_TAGS`] within [`SEARCH`] bytes from `from`, whose `>` is in
/// the chunk before its last byte.
fn tag_near(chunk: &[u8], from: usize) -> Option<(usize, usize)> {
    let until = chunk.len().min(from + SEARCH);
    let window = chunk.get(from..until)?;
    memchr::memchr_iter(b'<', window)
        .map(|i| from + i)
        .find_map(|at| {
            let rest = chunk.get(at + 1..)?;
            let name_end = rest.iter().position(|b| !b.is_ascii_alphanumeric())?;
            let (name, after) = rest.split_at(name_end);
            let ordinary = SPLIT_TAGS.iter().any(|t| t.eq_ignore_ascii_case(name));
            let ends_name = matches!(
                after.first(),
                Some(b' ' | b'\t' | b'\n' | b'\x0c' | b'\r' | b'/' | b'>')
            );
            if !ordinary || !ends_name {
                return None;
            }
            let tag_len = memchr::memchr(b'>', &rest[..rest.len().min(MAX_TAG)])?;
            let end = at + 1 + tag_len + 1;
            (end < chunk.len()).then_some((at, end))
        })
}

/// The element handler of the rewriter before a cut: when `el` is the tag the next part starts at and
/// every check holds, marks its place in the output (where the next part's output may join).
pub(super) fn mark_if_handed_over(
    el: &mut Element<'_, '_, SendHandlerTypes>,
    p: &mut Pending,
    (injected, base_seen, foreign): (bool, bool, Foreign),
) {
    if el.source_location().bytes().start != p.at {
        return;
    }
    if !injected || base_seen != p.base_seen || foreign != Foreign::Clear {
        return;
    }
    el.before(&MARK, ContentType::Html);
    p.reached = true;
}

/// What is known of lol_html's namespace stack, the one context its tokenizer keeps past a tag: a fresh
/// rewriter starts with it plain HTML, so a split needs it plain HTML at the tag.
///
/// lol_html pushes SVG or MathML at every `<svg>` and `<math>`, HTML at an integration point inside
/// them (`<foreignObject>`, `<desc>`, `<title>`, `<mi>`…, `<annotation-xml>`), and pops at some start
/// and end tags. Start tags are all seen here; end tags only through a handler on the region's root. So
/// only the simple case is followed: a root opened from plain HTML with no other root and no integration
/// point inside; lol_html's stack is then HTML+root or HTML throughout, and plain HTML again once the
/// root's own end tag (`</svg>`, `</math>`) closes it. Anything else is `Unknown`, and the document is
/// not split again.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Foreign {
    Clear,
    /// Inside a root; `clean` while nothing in it may have pushed another namespace.
    Region {
        clean: bool,
    },
    Unknown,
}

/// Element names that push a namespace inside foreign content (HTML §13.2.6.5; lol_html's simulator).
const PUSHES_INSIDE: [&[u8]; 11] = [
    b"svg",
    b"math",
    b"foreignobject",
    b"desc",
    b"title",
    b"mi",
    b"mo",
    b"mn",
    b"ms",
    b"mtext",
    b"annotation-xml",
];

/// Called for every `<svg>` and `<math>` start tag, and every start tag while not `Clear`.
pub(super) fn track_foreign(
    el: &mut Element<'_, '_, SendHandlerTypes>,
    foreign: &mut Foreign,
    written_name: Option<&[u8]>,
) {
    *foreign = match *foreign {
        Foreign::Clear => open_region(el),
        Foreign::Region { clean } => {
            let pushes = |n: &[u8]| PUSHES_INSIDE.iter().any(|p| p.eq_ignore_ascii_case(n));
            let pushes = match written_name {
                Some(n) => pushes(n),
                None => pushes(el.tag_name().as_bytes()),
            };
            Foreign::Region {
                clean: clean && !pushes,
            }
        }
        Foreign::Unknown => Foreign::Unknown,
    };
}

/// A root seen from plain HTML: a region, closed by a handler on the root's own end tag.
fn open_region(el: &mut Element<'_, '_, SendHandlerTypes>) -> Foreign {
    let root = el.tag_name();
    // `<svg/>` pushes in lol_html and no end tag pops it.
    if el.is_self_closing() {
        return Foreign::Unknown;
    }
    let Some(handlers) = el.end_tag_handlers() else {
        return Foreign::Unknown;
    };
    handlers.push(Box::new(move |end| {
        let by_own_end_tag = end.name().eq_ignore_ascii_case(&root);
        scope::with_doc(|d| {
            d.foreign = match d.foreign {
                Foreign::Region { clean: true } if by_own_end_tag => Foreign::Clear,
                // Closed by another element's end tag, which pops nothing in foreign content.
                _ => Foreign::Unknown,
            };
        });
        Ok(())
    }));
    Foreign::Region { clean: true }
}

pub(super) use parts::{split_with, write_split, Helper};
