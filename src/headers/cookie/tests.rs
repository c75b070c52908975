use super::*;
use crate::url_codec::{PublicOrigin, SessionId};
use std::sync::Arc;
use url::Url;

fn map(public: &str) -> ProxyMap {
    ProxyMap::new(
        Arc::new(PublicOrigin::parse(public).unwrap()),
        SessionId::parse("k3x9q2m7wa").unwrap(),
    )
}

fn target(url: &str) -> TargetOrigin {
    TargetOrigin::from_url(&Url::parse(url).unwrap()).unwrap()
}

fn set(value: &str, from: &str) -> Result<Option<String>, Rejected> {
    rewrite_set_cookie(value, &target(from), &map("http://localhost:8080"))
}

#[test]
fn host_only_cookies_pass_unchanged() {
    assert_eq!(
        set(
            "sid=1; Path=/; HttpOnly; Secure; SameSite=Lax",
            "https://www.shop.test/"
        ),
        Ok(None)
    );
}

#[test]
fn domain_cookies_move_under_the_session_tag() {
    assert_eq!(
        set(
            "sid=1; Domain=.shop.test; Path=/; Secure",
            "https://login.shop.test/"
        )
        .unwrap()
        .unwrap(),
        "sid=1; Path=/; Secure; Domain=shop.test.k3x9q2m7wa-s.localhost"
    );
    assert_eq!(
        set(
            "a=b; domain=login.shop.test",
            "https://login.shop.test:8443/"
        )
        .unwrap()
        .unwrap(),
        "a=b; Domain=login.shop.test.k3x9q2m7wa-s-8443.localhost"
    );
}

#[test]
fn foreign_and_public_suffix_domains_are_refused() {
    assert_eq!(
        set("a=b; Domain=other.test", "https://www.shop.test/"),
        Err(Rejected::ForeignDomain)
    );
    assert_eq!(
        set("a=b; Domain=hop.test", "https://www.shop.test/"),
        Err(Rejected::ForeignDomain)
    );
    assert_eq!(
        set("a=b; Domain=test", "https://www.shop.test/"),
        Err(Rejected::PublicSuffix)
    );
    assert_eq!(
        set("a=b; Domain=co.uk", "https://shop.co.uk/"),
        Err(Rejected::PublicSuffix)
    );
    assert_eq!(
        set("a=b; Domain=localhost", "https://www.shop.test/"),
        Err(Rejected::ForeignDomain)
    );
    assert_eq!(
        set("a=b; Domain=1.2.3.4", "https://1.2.3.5/"),
        Err(Rejected::ForeignDomain)
    );
    assert_eq!(
        set("__cobrowse_v=1", "https://www.shop.test/"),
        Err(Rejected::Reserved)
    );
    assert_eq!(
        set("", "https://www.shop.test/"),
        Err(Rejected::Unparseable)
    );
}

#[test]
fn secure_is_dropped_only_where_the_browser_could_not_keep_it() {
    let m = map("http://proxy.example:8080");
    let got = rewrite_set_cookie(
        "a=b; Secure; SameSite=None; Path=/",
        &target("https://www.shop.test/"),
        &m,
    );
    assert_eq!(got.unwrap().unwrap(), "a=b; Path=/");
    let m = map("https://proxy.example");
    assert_eq!(
        rewrite_set_cookie("a=b; Secure", &target("https://www.shop.test/"), &m),
        Ok(None)
    );
}

#[test]
fn reserved_cookies_never_go_upstream() {
    let mut h = HeaderMap::new();
    h.append(
        COOKIE,
        HeaderValue::from_static("a=1; __cobrowse_v=secret; b=2"),
    );
    h.append(COOKIE, HeaderValue::from_static("__cobrowse_x=1"));
    strip_reserved(&mut h);
    assert_eq!(h.get(COOKIE).unwrap(), "a=1; b=2");
}
