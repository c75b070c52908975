//! URL references in CSS: `url()`, `src()`, `image-set()` / `-webkit-image-set()` and `@import`.
//!
//! This module owns finding those references in a stylesheet (streamed, or a whole `<style>` text or
//! `style=""` value) and swapping each one that names another origin for its proxied form, as decided by
//! [`ProxyMap::rewrite_reference`]. Every other byte comes out exactly as it came in: comments, strings that
//! are not URLs, bad-url tokens, odd whitespace, even bytes that are not UTF-8. `@namespace` URLs are names,
//! not references, and are left alone.
//!
//! # How references are found
//!
//! The text is tokenized with `cssparser` (Firefox's tokenizer, which follows CSS Syntax Level 3 as every
//! browser does), so escapes are decoded before a URL is judged: `url(https\:\/\/evil.test/)` is seen as
//! the absolute URL it is. The token stream is walked flat: after each block-opening token the parser is
//! restarted just past it, and this module keeps its own stack of open blocks. A nested `Parser` per block
//! would recurse once per nesting level, and a hostile `((((…` stylesheet would then overflow the stack.
//!
//! # Why streaming is correct
//!
//! CSS tokenization is context-free: the tokens after any token boundary are the same whether the text
//! before it is there or not. A boundary is final once more input cannot move it; the tokenizer peeks at
//! most `LOOKAHEAD` (3) bytes past a token's end to decide where it ends (`<!--`), so every boundary at
//! least that far from the end of the buffer is final. Each `write` therefore emits up to the last such boundary
//! and carries the rest, which is re-tokenized with the next chunk. The only context a URL needs is the
//! construct around it (`url(` before its string, `@import` before its target, `image-set(` around its
//! strings, `@namespace` up to its `;`), so the cut is moved back to the start of any construct it would
//! split. Whatever follows the cut thus tokenizes, and is rewritten, exactly as it would be in the whole
//! stylesheet. Holding back more than needed is always safe, only later; so while the buffer ends inside
//! an unterminated comment, string or `url(` and a new chunk has no byte that could end it, the chunk is
//! just appended, which keeps a long `data:` URL linear instead of re-tokenized once per chunk.
//!
//! Stylesheets that are not UTF-8 are tokenized through a shadow copy in which every non-ASCII byte is an
//! ASCII letter: CSS syntax is all ASCII and the tokenizer treats any non-ASCII code point like a letter,
//! so token boundaries are unchanged and replacements are spliced into the original bytes.

use std::borrow::Cow;
use std::ops::Range;

use cssparser::{Parser, ParserInput, Token};
use url::Url;

use crate::url_codec::ProxyMap;

/// How far past a token's end the tokenizer may look to decide that the token ends there: after `<` it
/// checks for `<!--`, three bytes on. A boundary this far from the end of the buffer cannot move.
const LOOKAHEAD: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum CssError {
    /// A token or URL construct that must be seen whole (an unterminated comment, a huge `data:` URL …)
    /// would make the rewriter hold back more than its cap.
    #[error("CSS rewriter would hold back more than {limit} bytes")]
    CarryTooLarge { limit: usize },
}

/// Streaming CSS rewriter for one stylesheet response.
pub struct CssRewriter {
    map: ProxyMap,
    base: Url,
    max_carry: usize,
    /// The tail of the input whose tokens are not final yet.
    carry: Vec<u8>,
    scanner: Scanner,
    /// The carry ends inside this unterminated token: chunks that cannot end it need no new scan.
    stall: Option<Stall>,
    /// Set once the carry cap was hit: from then on input is copied unchanged.
    passthrough: bool,
}

impl CssRewriter {
    /// `base`: the stylesheet's own target URL (what relative URLs resolve against).
    /// `max_carry`: cap on bytes held back between chunks.
    pub fn new(map: ProxyMap, base: Url, max_carry: usize) -> CssRewriter {
        CssRewriter {
            map,
            base,
            max_carry,
            carry: Vec::new(),
            scanner: Scanner::default(),
            stall: None,
            passthrough: false,
        }
    }

