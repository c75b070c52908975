//! The request and response as the rules read them. `http-cache-semantics` matches directive names
//! case-sensitively, parses `Age` as a whole number only, reads dates with a lenient RFC 2822 parser (so an
//! invalid `Expires` can look valid and an RFC 850 or asctime one looks invalid), and stores only the
//! status codes it lists. The views below fix the inputs instead of forking the crate; what is stored and
//! served stays the origin's own bytes.

use std::time::SystemTime;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{response, StatusCode};

use super::has_directive;

/// Statuses whose caching rules the crate implements; anything else it refuses to store.
const UNDERSTOOD: [u16; 14] = [
    200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501,
];

/// The response the rules see: normalised headers, and a final status the crate does not list stood in
/// for by 200 when the origin made it storable explicitly (RFC 9111 §3: explicit freshness or `public`
/// allows storing any final status). Partial (206) and 304 responses are never stood in for.
pub fn response(res: &response::Parts) -> response::Parts {
    let mut view = res.clone();
    normalise(&mut view.headers);
    if must_understand_allows(res.status, &view.headers) {
        drop_directive(&mut view.headers, "no-store");
    }
    if stands_in(view.status, &view.headers) {
        view.status = StatusCode::OK;
    }
    view
}

/// `must-understand` lets a cache that knows the status code ignore `no-store` (RFC 9111 §5.2.2.3).
pub fn must_understand_allows(status: StatusCode, headers: &HeaderMap) -> bool {
    has_directive(headers, "must-understand") && UNDERSTOOD.contains(&status.as_u16())
}

fn stands_in(status: StatusCode, headers: &HeaderMap) -> bool {
    let code = status.as_u16();
    let final_status = (200..600).contains(&code) && code != 206 && code != 304;
    let explicit = ["max-age", "s-maxage", "public"]
        .iter()
        .any(|d| has_directive(headers, d))
        || headers.contains_key(header::EXPIRES);
    final_status && !UNDERSTOOD.contains(&code) && explicit
}

/// Request and response fields the rules read, in the one form the crate understands.
pub fn normalise(headers: &mut HeaderMap) {
    lowercase_directive_names(headers, header::CACHE_CONTROL);
    lowercase_directive_names(headers, header::PRAGMA);
    first_age(headers);
    for name in [header::EXPIRES, header::DATE, header::LAST_MODIFIED] {
        canonical_date(headers, name);
    }
}

/// Directive names are case-insensitive (RFC 9111 §5.2); values are left as they are.
fn lowercase_directive_names(headers: &mut HeaderMap, name: HeaderName) {
    let values: Vec<HeaderValue> = headers
        .get_all(&name)
        .iter()
        .map(|v| match v.to_str() {
            Ok(s) => HeaderValue::from_str(&lowercase_names(s)).unwrap_or_else(|_| v.clone()),
            Err(_) => v.clone(),
        })
        .collect();
    if values.is_empty() {
        return;
    }
    headers.remove(&name);
    for v in values {
        headers.append(&name, v);
    }
}

