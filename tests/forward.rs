//! The forward proxy over real sockets: absolute-form HTTP, CONNECT intercepted on HTTP/1.1 and HTTP/2
//! (trusting only the proxy's CA), CONNECT to plain HTTP, blind tunnels, WebSockets in both kinds of
//! connection, credentials, untrusted upstream certificates, loops and private targets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::forward::{self as fwd, basic, connect, get};
use support::{start, start_with, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const AGENT_PATH: &str = "/__cobrowse/agent.js";

fn assert_forward_agent(body: &str, origin: &str) {
    let tag = format!("<script src=\"{origin}{AGENT_PATH}\" data-cobrowse-mode=\"forward\"");
    assert_eq!(body.matches(&tag).count(), 1, "agent injected once: {body}");
    assert!(!body.contains(".localhost"), "no proxy host names: {body}");
}

#[tokio::test]
async fn absolute_form_http_is_proxied_with_the_agent_and_urls_kept() {
    let stack = start().await;
    let io = tokio::net::TcpStream::connect(stack.proxy).await.unwrap();
    let reply = fwd::http1(io, get("http://www.shop.test/")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_forward_agent(&reply.text(), "http://www.shop.test");
    assert!(
        reply.text().contains("https://cdn.shop.test/"),
        "absolute URLs stay the site's own"
    );
    let io = tokio::net::TcpStream::connect(stack.proxy).await.unwrap();
    let mut req = get("http://www.shop.test/_fx/echo");
    req.headers_mut()
        .insert("proxy-connection", "keep-alive".parse().unwrap());
    req.headers_mut()
        .insert("cookie", "site=1".parse().unwrap());
    let echo = fwd::http1(io, req).await.json();
    let headers = &echo["headers"];
    assert!(headers.get("proxy-connection").is_none(), "{headers}");
    assert_eq!(
        headers["cookie"], "site=1",
        "the site's cookies pass as they are"
    );
    assert!(
        headers["via"].as_str().unwrap().contains("cobrowse-"),
        "{headers}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn connect_tls_is_intercepted_on_http1_and_http2() {
    let stack = start().await;
    let ca = stack.proxy_ca_pem();
    for (alpn, h2) in [(&b"http/1.1"[..], false), (&b"h2"[..], true)] {
        let (status, tunnel) = connect(stack.proxy, "www.shop.test:443", None).await;
        assert_eq!(status, StatusCode::OK);
        let tls = fwd::tls(tunnel, "www.shop.test", &ca, &[alpn])
            .await
            .expect("the leaf verifies against the proxy's CA");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
        let reply = if h2 {
            let req = Request::get("https://www.shop.test/")
                .body(Full::new(Bytes::new()))
                .unwrap();
            fwd::http2(tls, req).await
        } else {
            let req = fwd::origin_form("/", "www.shop.test");
            fwd::http1(tls, req).await
        };
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_forward_agent(&reply.text(), "https://www.shop.test");
    }
    stack.stop().await;
}

#[tokio::test]
async fn the_agent_is_served_under_the_reserved_path_of_the_intercepted_origin() {
    let stack = start().await;
    let (_, tunnel) = connect(stack.proxy, "www.shop.test:443", None).await;
    let tls = fwd::tls(
        tunnel,
        "www.shop.test",
        &stack.proxy_ca_pem(),
        &[b"http/1.1"],
    )
    .await
    .unwrap();
    let req = fwd::origin_form(AGENT_PATH, "www.shop.test");
    let reply = fwd::http1(tls, req).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.header("content-type").unwrap().contains("javascript"));
    assert!(reply.text().contains("__cobrowse"));
    assert!(
        !reply.text().contains("__cbLocation"),
        "the forward agent carries no URL runtime"
    );
    assert_eq!(
        stack.origin.request_count("www.shop.test"),
        0,
        "answered by the proxy"
    );
    stack.stop().await;
}

#[tokio::test]
async fn connect_to_plain_http_is_served() {
    let stack = start().await;
    let (status, tunnel) = connect(stack.proxy, "www.shop.test:80", None).await;
    assert_eq!(status, StatusCode::OK);
    let reply = fwd::http1(tunnel, get("/").map(|b| b)).await;
    // `get("/")` has no authority: the tunnel's origin is the target whatever Host says.
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_forward_agent(&reply.text(), "http://www.shop.test");
    stack.stop().await;
}

#[tokio::test]
async fn hosts_never_intercepted_are_tunnelled_blind() {
    let mut options = Options::default();
    options.file.no_intercept = vec!["*.shop.test".into()];
    let stack = start_with(options).await;
    let (status, tunnel) = connect(stack.proxy, "www.shop.test:443", None).await;
    assert_eq!(status, StatusCode::OK);
    // The client sees the origin's own certificate: only the origin's CA verifies it.
    let tls = fwd::tls(
        tunnel,
        "www.shop.test",
        &stack.origin.ca_pem,
        &[b"http/1.1"],
    )
    .await
    .expect("origin certificate end to end");
    let req = fwd::origin_form("/", "www.shop.test");
    let reply = fwd::http1(tls, req).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(!reply.text().contains(AGENT_PATH), "untouched");

    let (_, tunnel) = connect(stack.proxy, "www.shop.test:443", None).await;
    let refused = fwd::tls(
        tunnel,
        "www.shop.test",
        &stack.proxy_ca_pem(),
        &[b"http/1.1"],
    )
    .await;
    assert!(refused.is_err(), "no leaf of ours is presented");
    stack.stop().await;
}

#[tokio::test]
async fn other_protocols_are_tunnelled_blind() {
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        if let Ok((mut s, _)) = echo.accept().await {
            let mut buf = [0u8; 256];
            for _ in 0..16 {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
    });
    let options = Options {
        extra_resolve: vec![format!("echo.test={echo_addr}")],
        ..Options::default()
    };
    let stack = start_with(options).await;
    let (status, mut tunnel) = connect(stack.proxy, "echo.test:7", None).await;
    assert_eq!(status, StatusCode::OK);
    let message = b"\x00\x01 not http, not tls";
    tunnel.write_all(message).await.unwrap();
    let mut back = vec![0u8; message.len()];
    tokio::time::timeout(Duration::from_secs(10), tunnel.read_exact(&mut back))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(&back, message);
    stack.stop().await;
}

/// Sends a WebSocket handshake for the fixture echo over `io`, then a few bytes, and checks they come back.
async fn websocket_echo<S>(mut io: S, request_target: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let handshake = format!(
        "GET {request_target} HTTP/1.1\r\nHost: www.shop.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    io.write_all(handshake.as_bytes()).await.unwrap();
    let head = fwd::read_head(&mut io).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    io.write_all(b"frames pass through").await.unwrap();
    let mut back = vec![0u8; b"frames pass through".len()];
    tokio::time::timeout(Duration::from_secs(10), io.read_exact(&mut back))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(&back, b"frames pass through");
}

#[tokio::test]
async fn websockets_pass_through_plain_and_intercepted_connections() {
    let stack = start().await;
    let plain = tokio::net::TcpStream::connect(stack.proxy).await.unwrap();
    websocket_echo(plain, "http://www.shop.test/_fx/ws").await;

    let (_, tunnel) = connect(stack.proxy, "www.shop.test:443", None).await;
    let tls = fwd::tls(
        tunnel,
        "www.shop.test",
        &stack.proxy_ca_pem(),
        &[b"http/1.1"],
    )
    .await
    .unwrap();
    websocket_echo(tls, "/_fx/ws").await;
    stack.stop().await;
}

#[tokio::test]
async fn credentials_are_required_once_a_token_is_set() {
    let mut options = Options::default();
    options.file.api_token = Some("s3cret".into());
    let stack = start_with(options).await;

    let (status, _) = connect(stack.proxy, "www.shop.test:443", None).await;
    assert_eq!(status, StatusCode::PROXY_AUTHENTICATION_REQUIRED);
    let wrong = basic("agent", "nope");
    let (status, _) = connect(stack.proxy, "www.shop.test:443", Some(&wrong)).await;
    assert_eq!(status, StatusCode::PROXY_AUTHENTICATION_REQUIRED);
    let right = basic("agent", "s3cret");
    let (status, _) = connect(stack.proxy, "www.shop.test:443", Some(&right)).await;
    assert_eq!(status, StatusCode::OK);

    let io = tokio::net::TcpStream::connect(stack.proxy).await.unwrap();
    let reply = fwd::http1(io, get("http://www.shop.test/")).await;
    assert_eq!(reply.status, StatusCode::PROXY_AUTHENTICATION_REQUIRED);
    assert!(reply
        .header("proxy-authenticate")
        .unwrap()
        .starts_with("Basic"));
    let io = tokio::net::TcpStream::connect(stack.proxy).await.unwrap();
    let mut req = get("http://www.shop.test/");
    req.headers_mut()
        .insert("proxy-authorization", right.parse().unwrap());
    let reply = fwd::http1(io, req).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(stack.origin.request_count("www.shop.test"), 1);
    let io = tokio::net::TcpStream::connect(stack.proxy).await.unwrap();
    let mut req = get("http://www.shop.test/_fx/echo");
    req.headers_mut()
        .insert("proxy-authorization", right.parse().unwrap());
    let echo = fwd::http1(io, req).await.json();
    assert!(
        echo["headers"].get("proxy-authorization").is_none(),
        "credentials never reach the origin: {echo}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn an_untrusted_upstream_certificate_is_an_error_page() {
    let stack = start_with(Options {
        trust_origin_ca: false,
        ..Options::default()
    })
    .await;
    let (_, tunnel) = connect(stack.proxy, "www.shop.test:443", None).await;
    let tls = fwd::tls(
        tunnel,
        "www.shop.test",
        &stack.proxy_ca_pem(),
        &[b"http/1.1"],
    )
    .await
    .unwrap();
    let req = fwd::origin_form("/", "www.shop.test");
    let reply = fwd::http1(tls, req).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    let text = reply.text();
    assert!(
        text.contains("TLS") && text.to_lowercase().contains("certificate"),
        "{text}"
    );
    assert_eq!(stack.origin.request_count("www.shop.test"), 0);
    stack.stop().await;
}

#[tokio::test]
async fn loops_and_private_targets_are_refused() {
    let options = Options {
        extra_resolve: vec![],
        ..Options::default()
    };
    let stack = start_with(options).await;
    let port = stack.proxy.port();
    for target in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let (status, _) = connect(stack.proxy, &target, None).await;
        assert_eq!(status, StatusCode::LOOP_DETECTED, "{target}");
    }
    let io = tokio::net::TcpStream::connect(stack.proxy).await.unwrap();
    let reply = fwd::http1(io, get(&format!("http://127.0.0.1:{port}/"))).await;
    assert_eq!(reply.status, StatusCode::LOOP_DETECTED);

    for target in [
        "10.0.0.1:443",
        "169.254.169.254:80",
        "[::1]:22",
        "127.0.0.1:22",
    ] {
        let (status, _) = connect(stack.proxy, target, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{target}");
    }
    let io = tokio::net::TcpStream::connect(stack.proxy).await.unwrap();
    let reply = fwd::http1(io, get("http://192.168.1.1/admin")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let (status, _) = connect(stack.proxy, "www.shop.test", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "CONNECT without a port");

    // After all that the proxy still serves.
    let io = tokio::net::TcpStream::connect(stack.proxy).await.unwrap();
    let reply = fwd::http1(io, get("http://www.shop.test/")).await;
    assert_eq!(reply.status, StatusCode::OK);
    stack.stop().await;
}

/// The command from the issue, when curl is installed: `curl -x … --cacert <ca> https://site/`.
#[tokio::test]
async fn curl_through_the_forward_proxy_on_http1_and_http2() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED curl test: curl is not installed");
        return;
    }
    let stack = start().await;
    let ca = stack.ca_dir.join("ca.pem");
    for version in ["--http1.1", "--http2"] {
        let run = tokio::process::Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "20",
                version,
                "-w",
                "\n%{http_version}",
            ])
            .arg("-x")
            .arg(format!("http://{}", stack.proxy))
            .arg("--cacert")
            .arg(&ca)
            .arg("https://www.shop.test/")
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("curl in time")
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (body, http_version) = text.rsplit_once('\n').unwrap();
        assert_forward_agent(body, "https://www.shop.test");
        let expected = if version == "--http2" { "2" } else { "1.1" };
        assert_eq!(http_version, expected);
    }
    stack.stop().await;
}

/// A browser keeps an intercepted connection open between requests: idle time must not close it.
#[tokio::test]
async fn an_intercepted_keep_alive_connection_survives_idle_time() {
    let stack = start().await;
    let (_, tunnel) = connect(stack.proxy, "cdn.shop.test:443", None).await;
    let tls = fwd::tls(
        tunnel,
        "cdn.shop.test",
        &stack.proxy_ca_pem(),
        &[b"http/1.1"],
    )
    .await
    .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    for round in 0..2 {
        let req = fwd::origin_form("/img/a.png", "cdn.shop.test");
        let response = sender
            .send_request(req)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(response.status(), StatusCode::OK);
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap();
        // Longer than the tunnel sniff wait (2 s), which must not apply once the tunnel is served.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    stack.stop().await;
}

/// Public assets through the forward proxy come from the same cache as proxy hosts: the second request,
/// on a new intercepted connection and over plain absolute-form alike, never reaches the origin.
#[tokio::test]
async fn public_assets_are_served_from_the_cache() {
    let stack = start().await;
    let path = "/_fx/cache?key=forward-asset&cc=public,max-age=600&type=image/png";
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let (_, tunnel) = connect(stack.proxy, "cdn.shop.test:443", None).await;
        let tls = fwd::tls(tunnel, "cdn.shop.test", &stack.proxy_ca_pem(), &[b"h2"])
            .await
            .unwrap();
        let req = Request::get(format!("https://cdn.shop.test{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let reply = fwd::http2(tls, req).await;
        assert_eq!(reply.status, StatusCode::OK);
        statuses.push(reply.header("cache-status").unwrap_or_default());
    }
    assert!(!statuses[0].contains("hit"), "{statuses:?}");
    assert!(statuses[1].contains("hit"), "{statuses:?}");
    assert_eq!(
        stack
            .origin
            .count_matching("/_fx/cache", "key=forward-asset"),
        1
    );

    let plain = format!("http://cdn.shop.test{path}").replace("forward-asset", "forward-plain");
    for _ in 0..2 {
        let io = tokio::net::TcpStream::connect(stack.proxy).await.unwrap();
        assert_eq!(fwd::http1(io, get(&plain)).await.status, StatusCode::OK);
    }
    assert_eq!(
        stack
            .origin
            .count_matching("/_fx/cache", "key=forward-plain"),
        1
    );
    stack.stop().await;
}
