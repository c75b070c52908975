//! `Refresh` header and `<meta http-equiv=refresh>` content: `5; url=https://…` (HTML §4.2.5.3 parsing,
//! simplified: the URL is whatever follows `url=`, with optional matching quotes).

use url::Url;

use crate::url_codec::ProxyMap;

pub fn rewrite(value: &str, map: &ProxyMap, base: &Url) -> Option<String> {
    let (prefix, url, suffix) = split(value)?;
    let new = map.rewrite_reference(base, url)?;
    Some(format!("{prefix}{new}{suffix}"))
}

/// Splits `value` into the text before the URL, the URL, and a closing quote (if any).
fn split(value: &str) -> Option<(&str, &str, &str)> {
    let digits_end = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c.is_ascii_whitespace()))
        .unwrap_or(value.len());
    let rest = &value[digits_end..];
    let rest_start = digits_end + rest.len() - rest.trim_start_matches([';', ',']).len();
    let mut start = rest_start + value[rest_start..].len() - value[rest_start..].trim_start().len();
    let after = &value[start..];
    // `get`, not indexing: the value is anyone's text, and byte 3 may fall inside a character.
    if after
        .get(..3)
        .is_some_and(|p| p.eq_ignore_ascii_case("url"))
    {
        let eq = after[3..].trim_start();
        if let Some(stripped) = eq.strip_prefix('=') {
            start = value.len() - stripped.trim_start().len();
        }
    }
    if start >= value.len() {
        return None;
    }
    let quote = value[start..]
        .chars()
        .next()
        .filter(|c| *c == '"' || *c == '\'');
    if let Some(q) = quote {
        let body_start = start + 1;
        let end = value[body_start..]
            .find(q)
            .map(|i| body_start + i)
            .unwrap_or(value.len());
        return Some((&value[..body_start], &value[body_start..end], &value[end..]));
    }
    let end = value.trim_end().len();
    Some((&value[..start], &value[start..end], &value[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::url_codec::test_map as map;

    /// Found by the `header_values` fuzz target: byte 3 fell inside a two-byte character.
    #[test]
    fn a_multibyte_character_where_url_would_start_is_not_a_panic() {
        let base = Url::parse("https://www.shop.test/").unwrap();
        // A relative target needs no rewrite (same proxy origin); what matters is no panic.
        assert_eq!(rewrite("7wa\u{50c}x", &map(), &base), None);
        assert_eq!(split("7wa\u{50c}x"), Some(("7", "wa\u{50c}x", "")));
        assert_eq!(split("5;ur\u{e9}=x"), Some(("5;", "ur\u{e9}=x", "")));
    }

    #[test]
    fn refresh_forms() {
        let base = Url::parse("https://www.shop.test/").unwrap();
        let want = "http://login.shop.test.k3x9q2m7wa-s.localhost:8080/";
        for (input, expect) in [
            ("0; url=https://login.shop.test/", format!("0; url={want}")),
            (
                "5;URL='https://login.shop.test/'",
                format!("5;URL='{want}'"),
            ),
            (
                "3, url = \"https://login.shop.test/\"",
                format!("3, url = \"{want}\""),
            ),
            ("1; https://login.shop.test/", format!("1; {want}")),
            ("0;url=//login.shop.test/", format!("0;url={want}")),
        ] {
            assert_eq!(
                rewrite(input, &map(), &base).as_deref(),
                Some(expect.as_str()),
                "{input}"
            );
        }
        assert_eq!(rewrite("5", &map(), &base), None);
        assert_eq!(rewrite("0; url=/next", &map(), &base), None);
    }
}
