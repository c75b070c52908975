//! Running a cut chunk's parts, this thread from the front and a blocking-pool thread from the back, and
//! joining their outputs at the marks.
//!
//! This thread goes on through the parts it takes with the document's own rewriter: a part costs it
//! nothing but the check at the next cut. Only the helper builds fresh rewriters (~48 K instructions
//! each), on its own core, for the parts it takes from the back.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use lol_html::send::HtmlRewriter;

use super::{Pending, Running, FELL_BACK, JOINED, MARK};
use crate::rewrite::html::{scope, Doc, HtmlTransform, Recipe};
use crate::rewrite::RewriteError;

/// Who rewrites the parts after the first, besides this thread.
#[derive(Clone, Copy)]
pub(in crate::rewrite::html) enum Helper<'a> {
    /// A thread of this runtime's blocking pool, taking parts from the back while this thread takes
    /// them from the front.
    Pool(&'a tokio::runtime::Handle),
    /// This thread, before it starts on the first part: every later part by a fresh rewriter, every cut
    /// joined whose check holds (tests and fuzzing, to try every join).
    Ahead,
    /// Nobody: this thread goes on through every part (tests, to try going on past every mark).
    #[cfg(test)]
    Never,
}

/// A rewriter and its document state, placed in the chunk.
struct Reader {
    rewriter: HtmlRewriter<'static, scope::Sink>,
    doc: Option<Box<Doc>>,
    /// Where in the chunk it started reading.
    start: usize,
    /// Its document offset of `chunk[start]` (lol_html counts from the first byte it was given).
    origin: usize,
    /// Where in the chunk it has been fed up to.
    fed: usize,
    /// `<base>` seen when the chunk was cut, which every part after the first assumes.
    base_seen_at_cut: bool,
    out: Vec<u8>,
    /// Where in `out` the mark is, when it reached the cut it last checked with every check holding:
    /// its output for the part before ends there.
    mark: Option<usize>,
    result: Result<(), RewriteError>,
}

impl Reader {
    /// A rewriter about to read the chunk from `start`, which is its document offset `origin`.
    fn new(
        rewriter: HtmlRewriter<'static, scope::Sink>,
        doc: Box<Doc>,
        (start, origin): (usize, usize),
        base_seen_at_cut: bool,
        out: Vec<u8>,
    ) -> Reader {
        Reader {
            rewriter,
            doc: Some(doc),
            start,
            origin,
            fed: start,
            base_seen_at_cut,
            out,
            mark: None,
            result: Ok(()),
        }
    }

    /// Feeds the chunk up to `to`, then checks `cut` if there is one: feeds that tag with the cut
    /// pending, and if the check held, notes where the mark is.
    fn advance(&mut self, chunk: &[u8], to: usize, cut: Option<(usize, usize)>) {
        self.feed(chunk, to);
        self.mark = None;
        let Some((at, tag_end)) = cut else {
            return;
        };
        if let Some(doc) = self.doc.as_mut() {
            doc.split = Some(Pending {
                at: self.origin + (at - self.start),
                base_seen: self.base_seen_at_cut,
                reached: false,
            });
        }
        let mark_from = self.out.len();
        self.feed(chunk, tag_end);
        let reached = self
            .doc
            .as_mut()
            .and_then(|d| d.split.take())
            .is_some_and(|p| p.reached);
        if !reached || self.result.is_err() {
            return;
        }
        match memchr::memmem::find(&self.out[mark_from..], MARK.as_bytes()) {
            Some(mark) => self.mark = Some(mark_from + mark),
            // The mark is written whenever a cut is reached; without it the join point is unknown.
            None => self.result = Err(RewriteError::Html("split rewrite lost its mark".into())),
        }
    }

    /// Goes on through the part after the cut it checked (to `to`, checking `cut`), as if there had been
    /// no cut: the mark comes out of its output.
    fn go_on(&mut self, chunk: &[u8], to: usize, cut: Option<(usize, usize)>) {
        if let Some(mark) = self.mark.take() {
            self.out.drain(mark..mark + MARK.len());
        }
        self.advance(chunk, to, cut);
    }

    /// Its output up to the mark, where the next part's output joins.
    fn output_to_mark(&mut self, mark: usize) -> &mut Vec<u8> {
        self.out.truncate(mark);
        &mut self.out
    }

    fn feed(&mut self, chunk: &[u8], to: usize) {
        if self.result.is_err() {
            return;
        }
        let result = {
            let _lent = scope::lend(&mut self.out, &mut self.doc);
            self.rewriter.write(&chunk[self.fed..to])
        };
        self.fed = to;
        if let Err(e) = result {
            // With graceful bail-out the rewriter already flushed what it was given as it was.
            self.result = Err(RewriteError::Html(e.to_string()));
        }
    }
}

