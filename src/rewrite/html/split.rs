//! One large chunk rewritten on two cores: the chunk's second part by a second rewriter on another thread,
//! started speculatively at a start tag there, while this rewriter does the first part.
//!
//! A page usually reaches the rewriter as one chunk (the origin's response, read at once), and lol_html
//! rewrites it on one core: about a millisecond for 100 KB here, most of a page's added latency
//! (docs/PERFORMANCE.md, tenth pass). When no other rewrite is running, the other core is idle, so the
//! chunk is cut at a start tag a little past its middle and the part from there is handed to a fresh
//! rewriter on a blocking-pool thread.
//!
//! lol_html cannot be told what state the document is in at that tag, so the second rewriter *assumes*
//! a fresh rewriter's: the tokenizer at a tag in the data state, HTML (not SVG or MathML) content, the
//! agent already injected, the `<base>` this rewriter knew when it started, and an encoding no `<meta>`
//! can change (it was declared in the header, or there is no recipe to split with). This rewriter checks
//! each of those when it reaches the tag ([`hand_over`]): its element handler must fire for that very
//! tag (a `<` inside a comment, script, attribute value or `<textarea>` is no tag to it), with the agent
//! injected, no `<base>` since the fork, and no `<svg>` or `<math>` start tag before it (foreign content
//! is the one context lol_html keeps past a tag, in its namespace stack). The selectors (`*`, and the
//! text of `<style>` and `<script>`) need nothing of the open elements but whether the text is inside a
//! `<style>` or `<script>`, which a data-state tag rules out.
//!
//! If every check holds, this rewriter marks the tag's place in its output and stops; its output up to the
//! mark and the second rewriter's output make the chunk, and the second rewriter carries on with the
//! document. If one fails, the second is cancelled and this rewriter goes on through the chunk as it would
//! have without the split. Either way the output is byte for byte one rewriter's (`tests.rs` compares at
//! every tag of the corpus pages and of pages built to trip the checks). When the helper thread has not
//! picked the second part up by the time the first is done, this thread takes it back and rewrites it
//! itself, so a busy machine loses only the second rewriter's setup.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, LazyLock, Mutex, PoisonError};

use bytes::Bytes;
use lol_html::html_content::{ContentType, Element};
use lol_html::send::{HtmlRewriter, SendHandlerTypes};

use super::{scope, Doc, HtmlTransform};
use crate::rewrite::RewriteError;

/// Chunks smaller than this are rewritten whole: the second thread's wake-up and rewriter setup would eat
/// most of what halving a smaller rewrite saves.
const MIN_CHUNK: usize = 32 << 10;

/// Where the search for the tag to split at starts, in percent of the chunk: a little past half, as the
/// second part starts later (the helper thread wakes up) and this thread checks the split.
const SPLIT_PERCENT: usize = 45;

/// How far past that point a tag to split at is looked for.
const SEARCH: usize = 16 << 10;

/// A start tag longer than this is not split at.
const MAX_TAG: usize = 1 << 10;

/// Names of ordinary elements a split may start at: common, and not switching the tokenizer to raw text.
const SPLIT_TAGS: [&[u8]; 16] = [
    b"div", b"li", b"p", b"span", b"a", b"img", b"tr", b"td", b"ul", b"section", b"article", b"h2",
    b"h3", b"dd", b"dt", b"table",
];

/// Rewrites running now in this process: a split is tried only when this one is alone, so that the
/// second part has a core to itself rather than taking one from another page.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

static CORES: LazyLock<usize> =
    LazyLock::new(|| std::thread::available_parallelism().map_or(1, |n| n.get()));

/// What this rewriter writes before the tag the second part starts at, to find the cut in its output. A
/// comment with a per-process random number: no page can contain it.
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

/// The handler error that stops a cancelled second rewriter.
#[derive(Debug, thiserror::Error)]
#[error("speculative rewrite cancelled")]
pub(super) struct Cancelled;

