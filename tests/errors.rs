//! Failures get clear answers and the proxy keeps serving: upstream refused, stalled, reset, untrusted TLS,
//! compression bombs, private-address targets, unknown sessions and bad API input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use support::{start, start_with, Options, Stack};

async fn still_serving(stack: &Stack) {
    let health = stack.get(&format!("{}/healthz", stack.public)).await;
    assert_eq!(health.status, StatusCode::OK, "the proxy keeps serving");
}

#[tokio::test]
async fn refused_connection_is_a_502_page() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let stack = start_with(Options {
        extra_resolve: vec![format!("refused.example={closed}")],
        ..Options::default()
    })
    .await;
    let (_, visitor) = stack.session("http://refused.example/").await;
    let reply = stack.get(&visitor).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(
        reply.text().contains("refused the connection"),
        "{}",
        reply.text()
    );
    still_serving(&stack).await;
    stack.stop().await;
}

#[tokio::test]
async fn upstream_that_never_answers_is_a_504() {
    let mut options = Options::default();
    options.file.upstream.headers_ms = 300;
    let stack = start_with(options).await;
    let (id, _) = stack.session("https://www.shop.test/").await;
    let reply = stack
        .get(&stack.proxied(&id, "https://www.shop.test/_fx/stall?ms=5000"))
        .await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        reply.text().contains("did not answer in time"),
        "{}",
        reply.text()
    );
    still_serving(&stack).await;
    stack.stop().await;
}

#[tokio::test]
async fn untrusted_upstream_certificate_is_an_error_page() {
    let stack = start_with(Options {
        trust_origin_ca: false,
        ..Options::default()
    })
    .await;
    let (_, visitor) = stack.session("https://www.shop.test/").await;
    let reply = stack.get(&visitor).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    let text = reply.text();
    assert!(
        text.contains("TLS") && text.to_lowercase().contains("certificate"),
        "{text}"
    );
    still_serving(&stack).await;
    stack.stop().await;
}

#[tokio::test]
async fn reset_mid_body_truncates_the_stream_without_harm() {
    let stack = start().await;
    let (id, _) = stack.session("https://www.shop.test/").await;
    let response = stack
        .send(
            Method::GET,
            &stack.proxied(&id, "http://www.shop.test/_fx/reset"),
            &[],
            "",
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "headers were already on their way"
    );
    let body = response.into_body().collect().await;
    assert!(body.is_err(), "the client learns the body is incomplete");
    still_serving(&stack).await;
    stack.stop().await;
}

#[tokio::test]
async fn compression_bomb_is_cut_off() {
    let mut options = Options::default();
    options.file.limits.max_decoded_body = 8 << 20;
    let stack = start_with(options).await;
    let (id, _) = stack.session("https://www.shop.test/").await;
    for enc in ["gzip", "br", "zstd"] {
        let url = stack.proxied(
            &id,
            &format!("https://www.shop.test/_fx/bomb?enc={enc}&mb=256&type=text/html"),
        );
        let response = stack
            .send(Method::GET, &url, &[("accept-encoding", enc)], "")
            .await;
        if response.status() == StatusCode::BAD_GATEWAY {
            continue; // cut off before the first byte: an error page
        }
        let mut body = response.into_body();
        let mut received = 0usize;
        let ended_with_error = loop {
            match body.frame().await {
                Some(Ok(frame)) => received += frame.data_ref().map_or(0, |d| d.len()),
                Some(Err(_)) => break true,
                None => break false,
            }
        };
        assert!(
            ended_with_error,
            "{enc}: the stream is aborted, not ended as if complete"
        );
        assert!(
            received <= (8 << 20) + (1 << 20),
            "{enc}: {received} bytes passed the 8 MiB cap"
        );
    }
    still_serving(&stack).await;
    stack.stop().await;
}

#[tokio::test]
async fn private_address_targets_are_refused() {
    let stack = start().await;
    let port = stack.origin.addr.port();
    for target in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://0x7f.0.0.1:{port}/"),
        format!("http://2130706433:{port}/"),
        format!("http://0177.0.0.01:{port}/"),
        format!("http://127.1:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        "http://10.0.0.1/".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[fd00::1]/".to_owned(),
        "http://0.0.0.0/".to_owned(),
    ] {
        let (_, visitor) = stack.session(&target).await;
        let reply = stack.get(&visitor).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{target}: {}",
            reply.text()
        );
        assert!(
            reply.text().contains("not a public address"),
            "{target}: {}",
            reply.text()
        );
    }
    assert!(
        stack.origin.requests().is_empty(),
        "nothing reached the loopback origin"
    );
    stack.stop().await;
}

