use super::*;

use crate::url_codec::test_map as map;

fn run(policy: &str) -> String {
    let page_url = Url::parse("https://www.shop.test/").unwrap();
    let page = TargetOrigin::from_url(&page_url).unwrap();
    let agent = AgentSources {
        nonce: "N0NCE".into(),
        origin: "http://localhost:8080".into(),
    };
    rewrite(policy, &map(), &page, &page_url, &agent)
}

#[test]
fn host_sources_move_to_proxy_hosts() {
    let got = run("default-src 'self'; img-src https://cdn.shop.test *.shop.test data:; style-src cdn.shop.test:8443/css/");
    assert!(got.contains("img-src http://cdn.shop.test.k3x9q2m7wa-s.localhost:8080 http://*.shop.test.k3x9q2m7wa-s.localhost:8080 data:"), "{got}");
    assert!(
        got.contains("style-src http://cdn.shop.test.k3x9q2m7wa-s-8443.localhost:8080/css/"),
        "{got}"
    );
    assert!(!got.contains(" https://cdn.shop.test"), "{got}");
}

#[test]
fn agent_allowed_by_origin_or_nonce() {
    let got = run("script-src 'self' 'unsafe-inline' https://cdn.shop.test");
    assert!(got.contains("script-src 'self' 'unsafe-inline' http://cdn.shop.test.k3x9q2m7wa-s.localhost:8080 http://localhost:8080"), "{got}");
    assert!(
        !got.contains("nonce"),
        "a nonce would disable 'unsafe-inline': {got}"
    );
    let got = run("script-src 'nonce-abc' 'strict-dynamic'; object-src 'none'");
    assert!(
        got.contains("script-src 'nonce-abc' 'strict-dynamic' 'nonce-N0NCE'"),
        "{got}"
    );
    assert!(got.contains("object-src 'none'"), "{got}");
    let got = run("script-src 'none'");
    assert!(got.contains("script-src http://localhost:8080"), "{got}");
}

#[test]
fn default_src_is_narrowed_not_widened() {
    let got = run("default-src 'self'");
    assert!(got.starts_with("default-src 'self';"), "{got}");
    assert!(
        got.contains("script-src 'self' http://localhost:8080"),
        "{got}"
    );
    assert!(
        got.contains("connect-src 'self' http://localhost:8080 ws://localhost:8080"),
        "{got}"
    );
}

#[test]
fn scheme_sources_keep_meaning_and_upgrades_go_on_http_proxy() {
    let got = run("img-src https:; upgrade-insecure-requests; block-all-mixed-content");
    assert!(
        got.contains("img-src https: http://*.localhost:8080"),
        "{got}"
    );
    assert!(!got.contains("upgrade-insecure-requests"), "{got}");
    let got =
        run("report-uri https://report.shop.test/csp; frame-ancestors 'self' https://partner.test");
    assert!(
        got.contains("report-uri http://report.shop.test.k3x9q2m7wa-s.localhost:8080/csp"),
        "{got}"
    );
    assert!(
        got.contains("frame-ancestors 'self' http://partner.test.k3x9q2m7wa-s.localhost:8080"),
        "{got}"
    );
}

#[test]
fn several_policies_each_rewritten() {
    let got = run("img-src https://a.test, img-src https://b.test");
    assert_eq!(got.matches("k3x9q2m7wa").count(), 2, "{got}");
}
