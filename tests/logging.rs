//! Logs carry method, target host, status, size and time, and never a body, cookie, query, path or secret
//! header value. (Its own test binary: it owns the process's log subscriber.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use http::Method;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_hold_no_content() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("trace,hyper=off,hyper_util=off,h2=off,rustls=off,hickory_resolver=off,hickory_proto=off")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let stack = support::start().await;
    let (id, _) = stack.session("https://www.shop.test/").await;
    let secret = "S3CR3T-7f1c";
    let url = stack.proxied(
        &id,
        &format!("https://api.shop.test/_fx/echo?token={secret}"),
    );
    let reply = stack
        .request(
            Method::POST,
            &url,
            &[
                ("cookie", &format!("sid={secret}")),
                ("authorization", &format!("Bearer {secret}")),
            ],
            format!("{{\"password\":\"{secret}\"}}"),
        )
        .await;
    assert!(
        reply.text().contains(secret),
        "the echo did see the secret, so the test means something"
    );
    let query = format!(
        "h={}",
        url::form_urlencoded::byte_serialize(
            format!("Set-Cookie:s={secret}; Domain=evil.test").as_bytes()
        )
        .collect::<String>()
    );
    let _ = stack
        .get(&stack.proxied(&id, &format!("https://www.shop.test/_fx/respond?{query}")))
        .await;
    let _ = stack
        .get(&stack.proxied(&id, &format!("https://www.shop.test/private/{secret}/page")))
        .await;
    stack.stop().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("route=\"proxied\"") && logs.contains("host=api.shop.test"),
        "{logs}"
    );
    assert!(
        logs.contains("status=200") && logs.contains("bytes="),
        "{logs}"
    );
    assert!(
        logs.contains("dropped a Set-Cookie"),
        "the rejected cookie is noted, without its value: {logs}"
    );
    assert!(!logs.contains(secret), "a secret reached the log:\n{logs}");
    assert!(
        !logs.contains("_fx/echo") && !logs.contains("/private/"),
        "a path reached the log:\n{logs}"
    );
}