fn lowercase_names(list: &str) -> String {
    list.split(',')
        .map(|part| match part.split_once('=') {
            Some((k, v)) => format!("{}={v}", k.to_ascii_lowercase()),
            None => part.to_ascii_lowercase(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `Age: 7200, 0` is one field line holding a list: the first member counts (RFC 9111 §5.1 allows a
/// recipient to use the first value), an invalid one is ignored.
fn first_age(headers: &mut HeaderMap) {
    let first = headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .map(|v| v.trim_start_matches('0'))
        .map(|v| if v.is_empty() { "0" } else { v })
        .and_then(|v| HeaderValue::from_str(v).ok());
    headers.remove(header::AGE);
    if let Some(age) = first {
        headers.insert(header::AGE, age);
    }
}

/// An HTTP-date in any of its three formats becomes IMF-fixdate; one that is not an HTTP-date is
/// treated as RFC 9111 says: an invalid `Expires` (or several of them) is "already expired", an invalid
/// `Date` or `Last-Modified` is ignored.
fn canonical_date(headers: &mut HeaderMap, name: HeaderName) {
    let mut values = headers.get_all(&name).iter();
    let (Some(first), more) = (values.next(), values.next().is_some()) else {
        return;
    };
    let parsed = (!more).then(|| parse_date(first)).flatten();
    headers.remove(&name);
    match parsed {
        Some(t) => {
            if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(t)) {
                headers.insert(name, v);
            }
        }
        None if name == header::EXPIRES => {
            headers.insert(name, HeaderValue::from_static("0"));
        }
        None => {}
    }
}

pub fn parse_date(value: &HeaderValue) -> Option<SystemTime> {
    httpdate::parse_http_date(value.to_str().ok()?.trim()).ok()
}

/// Removes one directive from `Cache-Control`, keeping the others.
fn drop_directive(headers: &mut HeaderMap, directive: &str) {
    let kept: Vec<String> = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|d| {
            let name = d.split('=').next().unwrap_or_default().trim();
            !name.eq_ignore_ascii_case(directive)
        })
        .map(str::to_owned)
        .collect();
    headers.remove(header::CACHE_CONTROL);
    if let Ok(v) = HeaderValue::from_str(&kept.join(", ")) {
        headers.insert(header::CACHE_CONTROL, v);
    }
}

/// The value of a selecting header as `Vary` matching compares it: whitespace carries no meaning, and
/// language tags are case-insensitive and unordered (RFC 9111 §4.1 allows such normalisation).
pub fn selecting_value(name: &str, value: &HeaderValue) -> HeaderValue {
    let Ok(s) = value.to_str() else {
        return value.clone();
    };
    let compact: String = s.chars().filter(|c| !matches!(c, ' ' | '\t')).collect();
    let normal = if name.eq_ignore_ascii_case("accept-language") {
        let mut tags: Vec<String> = compact
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        tags.sort();
        tags.join(",")
    } else {
        compact
    };
    HeaderValue::from_str(&normal).unwrap_or_else(|_| value.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn normalised(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = headers(pairs);
        normalise(&mut h);
        h
    }

    #[test]
    fn directive_names_are_lowercased_values_kept() {
        let h = normalised(&[("cache-control", "MaX-AgE=60, No-CaChE, X=\"AbC\"")]);
        assert_eq!(h["cache-control"], "max-age=60, no-cache, x=\"AbC\"");
    }

    #[test]
    fn age_keeps_its_first_valid_member_only() {
        assert_eq!(normalised(&[("age", "7200, 0")])["age"], "7200");
        assert_eq!(normalised(&[("age", "007")])["age"], "7");
        assert!(!normalised(&[("age", "abc")]).contains_key("age"));
        assert!(!normalised(&[("age", "-5")]).contains_key("age"));
    }

    #[test]
    fn dates_in_all_three_formats_become_imf_and_invalid_expires_is_past() {
        let imf = "Sun, 06 Nov 1994 08:49:37 GMT";
        for form in [
            imf,
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(normalised(&[("expires", form)])["expires"], imf, "{form}");
        }
        let bad = normalised(&[("expires", "Thu, 18  Aug  2050 02:01:18 GMT")]);
        assert_eq!(bad["expires"], "0");
        let two = normalised(&[("expires", imf), ("expires", imf)]);
        assert_eq!(two["expires"], "0");
        assert!(!normalised(&[("date", "yesterday")]).contains_key("date"));
    }

    #[test]
    fn unlisted_statuses_stand_in_only_when_made_storable_explicitly() {
        let mut res = http::Response::new(()).into_parts().0;
        res.status = StatusCode::from_u16(599).unwrap();
        res.headers = headers(&[("cache-control", "max-age=60")]);
        assert_eq!(response(&res).status, StatusCode::OK);
        res.headers = headers(&[]);
        assert_eq!(response(&res).status.as_u16(), 599);
        res.status = StatusCode::PARTIAL_CONTENT;
        res.headers = headers(&[("cache-control", "max-age=60")]);
        assert_eq!(response(&res).status, StatusCode::PARTIAL_CONTENT);
    }

    #[test]
    fn must_understand_lifts_no_store_for_known_statuses_only() {
        let mut res = http::Response::new(()).into_parts().0;
        res.headers = headers(&[("cache-control", "no-store, must-understand, max-age=60")]);
        let view = response(&res);
        assert!(!has_directive(&view.headers, "no-store"));
        res.status = StatusCode::from_u16(599).unwrap();
        assert!(has_directive(&response(&res).headers, "no-store"));
    }

    #[test]
    fn selecting_values_ignore_space_and_language_case_and_order() {
        let a = selecting_value("accept-language", &HeaderValue::from_static("en-US, fr"));
        let b = selecting_value("accept-language", &HeaderValue::from_static("FR,en-us"));
        assert_eq!(a, b);
        let c = selecting_value("foo", &HeaderValue::from_static("a, b"));
        assert_eq!(c, "a,b");
    }
}
