//! The rewriting proxy against the fixture site over real sockets: one test per case of the core issue.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use http::{Method, StatusCode};
use support::{start, Stack};

const WWW: &str = "https://www.shop.test/";

/// Percent-encodes a query value for `/_fx/respond`.
fn q(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn site() -> (Stack, String) {
    let stack = start().await;
    let (id, _) = stack.session(WWW).await;
    (stack, id)
}

#[tokio::test]
async fn home_page_loads_rewritten_with_the_agent_once() {
    let (stack, id) = site().await;
    let (_, visitor) = stack.session(WWW).await;
    let page = stack.get(&visitor).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert_eq!(html.matches("/__cobrowse/agent.js").count(), 1, "{html}");
    let head = html.find("<head").unwrap();
    let agent = html.find("agent.js").unwrap();
    let first_script = html.find("<script").unwrap();
    assert!(
        agent > head && html[first_script..].starts_with("<script src=\"http://localhost"),
        "agent is the first script"
    );
    assert!(
        !html.contains("\"https://cdn.shop.test"),
        "no absolute target URL left in attributes"
    );
    assert!(
        !html.contains("\"//cdn.shop.test"),
        "no protocol-relative target URL left"
    );
    assert!(page.header("content-length").is_none() || page.header("transfer-encoding").is_none());
    let _ = id;
    stack.stop().await;
}

/// Every `Server-Timing` value of `reply`, ours and the origin's.
fn server_timing(reply: &support::Reply) -> Vec<&str> {
    reply
        .headers
        .get_all("server-timing")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

/// Our `Server-Timing` entries in `reply`, read as the load test reads them.
fn timing(reply: &support::Reply) -> cobrowse_proxy::headers::timing::Phases {
    cobrowse_proxy::headers::timing::parse(server_timing(reply))
}

#[tokio::test]
async fn responses_tell_the_proxys_own_timing_beside_the_origins() {
    let (stack, id) = site().await;
    // A rewritten page: the fetch, and the rewrite of its first bytes, which happens before the head
    // goes out. The origin's own entry passes through as it was.
    let headers = ["Server-Timing: db;dur=53"];
    let page = stack
        .get(&stack.proxied(
            &id,
            &format!(
                "https://www.shop.test/_fx/respond?type=text/html&body={}{}",
                q("<p><a href=https://cdn.shop.test/x>x</a>"),
                support::header_params(&headers)
            ),
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let values = server_timing(&page);
    assert!(values.contains(&"db;dur=53"), "{values:?}");
    let phases = timing(&page);
    let (fetch, rewrite) = (phases.fetch.unwrap(), phases.rewrite.unwrap());
    assert!(fetch > std::time::Duration::ZERO, "{values:?}");
    assert!(rewrite > std::time::Duration::ZERO, "{values:?}");
    // A body that passes through is not rewritten: only the fetch is told.
    let png = stack
        .get(&stack.proxied(&id, "https://cdn.shop.test/img/logo.png"))
        .await;
    let phases = timing(&png);
    assert!(
        phases.fetch.is_some() && phases.rewrite.is_none(),
        "{phases:?}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn stylesheets_are_rewritten_and_relative_urls_untouched() {
    let (stack, id) = site().await;
    let css = stack
        .get(&stack.proxied(&id, "https://cdn.shop.test/css/site.css"))
        .await;
    assert_eq!(css.status, StatusCode::OK);
    let text = css.text();
    let cdn = stack.proxied(&id, "https://cdn.shop.test/");
    assert!(text.contains(&format!("{cdn}css/imported.css")), "{text}");
    assert!(text.contains(&format!("{cdn}fonts/")), "{text}");
    assert!(!text.contains("https://cdn.shop.test"), "{text}");
    stack.stop().await;
}

#[tokio::test]
async fn every_content_coding_is_decoded_and_rewritten() {
    let (stack, id) = site().await;
    for enc in ["gzip", "deflate", "br", "zstd"] {
        let url = stack.proxied(
            &id,
            &format!("https://www.shop.test/_fx/encoded?enc={enc}&file=/index.html"),
        );
        let reply = stack
            .request(
                Method::GET,
                &url,
                &[("accept-encoding", "gzip, deflate, br, zstd")],
                "",
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{enc}");
        assert!(
            reply.header("content-encoding").is_none(),
            "{enc}: decoded for rewriting"
        );
        let html = reply.text();
        assert_eq!(html.matches("agent.js").count(), 1, "{enc}: {html}");
        assert!(!html.contains("\"https://cdn.shop.test"), "{enc}");
    }
    stack.stop().await;
}

#[tokio::test]
async fn other_bodies_pass_through_byte_for_byte() {
    let (stack, id) = site().await;
    let png = stack
        .get(&stack.proxied(&id, "https://cdn.shop.test/img/logo.png"))
        .await;
    let on_disk = std::fs::read(support::sites_root().join("cdn.shop.test/img/logo.png")).unwrap();
    assert_eq!(png.body.as_ref(), on_disk.as_slice());
    assert_eq!(
        png.header("content-length"),
        Some(on_disk.len().to_string())
    );
    // A compressed asset the client accepts stays compressed.
    let url = stack.proxied(
        &id,
        "https://cdn.shop.test/_fx/encoded?enc=gzip&file=/js/lib.js",
    );
    let js = stack
        .request(Method::GET, &url, &[("accept-encoding", "gzip")], "")
        .await;
    assert_eq!(js.header("content-encoding").as_deref(), Some("gzip"));
    stack.stop().await;
}

#[tokio::test]
async fn location_refresh_link_and_content_location_are_rewritten() {
    let (stack, id) = site().await;
    let headers = [
        "Location:https://login.shop.test/next?x=1",
        "Content-Location:https://cdn.shop.test/c",
        "Refresh:0; url=https://login.shop.test/r",
        "Link:<https://cdn.shop.test/a.css>; rel=preload; as=style, </rel.js>; rel=preload",
    ];
    let query = support::header_params(&headers);
    let url = stack.proxied(
        &id,
        &format!("https://www.shop.test/_fx/respond?status=302{query}"),
    );
    let reply = stack.get(&url).await;
    assert_eq!(reply.status, StatusCode::FOUND);
    let login = stack.proxied(&id, "https://login.shop.test/");
    let cdn = stack.proxied(&id, "https://cdn.shop.test/");
    assert_eq!(
        reply.header("location").unwrap(),
        format!("{login}next?x=1")
    );
    assert_eq!(reply.header("content-location").unwrap(), format!("{cdn}c"));
    assert_eq!(reply.header("refresh").unwrap(), format!("0; url={login}r"));
    assert_eq!(
        reply.header("link").unwrap(),
        format!("<{cdn}a.css>; rel=preload; as=style, </rel.js>; rel=preload")
    );
    // A relative Location needs nothing.
    let url = stack.proxied(
        &id,
        &format!(
            "https://www.shop.test/_fx/respond?status=301&h={}",
            q("Location:/moved")
        ),
    );
    assert_eq!(stack.get(&url).await.header("location").unwrap(), "/moved");
    stack.stop().await;
}

#[tokio::test]
async fn transport_pinning_headers_are_dropped_and_framing_kept() {
    let (stack, id) = site().await;
    let headers = [
        "Strict-Transport-Security:max-age=31536000; includeSubDomains",
        "Alt-Svc:h3=\":443\"",
        "X-Frame-Options:SAMEORIGIN",
        "Content-Security-Policy:default-src 'self'; img-src https://cdn.shop.test; frame-ancestors 'self'",
    ];
    let query = support::header_params(&headers);
    let url = stack.proxied(
        &id,
        &format!("https://www.shop.test/_fx/respond?type=text/html&body=%3Cp%3Ehi{query}"),
    );
    let reply = stack.get(&url).await;
    assert!(reply.header("strict-transport-security").is_none());
    assert!(reply.header("alt-svc").is_none());
    assert_eq!(
        reply.header("x-frame-options").as_deref(),
        Some("SAMEORIGIN")
    );
    let csp = reply.header("content-security-policy").unwrap();
    let cdn = stack.proxied(&id, "https://cdn.shop.test/");
    assert!(
        csp.contains(&format!("img-src {}", cdn.trim_end_matches('/'))),
        "{csp}"
    );
    assert!(
        csp.contains(&format!("script-src 'self' {}", stack.public)),
        "agent allowed: {csp}"
    );
    assert!(csp.contains("frame-ancestors 'self'"), "{csp}");
    // The body changed, so no Content-Length from upstream survives.
    assert!(reply
        .header("content-length")
        .is_none_or(|l| l == reply.body.len().to_string()));
    stack.stop().await;
}

#[tokio::test]
async fn set_cookie_domains_move_under_the_session_and_foreign_ones_drop() {
    let (stack, id) = site().await;
    let headers = [
        "Set-Cookie:host=1; Path=/; HttpOnly",
        "Set-Cookie:shared=2; Domain=shop.test; Path=/",
        "Set-Cookie:foreign=3; Domain=other.test",
        "Set-Cookie:suffix=4; Domain=test",
    ];
    let query = support::header_params(&headers);
    let url = stack.proxied(
        &id,
        &format!("https://login.shop.test/_fx/respond?status=204{query}"),
    );
    let reply = stack.get(&url).await;
    let cookies: Vec<String> = reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let host = url::Url::parse(&stack.proxied(&id, "https://shop.test/"))
        .unwrap()
        .host_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        cookies,
        vec![
            "host=1; Path=/; HttpOnly".to_owned(),
            format!("shared=2; Path=/; Domain={host}")
        ]
    );
    stack.stop().await;
}

#[tokio::test]
async fn request_headers_reach_the_target_in_its_own_terms() {
    let (stack, id) = site().await;
    let page = stack.proxied(&id, "https://www.shop.test/cart");
    let origin = page.trim_end_matches("/cart");
    let url = stack.proxied(&id, "https://api.shop.test/_fx/echo");
    let reply = stack
        .request(
            Method::POST,
            &url,
            &[
                ("origin", origin),
                ("referer", &page),
                ("accept-encoding", "gzip, br, dcb"),
                ("connection", "keep-alive, x-private"),
                ("x-private", "hop"),
                ("cookie", "a=1; __cobrowse_x=secret"),
            ],
            "{}",
        )
        .await;
    let echo = reply.json();
    let h = &echo["headers"];
    assert_eq!(echo["host"], "api.shop.test");
    assert_eq!(h["origin"], "https://www.shop.test");
    assert_eq!(h["referer"], "https://www.shop.test/cart");
    assert_eq!(h["accept-encoding"], "gzip, br");
    assert_eq!(h["cookie"], "a=1");
    assert!(
        h.get("x-private").is_none(),
        "Connection-listed header dropped: {echo}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn cors_preflight_and_credentials_use_proxy_origins() {
    let (stack, id) = site().await;
    let www = stack
        .proxied(&id, "https://www.shop.test/")
        .trim_end_matches('/')
        .to_owned();
    let url = stack.proxied(&id, "https://api.shop.test/_fx/cors");
    let pre = stack
        .request(
            Method::OPTIONS,
            &url,
            &[("origin", &www), ("access-control-request-method", "GET")],
            "",
        )
        .await;
    assert_eq!(
        pre.header("access-control-allow-origin").as_deref(),
        Some(www.as_str())
    );
    assert_eq!(
        pre.header("access-control-allow-credentials").as_deref(),
        Some("true")
    );
    let get = stack
        .request(
            Method::GET,
            &url,
            &[("origin", &www), ("cookie", "s=1")],
            "",
        )
        .await;
    assert_eq!(
        get.header("access-control-allow-origin").as_deref(),
        Some(www.as_str())
    );
    assert_eq!(get.json()["origin"], "https://www.shop.test");
    stack.stop().await;
}

#[tokio::test]
async fn non_utf8_pages_keep_their_charset_and_bytes() {
    let (stack, id) = site().await;
    for (cs, enc) in [
        ("shift_jis", encoding_rs::SHIFT_JIS),
        ("windows-1252", encoding_rs::WINDOWS_1252),
    ] {
        let reply = stack
            .get(&stack.proxied(&id, &format!("https://www.shop.test/_fx/charset?cs={cs}")))
            .await;
        let ct = reply.header("content-type").unwrap().to_ascii_lowercase();
        assert!(ct.contains(cs), "{ct}");
        let (text, _, errors) = enc.decode(&reply.body);
        assert!(!errors, "{cs}: output still decodes");
        let expected = if cs == "shift_jis" {
            cobrowse_proxy::fixture::CHARSET_JAPANESE_TEXT
        } else {
            cobrowse_proxy::fixture::CHARSET_LATIN_TEXT
        };
        assert!(text.contains(expected), "{cs}: {text}");
        assert!(
            text.contains(&stack.proxied(&id, "https://www.shop.test/x")),
            "{cs}: {text}"
        );
    }
    stack.stop().await;
}

#[tokio::test]
async fn special_pages_base_refresh_import_map_and_no_head() {
    let (stack, id) = site().await;
    let cdn = stack.proxied(&id, "https://cdn.shop.test/");
    let base = stack
        .get(&stack.proxied(&id, "https://www.shop.test/base.html"))
        .await
        .text();
    assert!(base.contains(&format!("<base href=\"{cdn}js/\"")), "{base}");
    let refresh = stack
        .get(&stack.proxied(&id, "https://www.shop.test/refresh.html"))
        .await
        .text();
    assert!(
        refresh.contains(&stack.proxied(&id, "https://www.shop.test/index.html")),
        "{refresh}"
    );
    let nohead = stack
        .get(&stack.proxied(&id, "https://www.shop.test/nohead.html"))
        .await
        .text();
    assert!(
        nohead
            .trim_start()
            .starts_with("<script src=\"http://localhost"),
        "{nohead}"
    );
    assert_eq!(nohead.matches("agent.js").count(), 1);
    let home = stack.get(&stack.proxied(&id, WWW)).await.text();
    assert!(
        home.contains(&format!("\"util\":\"{cdn}js/util.mjs\"")),
        "import map rewritten: {home}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn http2_upstream_is_used_over_tls() {
    let (stack, id) = site().await;
    stack.origin.clear_requests();
    let reply = stack
        .get(&stack.proxied(&id, "https://cdn.shop.test/js/lib.js"))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen = stack.origin.requests();
    let last = seen
        .iter()
        .rev()
        .find(|r| r.path == "/js/lib.js")
        .expect("origin saw the request");
    assert!(last.tls, "https target reached over TLS");
    assert_eq!(last.version, "HTTP/2.0", "ALPN picked h2");
    // And plain http stays plain.
    let reply = stack
        .get(&stack.proxied(&id, "http://www.shop.test/_fx/echo"))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    stack.stop().await;
}

#[tokio::test]
async fn websocket_upgrades_pass_through_to_plain_and_tls_upstreams() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (stack, id) = site().await;
    for target in [
        "http://api.shop.test/_fx/ws",
        "https://api.shop.test/_fx/ws",
    ] {
        let proxied = url::Url::parse(&stack.proxied(&id, target)).unwrap();
        let host = format!(
            "{}:{}",
            proxied.host_str().unwrap(),
            proxied.port().unwrap()
        );
        let mut socket = tokio::net::TcpStream::connect(stack.proxy).await.unwrap();
        let handshake = format!(
            "GET /_fx/ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        socket.write_all(handshake.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
            socket.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{target}: {head}");
        assert!(
            head.contains("\r\nconnection: upgrade\r\n"),
            "{target}: {head}"
        );
        assert!(
            head.contains("\r\nupgrade: websocket\r\n"),
            "{target}: {head}"
        );
        assert!(
            head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "{target}: {head}"
        );
        socket.write_all(b"bytes both ways").await.unwrap();
        let mut echoed = [0u8; 15];
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            socket.read_exact(&mut echoed),
        )
        .await
        .expect("echo within 10 s")
        .unwrap();
        assert_eq!(&echoed, b"bytes both ways", "{target}");
    }
    stack.stop().await;
}

#[tokio::test]
async fn rewritten_output_does_not_depend_on_how_upstream_chunks_arrive() {
    let (stack, id) = site().await;
    for (host, file) in [
        ("www.shop.test", "/index.html"),
        ("www.shop.test", "/base.html"),
        ("cdn.shop.test", "/css/site.css"),
    ] {
        let whole = stack
            .get(&stack.proxied(&id, &format!("https://{host}{file}")))
            .await;
        assert_eq!(whole.status, StatusCode::OK, "{host}{file}");
        for (seed, max) in [(1, 1), (2, 3), (3, 7), (4, 64), (5, 1024)] {
            let url = format!("https://{host}/_fx/chunked?file={file}&seed={seed}&max={max}");
            let split = stack.get(&stack.proxied(&id, &url)).await;
            assert_eq!(
                split.text(),
                whole.text(),
                "{host}{file} split by seed {seed}, chunks up to {max} bytes"
            );
        }
    }
    stack.stop().await;
}

/// The value of a counter in the proxy's `/metrics`.
async fn metric(stack: &Stack, name: &str) -> f64 {
    let text = stack.get(&format!("{}/metrics", stack.public)).await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in {text}"))
}

/// A 96 KB page from a TLS origin (16 KiB records, read ahead and gathered: `src/rewrite/ahead.rs`) is
/// rewritten in parts on both cores (`src/rewrite/html/split.rs`, whose unit tests compare that with one
/// rewriter byte for byte); here through the real server: parts joined, and the page is whole: every tag
/// once, the agent once, every absolute URL in an attribute rewritten, and no join mark left in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_page_is_rewritten_in_parts_and_comes_out_whole() {
    let stack = start().await;
    let (_, visitor) = stack.session("https://load.shop.test/").await;
    let original =
        std::fs::read_to_string(support::sites_root().join("load.shop.test/index.html")).unwrap();
    let joined_before = metric(&stack, "cobrowse_html_splits_joined_total").await;
    // A split is tried only when no other rewrite is running, and only on what has arrived when the
    // rewriter asks; tests in this binary run alongside, so a few loads make sure one had its chance.
    let mut html = String::new();
    for _ in 0..20 {
        let page = stack.get(&visitor).await;
        assert_eq!(page.status, StatusCode::OK);
        html = page.text();
        if metric(&stack, "cobrowse_html_splits_joined_total").await > joined_before {
            break;
        }
    }
    assert!(
        metric(&stack, "cobrowse_html_splits_joined_total").await > joined_before,
        "no split joined in 20 loads"
    );
    assert_eq!(html.matches("/__cobrowse/agent.js").count(), 1);
    assert!(
        !html.contains("cobrowse-split"),
        "a join mark was left in the page"
    );
    // The agent's `<script></script>` is the only markup added.
    assert_eq!(html.matches('<').count(), original.matches('<').count() + 2);
    for quoted in ["=\"http://", "=\"https://", "=\"//"] {
        let left: Vec<&str> = html
            .match_indices(quoted)
            .map(|(i, _)| &html[i..(i + 60).min(html.len())])
            // Proxy hosts, and the agent's own script on the public origin.
            .filter(|u| !u.contains(".localhost") && !u[2..].starts_with(&stack.public))
            .collect();
        assert!(left.is_empty(), "absolute URLs left as they were: {left:?}");
    }
    stack.stop().await;
}