    /// Feeds the next chunk of the (already decompressed) stylesheet and appends whatever output is ready.
    ///
    /// On [`CssError::CarryTooLarge`] the held-back bytes have already been appended to `out` unchanged,
    /// so every input byte still reaches `out` exactly once; the rest of the stylesheet should be passed
    /// through unchanged (further calls to `write` do just that).
    pub fn write(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), CssError> {
        if self.passthrough {
            out.extend_from_slice(chunk);
            return Ok(());
        }
        if self.stall.is_some_and(|stall| !stall.may_end_in(chunk)) {
            // Scanning again would only find the same token longer: a long `data:` URL or comment
            // would otherwise be re-tokenized once per chunk, quadratic in its length.
            self.carry.extend_from_slice(chunk);
        } else {
            self.scan_and_emit(chunk, out);
        }
        if self.carry.len() > self.max_carry {
            out.append(&mut self.carry);
            self.carry = Vec::new();
            self.passthrough = true;
            return Err(CssError::CarryTooLarge {
                limit: self.max_carry,
            });
        }
        Ok(())
    }

    /// Scans the carry and `chunk` together, emits what is final and keeps the rest as the new carry.
    fn scan_and_emit(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let env = Env {
            map: &self.map,
            base: &self.base,
        };
        if self.carry.is_empty() {
            // Nothing held back: tokenize the chunk where it lies instead of copying it first.
            let cut = self.scanner.scan(env, chunk, false);
            self.scanner.emit(chunk, cut, out);
            self.carry
                .extend_from_slice(chunk.get(cut..).unwrap_or_default());
        } else {
            self.carry.extend_from_slice(chunk);
            let cut = self.scanner.scan(env, &self.carry, false);
            self.scanner.emit(&self.carry, cut, out);
            self.carry.drain(..cut);
        }
        self.stall = self.scanner.stall;
    }

    /// End of input: rewrites and appends everything held back.
    pub fn end(mut self, out: &mut Vec<u8>) -> Result<(), CssError> {
        if self.passthrough {
            return Ok(());
        }
        let env = Env {
            map: &self.map,
            base: &self.base,
        };
        let cut = self.scanner.scan(env, &self.carry, true);
        self.scanner.emit(&self.carry, cut, out);
        Ok(())
    }
}

/// Rewrites a whole stylesheet, `<style>` text or `style=""` value; borrows `css` when nothing changes.
pub fn rewrite_css_str<'a>(map: &ProxyMap, base: &Url, css: &'a str) -> Cow<'a, str> {
    let mut scanner = Scanner::default();
    let cut = scanner.scan(Env { map, base }, css.as_bytes(), true);
    if scanner.edits.is_empty() {
        return Cow::Borrowed(css);
    }
    let mut out = Vec::with_capacity(css.len() + scanner.replacements.len());
    scanner.emit(css.as_bytes(), cut, &mut out);
    // Replacements are whole tokens swapped for UTF-8 text, so the result is UTF-8 too.
    String::from_utf8(out).map_or(Cow::Borrowed(css), Cow::Owned)
}

#[derive(Clone, Copy)]
struct Env<'m> {
    map: &'m ProxyMap,
    base: &'m Url,
}

/// One replacement: the input bytes `span` become `text` (a range of `Scanner::replacements`).
struct Edit {
    span: Range<usize>,
    text: Range<usize>,
}

/// A URL construct: from its first token to the end of the token that settles it (`usize::MAX` while
/// unsettled). The cut between chunks must not fall strictly inside one.
struct Construct {
    start: usize,
    end: usize,
}

/// Tokenizes one buffer and records the edits; its vectors are kept so steady-state scans allocate
/// nothing unless a URL is actually rewritten.
#[derive(Default)]
struct Scanner {
    edits: Vec<Edit>,
    /// All replacement texts of this scan, back to back, so a rewrite costs no allocation of its own.
    replacements: String,
    constructs: Vec<Construct>,
    /// The closing byte of every open block, innermost last.
    blocks: Vec<u8>,
    /// Open `image-set(`s: the block depth just inside each, and its construct.
    image_sets: Vec<(usize, usize)>,
    /// A `url(`/`src(`/`@import` whose next significant token is its URL if it is a string.
    pending: Option<usize>,
    /// An `@namespace` rule up to its `;`: its URL is a name, not a reference.
    namespace: Option<usize>,
    /// The last token, when it runs unterminated to the end of the buffer.
    stall: Option<Stall>,
    /// Non-UTF-8 input is tokenized through this ASCII copy.
    shadow: String,
    shadowed: bool,
}

