//! Access control over real sockets: the deployment's target allow/deny lists on every entry point, and
//! per-client rate limits on session creation and relay joins.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use cobrowse_proxy::access::AccessConfig;
use cobrowse_proxy::config::FileConfig;
use http::StatusCode;
use support::{forward, start_with, Options, Stack};

async fn stack_with(access: AccessConfig) -> Stack {
    start_with(Options {
        file: FileConfig {
            access,
            ..FileConfig::default()
        },
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn denied_targets_are_refused_at_every_entry_point() {
    let stack = stack_with(AccessConfig {
        deny_targets: vec!["*.internal.test".into(), "api.shop.test".into()],
        ..AccessConfig::default()
    })
    .await;
    let refused = stack.create_session("https://db.internal.test/").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());
    assert!(
        refused.text().contains("does not allow"),
        "{}",
        refused.text()
    );

    // A page of an allowed site asking for a denied host's resource, through the rewriting proxy.
    let (id, _) = stack.session("https://www.shop.test/").await;
    let sub = stack
        .get(&stack.proxied(&id, "https://api.shop.test/_fx/echo"))
        .await;
    assert_eq!(sub.status, StatusCode::FORBIDDEN, "{}", sub.text());
    assert!(sub.text().contains("target policy"), "{}", sub.text());
    let allowed = stack
        .get(&stack.proxied(&id, "https://www.shop.test/"))
        .await;
    assert_eq!(allowed.status, StatusCode::OK);

    // The forward proxy: absolute-form and CONNECT.
    let absolute = forward::http1(
        tokio::net::TcpStream::connect(stack.proxy).await.unwrap(),
        forward::get("http://api.shop.test/_fx/echo"),
    )
    .await;
    assert_eq!(absolute.status, StatusCode::FORBIDDEN);
    let (code, _) = forward::connect(stack.proxy, "db.internal.test:443", None).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        stack.origin.request_count("api.shop.test"),
        0,
        "no denied host reached the origin"
    );
    stack.stop().await;
}

#[tokio::test]
async fn an_allow_list_admits_only_its_hosts() {
    let stack = stack_with(AccessConfig {
        allow_targets: vec!["*.shop.test".into()],
        ..AccessConfig::default()
    })
    .await;
    assert_eq!(
        stack.create_session("https://www.shop.test/").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        stack.create_session("https://www.other.test/").await.status,
        StatusCode::FORBIDDEN
    );
    stack.stop().await;
}

#[tokio::test]
async fn session_creation_is_rate_limited_per_client() {
    let stack = stack_with(AccessConfig {
        sessions_per_minute: 3,
        ..AccessConfig::default()
    })
    .await;
    for _ in 0..3 {
        assert_eq!(
            stack.create_session("https://www.shop.test/").await.status,
            StatusCode::CREATED
        );
    }
    let limited = stack.create_session("https://www.shop.test/").await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.header("retry-after").as_deref(), Some("60"));
    assert!(limited.json()["error"]
        .as_str()
        .unwrap()
        .contains("sessions"));
    let go = stack
        .get(&format!(
            "{}/go?url=https%3A%2F%2Fwww.shop.test%2F",
            stack.public
        ))
        .await;
    assert_eq!(
        go.status,
        StatusCode::TOO_MANY_REQUESTS,
        "/go shares the budget"
    );
    assert_eq!(
        stack.get(&format!("{}/healthz", stack.public)).await.status,
        StatusCode::OK,
        "the rest of the API still answers"
    );
    stack.stop().await;
}

#[tokio::test]
async fn relay_joins_are_rate_limited_per_client() {
    let stack = stack_with(AccessConfig {
        joins_per_minute: 2,
        ..AccessConfig::default()
    })
    .await;
    let relay = format!("{}{}", stack.public, cobrowse_proxy::relay::PATH);
    for _ in 0..2 {
        let attempt = stack.get(&relay).await;
        assert_ne!(attempt.status, StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(
        stack.get(&relay).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    stack.stop().await;
}
