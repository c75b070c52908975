//! Scale-out over real sockets: a real NATS server (Debian's `nats-server`) and several proxy nodes on
//! loopback, with no sticky routing: a visitor on one node is mirrored to an agent on another, links work
//! on every node, revocation and purges reach every node, and an engine restart is survived.
//!
//! Skipped with a message when `nats-server` is absent, unless `COBROWSE_REQUIRE_SERVERS=1` (CI).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use cobrowse_proxy::config::ClusterConfig;
use cobrowse_proxy::session::SigningKey;
use futures_util::StreamExt;
use http::{Method, StatusCode};
use support::nats::Engine;
use support::ws::{self, send, Links, Ws};
use support::{Options, Stack};
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "a test deployment's shared signing key, long enough";
const WAIT: Duration = Duration::from_secs(20);

async fn node(engine: &Engine) -> Stack {
    node_with_store(engine, None).await
}

/// A node of the deployment; with `postgres`, its store is that shared database.
async fn node_with_store(engine: &Engine, postgres: Option<&str>) -> Stack {
    let mut options = Options::default();
    options.file.cluster = ClusterConfig {
        nats_url: Some(engine.url()),
        signing_key: Some(KEY.into()),
        postgres_url: postgres.map(str::to_owned),
        ..ClusterConfig::default()
    };
    support::start_with(options).await
}

/// A session created on `stack`: its id and the two credentials (signed with the deployment's key).
async fn session(stack: &Stack) -> Links {
    let reply = stack.create_session("https://www.shop.test/").await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    Links::from_json_signed(&reply.json(), &SigningKey::shared(KEY))
}

/// Reads until a message of type `t` arrives; panics on close or after `WAIT`.
async fn until(ws: &mut Ws, t: &str) -> serde_json::Value {
    until_where(ws, t, |_| true).await
}

async fn until_where(
    ws: &mut Ws,
    t: &str,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {t} within {WAIT:?}"))
            .expect("socket open")
            .expect("no socket error");
        if let Message::Text(text) = msg {
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            if json["t"] == t && wanted(&json) {
                return json;
            }
        }
    }
}

/// Waits for the socket to close; returns the close code.
async fn closed(ws: &mut Ws) -> Option<u16> {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code.into()),
            Some(Ok(_)) => continue,
            _ => return None,
        }
    }
}

