//! Worker scripts get the in-page runtime too: the proxy puts one statement in front of the script that
//! loads the runtime's worker build (`importScripts` for classic workers, `import` for module workers).
//!
//! It goes on the script's first line, so line numbers in errors stay right, and after a leading
//! `"use strict"` directive, which must stay first to keep the script strict.

use super::{RewriteError, Transform};

pub struct Prepend {
    prefix: Option<Vec<u8>>,
}

impl Prepend {
    pub fn new(prefix: String) -> Prepend {
        Prepend {
            prefix: Some(prefix.into_bytes()),
        }
    }
}

impl Transform for Prepend {
    fn write(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        match self.prefix.take() {
            Some(prefix) => {
                let at = after_use_strict(chunk);
                out.extend_from_slice(&chunk[..at]);
                out.extend_from_slice(&prefix);
                out.extend_from_slice(&chunk[at..]);
            }
            None => out.extend_from_slice(chunk),
        }
        Ok(())
    }

    fn end(&mut self, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        if let Some(prefix) = self.prefix.take() {
            out.extend_from_slice(&prefix);
        }
        Ok(())
    }
}

/// Byte offset just past a leading `"use strict"` / `'use strict'` directive (and its `;`), or 0.
fn after_use_strict(chunk: &[u8]) -> usize {
    let start = chunk.iter().take_while(|b| b.is_ascii_whitespace()).count();
    let rest = &chunk[start..];
    let directive_len = b"\"use strict\"".len();
    let is_directive = rest.len() >= directive_len
        && (rest.starts_with(b"\"use strict\"") || rest.starts_with(b"'use strict'"));
    if !is_directive {
        return 0;
    }
    let end = start + directive_len;
    if chunk.get(end) == Some(&b';') {
        end + 1
    } else {
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&str]) -> String {
        let mut t = Prepend::new("P;".into());
        let mut out = Vec::new();
        for c in chunks {
            t.write(c.as_bytes(), &mut out).unwrap();
        }
        t.end(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn prefix_goes_first_but_after_use_strict() {
        assert_eq!(run(&["a();", "b();"]), "P;a();b();");
        assert_eq!(run(&["'use strict';a();"]), "'use strict';P;a();");
        assert_eq!(
            run(&["\n \"use strict\"\na();"]),
            "\n \"use strict\"P;\na();"
        );
        assert_eq!(run(&[]), "P;");
    }
}
