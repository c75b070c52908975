//! The input bytes lol_html is parsing, kept by absolute offset, so the element handler can read an
//! attribute's name and value where they lie instead of through lol_html's `name()`/`value()`, which
//! decode into a new `String` each: with every attribute of every start tag looked at, those allocations
//! cost more than the rewriting (`docs/PERFORMANCE.md`). lol_html reports positions in the original input
//! (`SourceLocation`), so a lookup is a slice. The chunks are kept as the body stream shares them, not
//! copied: copying each into one history buffer cost 3 % of the rewrite. A tag that lies across two
//! chunks, or began before the kept history, is not found here, and the caller falls back to lol_html's
//! own accessors, which are slower but give the same answers.

use std::collections::VecDeque;
use std::ops::Range;

use bytes::Bytes;

/// How much input before the newest chunk is kept at least.
const HISTORY: usize = 16 << 10;

/// How many chunks are kept at most: a trickle of tiny chunks holds no more than this many handles.
const MAX_CHUNKS: usize = 32;

/// The tail of the document input: `chunks[0]` begins at document byte `start`.
#[derive(Default)]
pub(super) struct RawInput {
    start: usize,
    chunks: VecDeque<Bytes>,
    held: usize,
}

impl RawInput {
    /// Called with each chunk before lol_html sees it.
    pub(super) fn push(&mut self, chunk: Bytes) {
        self.held += chunk.len();
        let newest = chunk.len();
        self.chunks.push_back(chunk);
        while self.chunks.len() > 1 {
            let Some(oldest) = self.chunks.front() else {
                break;
            };
            // What would still be kept before the newest chunk without the oldest.
            let older_without_it = self.held - oldest.len() - newest;
            if older_without_it < HISTORY && self.chunks.len() <= MAX_CHUNKS {
                break;
            }
            self.start += oldest.len();
            self.held -= oldest.len();
            self.chunks.pop_front();
        }
    }

    /// The document offset just past the newest chunk.
    pub(super) fn end(&self) -> usize {
        self.start + self.held
    }

    /// Document bytes `range`, if they lie within one chunk still held.
    pub(super) fn get(&self, range: Range<usize>) -> Option<&[u8]> {
        let mut chunk_end = self.start + self.held;
        // Newest first: the element being handled is almost always in the chunk just written.
        for chunk in self.chunks.iter().rev() {
            let chunk_start = chunk_end - chunk.len();
            if range.start >= chunk_start {
                let from = range.start - chunk_start;
                let to = range.end.checked_sub(chunk_start)?;
                return chunk.get(from..to);
            }
            chunk_end = chunk_start;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_recent_history_by_absolute_offset() {
        let mut input = RawInput::default();
        input.push(Bytes::from_static(b"<a href=x>"));
        assert_eq!(input.get(3..7), Some(&b"href"[..]));
        let big = Bytes::from(vec![b'.'; HISTORY + 10]);
        input.push(big.clone());
        input.push(Bytes::from_static(b"<b>"));
        // The first chunk fell out of the history; the newest is there at its document offset.
        assert_eq!(input.get(3..7), None);
        let at = 10 + big.len();
        assert_eq!(input.get(at..at + 3), Some(&b"<b>"[..]));
        assert_eq!(input.get(at..at + 4), None);
        // A range across two chunks is not found (the caller asks lol_html instead).
        assert_eq!(input.get(at - 1..at + 1), None);
        assert_eq!(input.get(at - 2..at), Some(&b".."[..]));
    }

    #[test]
    fn holds_a_bounded_number_of_tiny_chunks() {
        let mut input = RawInput::default();
        for _ in 0..1000 {
            input.push(Bytes::from_static(b"x"));
        }
        assert_eq!(input.chunks.len(), MAX_CHUNKS);
        assert_eq!(input.get(999..1000), Some(&b"x"[..]));
        assert_eq!(input.get(900..901), None);
    }
}
