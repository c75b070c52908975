//! Hostile upstreams over real sockets: header floods, redirect loops and malformed markup. Each gets a
//! clear error page or a correct pass-through, and the proxy keeps serving. (Compression bombs, stalls,
//! resets and invalid TLS are in `errors.rs`; endless bodies in `streaming.rs` and the load test.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use http::StatusCode;
use support::{header_params, start};

fn q(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn a_header_flood_is_a_clear_502() {
    let stack = start().await;
    let (id, _) = stack.session("https://www.shop.test/").await;
    let flood: Vec<String> = (0..400).map(|i| format!("X-Flood-{i}:v")).collect();
    let refs: Vec<&str> = flood.iter().map(String::as_str).collect();
    let url = format!(
        "https://www.shop.test/_fx/respond?body=x{}",
        header_params(&refs)
    );
    let reply = stack.get(&stack.proxied(&id, &url)).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    assert!(reply.text().contains("www.shop.test"), "{}", reply.text());
    let fine = stack
        .get(&stack.proxied(&id, "https://www.shop.test/"))
        .await;
    assert_eq!(fine.status, StatusCode::OK, "the proxy keeps serving");
    stack.stop().await;
}

#[tokio::test]
async fn a_redirect_loop_is_passed_to_the_browser_one_hop_at_a_time() {
    let stack = start().await;
    let (id, _) = stack.session("https://www.shop.test/").await;
    let url = format!(
        "https://www.shop.test/_fx/respond?status=302{}",
        header_params(&["Location:https://www.shop.test/_fx/respond?status=302"])
    );
    let before = stack.origin.request_count("www.shop.test");
    let reply = stack.get(&stack.proxied(&id, &url)).await;
    assert_eq!(reply.status, StatusCode::FOUND);
    let location = reply.header("location").unwrap();
    assert!(
        location.contains("-s.localhost"),
        "the loop stays inside the proxy: {location}"
    );
    assert_eq!(
        stack.origin.request_count("www.shop.test") - before,
        1,
        "the proxy never follows a redirect itself"
    );
    stack.stop().await;
}

#[tokio::test]
async fn malformed_markup_passes_through_rewritten_as_far_as_it_parses() {
    let stack = start().await;
    let (id, _) = stack.session("https://www.shop.test/").await;
    let cases = [
        ("text/html", "<img src=\"https://cdn.shop.test/y.png\"><<<>>><a href='https://cdn.shop.test/x <b>never closed<script>var a = '</scr"),
        ("text/html", "<!--<a href=https://cdn.shop.test/z>--><svg><style>@import 'https://cdn.shop.test/a.css"),
        ("text/css", "a{background:url(https://cdn.shop.test/a.png)} }}{{ ;;; @import url(\"https://cdn.shop.test/b.css"),
        ("text/javascript", "fetch('https://cdn.shop.test/a'); function ( { ] broken"),
    ];
    for (content_type, body) in cases {
        let url = format!(
            "https://www.shop.test/_fx/respond?type={}&body={}",
            q(content_type),
            q(body)
        );
        let reply = stack.get(&stack.proxied(&id, &url)).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{content_type}: {}",
            reply.text()
        );
        assert!(!reply.text().is_empty(), "{content_type}: the body arrives");
        if content_type != "text/javascript" {
            assert!(
                !reply.text().contains("https://cdn.shop.test/y.png")
                    && !reply.text().contains("url(https://cdn.shop.test/a.png)"),
                "{content_type}: complete URLs are still rewritten: {}",
                reply.text()
            );
        }
    }
    let fine = stack
        .get(&stack.proxied(&id, "https://www.shop.test/"))
        .await;
    assert_eq!(fine.status, StatusCode::OK);
    stack.stop().await;
}
