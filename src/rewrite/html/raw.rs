//! The input bytes lol_html is parsing, kept by absolute offset, so the element handler can read an
//! attribute's name and value where they lie instead of through lol_html's `name()`/`value()`, which
//! decode into a new `String` each: with every attribute of every start tag looked at, those allocations
//! cost more than the rewriting (`docs/PERFORMANCE.md`). lol_html reports positions in the original input
//! (`SourceLocation`), so a lookup is a slice; a tag that began before the kept history is not found and
//! the caller falls back to lol_html's own accessors.

use std::ops::Range;

/// How much input before the current chunk is kept: a start tag begun that far back (or split over
/// many tiny chunks) is read through lol_html instead, which is slower but the same.
const HISTORY: usize = 16 << 10;

/// The tail of the document input, `bytes[0]` being document byte `start`.
#[derive(Default)]
pub(super) struct RawInput {
    start: usize,
    bytes: Vec<u8>,
}

impl RawInput {
    /// Called with each chunk before lol_html sees it.
    /// The history is cut back to [`HISTORY`] only once it has grown to twice that, so the bytes kept are
    /// moved at most about once each: cutting at every chunk moved the whole history for each one, which
    /// for the small chunks a socket delivers was several times the page's own size.
    pub(super) fn push(&mut self, chunk: &[u8]) {
        if self.bytes.len() > 2 * HISTORY {
            let excess = self.bytes.len() - HISTORY;
            self.bytes.drain(..excess);
            self.start += excess;
        }
        self.bytes.extend_from_slice(chunk);
    }

    /// Document bytes `range`, if still held.
    pub(super) fn get(&self, range: Range<usize>) -> Option<&[u8]> {
        let from = range.start.checked_sub(self.start)?;
        let to = range.end.checked_sub(self.start)?;
        self.bytes.get(from..to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_recent_history_by_absolute_offset() {
        let mut input = RawInput::default();
        input.push(b"<a href=x>");
        assert_eq!(input.get(3..7), Some(&b"href"[..]));
        let big = vec![b'.'; 2 * HISTORY + 10];
        input.push(&big);
        input.push(b"<b>");
        // The first chunk fell out of the history; the newest is there at its document offset.
        assert_eq!(input.get(3..7), None);
        let at = 10 + big.len();
        assert_eq!(input.get(at..at + 3), Some(&b"<b>"[..]));
        assert_eq!(input.get(at..at + 4), None);
    }
}
