use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, Request, Response};
use http_cache_semantics::BeforeRequest;

use super::*;

const URL: &str = "https://cdn.shop.test/a.css";

fn req(method: Method, headers: &[(&str, &str)]) -> request::Parts {
    let mut b = Request::builder().method(method).uri(URL);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn res(status: u16, headers: &[(&str, &str)]) -> response::Parts {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn http_date(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let f = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.format(&f).unwrap()
}

fn get() -> request::Parts {
    req(Method::GET, &[])
}

fn refusal(r: &request::Parts, s: &response::Parts) -> Refusal {
    admit(r, s, SystemTime::now()).unwrap_err()
}

#[test]
fn public_max_age_is_stored_with_its_lifetime() {
    let now = SystemTime::now();
    let p = admit(&get(), &res(200, &[("cache-control", "max-age=60")]), now).unwrap();
    assert_eq!(p.time_to_live(now), Duration::from_secs(60));
}

#[test]
fn private_no_store_cookies_and_credentials_are_refused() {
    let g = get();
    assert_eq!(
        refusal(&g, &res(200, &[("cache-control", "private, max-age=60")])),
        Refusal::Private
    );
    assert_eq!(
        refusal(&g, &res(200, &[("cache-control", "no-store")])),
        Refusal::NoStore
    );
    let asks_no_store = req(Method::GET, &[("cache-control", "no-store")]);
    assert_eq!(
        refusal(
            &asks_no_store,
            &res(200, &[("cache-control", "max-age=60")])
        ),
        Refusal::NoStore
    );
    let cookie = res(
        200,
        &[
            ("cache-control", "public, max-age=60"),
            ("set-cookie", "a=1"),
        ],
    );
    assert_eq!(refusal(&g, &cookie), Refusal::SetCookie);
    // Stricter than RFC 9111 §3.5: even `public` does not make an authorized response shared.
    let auth = req(Method::GET, &[("authorization", "Bearer x")]);
    assert_eq!(
        refusal(&auth, &res(200, &[("cache-control", "public, max-age=60")])),
        Refusal::Authorization
    );
}

#[test]
fn vary_star_and_vary_on_credentials_are_refused() {
    let g = get();
    assert_eq!(
        refusal(
            &g,
            &res(
                200,
                &[("cache-control", "max-age=60"), ("vary", "Accept, *")]
            )
        ),
        Refusal::VaryStar
    );
    assert_eq!(
        refusal(
            &g,
            &res(200, &[("cache-control", "max-age=60"), ("vary", "Cookie")])
        ),
        Refusal::VaryCredential
    );
}

#[test]
fn only_get_and_understood_statuses_are_stored() {
    let ok = res(200, &[("cache-control", "max-age=60")]);
    assert_eq!(refusal(&req(Method::POST, &[]), &ok), Refusal::Method);
    assert_eq!(refusal(&req(Method::HEAD, &[]), &ok), Refusal::Method);
    assert_eq!(
        refusal(&get(), &res(206, &[("cache-control", "max-age=60")])),
        Refusal::Rules
    );
    assert_eq!(refusal(&get(), &res(500, &[])), Refusal::Rules);
    assert_eq!(
        refusal(&get(), &res(200, &[])),
        Refusal::Useless,
        "no freshness, no validator"
    );
    // 302 is not cacheable by default: only with explicit freshness.
    assert_eq!(refusal(&get(), &res(302, &[])), Refusal::Rules);
    assert!(admit(
        &get(),
        &res(302, &[("cache-control", "max-age=5")]),
        SystemTime::now()
    )
    .is_ok());
}

#[test]
fn heuristic_freshness_only_for_default_cacheable_statuses_and_never_with_cookies() {
    let now = SystemTime::now();
    let ten_days = now - Duration::from_secs(10 * 86400);
    let headers = [
        ("date", http_date(now)),
        ("last-modified", http_date(ten_days)),
    ];
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let p = admit(&get(), &res(200, &h), now).unwrap();
    let ttl = p.time_to_live(now).as_secs();
    assert!((86_000..=86_400).contains(&ttl), "10% of ten days: {ttl}");
    let with_cookie = req(Method::GET, &[("cookie", "sid=1")]);
    assert_eq!(
        refusal(&with_cookie, &res(200, &h)),
        Refusal::CookieWithoutExplicit
    );
    assert!(admit(
        &with_cookie,
        &res(200, &[("cache-control", "max-age=60")]),
        now
    )
    .is_ok());
    // A 302 gets no heuristic lifetime, so it is not stored at all.
    assert_eq!(refusal(&get(), &res(302, &h)), Refusal::Rules);
}

#[test]
fn s_maxage_beats_max_age_and_expires_and_age_count() {
    let now = SystemTime::now();
    let p = admit(
        &get(),
        &res(200, &[("cache-control", "max-age=10, s-maxage=300")]),
        now,
    )
    .unwrap();
    assert_eq!(p.time_to_live(now), Duration::from_secs(300));
    let p = admit(
        &get(),
        &res(200, &[("cache-control", "max-age=100"), ("age", "40")]),
        now,
    )
    .unwrap();
    assert_eq!(p.time_to_live(now), Duration::from_secs(60));
    assert_eq!(p.age(now + Duration::from_secs(5)), Duration::from_secs(45));
    let expires = [
        ("date", http_date(now)),
        ("expires", http_date(now + Duration::from_secs(120))),
    ];
    let h: Vec<(&str, &str)> = expires.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let p = admit(&get(), &res(200, &h), now).unwrap();
    assert_eq!(p.time_to_live(now), Duration::from_secs(120));
    let p = admit(
        &get(),
        &res(200, &[("expires", "0"), ("etag", "\"e\"")]),
        now,
    )
    .unwrap();
    assert_eq!(
        p.time_to_live(now),
        Duration::ZERO,
        "an invalid Expires is already expired"
    );
}

#[test]
fn no_cache_is_stored_but_never_fresh() {
    let now = SystemTime::now();
    let p = admit(
        &get(),
        &res(200, &[("cache-control", "no-cache"), ("etag", "\"v1\"")]),
        now,
    )
    .unwrap();
    assert!(p.is_stale(now));
    assert_eq!(
        stale_windows(&res(200, &[("cache-control", "no-cache, stale-if-error=60")]).headers),
        StaleWindows::default()
    );
}

#[test]
fn vary_matching_uses_the_remembered_headers_only() {
    let now = SystemTime::now();
    let r = req(
        Method::GET,
        &[
            ("accept-language", "fr"),
            ("cookie", "sid=1"),
            ("host", "a.localhost"),
        ],
    );
    let s = res(
        200,
        &[("cache-control", "max-age=60"), ("vary", "Accept-Language")],
    );
    let p = admit(&req(Method::GET, &[("accept-language", "fr")]), &s, now).unwrap();
    let remembered = remembered_request(&r, &s.headers);
    assert!(
        remembered.headers.get("cookie").is_none(),
        "cookies are never kept"
    );
    let fr = presented_request(&r);
    assert!(matches!(
        p.before_request(&fr, now),
        BeforeRequest::Fresh(_)
    ));
    let de = presented_request(&req(
        Method::GET,
        &[("accept-language", "de"), ("host", "b.localhost")],
    ));
    assert!(matches!(
        p.before_request(&de, now),
        BeforeRequest::Stale { matches: false, .. }
    ));
    // A HEAD is presented as a GET, so it matches the stored GET.
    let head = presented_request(&req(Method::HEAD, &[("accept-language", "fr")]));
    assert!(matches!(
        p.before_request(&head, now),
        BeforeRequest::Fresh(_)
    ));
}

#[test]
fn stale_windows_follow_rfc_5861_unless_revalidation_is_required() {
    let h = |cc: &str| res(200, &[("cache-control", cc)]).headers;
    let w = stale_windows(&h(
        "max-age=1, stale-while-revalidate=30, stale-if-error=600",
    ));
    assert_eq!(w.while_revalidate, Duration::from_secs(30));
    assert_eq!(w.if_error, Duration::from_secs(600));
    for strict in ["must-revalidate", "proxy-revalidate", "s-maxage=1"] {
        let w = stale_windows(&h(&format!(
            "max-age=1, {strict}, stale-while-revalidate=30, stale-if-error=600"
        )));
        assert_eq!(w, StaleWindows::default(), "{strict}");
    }
}

#[test]
fn requests_that_want_fresh_never_get_stale() {
    let h = |k: &str, v: &str| {
        let mut m = HeaderMap::new();
        m.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
        m
    };
    assert!(request_accepts_stale(&HeaderMap::new()));
    assert!(!request_accepts_stale(&h("cache-control", "no-cache")));
    assert!(!request_accepts_stale(&h("cache-control", "max-age=0")));
    assert!(!request_accepts_stale(&h("pragma", "no-cache")));
}

#[test]
fn fresh_until_is_conservative_for_already_stale_responses() {
    let now = SystemTime::now();
    let p = admit(
        &get(),
        &res(200, &[("cache-control", "max-age=100"), ("age", "30")]),
        now,
    )
    .unwrap();
    assert_eq!(fresh_until(&p, now), now + Duration::from_secs(70));
    let p = admit(
        &get(),
        &res(
            200,
            &[
                ("cache-control", "max-age=10"),
                ("age", "30"),
                ("etag", "\"e\""),
            ],
        ),
        now,
    )
    .unwrap();
    assert_eq!(fresh_until(&p, now), now - Duration::from_secs(30));
}

#[test]
fn a_304_replaces_fields_but_not_the_body_description() {
    let stored = res(
        200,
        &[
            ("content-length", "10"),
            ("content-encoding", "gzip"),
            ("link", "</a.css>; rel=preload"),
            ("link", "</b.css>; rel=preload"),
            ("cache-control", "max-age=1"),
            ("age", "50"),
        ],
    );
    let fresh = res(
        304,
        &[
            ("cache-control", "max-age=60"),
            ("content-length", "0"),
            ("etag", "\"v1\""),
            ("connection", "close"),
        ],
    );
    let out = refreshed_headers(&stored.headers, &fresh.headers);
    assert_eq!(out.get("content-length").unwrap(), "10");
    assert_eq!(out.get("content-encoding").unwrap(), "gzip");
    assert_eq!(
        out.get_all("link").iter().count(),
        2,
        "multi-valued fields survive"
    );
    assert_eq!(out.get("cache-control").unwrap(), "max-age=60");
    assert_eq!(out.get("etag").unwrap(), "\"v1\"");
    assert!(out.get("age").is_none());
    assert!(out.get("connection").is_none());
}

/// The shortcut answers only where the crate would say `Fresh`, and leaves every other case to it: a
/// request with its own directives, a response that varies, a stale response.
#[test]
fn plainly_fresh_agrees_with_the_crate_where_it_answers() {
    let at = SystemTime::now();
    let stored_res = res(200, &[("cache-control", "max-age=60"), ("age", "10")]);
    let policy = admit(&get(), &stored_res, at).unwrap();
    let until = fresh_until(&policy, at);
    assert_eq!(until, at + Duration::from_secs(50));
    let crate_says_fresh = |r: &request::Parts, now| {
        let presented = presented_request(r);
        let matching = matching_request(&presented, &stored_res.headers);
        matches!(
            policy.before_request(&matching, now),
            BeforeRequest::Fresh(_)
        )
    };
    let plain = get();
    for secs in [0, 1, 49] {
        let now = at + Duration::from_secs(secs);
        assert!(plainly_fresh(
            &plain.headers,
            &stored_res.headers,
            until,
            now
        ));
        assert!(crate_says_fresh(&plain, now));
    }
    // Stale: no answer here, and the crate says stale too.
    let later = at + Duration::from_secs(50);
    assert!(!plainly_fresh(
        &plain.headers,
        &stored_res.headers,
        until,
        later
    ));
    assert!(!crate_says_fresh(&plain, later));
    // The request's own directives go to the crate, which may refuse a fresh response.
    for directives in [("cache-control", "no-cache"), ("pragma", "no-cache")] {
        let asks = req(Method::GET, &[directives]);
        assert!(!plainly_fresh(
            &asks.headers,
            &stored_res.headers,
            until,
            at
        ));
        assert!(!crate_says_fresh(&asks, at));
    }
    let min_fresh = req(Method::GET, &[("cache-control", "min-fresh=55")]);
    assert!(!plainly_fresh(
        &min_fresh.headers,
        &stored_res.headers,
        until,
        at
    ));
    assert!(!crate_says_fresh(&min_fresh, at));
    // A response that varies goes to the crate as well.
    let varying = res(
        200,
        &[("cache-control", "max-age=60"), ("vary", "accept-language")],
    );
    assert!(!plainly_fresh(&plain.headers, &varying.headers, until, at));
}