/// One part after the first, not started: the document state for its rewriter, where it starts, and how
/// far it reads (to the next part's tag, which it checks, or the end).
struct Part {
    doc: Box<Doc>,
    start: usize,
    to: usize,
    cut: Option<(usize, usize)>,
}

/// What every part shares: the chunk, how to build a rewriter, and the `<base>` assumed at the cuts.
struct Job {
    chunk: Bytes,
    recipe: Recipe,
    base_seen_at_cut: bool,
}

impl Job {
    /// Rewrites `part` with a fresh rewriter.
    fn run(&self, part: Part) -> Reader {
        let _running = Running::enter();
        let mut reader = Reader::new(
            self.recipe.rewriter(),
            part.doc,
            (part.start, 0),
            self.base_seen_at_cut,
            Vec::with_capacity(part.to - part.start + 1024),
        );
        reader.advance(&self.chunk, part.to, part.cut);
        reader
    }
}

/// The parts after the first, claimed from the front by the chunk's thread and from the back by the
/// helper, and the helper's readers once done.
struct Shared {
    job: Job,
    claims: Mutex<Claims>,
    finished: Condvar,
}

struct Claims {
    parts: Vec<Option<Part>>,
    /// How many parts, from the front, the chunk's thread took.
    front: usize,
    readers: Vec<Option<Reader>>,
    /// The helper has returned (or unwound): a part it claimed and did not hand back is lost.
    helper_gone: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Claims> {
        self.claims.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The helper's work: rewrites parts from the back with fresh rewriters until none is left.
    fn help(&self) {
        loop {
            let claimed = {
                let mut claims = self.lock();
                let last = claims.parts.iter().rposition(Option::is_some);
                last.and_then(|i| Some((i, claims.parts[i].take()?)))
            };
            let Some((i, part)) = claimed else {
                return;
            };
            let reader = self.job.run(part);
            self.lock().readers[i] = Some(reader);
            self.finished.notify_all();
        }
    }

    /// Claims the next part from the front for the chunk's thread, if the helper has not taken it.
    fn take_front(&self) -> Option<usize> {
        let mut claims = self.lock();
        let i = claims.front;
        claims.parts.get_mut(i)?.take()?;
        claims.front = i + 1;
        Some(i)
    }

    /// The helper's readers, from the first part the chunk's thread did not take, once all are done;
    /// `None` for one the helper lost.
    fn wait_for_helper(&self) -> (usize, Vec<Option<Reader>>) {
        let mut claims = self.lock();
        let front = claims.front;
        while !claims.helper_gone && claims.readers[front..].iter().any(Option::is_none) {
            claims = self
                .finished
                .wait(claims)
                .unwrap_or_else(PoisonError::into_inner);
        }
        (front, claims.readers.split_off(front))
    }
}

/// Marks the helper gone however it leaves.
struct HelperGone(Arc<Shared>);

impl Drop for HelperGone {
    fn drop(&mut self) {
        self.0.lock().helper_gone = true;
        self.0.finished.notify_all();
    }
}

/// Rewrites `chunk` in parts at `cuts`, with a helper thread from the current runtime's blocking pool.
pub(in crate::rewrite::html) fn write_split(
    t: &mut HtmlTransform,
    chunk: Bytes,
    cuts: &[(usize, usize)],
    out: &mut Vec<u8>,
) -> Result<(), RewriteError> {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => split_with(t, chunk, cuts, Helper::Pool(&runtime), out).map(drop),
        Err(_) => t.feed_whole(chunk, out),
    }
}

/// [`write_split`] with the given helper. Returns how many cuts joined.
pub(in crate::rewrite::html) fn split_with(
    t: &mut HtmlTransform,
    chunk: Bytes,
    cuts: &[(usize, usize)],
    helper: Helper<'_>,
    out: &mut Vec<u8>,
) -> Result<usize, RewriteError> {
    let recipe = match (&t.recipe, cuts.is_empty()) {
        (Some(recipe), false) => recipe.clone(),
        _ => return t.feed_whole(chunk, out).map(|()| 0),
    };
    let (rewriter, doc) = match (t.rewriter.take(), t.doc.take()) {
        (Some(rewriter), Some(doc)) => (rewriter, doc),
        (rewriter, doc) => {
            (t.rewriter, t.doc) = (rewriter, doc);
            return t.feed_whole(chunk, out).map(|()| 0);
        }
    };
    let (shared, first) = start_parts(recipe, rewriter, doc, chunk.clone(), cuts, out);
    match helper {
        Helper::Pool(runtime) => {
            let gone = HelperGone(shared.clone());
            runtime.spawn_blocking(move || gone.0.help());
        }
        Helper::Ahead => {
            shared.help();
            shared.lock().helper_gone = true;
        }
        #[cfg(test)]
        Helper::Never => shared.lock().helper_gone = true,
    }
    let live = go_through_front(&shared, cuts, first);
    let (front, helpers) = shared.wait_for_helper();
    join(t, &chunk, &cuts[front..], live, helpers, out)
}