#[tokio::test]
async fn unknown_sessions_and_hosts_are_refused() {
    let stack = start().await;
    let (id, _) = stack.session("https://www.shop.test/").await;
    let other = stack
        .proxied(&id, "https://www.shop.test/")
        .replace(&id, "zzzzzzzzzz");
    assert_eq!(stack.get(&other).await.status, StatusCode::NOT_FOUND);
    let bad_tag = stack
        .proxied(&id, "https://www.shop.test/")
        .replace("-s.", "-q.");
    assert_eq!(
        stack.get(&bad_tag).await.status,
        StatusCode::MISDIRECTED_REQUEST
    );
    assert_eq!(
        stack.get("http://elsewhere.example/").await.status,
        StatusCode::MISDIRECTED_REQUEST
    );
    // An absolute-form request line is a forward-proxy request: a name that does not resolve is a 502.
    let raw = raw_exchange(&stack, "GET http://elsewhere.invalid/ HTTP/1.1\r\nHost: elsewhere.invalid\r\nConnection: close\r\n\r\n").await;
    assert!(raw.starts_with("HTTP/1.1 502"), "{raw}");
    assert!(raw.contains("could not resolve elsewhere.invalid"), "{raw}");
    stack.stop().await;
}

async fn raw_exchange(stack: &Stack, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(stack.proxy).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        socket.read_to_end(&mut out),
    )
    .await
    .expect("answer within 10 s")
    .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn api_answers_bad_input_with_json_errors() {
    let stack = start().await;
    let api = format!("{}/api/sessions", stack.public);
    for (body, status) in [
        ("not json", StatusCode::BAD_REQUEST),
        (r#"{"url":"ftp://x.test/"}"#, StatusCode::BAD_REQUEST),
        (r#"{"url":"no scheme"}"#, StatusCode::BAD_REQUEST),
        (
            r#"{"url":"http://www.shop.test.abcdefghij-s.localhost/"}"#,
            StatusCode::FORBIDDEN,
        ),
    ] {
        let reply = stack
            .request(
                Method::POST,
                &api,
                &[("content-type", "application/json")],
                body,
            )
            .await;
        assert_eq!(reply.status, status, "{body}");
        assert!(
            reply.json()["error"]
                .as_str()
                .is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
    let huge = format!(r#"{{"url":"https://x.test/{}"}}"#, "a".repeat(64 << 10));
    let reply = stack.request(Method::POST, &api, &[], huge).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(stack.get(&api).await.status, StatusCode::METHOD_NOT_ALLOWED);
    stack.stop().await;
}

#[tokio::test]
async fn session_api_contract() {
    let stack = start().await;
    let reply = stack
        .request(
            Method::POST,
            &format!("{}/api/sessions", stack.public),
            &[],
            r#"{"url":"https://www.shop.test/a?b=c"}"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let json = reply.json();
    let id = json["id"].as_str().unwrap();
    assert_eq!(
        json["visitor_url"],
        stack.proxied(id, "https://www.shop.test/a?b=c")
    );
    // The agent link carries the agent's relay credential.
    assert!(json["agent_url"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}/agent/{id}?t=v1.a.{id}.", stack.public)));
    assert!(time::OffsetDateTime::parse(
        json["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339
    )
    .is_ok());
    let go = stack
        .get(&format!(
            "{}/go?url=https%3A%2F%2Fwww.shop.test%2F",
            stack.public
        ))
        .await;
    assert_eq!(go.status, StatusCode::FOUND);
    assert!(go.header("location").unwrap().contains(".shop.test."));
    let agent = stack
        .get(&format!("{}/__cobrowse/agent.js", stack.public))
        .await;
    assert_eq!(agent.status, StatusCode::OK);
    assert!(agent.header("content-type").unwrap().contains("javascript"));
    let metrics = stack.get(&format!("{}/metrics", stack.public)).await.text();
    assert!(metrics.contains("cobrowse_requests_total"), "{metrics}");
    let console = stack.get(&format!("{}/", stack.public)).await;
    assert!(console
        .header("content-security-policy")
        .unwrap()
        .contains("frame-ancestors 'none'"));
    stack.stop().await;
}

#[tokio::test]
async fn service_worker_scripts_are_refused() {
    let stack = start().await;
    let (id, _) = stack.session("https://www.shop.test/").await;
    let url = stack.proxied(&id, "https://www.shop.test/sw.js");
    let refused = stack
        .request(Method::GET, &url, &[("service-worker", "script")], "")
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        stack.get(&url).await.status,
        StatusCode::OK,
        "the same file as a plain script loads"
    );
    stack.stop().await;
}
