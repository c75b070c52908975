//! `Link` header values (RFC 8288): `<uri-reference>; param, <uri-reference>; param`.

use url::Url;

use crate::url_codec::ProxyMap;

/// Rewrites every `<…>` target; parameters (which may hold commas and quotes) are copied as they are.
pub fn rewrite(value: &str, map: &ProxyMap, base: &Url) -> Option<String> {
    let mut out = String::with_capacity(value.len() + 64);
    let mut rest = value;
    let mut changed = false;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>').map(|c| open + c) else {
            break;
        };
        out.push_str(&rest[..=open]);
        let target = &rest[open + 1..close];
        match map.rewrite_reference(base, target) {
            Some(new) => {
                out.push_str(&new);
                changed = true;
            }
            None => out.push_str(target),
        }
        rest = &rest[close..];
        // Skip to the next link-value so a '<' inside a quoted parameter is not taken for a target.
        let next = next_link_value(rest);
        out.push_str(&rest[..next]);
        rest = &rest[next..];
    }
    out.push_str(rest);
    changed.then_some(out)
}

/// Byte offset just past the comma that ends the current link-value (commas inside quotes do not count).
fn next_link_value(s: &str) -> usize {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => return i + 1,
            _ => {}
        }
    }
    s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::url_codec::test_map as map;

    #[test]
    fn absolute_targets_are_rewritten_params_kept() {
        let base = Url::parse("https://www.shop.test/").unwrap();
        let v = r#"<https://cdn.shop.test/a.css>; rel=preload; as=style, </b.js>; rel="preload, x<y"; as=script, <//cdn.shop.test/f.woff2>; rel=preload"#;
        let got = rewrite(v, &map(), &base).unwrap();
        assert_eq!(
            got,
            r#"<http://cdn.shop.test.k3x9q2m7wa-s.localhost:8080/a.css>; rel=preload; as=style, </b.js>; rel="preload, x<y"; as=script, <http://cdn.shop.test.k3x9q2m7wa-s.localhost:8080/f.woff2>; rel=preload"#
        );
        assert_eq!(rewrite("</a>; rel=next", &map(), &base), None);
    }
}