impl Scanner {
    /// Tokenizes `raw` and returns the cut: the output is final up to there. `at_end`: no more input.
    fn scan(&mut self, env: Env<'_>, raw: &[u8], at_end: bool) -> usize {
        self.edits.clear();
        self.replacements.clear();
        self.constructs.clear();
        self.blocks.clear();
        self.image_sets.clear();
        self.pending = None;
        self.namespace = None;
        self.stall = None;
        let mut shadow = std::mem::take(&mut self.shadow);
        let (text, shadowed) = source_text(raw, at_end, &mut shadow);
        self.shadowed = shadowed;
        let final_boundary = self.walk(env, text, raw, at_end);
        self.shadow = shadow;
        if at_end {
            raw.len()
        } else {
            self.settle_cut(final_boundary)
        }
    }

    /// Feeds every token to `on_token`; returns the last token start that more input cannot move.
    fn walk(&mut self, env: Env<'_>, text: &str, raw: &[u8], at_end: bool) -> usize {
        let limit = if at_end {
            text.len()
        } else {
            text.len().saturating_sub(LOOKAHEAD)
        };
        let mut final_boundary = 0;
        let mut offset = 0;
        // A parser skips a block's contents unless asked to nest into it, so it is restarted past each
        // opening token instead: tokenization does not depend on what came before.
        while let Some(rest) = text.get(offset..) {
            let mut input = ParserInput::new(rest);
            let mut parser = Parser::new(&mut input);
            let resume = loop {
                let start = offset + parser.position().byte_index();
                let Ok(token) = parser.next_including_whitespace_and_comments() else {
                    break None;
                };
                let token = token.clone();
                let end = offset + parser.position().byte_index();
                if start <= limit {
                    final_boundary = start;
                }
                if end == text.len() {
                    self.stall =
                        Stall::of(&token, text.as_bytes().get(start..).unwrap_or_default());
                }
                self.on_token(env, &token, start..end, raw);
                if is_block_opener(&token) {
                    break Some(end);
                }
            };
            match resume {
                Some(next) => offset = next,
                None => break,
            }
        }
        final_boundary
    }

    /// Moves the cut back to the start of any URL construct it would split.
    fn settle_cut(&self, mut cut: usize) -> usize {
        // Constructs are in start order and nest or follow one another, so one backward pass suffices.
        for construct in self.constructs.iter().rev() {
            if construct.start < cut && cut < construct.end {
                cut = construct.start;
            }
        }
        cut
    }

    fn on_token(&mut self, env: Env<'_>, token: &Token<'_>, span: Range<usize>, raw: &[u8]) {
        if matches!(token, Token::WhiteSpace(_) | Token::Comment(_)) {
            return;
        }
        if let Some(index) = self.namespace {
            // A namespace is a name, never fetched: proxying it would break the selectors that use it.
            if matches!(
                token,
                Token::Semicolon | Token::CurlyBracketBlock | Token::CloseCurlyBracket
            ) {
                self.namespace = None;
                self.settle(index, span.end);
            }
            self.track_block(token, span.end);
            return;
        }
        if let Some(index) = self.pending.take() {
            self.settle(index, span.end);
            if let Token::QuotedString(value) = token {
                self.rewrite(env, value, span, raw, Form::String);
                return;
            }
        }
        match token {
            Token::UnquotedUrl(value) => self.rewrite(env, value, span, raw, Form::UrlToken),
            Token::QuotedString(value) if self.in_image_set() => {
                self.rewrite(env, value, span, raw, Form::String);
            }
            Token::Function(name) => {
                self.track_block(token, span.end);
                self.open_function(name, span.start);
            }
            Token::AtKeyword(name) if name.eq_ignore_ascii_case("import") => {
                self.pending = Some(self.open_construct(span.start));
            }
            Token::AtKeyword(name) if name.eq_ignore_ascii_case("namespace") => {
                self.namespace = Some(self.open_construct(span.start));
            }
            _ => self.track_block(token, span.end),
        }
    }

