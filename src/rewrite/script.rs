//! External scripts (and worker scripts) through the JavaScript rewriter (`js`). A script is parsed
//! whole, so it is held until it ends — bounded by `limit`, past which it passes through unchanged — and
//! rewritten once per distinct content: results are cached by SHA-256 of the source.
//!
//! A worker's script also gets the runtime in front of it (see `agent::worker_bootstrap`), after a
//! leading `"use strict"` directive, which must stay first to keep the script strict.

use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{js, RewriteError, Transform};

/// Rewritten scripts by content hash; `None` records "nothing to change". Bounded by bytes.
pub struct ScriptCache(moka::sync::Cache<[u8; 32], Option<Arc<str>>>);

impl ScriptCache {
    pub fn new(max_bytes: u64) -> ScriptCache {
        let weigher = |_: &[u8; 32], v: &Option<Arc<str>>| -> u32 {
            let len = v.as_ref().map_or(0, |s| s.len());
            u32::try_from(len + 64).unwrap_or(u32::MAX)
        };
        ScriptCache(
            moka::sync::Cache::builder()
                .weigher(weigher)
                .max_capacity(max_bytes)
                .build(),
        )
    }

    /// The rewritten script, or `None` when it stays as it is.
    pub fn rewrite(&self, source: &str) -> Option<Arc<str>> {
        let key: [u8; 32] = Sha256::digest(source.as_bytes()).into();
        self.0.get_with(key, || js::rewrite(source).map(Arc::from))
    }
}

pub struct ScriptTransform {
    cache: Arc<ScriptCache>,
    held: Vec<u8>,
    limit: usize,
    prefix: Option<String>,
    passing_through: bool,
}

impl ScriptTransform {
    pub fn new(cache: Arc<ScriptCache>, limit: usize, prefix: Option<String>) -> ScriptTransform {
        ScriptTransform {
            cache,
            held: Vec::new(),
            limit,
            prefix,
            passing_through: false,
        }
    }

    fn emit(&mut self, body: &[u8], out: &mut Vec<u8>) {
        match self.prefix.take() {
            Some(prefix) => {
                let at = after_use_strict(body);
                out.extend_from_slice(&body[..at]);
                out.extend_from_slice(prefix.as_bytes());
                out.extend_from_slice(&body[at..]);
            }
            None => out.extend_from_slice(body),
        }
    }
}

impl Transform for ScriptTransform {
    fn write(&mut self, chunk: Bytes, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        if self.passing_through {
            self.emit(&chunk, out);
            return Ok(());
        }
        self.held.extend_from_slice(&chunk);
        if self.held.len() > self.limit {
            // Too large to parse: what was held goes out as it is, and so does the rest.
            self.passing_through = true;
            let held = std::mem::take(&mut self.held);
            self.emit(&held, out);
            return Err(RewriteError::TooLarge { limit: self.limit });
        }
        Ok(())
    }

    fn end(&mut self, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        let held = std::mem::take(&mut self.held);
        let rewritten = std::str::from_utf8(&held)
            .ok()
            .and_then(|s| self.cache.rewrite(s));
        match rewritten {
            Some(new) => self.emit(new.as_bytes(), out),
            None => self.emit(&held, out),
        }
        Ok(())
    }
}

/// Byte offset just past a leading `"use strict"` / `'use strict'` directive (and its `;`), or 0.
fn after_use_strict(body: &[u8]) -> usize {
    let start = body.iter().take_while(|b| b.is_ascii_whitespace()).count();
    let rest = &body[start..];
    let len = b"\"use strict\"".len();
    if !(rest.starts_with(b"\"use strict\"") || rest.starts_with(b"'use strict'")) {
        return 0;
    }
    let end = start + len;
    if body.get(end) == Some(&b';') {
        end + 1
    } else {
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(prefix: Option<&str>, limit: usize, chunks: &[&str]) -> String {
        let cache = Arc::new(ScriptCache::new(1 << 20));
        let mut t = ScriptTransform::new(cache, limit, prefix.map(str::to_owned));
        let mut out = Vec::new();
        for c in chunks {
            let _ = t.write(Bytes::copy_from_slice(c.as_bytes()), &mut out);
        }
        t.end(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn scripts_are_rewritten_whole_whatever_the_chunks() {
        assert_eq!(
            run(None, 1 << 20, &["var h = loc", "ation.host;"]),
            "var h = __cbLocation.host;"
        );
        assert_eq!(run(None, 1 << 20, &["var a = 1;"]), "var a = 1;");
    }

    #[test]
    fn worker_prefix_goes_after_use_strict() {
        assert_eq!(run(Some("P;"), 1 << 20, &["a();", "b();"]), "P;a();b();");
        assert_eq!(
            run(Some("P;"), 1 << 20, &["'use strict';a();"]),
            "'use strict';P;a();"
        );
        assert_eq!(
            run(Some("P;"), 1 << 20, &["\n \"use strict\"\na();"]),
            "\n \"use strict\"P;\na();"
        );
        assert_eq!(run(Some("P;"), 1 << 20, &[]), "P;");
    }

    #[test]
    fn oversized_scripts_pass_through_unchanged() {
        let out = run(None, 8, &["location.x;", "location.y;"]);
        assert_eq!(out, "location.x;location.y;");
    }
}