/// A split in progress, kept in the first rewriter's document state while it rewrites the first part.
pub(super) struct Pending {
    /// Document offset of the start tag the second part begins at.
    at: usize,
    /// Whether a `<base href>` had been seen when the second rewriter was forked.
    base_seen: bool,
    /// The first rewriter reached the tag with every check holding, and marked it.
    reached: bool,
}

/// Split counts, process-wide (`cobrowse_html_splits_*` in `/metrics`).
pub(super) static JOINED: LazyLock<prometheus_client::metrics::counter::Counter> =
    LazyLock::new(Default::default);
pub(super) static FELL_BACK: LazyLock<prometheus_client::metrics::counter::Counter> =
    LazyLock::new(Default::default);

/// Where to split `chunk`, when it is worth it now: `(tag start, tag end)` within the chunk.
pub(super) fn worth_splitting(t: &HtmlTransform, chunk: &[u8]) -> Option<(usize, usize)> {
    if chunk.len() < MIN_CHUNK
        || *CORES < 2
        || t.recipe.is_none()
        || RUNNING.load(Ordering::Relaxed) > 1
        || !t
            .doc
            .as_ref()
            .is_some_and(|d| d.foreign != Foreign::Unknown)
        || tokio::runtime::Handle::try_current().is_err()
    {
        return None;
    }
    split_point(chunk)
}

/// A start tag of one of [`SPLIT_TAGS`] a little past the middle of `chunk`, whose `>` is in the chunk.
/// Only a candidate: whether it is a tag at all is for the first rewriter to find.
pub(super) fn split_point(chunk: &[u8]) -> Option<(usize, usize)> {
    let from = chunk.len() * SPLIT_PERCENT / 100;
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

/// The first rewriter's element handler, while a split is pending: `true` when `el` is the tag the
/// second part starts at and every check holds (the tag is then marked and left to the second rewriter).
pub(super) fn hand_over(
    el: &mut Element<'_, '_, SendHandlerTypes>,
    p: &mut Pending,
    (injected, base_seen, foreign): (bool, bool, Foreign),
) -> bool {
    if el.source_location().bytes().start != p.at {
        return false;
    }
    if !injected || base_seen != p.base_seen || foreign != Foreign::Clear {
        return false;
    }
    el.before(&MARK, ContentType::Html);
    p.reached = true;
    true
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

/// Rewrites `chunk` in two parts at `(at, tag_end)`, the second on another thread (see the module notes).
pub(super) fn write_split(
    t: &mut HtmlTransform,
    chunk: Bytes,
    at: (usize, usize),
    out: &mut Vec<u8>,
) -> Result<(), RewriteError> {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => split_with(t, chunk, at, Some(&runtime), out).map(drop),
        Err(_) => t.feed_whole(chunk, out),
    }
}

/// How a split went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Split {
    /// The second rewriter's output was used, and it carries on with the document.
    Joined,
    /// A check failed: the first rewriter did the whole chunk.
    FellBack,
}

