//! Hostile clients over raw sockets: smuggling vectors, oversized and slow requests, connection and
//! HTTP/2 stream floods, malformed CONNECT and absurd URLs. Each gets a 4xx or a closed connection, and
//! after each the proxy still serves everyone else.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use cobrowse_proxy::config::{FileConfig, Limits};
use http::StatusCode;
use http_body_util::Full;
use support::{start_with, Options, Stack};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

async fn stack_with(limits: Limits) -> Stack {
    start_with(Options {
        file: FileConfig {
            limits,
            ..FileConfig::default()
        },
        ..Options::default()
    })
    .await
}

/// Writes `request`, then reads until the server closes, or a second response could only follow a
/// smuggled request (a whole first response plus a short grace), or `WAIT` passes.
async fn exchange(stack: &Stack, request: &[u8]) -> String {
    let mut socket = TcpStream::connect(stack.proxy).await.unwrap();
    let _ = socket.write_all(request).await;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut buf = [0u8; 8192];
    loop {
        let limit = if first_response_complete(&out) {
            Duration::from_millis(300)
        } else {
            deadline.saturating_duration_since(tokio::time::Instant::now())
        };
        match tokio::time::timeout(limit, socket.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `out` holds a response head and the `Content-Length` bytes of its body.
fn first_response_complete(out: &[u8]) -> bool {
    let text = String::from_utf8_lossy(out);
    let Some(end) = text.find("\r\n\r\n") else {
        return false;
    };
    let length = text[..end]
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    out.len() >= end + 4 + length
}

fn status_of(answer: &str) -> Option<u16> {
    answer.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// A 4xx as the only answer, or the connection closed without one.
fn assert_refused(answer: &str, what: &str) {
    match status_of(answer) {
        Some(code) => assert!((400..500).contains(&code), "{what}: {answer}"),
        None => assert!(answer.is_empty(), "{what}: {answer}"),
    }
    assert!(
        answer.matches("HTTP/1.1 ").count() <= 1,
        "{what}: a second (smuggled) request was answered: {answer}"
    );
}

async fn still_serving(stack: &Stack) {
    let reply = stack.get(&format!("{}/healthz", stack.public)).await;
    assert_eq!(reply.status, StatusCode::OK);
}

/// Sends each raw request on its own connection: each is refused, and the proxy serves on after it.
async fn each_refused_and_still_serving(stack: &Stack, cases: Vec<(&str, String)>) {
    for (what, request) in cases {
        let answer = exchange(stack, request.as_bytes()).await;
        assert_refused(&answer, what);
        still_serving(stack).await;
    }
}

fn public_host(stack: &Stack) -> String {
    stack.public.trim_start_matches("http://").to_owned()
}

#[tokio::test]
async fn smuggling_vectors_and_malformed_heads_are_refused() {
    let stack = support::start().await;
    let host = public_host(&stack);
    let smuggled = format!("GET /smuggled HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let cases: Vec<(&str, String)> = vec![
        (
            "CL and TE together",
            format!("POST /api/sessions HTTP/1.1\r\nHost: {host}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "two different Content-Lengths",
            format!("POST /api/sessions HTTP/1.1\r\nHost: {host}\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd{smuggled}"),
        ),
        (
            "non-numeric Content-Length",
            format!("POST /api/sessions HTTP/1.1\r\nHost: {host}\r\nContent-Length: 4x\r\n\r\nabcd"),
        ),
        (
            "signed Content-Length",
            format!("POST /api/sessions HTTP/1.1\r\nHost: {host}\r\nContent-Length: +4\r\n\r\nabcd"),
        ),
        (
            "obs-fold",
            format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Folded: a\r\n b\r\n\r\n"),
        ),
        (
            "bad chunk size",
            format!("POST /api/sessions HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
        ),
        (
            "chunk size overflow",
            format!("POST /api/sessions HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nabc\r\n"),
        ),
        (
            "unknown transfer coding",
            format!("POST /api/sessions HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: gzip\r\n\r\nabcd{smuggled}"),
        ),
        (
            "space before the colon",
            format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nContent-Length : 0\r\n\r\n"),
        ),
        (
            "bare LF inside a header value",
            format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-A: a\rb\r\n\r\n"),
        ),
        ("not HTTP at all", "\u{16}\u{3}\u{1}garbage\r\n\r\n".to_owned()),
        (
            "HTTP/1.1 without Host",
            "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n".to_owned(),
        ),
    ];
    each_refused_and_still_serving(&stack, cases).await;
    stack.stop().await;
}

#[tokio::test]
async fn oversized_request_lines_and_headers_get_431_or_414() {
    let stack = support::start().await;
    let host = public_host(&stack);
    let long_line = format!(
        "GET /{} HTTP/1.1\r\nHost: {host}\r\n\r\n",
        "a".repeat(100 << 10)
    );
    let huge_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Big: {}\r\n\r\n",
        "b".repeat(100 << 10)
    );
    let many: String = (0..300).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many_headers = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n{many}\r\n");
    for (what, request) in [
        ("100 KiB request line", long_line),
        ("100 KiB header", huge_header),
        ("300 headers", many_headers),
    ] {
        let answer = exchange(&stack, request.as_bytes()).await;
        assert_refused(&answer, what);
        if let Some(code) = status_of(&answer) {
            assert!([400, 414, 431].contains(&code), "{what}: {answer}");
        }
        still_serving(&stack).await;
    }
    stack.stop().await;
}

#[tokio::test]
async fn slow_headers_and_slow_bodies_time_out() {
    let stack = stack_with(Limits {
        client_header_timeout_ms: 500,
        client_body_idle_ms: 500,
        ..Limits::default()
    })
    .await;
    let host = public_host(&stack);

    // Slowloris: a request head that never ends.
    let mut socket = TcpStream::connect(stack.proxy).await.unwrap();
    socket
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-A: ").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(WAIT, socket.read_to_end(&mut out)).await;
    assert!(closed.is_ok(), "the server closed the slow connection");
    let answer = String::from_utf8_lossy(&out);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );

    // An API body that stops arriving.
    let mut socket = TcpStream::connect(stack.proxy).await.unwrap();
    socket
        .write_all(
            format!("POST /api/sessions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"url\"").as_bytes(),
        )
        .await
        .unwrap();
    let mut out = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, socket.read(&mut out))
        .await
        .expect("an answer in time")
        .unwrap();
    let answer = String::from_utf8_lossy(&out[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // A proxied upload that stops arriving: the upstream request fails instead of waiting forever.
    let (id, _) = stack.session("https://www.shop.test/").await;
    let url = url::Url::parse(&stack.proxied(&id, "https://www.shop.test/_fx/upload")).unwrap();
    let proxied_host = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let mut socket = TcpStream::connect(stack.proxy).await.unwrap();
    socket
        .write_all(
            format!("POST /_fx/upload HTTP/1.1\r\nHost: {proxied_host}\r\nContent-Length: 100000\r\n\r\nfirst bytes").as_bytes(),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    let ended = tokio::time::timeout(WAIT, socket.read_to_end(&mut out)).await;
    assert!(ended.is_ok(), "the stalled upload ended in time");
    let answer = String::from_utf8_lossy(&out);
    if let Some(code) = status_of(&answer) {
        assert!(code >= 400, "the stalled upload failed: {answer}");
    }
    // The same upload sent whole arrives whole, so the failure above was the stall's.
    let whole = stack
        .request(http::Method::POST, url.as_str(), &[], vec![b'u'; 100_000])
        .await;
    assert_eq!(whole.status, StatusCode::OK);
    assert_eq!(whole.json()["bytes"], 100_000);
    still_serving(&stack).await;
    stack.stop().await;
}

#[tokio::test]
async fn a_connection_flood_is_refused_cleanly_and_service_resumes() {
    let stack = stack_with(Limits {
        max_connections: 8,
        ..Limits::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(stack.proxy).await.unwrap());
    }
    // Give the accept loop time to take all eight slots.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut refused = 0;
    for _ in 0..12 {
        let mut extra = TcpStream::connect(stack.proxy).await.unwrap();
        let _ = extra
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let mut buf = [0u8; 64];
        match tokio::time::timeout(WAIT, extra.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => refused += 1,
            other => panic!("a connection over the cap was served: {other:?}"),
        }
    }
    assert_eq!(
        refused, 12,
        "every connection over the cap is closed at once"
    );
    drop(held);
    let mut served = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut socket = TcpStream::connect(stack.proxy).await.unwrap();
        let host = public_host(&stack);
        let _ = socket
            .write_all(
                format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(WAIT, socket.read_to_end(&mut out)).await;
        if out.starts_with(b"HTTP/1.1 200") {
            served = true;
            break;
        }
    }
    assert!(served, "once the flood ends, clients are served again");
    stack.stop().await;
}

/// The server's SETTINGS frame after an HTTP/2 preface.
async fn h2_settings(stack: &Stack) -> Vec<(u16, u32)> {
    let mut socket = TcpStream::connect(stack.proxy).await.unwrap();
    socket
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let mut head = [0u8; 9];
    tokio::time::timeout(WAIT, socket.read_exact(&mut head))
        .await
        .expect("a frame in time")
        .unwrap();
    assert_eq!(head[3], 0x4, "the first frame is SETTINGS");
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let mut payload = vec![0u8; len];
    socket.read_exact(&mut payload).await.unwrap();
    payload
        .chunks_exact(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect()
}

#[tokio::test]
async fn http2_stream_floods_and_rapid_resets_are_bounded() {
    let stack = support::start().await;
    let settings = h2_settings(&stack).await;
    assert!(
        settings.contains(&(0x3, 100)),
        "SETTINGS_MAX_CONCURRENT_STREAMS is 100: {settings:?}"
    );

    // Rapid reset: open a stream and cancel it at once, thousands of times on one connection.
    let socket = TcpStream::connect(stack.proxy).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(socket),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(conn);
    let uri = format!("{}/healthz", stack.public);
    let mut sent = 0;
    for _ in 0..5000 {
        if sender.ready().await.is_err() {
            break;
        }
        let req = http::Request::get(uri.as_str())
            .body(Full::new(Bytes::new()))
            .unwrap();
        // Polled once (HEADERS go out), then dropped (RST_STREAM CANCEL).
        let _ = tokio::time::timeout(Duration::ZERO, sender.send_request(req)).await;
        sent += 1;
    }
    let ended = tokio::time::timeout(WAIT, connection).await;
    assert!(
        sent < 5000 || ended.is_ok(),
        "the server ends a connection that keeps resetting streams (sent {sent})"
    );
    still_serving(&stack).await;
    stack.stop().await;
}

#[tokio::test]
async fn malformed_connect_and_absurd_urls_get_4xx() {
    let stack = support::start().await;
    let host = public_host(&stack);
    let long_host = "a".repeat(300);
    let cases = vec![
        (
            "CONNECT without a port",
            "CONNECT example.com HTTP/1.1\r\nHost: example.com\r\n\r\n".to_owned(),
        ),
        (
            "CONNECT to port 0",
            "CONNECT example.com:0 HTTP/1.1\r\nHost: example.com:0\r\n\r\n".to_owned(),
        ),
        (
            "CONNECT to a huge port",
            "CONNECT example.com:99999 HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
        ),
        (
            "CONNECT without a host",
            "CONNECT :443 HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
        ),
        (
            "CONNECT with a path",
            "CONNECT http://example.com/ HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
        ),
        (
            "unterminated IPv6 host",
            "GET http://[::1/ HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
        ),
        (
            "a 300-byte label",
            format!("GET http://{long_host}.com/ HTTP/1.1\r\nHost: {long_host}.com\r\n\r\n"),
        ),
        (
            "asterisk form",
            format!("OPTIONS * HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        ),
        (
            "unknown scheme",
            "GET ftp://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n".to_owned(),
        ),
        (
            "control bytes in the path",
            format!("GET /a\u{1}b HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        ),
        (
            "HTTP/2.0 on an HTTP/1 request line",
            format!("GET / HTTP/2.0\r\nHost: {host}\r\n\r\n"),
        ),
        (
            "a bad Host header",
            "GET / HTTP/1.1\r\nHost: a b c\r\n\r\n".to_owned(),
        ),
    ];
    each_refused_and_still_serving(&stack, cases).await;
    stack.stop().await;
}