    /// Keeps the stack of open blocks in step with an opening or closing token.
    fn track_block(&mut self, token: &Token<'_>, end: usize) {
        match token {
            Token::Function(_) | Token::ParenthesisBlock => self.blocks.push(b')'),
            Token::SquareBracketBlock => self.blocks.push(b']'),
            Token::CurlyBracketBlock => self.blocks.push(b'}'),
            Token::CloseParenthesis => self.close(b')', end),
            Token::CloseSquareBracket => self.close(b']', end),
            Token::CloseCurlyBracket => self.close(b'}', end),
            _ => {}
        }
    }

    /// Called just after the function's block was opened.
    fn open_function(&mut self, name: &str, start: usize) {
        if name.eq_ignore_ascii_case("url") || name.eq_ignore_ascii_case("src") {
            self.pending = Some(self.open_construct(start));
        } else if name.eq_ignore_ascii_case("image-set")
            || name.eq_ignore_ascii_case("-webkit-image-set")
        {
            let index = self.open_construct(start);
            self.image_sets.push((self.blocks.len(), index));
        }
    }

    fn close(&mut self, closer: u8, end: usize) {
        // A closer that does not match the innermost block is an ordinary token, as in browsers.
        if self.blocks.last() != Some(&closer) {
            return;
        }
        if let Some(&(depth, index)) = self.image_sets.last() {
            if depth == self.blocks.len() {
                self.image_sets.pop();
                self.settle(index, end);
            }
        }
        self.blocks.pop();
    }

    /// Whether a string token here is a direct argument of `image-set(`, hence an image URL.
    fn in_image_set(&self) -> bool {
        self.image_sets
            .last()
            .is_some_and(|&(depth, _)| depth == self.blocks.len())
    }

    fn open_construct(&mut self, start: usize) -> usize {
        self.constructs.push(Construct {
            start,
            end: usize::MAX,
        });
        self.constructs.len() - 1
    }

    fn settle(&mut self, index: usize, end: usize) {
        if let Some(construct) = self.constructs.get_mut(index) {
            construct.end = end;
        }
    }

    /// Records the replacement of the token at `span` when its URL `value` needs one.
    fn rewrite(&mut self, env: Env<'_>, value: &str, span: Range<usize>, raw: &[u8], form: Form) {
        let value = match raw.get(span.clone()) {
            Some(original) if self.shadowed && !original.is_ascii() => {
                match value_from_original(original) {
                    Some(v) => Cow::Owned(v),
                    None => return,
                }
            }
            _ => Cow::Borrowed(value),
        };
        let Some(new_url) = env.map.rewrite_reference(env.base, &value) else {
            return;
        };
        let mark = self.replacements.len();
        let written = match form {
            Form::String => cssparser::serialize_string(&new_url, &mut self.replacements),
            Form::UrlToken => {
                self.replacements.push_str("url(");
                let result = cssparser::serialize_string(&new_url, &mut self.replacements);
                self.replacements.push(')');
                result
            }
        };
        if written.is_err() {
            self.replacements.truncate(mark);
            return;
        }
        let text = mark..self.replacements.len();
        self.edits.push(Edit { span, text });
    }

    /// Appends `raw[..cut]` to `out` with the edits that lie before `cut` applied.
    fn emit(&self, raw: &[u8], cut: usize, out: &mut Vec<u8>) {
        let mut at = 0;
        for edit in self.edits.iter().take_while(|e| e.span.end <= cut) {
            out.extend_from_slice(raw.get(at..edit.span.start).unwrap_or_default());
            let text = self.replacements.get(edit.text.clone()).unwrap_or_default();
            out.extend_from_slice(text.as_bytes());
            at = edit.span.end;
        }
        out.extend_from_slice(raw.get(at..cut).unwrap_or_default());
    }
}

/// How a rewritten URL is written back: as a string token, or (for an unquoted `url(…)` token, which
/// cannot hold every URL) as a whole `url("…")`.
#[derive(Clone, Copy)]
enum Form {
    String,
    UrlToken,
}

/// An unterminated token at the end of the buffer, by what could end it.
#[derive(Clone, Copy)]
enum Stall {
    /// Ends only at a `/` (of `*/`).
    Comment,
    /// Ends only at its quote or a newline (a bad string).
    String(u8),
    /// An unquoted `url(` (or bad url) with its value begun: every way it ends is a `)`.
    Url,
}

