//! The data policy over real sockets (`docs/DATA-POLICY.md`): visitor metadata recorded from page loads
//! and the relay, listed, deleted, kept across a restart, expired after 30 days on an injected clock;
//! the content-free event log only when debugging, for 7 days; the data API behind the API token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cobrowse_proxy::cache::ManualClock;
use cobrowse_proxy::config::FileConfig;
use http::{Method, StatusCode};
use support::ws::{self, Links};

const DAY: Duration = Duration::from_secs(24 * 3600);
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 \
                      (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

/// A data folder that outlives one stack (restart tests) and is removed at the end.
struct DataDir(PathBuf);

impl DataDir {
    fn new(name: &str) -> DataDir {
        DataDir(std::env::temp_dir().join(format!(
            "cobrowse-data-policy-{name}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        )))
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn options(dir: &DataDir, clock: Option<Arc<ManualClock>>, debug: bool) -> support::Options {
    support::Options {
        file: FileConfig {
            debug_events: Some(debug),
            ..FileConfig::default()
        },
        clock: clock.map(|c| c as Arc<dyn cobrowse_proxy::cache::Clock>),
        data_dir: Some(dir.0.clone()),
        ..support::Options::default()
    }
}

/// Every byte of every file under `dir`.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.extend(std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

fn holds(bytes: &[u8], needle: &str) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Creates a session, with `visitor` (external id, identities) when given.
async fn session(stack: &support::Stack, visitor: Option<serde_json::Value>) -> Links {
    let mut body = serde_json::json!({ "url": "https://www.shop.test/" });
    if let Some(v) = visitor {
        body["visitor"] = v;
    }
    let reply = stack
        .request(
            Method::POST,
            &format!("{}/api/sessions", stack.public),
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    Links::from_json(&reply.json())
}

/// A top-level page load by the visitor's browser.
async fn load_page(stack: &support::Stack, id: &str, target: &str, ua: &str) {
    let reply = stack
        .request(
            Method::GET,
            &stack.proxied(id, target),
            &[("user-agent", ua), ("sec-fetch-dest", "document")],
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

async fn api(stack: &support::Stack, method: Method, path: &str) -> support::Reply {
    stack
        .request(method, &format!("{}{path}", stack.public), &[], "")
        .await
}

async fn visitor(stack: &support::Stack, id: &str) -> Option<serde_json::Value> {
    let reply = api(stack, Method::GET, &format!("/api/visitors/{id}")).await;
    match reply.status {
        StatusCode::OK => Some(reply.json()),
        StatusCode::NOT_FOUND => None,
        other => panic!("GET visitor: {other} {}", reply.text()),
    }
}

async fn visitor_ids(stack: &support::Stack) -> Vec<String> {
    let reply = api(stack, Method::GET, "/api/visitors").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let json = reply.json();
    json["visitors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls (bounded: 5 s) until the visitor's `online` is `want`; the relay records it as it happens.
async fn wait_online(stack: &support::Stack, id: &str, want: bool) -> serde_json::Value {
    for _ in 0..100 {
        if let Some(v) = visitor(stack, id).await {
            if v["online"] == want {
                return v;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("visitor {id} never became online={want}");
}

#[tokio::test]
async fn visitor_metadata_is_recorded_listed_and_deleted() {
    let dir = DataDir::new("record");
    let stack = support::start_with(options(&dir, None, false)).await;
    let identities = serde_json::json!({ "email": "v@example.com", "crm": "C-17" });
    let s = session(
        &stack,
        Some(serde_json::json!({ "external_id": "ext-123", "identities": identities })),
    )
    .await;
    load_page(
        &stack,
        &s.id,
        "https://www.shop.test/index.html?q=QUERY-MARKER#frag",
        FIREFOX,
    )
    .await;
    // An asset or a frame is not the visitor's page.
    let css = stack.proxied(&s.id, "https://cdn.shop.test/css/site.css");
    let _ = stack.get(&css).await;

    let origin = stack
        .proxied(&s.id, "https://www.shop.test/")
        .trim_end_matches('/')
        .to_owned();
    let mut socket = ws::open(
        &stack,
        &s.visitor,
        &[("origin", &origin), ("user-agent", IPHONE)],
    )
    .await;
    ws::until(&mut socket, "hello").await;
    let v = wait_online(&stack, &s.id, true).await;
    assert_eq!(v["id"], s.id.as_str());
    assert_eq!(v["external_id"], "ext-123");
    assert_eq!(v["identities"], identities);
    assert_eq!(v["last_ip"], "127.0.0.1");
    assert_eq!(
        v["last_page_url"], "https://www.shop.test/index.html",
        "no query string or fragment is kept"
    );
    assert!(v["last_page_at"].is_string() && v["last_seen"].is_string());
    assert_eq!(
        v["device"], "mobile",
        "the relay's User-Agent is the latest"
    );
    assert_eq!(v["browser"], "Safari");
    assert!(v["expires_at"].is_string());
    assert_eq!(visitor_ids(&stack).await, vec![s.id.clone()]);

    ws::close(socket).await;
    wait_online(&stack, &s.id, false).await;

    let gone = api(&stack, Method::DELETE, &format!("/api/visitors/{}", s.id)).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    assert!(visitor(&stack, &s.id).await.is_none());
    assert!(visitor_ids(&stack).await.is_empty());
    let again = api(&stack, Method::DELETE, &format!("/api/visitors/{}", s.id)).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.json()["error"], "not found");
    let bogus = api(&stack, Method::DELETE, "/api/visitors/not-an-id").await;
    assert_eq!(bogus.status, StatusCode::NOT_FOUND);
    stack.stop().await;

    let bytes = all_bytes(&dir.0);
    for gone in [
        "ext-123",
        "v@example.com",
        "C-17",
        "index.html",
        "127.0.0.1",
    ] {
        assert!(!holds(&bytes, gone), "{gone} is still on disk after DELETE");
    }
    assert!(
        !holds(&bytes, "QUERY-MARKER"),
        "a query string reached the disk"
    );
}

#[tokio::test]
async fn the_deployers_visitor_fields_are_checked() {
    let stack = support::start().await;
    let long = "x".repeat(300);
    for bad in [
        serde_json::json!({ "external_id": long }),
        serde_json::json!({ "identities": { "email": long } }),
        serde_json::json!({ "nickname": "unknown field" }),
    ] {
        let body = serde_json::json!({ "url": "https://www.shop.test/", "visitor": bad });
        let reply = stack
            .request(
                Method::POST,
                &format!("{}/api/sessions", stack.public),
                &[("content-type", "application/json")],
                body.to_string(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    stack.stop().await;
}

#[tokio::test]
async fn visitor_metadata_survives_a_restart_and_a_deletion_does_too() {
    let dir = DataDir::new("restart");
    let first = support::start_with(options(&dir, None, false)).await;
    let kept = session(&first, Some(serde_json::json!({ "external_id": "KEPT-1" }))).await;
    let deleted = session(
        &first,
        Some(serde_json::json!({ "external_id": "DELETED-2" })),
    )
    .await;
    load_page(&first, &kept.id, "https://www.shop.test/", FIREFOX).await;
    load_page(&first, &deleted.id, "https://www.shop.test/", FIREFOX).await;
    let reply = api(
        &first,
        Method::DELETE,
        &format!("/api/visitors/{}", deleted.id),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    first.stop().await;

    let second = support::start_with(options(&dir, None, false)).await;
    assert_eq!(visitor_ids(&second).await, vec![kept.id.clone()]);
    let v = visitor(&second, &kept.id)
        .await
        .expect("kept across the restart");
    assert_eq!(v["external_id"], "KEPT-1");
    assert_eq!(v["last_page_url"], "https://www.shop.test/");
    assert_eq!(v["browser"], "Firefox");
    assert_eq!(v["online"], false);
    assert!(visitor(&second, &deleted.id).await.is_none());
    second.stop().await;
    assert!(!holds(&all_bytes(&dir.0), "DELETED-2"));
}

#[tokio::test]
async fn visitors_are_kept_29_days_and_gone_at_30() {
    let dir = DataDir::new("expiry");
    let clock = Arc::new(ManualClock::new());
    let stack = support::start_with(options(&dir, Some(clock.clone()), false)).await;
    let old = session(&stack, Some(serde_json::json!({ "external_id": "OLD-30" }))).await;
    load_page(&stack, &old.id, "https://www.shop.test/", FIREFOX).await;
    clock.advance(10 * DAY);
    let recent = session(&stack, None).await;
    load_page(&stack, &recent.id, "https://www.shop.test/", FIREFOX).await;
    clock.advance(19 * DAY);
    let mut ids = visitor_ids(&stack).await;
    ids.sort();
    let mut both = vec![old.id.clone(), recent.id.clone()];
    both.sort();
    assert_eq!(ids, both, "29 days after last seen: kept");
    clock.advance(DAY);
    assert_eq!(
        visitor_ids(&stack).await,
        vec![recent.id.clone()],
        "30 days: gone from the API before any sweep"
    );
    assert!(visitor(&stack, &old.id).await.is_none());
    stack.stop().await;
    assert!(
        holds(&all_bytes(&dir.0), "OLD-30"),
        "no sweep has run yet (the hourly one is far off): the check below means something"
    );

    // A restart sweeps at once: the expired record leaves the disk.
    let again = support::start_with(options(&dir, Some(clock.clone()), false)).await;
    assert_eq!(visitor_ids(&again).await, vec![recent.id.clone()]);
    again.stop().await;
    assert!(!holds(&all_bytes(&dir.0), "OLD-30"), "swept off the disk");
}

async fn events(stack: &support::Stack, id: &str) -> serde_json::Value {
    let reply = api(stack, Method::GET, &format!("/api/events?session={id}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()
}

/// A session with page loads and relay traffic: a visitor that consents and sends a snapshot, an agent
/// that watches. Returns the session and the snapshot's size in bytes.
async fn busy_session(stack: &support::Stack) -> (Links, usize) {
    let s = session(stack, None).await;
    load_page(
        stack,
        &s.id,
        "https://www.shop.test/?q=EVENT-QUERY",
        FIREFOX,
    )
    .await;
    let mut visitor = ws::open(stack, &s.visitor, &[]).await;
    ws::until(&mut visitor, "hello").await;
    let mut agent = ws::open(stack, &s.agent, &[]).await;
    ws::until(&mut agent, "hello").await;
    ws::send(&mut visitor, r#"{"t":"consent","granted":true}"#).await;
    let snap = r#"{"t":"snap","f":"","doc":{"i":1,"x":"EVENT-CONTENT"}}"#;
    ws::send(&mut visitor, snap).await;
    ws::until(&mut agent, "snap").await;
    ws::close(visitor).await;
    ws::close(agent).await;
    (s, snap.len())
}

#[tokio::test]
async fn no_event_log_unless_debugging() {
    let dir = DataDir::new("no-events");
    let stack = support::start_with(options(&dir, None, false)).await;
    let (s, _) = busy_session(&stack).await;
    let json = events(&stack, &s.id).await;
    assert_eq!(json["enabled"], false);
    assert_eq!(json["events"], serde_json::json!([]));
    stack.stop().await;
}

#[tokio::test]
async fn debug_events_are_content_free_and_kept_7_days() {
    let dir = DataDir::new("events");
    let clock = Arc::new(ManualClock::new());
    let stack = support::start_with(options(&dir, Some(clock.clone()), true)).await;
    let (s, snap_bytes) = busy_session(&stack).await;
    // Leaves are recorded as the server notices the closes: poll, bounded.
    let mut list = Vec::new();
    for _ in 0..100 {
        let json = events(&stack, &s.id).await;
        assert_eq!(json["enabled"], true);
        list = json["events"].as_array().unwrap().clone();
        let leaves = list.iter().filter(|e| e["name"] == "relay.leave").count();
        if leaves == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let names: Vec<&str> = list.iter().map(|e| e["name"].as_str().unwrap()).collect();
    for name in [
        "session.created",
        "page.view",
        "relay.join",
        "relay.message",
        "relay.leave",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let snap = list
        .iter()
        .find(|e| e["name"] == "relay.message" && e["bytes"] == snap_bytes)
        .expect("the snapshot's size is logged");
    assert_eq!(snap["role"], "visitor");
    let text = serde_json::to_string(&list).unwrap();
    assert!(!text.contains("EVENT-CONTENT") && !text.contains("EVENT-QUERY"));
    for e in &list {
        let keys: Vec<&String> = e.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["at", "bytes", "name", "role", "session"], "{e}");
    }

    clock.advance(6 * DAY);
    assert!(!events(&stack, &s.id).await["events"]
        .as_array()
        .unwrap()
        .is_empty());
    clock.advance(DAY);
    assert_eq!(events(&stack, &s.id).await["events"], serde_json::json!([]));
    stack.stop().await;
    let bytes = all_bytes(&dir.0);
    assert!(!holds(&bytes, "EVENT-CONTENT") && !holds(&bytes, "EVENT-QUERY"));
}

#[tokio::test]
async fn the_data_api_needs_the_api_token_when_one_is_set() {
    let stack = support::start_with(support::Options {
        file: FileConfig {
            api_token: Some("T0KEN".into()),
            ..FileConfig::default()
        },
        ..support::Options::default()
    })
    .await;
    let id = cobrowse_proxy::url_codec::SessionId::random();
    for (method, path) in [
        (Method::GET, "/api/visitors".to_owned()),
        (Method::GET, format!("/api/visitors/{}", id.as_str())),
        (Method::DELETE, format!("/api/visitors/{}", id.as_str())),
        (Method::GET, format!("/api/events?session={}", id.as_str())),
    ] {
        let url = format!("{}{path}", stack.public);
        let refused = stack.request(method.clone(), &url, &[], "").await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        let wrong = [("authorization", "Bearer nope")];
        let refused = stack.request(method.clone(), &url, &wrong, "").await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        let auth = [("authorization", "Bearer T0KEN")];
        let allowed = stack.request(method.clone(), &url, &auth, "").await;
        assert_ne!(allowed.status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    let url = format!("{}/api/visitors", stack.public);
    let post = stack
        .request(Method::POST, &url, &[("authorization", "Bearer T0KEN")], "")
        .await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    stack.stop().await;
}
