//! Running a cut chunk's parts, this thread from the front and a blocking-pool thread from the back, and
//! joining their outputs at the marks.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use lol_html::send::HtmlRewriter;

use super::{Pending, Running, FELL_BACK, JOINED, MARK};
use crate::rewrite::html::{scope, Doc, HtmlTransform};
use crate::rewrite::RewriteError;

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
    /// It reached the cut it last checked with every check holding: its output ends at the mark.
    reached: bool,
    result: Result<(), RewriteError>,
}

impl Reader {
    /// Feeds the chunk up to `to`, then checks `cut` if there is one: feeds that tag with the cut
    /// pending, and if the check held, drops its output from the mark on.
    fn advance(&mut self, chunk: &[u8], to: usize, cut: Option<(usize, usize)>) {
        self.feed(chunk, to);
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
        self.reached = false;
        if !reached || self.result.is_err() {
            return;
        }
        match memchr::memmem::find(&self.out[mark_from..], MARK.as_bytes()) {
            Some(mark) => {
                self.out.truncate(mark_from + mark);
                self.reached = true;
            }
            // The mark is written whenever a cut is reached; without it the join point is unknown.
            None => self.result = Err(RewriteError::Html("split rewrite lost its mark".into())),
        }
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

/// One part: its rewriter, and how far it reads (to the next part's tag, which it checks, or the end).
struct Part {
    reader: Reader,
    chunk: Bytes,
    to: usize,
    cut: Option<(usize, usize)>,
}

impl Part {
    fn run(mut self) -> Reader {
        let _running = Running::enter();
        self.reader.out.reserve(self.to - self.reader.fed + 1024);
        self.reader.advance(&self.chunk, self.to, self.cut);
        self.reader
    }
}

/// The parts after the first, claimed from the front by the chunk's thread and from the back by the
/// helper, and their readers once done.
struct Shared {
    claims: Mutex<Claims>,
    finished: Condvar,
}

struct Claims {
    parts: Vec<Option<Part>>,
    readers: Vec<Option<Reader>>,
    /// The helper has returned (or unwound): a part it claimed and did not hand back is lost.
    helper_gone: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Claims> {
        self.claims.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs parts until none is left unclaimed, the lowest first or the highest first.
    fn work(&self, from_back: bool) {
        loop {
            let claimed = {
                let mut claims = self.lock();
                let next = if from_back {
                    claims.parts.iter().rposition(Option::is_some)
                } else {
                    claims.parts.iter().position(Option::is_some)
                };
                next.and_then(|i| Some((i, claims.parts[i].take()?)))
            };
            let Some((i, part)) = claimed else {
                return;
            };
            let reader = part.run();
            self.lock().readers[i] = Some(reader);
            self.finished.notify_all();
        }
    }

    /// Every part's reader, once all are done; `None` for one the helper lost.
    fn wait_for_readers(&self) -> Vec<Option<Reader>> {
        let mut claims = self.lock();
        while !claims.helper_gone && claims.readers.iter().any(Option::is_none) {
            claims = self
                .finished
                .wait(claims)
                .unwrap_or_else(PoisonError::into_inner);
        }
        std::mem::take(&mut claims.readers)
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
        Ok(runtime) => split_with(t, chunk, cuts, Some(&runtime), out).map(drop),
        Err(_) => t.feed_whole(chunk, out),
    }
}

/// [`write_split`] with the helper from `helper`'s blocking pool, or none (this thread then does every
/// part, as it does those a late helper has not claimed). Returns how many cuts joined.
pub(in crate::rewrite::html) fn split_with(
    t: &mut HtmlTransform,
    chunk: Bytes,
    cuts: &[(usize, usize)],
    helper: Option<&tokio::runtime::Handle>,
    out: &mut Vec<u8>,
) -> Result<usize, RewriteError> {
    let (Some(recipe), Some(rewriter), Some(mut doc)) =
        (t.recipe.clone(), t.rewriter.take(), t.doc.take())
    else {
        return t.feed_whole(chunk, out).map(|()| 0);
    };
    if cuts.is_empty() {
        t.rewriter = Some(rewriter);
        t.doc = Some(doc);
        return t.feed_whole(chunk, out).map(|()| 0);
    }
    let base_seen_at_cut = doc.base_seen;
    let origin = doc.input.end();
    doc.input.push(chunk.clone());
    // Each later part's rewriter starts at its cut's tag, with the document state as it is now.
    let later: Vec<Option<Part>> = cuts
        .iter()
        .enumerate()
        .map(|(i, &(start, _))| {
            let mut fork = Box::new(doc.fork());
            fork.input.push(chunk.slice(start..));
            let next = cuts.get(i + 1).copied();
            Some(Part {
                reader: Reader {
                    rewriter: recipe.rewriter(),
                    doc: Some(fork),
                    start,
                    origin: 0,
                    fed: start,
                    base_seen_at_cut,
                    out: Vec::new(),
                    reached: false,
                    result: Ok(()),
                },
                chunk: chunk.clone(),
                to: next.map_or(chunk.len(), |(at, _)| at),
                cut: next,
            })
        })
        .collect();
    let shared = Arc::new(Shared {
        claims: Mutex::new(Claims {
            readers: later.iter().map(|_| None).collect(),
            parts: later,
            helper_gone: helper.is_none(),
        }),
        finished: Condvar::new(),
    });
    if let Some(helper) = helper {
        let gone = HelperGone(shared.clone());
        helper.spawn_blocking(move || gone.0.work(true));
    }
    let first = Part {
        reader: Reader {
            rewriter,
            doc: Some(doc),
            start: 0,
            origin,
            fed: 0,
            base_seen_at_cut,
            out: std::mem::take(out),
            reached: false,
            result: Ok(()),
        },
        chunk: chunk.clone(),
        to: cuts[0].0,
        cut: Some(cuts[0]),
    };
    let first = first.run();
    shared.work(false);
    let later = shared.wait_for_readers();
    join(t, &chunk, cuts, first, later, out)
}

/// Puts the parts' outputs together: at each cut, the next part's output if the reader before reached it,
/// or else that reader going on through the next part itself.
fn join(
    t: &mut HtmlTransform,
    chunk: &[u8],
    cuts: &[(usize, usize)],
    first: Reader,
    later: Vec<Option<Reader>>,
    out: &mut Vec<u8>,
) -> Result<usize, RewriteError> {
    let mut live = first;
    let mut joined = 0;
    for (i, next) in later.into_iter().enumerate() {
        if live.result.is_err() {
            break;
        }
        if live.reached {
            let Some(next) = next else {
                // The helper lost the part, and the reader before handed its tag over: the rest passes.
                out.append(&mut live.out);
                out.extend_from_slice(&chunk[cuts[i].0..]);
                t.doc = live.doc;
                return Err(RewriteError::Html("split rewrite lost a part".into()));
            };
            out.append(&mut live.out);
            live = next;
            joined += 1;
            JOINED.inc();
            continue;
        }
        FELL_BACK.inc();
        out.append(&mut live.out);
        let after = cuts.get(i + 1).copied();
        live.advance(chunk, after.map_or(chunk.len(), |(at, _)| at), after);
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