impl Stall {
    /// The stall state of `token`, whose source `text` runs to the end of the buffer.
    fn of(token: &Token<'_>, text: &[u8]) -> Option<Stall> {
        let stall = match token {
            Token::Comment(_) => Stall::Comment,
            Token::QuotedString(_) => Stall::String(*text.first()?),
            // `url(` and blanks only may still become a function followed by a string.
            Token::UnquotedUrl(_) | Token::BadUrl(_) if !url_value_begun(text) => return None,
            Token::UnquotedUrl(_) | Token::BadUrl(_) => Stall::Url,
            _ => return None,
        };
        let terminated = match stall {
            Stall::Comment => text.len() >= 4 && text.ends_with(b"*/"),
            Stall::String(quote) => text.len() >= 2 && ends_unescaped(text, quote),
            Stall::Url => ends_unescaped(text, b')'),
        };
        (!terminated).then_some(stall)
    }

    /// Whether `chunk` holds a byte that could end the token (a necessary condition only).
    fn may_end_in(self, chunk: &[u8]) -> bool {
        match self {
            Stall::Comment => memchr::memchr(b'/', chunk).is_some(),
            Stall::String(quote) => {
                memchr::memchr3(quote, b'\n', b'\r', chunk).is_some()
                    || memchr::memchr(b'\x0C', chunk).is_some()
            }
            Stall::Url => memchr::memchr(b')', chunk).is_some(),
        }
    }
}

/// Whether `text` ends with `end` that no backslash escapes.
fn ends_unescaped(text: &[u8], end: u8) -> bool {
    let Some((&last, rest)) = text.split_last() else {
        return false;
    };
    let backslashes = rest.iter().rev().take_while(|&&b| b == b'\\').count();
    last == end && backslashes % 2 == 0
}

/// Whether an unquoted url token's source has anything but blanks after its `(`.
fn url_value_begun(text: &[u8]) -> bool {
    let after_paren = memchr::memchr(b'(', text).map_or(text.len(), |i| i + 1);
    text.get(after_paren..)
        .unwrap_or_default()
        .iter()
        .any(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0C'))
}

fn is_block_opener(token: &Token<'_>) -> bool {
    matches!(
        token,
        Token::Function(_)
            | Token::ParenthesisBlock
            | Token::SquareBracketBlock
            | Token::CurlyBracketBlock
    )
}

/// The text to tokenize: `raw` itself when it is UTF-8 (less an incomplete code point at its end, which the
/// next chunk completes), else an ASCII shadow of it with the same byte offsets.
fn source_text<'a>(raw: &'a [u8], at_end: bool, shadow: &'a mut String) -> (&'a str, bool) {
    let error = match std::str::from_utf8(raw) {
        Ok(text) => return (text, false),
        Err(error) => error,
    };
    if error.error_len().is_none() && !at_end {
        let valid = raw.get(..error.valid_up_to()).unwrap_or_default();
        if let Ok(text) = std::str::from_utf8(valid) {
            return (text, false);
        }
    }
    shadow.clear();
    shadow.extend(
        raw.iter()
            .map(|&b| if b.is_ascii() { char::from(b) } else { 'a' }),
    );
    let shadow: &'a String = shadow;
    (shadow.as_str(), true)
}

/// The unescaped value of a string or url token whose bytes are not all ASCII in a non-UTF-8 buffer. The
/// token's own bytes are read as UTF-8 when they are, else as Latin-1, so the value never depends on how
/// the rest of the buffer happened to be encoded (or chunked).
fn value_from_original(original: &[u8]) -> Option<String> {
    let decoded: Cow<'_, str> = match std::str::from_utf8(original) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => Cow::Owned(original.iter().map(|&b| char::from(b)).collect()),
    };
    let mut input = ParserInput::new(&decoded);
    let mut parser = Parser::new(&mut input);
    let value = match parser.next_including_whitespace_and_comments() {
        Ok(Token::QuotedString(value) | Token::UnquotedUrl(value)) => Some(value.to_string()),
        _ => None,
    };
    value
}

#[cfg(test)]
#[path = "css/tests.rs"]
mod tests;
