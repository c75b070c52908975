//! `srcset` / `imagesrcset` candidate lists (HTML §4.8.4.3.10): `url [descriptor], url [descriptor], …`.

/// Applies `f` to each candidate URL: `f` appends the URL's new form to the string it is given and
/// returns `true`, or returns `false` and leaves the URL as it is. Returns the new list when any URL
/// changed, built in one string.
pub fn rewrite(value: &str, mut f: impl FnMut(&str, &mut String) -> bool) -> Option<String> {
    let mut out = String::new();
    let mut changed = false;
    let mut rest = value;
    let mut copied_to = 0; // bytes of `value` already represented in `out`
    while !rest.is_empty() {
        let skip = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_whitespace() || c == ',')
                .len();
        rest = &rest[skip..];
        if rest.is_empty() {
            break;
        }
        let url_len = rest
            .find(|c: char| c.is_ascii_whitespace())
            .unwrap_or(rest.len());
        let mut url = &rest[..url_len];
        // A URL ending in commas ends the candidate there (no descriptors).
        let trimmed = url.trim_end_matches(',');
        let ends_candidate = trimmed.len() != url.len();
        url = trimmed;
        let start = value.len() - rest.len();
        if out.capacity() == 0 {
            // Rewritten URLs are longer; one allocation for the usual list.
            out.reserve(value.len() * 2);
        }
        // The text since the last rewritten URL goes first; it is taken back if this URL stays.
        let mark = out.len();
        out.push_str(&value[copied_to..start]);
        if f(url, &mut out) {
            copied_to = start + url.len();
            changed = true;
        } else {
            out.truncate(mark);
        }
        rest = &rest[url_len..];
        if !ends_candidate {
            rest = skip_descriptors(rest);
        }
    }
    if !changed {
        return None;
    }
    out.push_str(&value[copied_to..]);
    Some(out)
}

/// Skips descriptors up to and including the comma that ends the candidate (commas in parentheses do not).
fn skip_descriptors(s: &str) -> &str {
    let mut depth = 0u32;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => return &s[i + 1..],
            _ => {}
        }
    }
    ""
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(u: &str, out: &mut String) -> bool {
        let proxied = u.starts_with("https://");
        if proxied {
            out.push_str(&format!("P[{u}]"));
        }
        proxied
    }

    #[test]
    fn candidates() {
        assert_eq!(rewrite("a.png 1x, b.png 2x", up), None);
        assert_eq!(
            rewrite("https://c/a.png 1x, b.png 2x,https://c/d.png 480w", up).unwrap(),
            "P[https://c/a.png] 1x, b.png 2x,P[https://c/d.png] 480w"
        );
        assert_eq!(
            rewrite("https://c/a,b.png", up).unwrap(),
            "P[https://c/a,b.png]"
        );
        assert_eq!(
            rewrite("https://c/a.png,, https://c/b.png 2x", up).unwrap(),
            "P[https://c/a.png],, P[https://c/b.png] 2x"
        );
        assert_eq!(
            rewrite(" https://c/x.png (a, b) 1x , https://c/y.png", up).unwrap(),
            " P[https://c/x.png] (a, b) 1x , P[https://c/y.png]"
        );
        assert_eq!(rewrite("", up), None);
    }
}