/// [`write_split`] with the second part offered to a thread of `helper`'s blocking pool, or with no helper
/// (the first thread then takes the part back, as it does when the helper is late).
pub(super) fn split_with(
    t: &mut HtmlTransform,
    chunk: Bytes,
    (at, tag_end): (usize, usize),
    helper: Option<&tokio::runtime::Handle>,
    out: &mut Vec<u8>,
) -> Result<Split, RewriteError> {
    let (Some(recipe), Some(doc)) = (t.recipe.as_ref(), t.doc.as_mut()) else {
        return t.feed_whole(chunk, out).map(|()| Split::FellBack);
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let second = Job {
        rewriter: recipe.rewriter(),
        doc: Some(Box::new(doc.fork(cancel.clone()))),
        input: chunk.slice(at..),
    };
    let offer = Offer::new(second);
    if let Some(helper) = helper {
        let helper_offer = offer.clone();
        helper.spawn_blocking(move || helper_offer.run_if_unclaimed());
    }

    let start = doc.input.end();
    doc.input.push(chunk.clone());
    doc.split = Some(Pending {
        at: start + at,
        base_seen: doc.base_seen,
        reached: false,
    });
    let first = t.feed(&chunk[..at], out);
    let mark_from = out.len();
    let first = first.and_then(|()| t.feed(&chunk[at..tag_end], out));
    let reached = t
        .doc
        .as_mut()
        .and_then(|d| d.split.take())
        .is_some_and(|p| p.reached);
    if first.is_err() || !reached {
        cancel.store(true, Ordering::Relaxed);
        offer.withdraw();
        FELL_BACK.inc();
        first?;
        return t.feed(&chunk[tag_end..], out).map(|()| Split::FellBack);
    }
    let Some(mark) = memchr::memmem::find(&out[mark_from..], MARK.as_bytes()) else {
        // The mark is written whenever the split is reached; without it the cut is unknown.
        t.rewriter = None;
        return Err(RewriteError::Html("split rewrite lost its mark".into()));
    };
    out.truncate(mark_from + mark);
    let Some(done) = offer.take_result() else {
        t.rewriter = None;
        return Err(RewriteError::Html(
            "split rewrite's second part failed".into(),
        ));
    };
    JOINED.inc();
    out.extend_from_slice(&done.out);
    t.doc = done.doc;
    if done.result.is_err() {
        t.rewriter = None;
    } else {
        t.rewriter = Some(done.rewriter);
    }
    done.result.map(|()| Split::Joined)
}

/// The second part's rewrite: a fresh rewriter, its forked document state and its input.
struct Job {
    rewriter: HtmlRewriter<'static, scope::Sink>,
    doc: Option<Box<Doc>>,
    input: Bytes,
}

struct Done {
    rewriter: HtmlRewriter<'static, scope::Sink>,
    doc: Option<Box<Doc>>,
    out: Vec<u8>,
    result: Result<(), RewriteError>,
}

impl Job {
    fn run(mut self) -> Done {
        let _running = Running::enter();
        let mut out = Vec::with_capacity(self.input.len() + self.input.len() / 8);
        if let Some(doc) = self.doc.as_mut() {
            doc.input.push(self.input.clone());
        }
        let result = {
            let _lent = scope::lend(&mut out, &mut self.doc);
            self.rewriter.write(&self.input)
        };
        Done {
            rewriter: self.rewriter,
            doc: self.doc,
            out,
            result: result.map_err(|e| RewriteError::Html(e.to_string())),
        }
    }
}

/// The second part, offered to a helper thread; whichever of it and the first thread claims it first
/// runs it.
#[derive(Clone)]
struct Offer(Arc<OfferState>);

struct OfferState {
    job: Mutex<Option<Job>>,
    done_tx: Mutex<Option<mpsc::SyncSender<Done>>>,
    done_rx: Mutex<mpsc::Receiver<Done>>,
}

impl Offer {
    fn new(job: Job) -> Offer {
        let (tx, rx) = mpsc::sync_channel(1);
        Offer(Arc::new(OfferState {
            job: Mutex::new(Some(job)),
            done_tx: Mutex::new(Some(tx)),
            done_rx: Mutex::new(rx),
        }))
    }

    fn claim(&self) -> Option<Job> {
        self.0
            .job
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// The helper thread's side.
    fn run_if_unclaimed(&self) {
        let tx = self
            .0
            .done_tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let (Some(job), Some(tx)) = (self.claim(), tx) {
            let _ = tx.send(job.run());
        }
    }

    /// The first thread's side once its part is done: the second part's result, rewritten here if the
    /// helper has not started it; `None` if the helper died with it.
    fn take_result(&self) -> Option<Done> {
        if let Some(job) = self.claim() {
            return Some(job.run());
        }
        self.0
            .done_rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recv()
            .ok()
    }

    /// The split failed: the helper, if it has not started, finds nothing to do.
    fn withdraw(&self) {
        drop(self.claim());
    }
}