/// How far the part starting at `cuts[i]` reads in a chunk of `len` bytes (to the next cut's tag, or the
/// end), and the next cut, which its reader checks.
fn reach(cuts: &[(usize, usize)], i: usize, len: usize) -> (usize, Option<(usize, usize)>) {
    let next = cuts.get(i + 1).copied();
    (next.map_or(len, |(at, _)| at), next)
}

/// The parts after the first, each with the document state as it is now, and the document's own rewriter
/// placed at the start of the chunk.
fn start_parts(
    recipe: Recipe,
    rewriter: HtmlRewriter<'static, scope::Sink>,
    mut doc: Box<Doc>,
    chunk: Bytes,
    cuts: &[(usize, usize)],
    out: &mut Vec<u8>,
) -> (Arc<Shared>, Reader) {
    let base_seen_at_cut = doc.base_seen;
    let origin = doc.input.end();
    doc.input.push(chunk.clone());
    let parts: Vec<Option<Part>> = cuts
        .iter()
        .enumerate()
        .map(|(i, &(start, _))| {
            let mut fork = Box::new(doc.fork());
            fork.input.push(chunk.slice(start..));
            let (to, cut) = reach(cuts, i, chunk.len());
            Some(Part {
                doc: fork,
                start,
                to,
                cut,
            })
        })
        .collect();
    let first = Reader::new(
        rewriter,
        doc,
        (0, origin),
        base_seen_at_cut,
        std::mem::take(out),
    );
    let shared = Arc::new(Shared {
        job: Job {
            chunk,
            recipe,
            base_seen_at_cut,
        },
        claims: Mutex::new(Claims {
            readers: parts.iter().map(|_| None).collect(),
            front: 0,
            parts,
            helper_gone: false,
        }),
        finished: Condvar::new(),
    });
    (shared, first)
}

/// The chunk's thread: the first part, then every part the helper has not taken, going on with the
/// document's rewriter and checking each cut on the way.
fn go_through_front(shared: &Shared, cuts: &[(usize, usize)], mut live: Reader) -> Reader {
    let chunk = &shared.job.chunk;
    live.advance(chunk, cuts[0].0, Some(cuts[0]));
    while let Some(i) = shared.take_front() {
        if live.result.is_err() {
            break;
        }
        let (to, next) = reach(cuts, i, chunk.len());
        live.go_on(chunk, to, next);
    }
    live
}

/// Puts the outputs together from the first cut the chunk's thread did not take: at each, the helper's
/// output for the part after it if the reader before reached it, or else that reader going on through
/// the part itself.
fn join(
    t: &mut HtmlTransform,
    chunk: &[u8],
    cuts: &[(usize, usize)],
    mut live: Reader,
    helpers: Vec<Option<Reader>>,
    out: &mut Vec<u8>,
) -> Result<usize, RewriteError> {
    let mut joined = 0;
    for (i, next) in helpers.into_iter().enumerate() {
        if live.result.is_err() {
            break;
        }
        if let Some(mark) = live.mark {
            let Some(next) = next else {
                // The helper lost the part, and the reader before handed its tag over: the rest passes.
                out.append(live.output_to_mark(mark));
                out.extend_from_slice(&chunk[cuts[i].0..]);
                t.doc = live.doc;
                return Err(RewriteError::Html("split rewrite lost a part".into()));
            };
            out.append(live.output_to_mark(mark));
            live = next;
            joined += 1;
            JOINED.inc();
            continue;
        }
        FELL_BACK.inc();
        let (to, next) = reach(cuts, i, chunk.len());
        live.go_on(chunk, to, next);
    }
    out.append(&mut live.out);
    t.doc = live.doc;
    match live.result {
        Ok(()) => {
            t.rewriter = Some(live.rewriter);
            Ok(joined)
        }
        Err(e) => {
            out.extend_from_slice(&chunk[live.fed..]);
            Err(e)
        }
    }
}
