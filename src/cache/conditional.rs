//! Validators: whether a client's conditional request is answered by a stored response with `304`
//! (RFC 9110 §13.2.2, §15.4.5), and whether an origin's `304` answers the conditional request the cache
//! sent (RFC 9111 §4.3.4). Pure functions over header maps.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use super::policy::view::parse_date;
use crate::body::{empty, ProxyBody};

/// Fields a `304` carries from the response it stands for: those a `200` would have sent that guide the
/// client's cache update, and `Last-Modified` for clients that validate on it.
const KEPT_IN_304: [header::HeaderName; 8] = [
    header::CACHE_CONTROL,
    header::CONTENT_LOCATION,
    header::DATE,
    header::ETAG,
    header::EXPIRES,
    header::VARY,
    header::LAST_MODIFIED,
    header::AGE,
];

/// True when the client's `If-None-Match` (or, without one, `If-Modified-Since`) says it already holds
/// the stored representation.
pub fn client_has_it(request: &HeaderMap, stored: &HeaderMap) -> bool {
    if request.contains_key(header::IF_NONE_MATCH) {
        let Some(etag) = text(stored, header::ETAG) else {
            return false;
        };
        return request
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .any(|tag| tag == "*" || weakly_equal(tag, etag));
    }
    let Some(since) = request.get(header::IF_MODIFIED_SINCE).and_then(parse_date) else {
        return false;
    };
    stored
        .get(header::LAST_MODIFIED)
        .or_else(|| stored.get(header::DATE))
        .and_then(parse_date)
        .is_some_and(|modified| modified <= since)
}

/// The `304` that tells the client to keep its copy of the stored response whose headers are `stored`.
pub fn not_modified(stored: &HeaderMap) -> Response<ProxyBody> {
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    let headers = response.headers_mut();
    for name in KEPT_IN_304 {
        for value in stored.get_all(&name) {
            headers.append(name.clone(), value.clone());
        }
    }
    response
}

/// Whether an origin's `304` is about the stored response. Without a validator of its own it answers
/// the validators the cache sent, which came from that response.
pub fn validates(stored: &HeaderMap, not_modified: &HeaderMap) -> bool {
    if let Some(new) = text(not_modified, header::ETAG) {
        return text(stored, header::ETAG).is_some_and(|old| weakly_equal(old, new));
    }
    match not_modified.get(header::LAST_MODIFIED).and_then(parse_date) {
        Some(new) => stored
            .get(header::LAST_MODIFIED)
            .and_then(parse_date)
            .is_some_and(|old| old == new),
        None => true,
    }
}

/// Weak comparison (RFC 9110 §8.8.3.2): the opaque tags match, whatever their weakness.
fn weakly_equal(a: &str, b: &str) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    opaque(a) == opaque(b)
}

fn text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers
        .get(name)
        .and_then(|v: &HeaderValue| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    const LM: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

    #[test]
    fn if_none_match_wins_and_compares_weakly() {
        let stored = h(&[("etag", "\"abc\""), ("last-modified", LM)]);
        assert!(client_has_it(
            &h(&[("if-none-match", "W/\"abc\"")]),
            &stored
        ));
        assert!(client_has_it(
            &h(&[("if-none-match", "\"x\", \"abc\"")]),
            &stored
        ));
        assert!(client_has_it(&h(&[("if-none-match", "*")]), &stored));
        let both = h(&[("if-none-match", "\"x\""), ("if-modified-since", LM)]);
        assert!(!client_has_it(&both, &stored), "a non-matching INM decides");
    }

    #[test]
    fn if_modified_since_uses_last_modified_then_date() {
        let stored = h(&[("last-modified", LM)]);
        assert!(client_has_it(&h(&[("if-modified-since", LM)]), &stored));
        let earlier = "Sat, 05 Nov 1994 08:49:37 GMT";
        assert!(!client_has_it(
            &h(&[("if-modified-since", earlier)]),
            &stored
        ));
        let rfc850 = "Sunday, 06-Nov-94 08:49:37 GMT";
        assert!(client_has_it(&h(&[("if-modified-since", rfc850)]), &stored));
        assert!(client_has_it(
            &h(&[("if-modified-since", LM)]),
            &h(&[("date", LM)])
        ));
        assert!(!client_has_it(
            &h(&[("if-modified-since", "junk")]),
            &stored
        ));
        assert!(!client_has_it(&h(&[]), &stored));
    }

    #[test]
    fn a_304_keeps_only_the_update_fields() {
        let stored = h(&[
            ("etag", "\"a\""),
            ("content-type", "text/css"),
            ("vary", "accept"),
        ]);
        let res = not_modified(&stored);
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(res.headers()["etag"], "\"a\"");
        assert!(res.headers().contains_key("vary"));
        assert!(!res.headers().contains_key("content-type"));
    }

    #[test]
    fn an_origin_304_validates_by_its_own_validator_or_by_ours() {
        let stored = h(&[("etag", "\"a\""), ("last-modified", LM)]);
        assert!(validates(&stored, &h(&[])), "no validator: it answers ours");
        assert!(validates(&stored, &h(&[("etag", "W/\"a\"")])));
        assert!(!validates(&stored, &h(&[("etag", "\"b\"")])));
        assert!(validates(
            &h(&[("last-modified", LM)]),
            &h(&[("last-modified", LM)])
        ));
        assert!(!validates(&h(&[]), &h(&[("etag", "\"a\"")])));
    }
}