/// Visitor on `v_node`, consent given, and an agent on `a_node` that has the first snapshot.
async fn mirrored(v_node: &Stack, a_node: &Stack, links: &Links) -> (Ws, Ws) {
    let mut visitor = ws::open(v_node, &links.visitor, &[]).await;
    until(&mut visitor, "hello").await;
    let mut agent = ws::open(a_node, &links.agent, &[]).await;
    until(&mut agent, "hello").await;
    until_where(&mut visitor, "presence", |p| p["agents"] == 1).await;
    until_where(&mut agent, "presence", |p| p["visitor"] == true).await;
    send(&mut visitor, r#"{"t":"consent","granted":true}"#).await;
    until_where(&mut agent, "presence", |p| p["consent"] == "granted").await;
    let snap = r#"{"t":"snap","f":"","doc":{"i":1,"c":[]},"n":"first"}"#;
    send(&mut visitor, snap).await;
    let got = until(&mut agent, "snap").await;
    assert_eq!(got["n"], "first");
    (visitor, agent)
}

fn engine() -> Option<Engine> {
    support::nats::available().map(Engine::start)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_on_one_node_is_mirrored_to_an_agent_on_another() {
    let Some(engine) = engine() else { return };
    let a = node(&engine).await;
    // Created before the second node exists: that node has never heard of it and must ask the engine.
    let links = session(&a).await;
    let b = node(&engine).await;
    let page = b.get(&b.proxied(&links.id, "https://www.shop.test/")).await;
    assert_eq!(
        page.status,
        StatusCode::OK,
        "the visitor link works on node B"
    );
    assert!(
        page.text().contains("data-cobrowse-token"),
        "agent injected"
    );
    let view = b
        .get(&format!(
            "{}/agent/{}?t={}",
            b.public, links.id, links.agent
        ))
        .await;
    assert_eq!(
        view.status,
        StatusCode::OK,
        "the agent link works on node B"
    );

    let (mut visitor, mut agent) = mirrored(&a, &b, &links).await;
    send(&mut visitor, r#"{"t":"mut","f":"","kids":[],"n":1}"#).await;
    assert_eq!(until(&mut agent, "mut").await["n"], 1);
    // Tools go the other way, tagged with the agent that sent them.
    send(&mut agent, r#"{"t":"hl","f":"","id":4}"#).await;
    let tool = until(&mut visitor, "tool").await;
    assert_eq!(tool["m"]["id"], 4);
    // Control is the visitor's, and the agent's node knows it.
    send(&mut agent, r#"{"t":"click","f":"","id":4}"#).await;
    assert_eq!(until(&mut agent, "refused").await["what"], "click");
    send(&mut visitor, r#"{"t":"control","granted":true}"#).await;
    until_where(&mut agent, "presence", |p| p["control"] == true).await;
    send(&mut agent, r#"{"t":"click","f":"","id":4}"#).await;
    assert_eq!(until(&mut visitor, "tool").await["m"]["t"], "click");

    // The agent leaving on B is seen by the visitor on A.
    agent.close(None).await.unwrap();
    until_where(&mut visitor, "presence", |p| p["agents"] == 0).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_on_one_node_ends_the_session_on_every_node() {
    let Some(engine) = engine() else { return };
    let a = node(&engine).await;
    let b = node(&engine).await;
    let links = session(&a).await;
    let (mut visitor, mut agent) = mirrored(&a, &b, &links).await;
    let started = Instant::now();
    let gone = b
        .request(
            Method::DELETE,
            &format!("{}/api/sessions/{}", b.public, links.id),
            &[],
            "",
        )
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let ended = until(&mut visitor, "ended").await;
    let seen_after = started.elapsed();
    assert_eq!(ended["by"], "revoked");
    assert_eq!(closed(&mut visitor).await, Some(4011), "closed as revoked");
    assert_eq!(closed(&mut agent).await, Some(4011));
    eprintln!("revocation on node B reached the visitor on node A after {seen_after:?}");
    let page = a.get(&a.proxied(&links.id, "https://www.shop.test/")).await;
    assert_eq!(
        page.status,
        StatusCode::NOT_FOUND,
        "node A no longer serves it"
    );
    // A third node, started after the end, does not find it in the engine either.
    let c = node(&engine).await;
    let page = c.get(&c.proxied(&links.id, "https://www.shop.test/")).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    for stack in [a, b, c] {
        stack.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_restart_keeps_local_rooms_working_and_the_mirror_comes_back() {
    let Some(mut engine) = engine() else { return };
    let a = node(&engine).await;
    let b = node(&engine).await;
    let links = session(&a).await;
    let kept = session(&a).await;
    let (mut visitor, mut far_agent) = mirrored(&a, &b, &links).await;
    let mut near_agent = ws::open(&a, &links.agent, &[]).await;
    until(&mut near_agent, "hello").await;
    let need = until(&mut visitor, "need_snap").await;
    assert_eq!(need["t"], "need_snap");
    send(&mut visitor, r#"{"t":"snap","f":"","doc":{},"n":"second"}"#).await;
    until_where(&mut near_agent, "snap", |s| s["n"] == "second").await;

    engine.stop();
    // Without the engine, node A's own room goes on.
    send(&mut visitor, r#"{"t":"mut","f":"","kids":[],"n":"during"}"#).await;
    until_where(&mut near_agent, "mut", |m| m["n"] == "during").await;
    // And new sessions are refused rather than created on one node only.
    let refused = a.create_session("https://www.shop.test/").await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.text()
    );

    engine.resume();
    // Back: node B's agent missed changes, so the visitor is asked for a new snapshot, which reaches it.
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "the mirror did not come back");
        until(&mut visitor, "need_snap").await;
        send(&mut visitor, r#"{"t":"snap","f":"","doc":{},"n":"after"}"#).await;
        let got = tokio::time::timeout(Duration::from_secs(3), async {
            until_where(&mut far_agent, "snap", |s| s["n"] == "after").await
        })
        .await;
        if got.is_ok() {
            break;
        }
    }
    send(&mut visitor, r#"{"t":"mut","f":"","kids":[],"n":"later"}"#).await;
    until_where(&mut far_agent, "mut", |m| m["n"] == "later").await;
    until_where(&mut near_agent, "mut", |m| m["n"] == "later").await;

    // Sessions outlive the engine's restart: a node that starts now finds one it never heard of.
    let c = node(&engine).await;
    let page = c.get(&c.proxied(&kept.id, "https://www.shop.test/")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    // New sessions work again.
    let fresh = session(&a).await;
    let page = b.get(&b.proxied(&fresh.id, "https://www.shop.test/")).await;
    assert_eq!(page.status, StatusCode::OK);
    for stack in [a, b, c] {
        stack.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_on_one_node_reaches_every_nodes_cache() {
    let Some(engine) = engine() else { return };
    let a = node(&engine).await;
    let b = node(&engine).await;
    let links = session(&a).await;
    let asset = "https://www.shop.test/_fx/cache?key=purged&v=1&cc=public%2C%20max-age%3D600";
    let status = |stack| cache_status(stack, &links.id, asset);
    for stack in [&a, &b] {
        status(stack).await;
        let again = status(stack).await;
        assert!(again.contains("hit"), "cached on each node: {again}");
    }
    let purge = a
        .request(
            Method::POST,
            &format!("{}/api/cache/purge", a.public),
            &[("content-type", "application/json")],
            r#"{"all":true}"#,
        )
        .await;
    assert_eq!(purge.status, StatusCode::OK, "{}", purge.text());
    assert!(!status(&a).await.contains("hit"));
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = status(&b).await;
        if !seen.contains("hit") {
            break;
        }
        assert!(Instant::now() < deadline, "node B never purged: {seen}");
        // It was a hit, so fetch no more than needed: wait a little for the purge to arrive.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.stop().await;
    b.stop().await;
}

async fn cache_status(stack: &Stack, session: &str, target: &str) -> String {
    let reply = stack.get(&stack.proxied(session, target)).await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.header("cache-status").unwrap_or_default()
}

/// The same co-browse run as `tests/browser.rs`, in real Chromium, with the visitor's page and relay on
/// node A and the agent's view and relay on node B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_the_agent_on_another_node_sees_the_visitors_page_live() {
    if !support::browser::browser_ready() {
        return;
    }
    let Some(engine) = engine() else { return };
    let a = node(&engine).await;
    let b = node(&engine).await;
    let body = serde_json::json!({ "url": "https://www.shop.test/cobrowse.html" }).to_string();
    let created = a
        .request(
            Method::POST,
            &format!("{}/api/sessions", a.public),
            &[("content-type", "application/json")],
            body,
        )
        .await
        .json();
    let visitor = created["visitor_url"].as_str().unwrap().to_owned();
    let agent_on_a = created["agent_url"].as_str().unwrap();
    let agent = agent_on_a.replacen(&a.public, &b.public, 1);
    assert_ne!(agent, agent_on_a, "the agent view is node B's");
    let result = support::browser::node("check_cobrowse.mjs", &[visitor, agent]).await;
    support::browser::cobrowse_steps(
        &result,
        &[
            "agentWaitsForConsent",
            "consentGiven",
            "agentSeesPage",
            "agentSeesTyping",
            "agentSeesMutation",
            "visitorSeesHighlight",
            "agentClickReachesVisitor",
            "agentFollowsNavigation",
            "visitorLeaves",
        ],
    );
    assert_eq!(result["framesBeforeConsent"], serde_json::json!([]));
    assert_eq!(result["finalState"], "live");
    a.stop().await;
    b.stop().await;
}

/// Relay latency from a visitor on node A to an agent on node A and to one on node B, for the same
/// messages in the same run. Printed, not judged (`docs/SCALING.md` has the figures); what is asserted
/// is that every message reached both, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_latency_on_one_node_and_across_nodes() {
    let Some(engine) = engine() else { return };
    let a = node(&engine).await;
    let b = node(&engine).await;
    let links = session(&a).await;
    let (mut visitor, mut far) = mirrored(&a, &b, &links).await;
    let mut near = ws::open(&a, &links.agent, &[]).await;
    until(&mut near, "hello").await;
    until(&mut visitor, "need_snap").await;
    send(&mut visitor, r#"{"t":"snap","f":"","doc":{},"n":"sync"}"#).await;
    until_where(&mut near, "snap", |s| s["n"] == "sync").await;
    until_where(&mut far, "snap", |s| s["n"] == "sync").await;

    const N: usize = 300;
    let pad = "x".repeat(512);
    let (mut near_ms, mut far_ms) = (Vec::with_capacity(N), Vec::with_capacity(N));
    for n in 0..N {
        let sent = Instant::now();
        send(
            &mut visitor,
            &format!(r#"{{"t":"mut","f":"","n":{n},"pad":"{pad}"}}"#),
        )
        .await;
        let got = until(&mut near, "mut").await;
        near_ms.push(sent.elapsed().as_secs_f64() * 1e3);
        assert_eq!(got["n"], n, "in order on node A");
        let got = until(&mut far, "mut").await;
        far_ms.push(sent.elapsed().as_secs_f64() * 1e3);
        assert_eq!(got["n"], n, "in order on node B");
    }
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * p).round() as usize]
    };
    eprintln!(
        "relay latency, visitor on A, {N} messages of ~560 B: agent on A p50 {:.3} ms p99 {:.3} ms; \
         agent on B p50 {:.3} ms p99 {:.3} ms",
        pct(&mut near_ms, 0.5),
        pct(&mut near_ms, 0.99),
        pct(&mut far_ms, 0.5),
        pct(&mut far_ms, 0.99)
    );
    a.stop().await;
    b.stop().await;
}

/// With the shared store, what one node records of a visitor every node reports, and a deletion through
/// any node is gone for all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitor_metadata_recorded_on_one_node_is_shared_with_every_node() {
    let Some(engine) = engine() else { return };
    let Some(postgres) = support::postgres::Postgres::start().await else {
        return;
    };
    let db = postgres.create_database().await;
    let a = node_with_store(&engine, Some(&db)).await;
    let b = node_with_store(&engine, Some(&db)).await;
    let links = session(&a).await;
    let mut visitor = ws::open(
        &a,
        &links.visitor,
        &[(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
        )],
    )
    .await;
    until(&mut visitor, "hello").await;
    let url = format!("{}/api/visitors/{}", b.public, links.id);
    let deadline = Instant::now() + WAIT;
    let seen = loop {
        let reply = b.get(&url).await;
        if reply.status == StatusCode::OK && reply.json()["online"] == true {
            break reply.json();
        }
        assert!(
            Instant::now() < deadline,
            "node B never saw the visitor: {}",
            reply.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(seen["browser"], "Firefox", "{seen}");
    let deleted = b.request(Method::DELETE, &url, &[], "").await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text());
    let on_a = a
        .get(&format!("{}/api/visitors/{}", a.public, links.id))
        .await;
    assert_eq!(on_a.status, StatusCode::NOT_FOUND, "{}", on_a.text());
    a.stop().await;
    b.stop().await;
}
