//! What lol_html's output sink and handlers share with the transform that drives them, lent to the
//! thread for the length of one `write` or `end` call.
//!
//! lol_html calls the sink and every handler synchronously, inside `write` and `end`, on the caller's
//! thread; its `send` flavour only asks that they be `Send`. Sharing through `Arc<Mutex<…>>` met that,
//! but cost an atomic lock and unlock per output piece (about 2,200 for a 100 KB page) and per element:
//! 5.5 % of all the CPU in the load test's `page` profile, most of it waiting on those two instructions
//! (docs/PERFORMANCE.md, sixth pass). So the transform lends its output buffer and its document state
//! to two thread-local slots around each call, and takes them back when the call returns, or unwinds.
//! Two documents rewritten in turn on one thread never see each other's state: each call brings its
//! own and leaves the slots empty.

use std::cell::RefCell;

use super::Doc;

thread_local! {
    static OUTPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static DOC: RefCell<Option<Box<Doc>>> = const { RefCell::new(None) };
}

/// The sink lol_html writes to: whatever output buffer is lent to this thread.
pub struct Sink;

impl lol_html::OutputSink for Sink {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        OUTPUT.with_borrow_mut(|out| out.extend_from_slice(chunk));
    }
}

/// Runs `f` on the document state lent to this thread; `None` when there is none (the injection-only
/// rewrite) or it is already borrowed, which would be a handler calling back into another.
pub(super) fn with_doc<R>(f: impl FnOnce(&mut Doc) -> R) -> Option<R> {
    DOC.with(|slot| {
        let mut slot = slot.try_borrow_mut().ok()?;
        slot.as_deref_mut().map(f)
    })
}

/// Lends `out` and `doc` to this thread until the returned guard is dropped, which gives them back.
pub(super) fn lend<'a>(out: &'a mut Vec<u8>, doc: &'a mut Option<Box<Doc>>) -> Lent<'a> {
    OUTPUT.with_borrow_mut(|slot| {
        // Anything left there was written outside a lent call and belongs to no document.
        slot.clear();
        std::mem::swap(slot, out);
    });
    DOC.with_borrow_mut(|slot| *slot = doc.take());
    Lent { out, doc }
}

pub(super) struct Lent<'a> {
    out: &'a mut Vec<u8>,
    doc: &'a mut Option<Box<Doc>>,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        OUTPUT.with_borrow_mut(|slot| std::mem::swap(slot, self.out));
        DOC.with_borrow_mut(|slot| *self.doc = slot.take());
    }
}
