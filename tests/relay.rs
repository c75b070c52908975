//! The relay over real sockets: credentials and origins at the handshake, presence, consent, limits
//! with their close codes, a slow agent that must not slow the visitor, ending and revocation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, SystemTime};

use cobrowse_proxy::config::{FileConfig, RelayConfig};
use cobrowse_proxy::session::{Credential, Role};
use cobrowse_proxy::url_codec::SessionId;
use futures_util::{SinkExt, StreamExt};
use http::{Method, StatusCode};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(10);

struct Session {
    id: String,
    visitor: String,
    agent: String,
}

async fn new_session(stack: &support::Stack) -> Session {
    let reply = stack
        .request(
            Method::POST,
            &format!("{}/api/sessions", stack.public),
            &[("content-type", "application/json")],
            r#"{"url":"https://www.shop.test/"}"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let json = reply.json();
    let agent_url = url::Url::parse(json["agent_url"].as_str().unwrap()).unwrap();
    let agent = agent_url
        .query_pairs()
        .find(|(k, _)| k == "t")
        .map(|(_, v)| v.into_owned())
        .expect("the agent link carries its credential");
    let id = json["id"].as_str().unwrap().to_owned();
    Session {
        visitor: mint(&id, Role::Visitor, 60),
        agent,
        id,
    }
}

fn mint(id: &str, role: Role, secs: i64) -> String {
    let at = if secs >= 0 {
        SystemTime::now() + Duration::from_secs(secs as u64)
    } else {
        SystemTime::now() - Duration::from_secs((-secs) as u64)
    };
    Credential::new(SessionId::parse(id).unwrap(), role, at).sign()
}

/// Opens a relay socket to the proxy (`origin`: the browser's Origin header, if any). Err is the status.
async fn open(stack: &support::Stack, token: &str, origin: Option<&str>) -> Result<Ws, u16> {
    let port = stack.proxy.port();
    let url = format!(
        "ws://localhost:{port}/__cobrowse/relay?t={}",
        url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
    );
    let mut request = url.into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    let tcp = TcpStream::connect(stack.proxy).await.unwrap();
    match tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp)).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("handshake failed: {e}"),
    }
}

/// The next text message, parsed, skipping nothing. Panics on close or silence.
async fn next_json(ws: &mut Ws) -> serde_json::Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("socket open")
            .expect("no socket error");
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// Reads until a message of type `t` arrives, returning it and everything skipped.
async fn until(ws: &mut Ws, t: &str) -> (serde_json::Value, Vec<serde_json::Value>) {
    let mut skipped = Vec::new();
    loop {
        let msg = next_json(ws).await;
        if msg["t"] == t {
            return (msg, skipped);
        }
        skipped.push(msg);
    }
}

/// Reads until the close frame and returns its code.
async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("closed in time");
        match msg {
            Some(Ok(Message::Close(Some(frame)))) => return frame.code.into(),
            Some(Ok(Message::Close(None))) | None => return 1005,
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("socket error before a close frame: {e}"),
        }
    }
}

async fn send(ws: &mut Ws, json: &str) {
    ws.send(Message::Text(json.into())).await.unwrap();
}

fn stack_options(relay: RelayConfig) -> support::Options {
    support::Options {
        file: FileConfig {
            relay,
            ..FileConfig::default()
        },
        ..support::Options::default()
    }
}

#[tokio::test]
async fn credentials_and_origins_are_checked_before_the_upgrade() {
    let stack = support::start().await;
    let s = new_session(&stack).await;
    let public = stack.public.clone();
    let proxy_origin = stack
        .proxied(&s.id, "https://www.shop.test/")
        .trim_end_matches('/')
        .to_owned();

    assert_eq!(open(&stack, "garbage", None).await.err(), Some(401));
    assert_eq!(open(&stack, "", None).await.err(), Some(401));
    let expired = mint(&s.id, Role::Agent, -5);
    assert_eq!(
        open(&stack, &expired, None).await.err(),
        Some(401),
        "expired"
    );
    // A visitor credential rewritten to claim the agent role no longer verifies.
    let forged = s.visitor.replacen("v1.v.", "v1.a.", 1);
    assert_eq!(
        open(&stack, &forged, None).await.err(),
        Some(401),
        "forged role"
    );
    // A browser page may join only as its own side: visitors from proxy hosts, agents from the console.
    assert_eq!(
        open(&stack, &s.visitor, Some(&public)).await.err(),
        Some(403)
    );
    assert_eq!(
        open(&stack, &s.agent, Some(&proxy_origin)).await.err(),
        Some(403)
    );
    let other = new_session(&stack).await;
    let other_origin = stack
        .proxied(&other.id, "https://www.shop.test/")
        .trim_end_matches('/')
        .to_owned();
    assert_eq!(
        open(&stack, &s.visitor, Some(&other_origin)).await.err(),
        Some(403),
        "another session's page"
    );
    assert!(open(&stack, &s.visitor, Some(&proxy_origin)).await.is_ok());
    assert!(open(&stack, &s.agent, Some(&public)).await.is_ok());

    // Not a WebSocket request at all.
    let reply = stack
        .get(&format!("{public}/__cobrowse/relay?t={}", s.agent))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    // The agent view refuses a visitor credential.
    let reply = stack
        .get(&format!("{public}/agent/{}?t={}", s.id, s.visitor))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = stack
        .get(&format!("{public}/agent/{}?t={}", s.id, s.agent))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let csp = reply.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-eval"),
        "{csp}"
    );

    // A removed session's credentials stop working.
    let reply = stack
        .request(
            Method::DELETE,
            &format!("{public}/api/sessions/{}", s.id),
            &[],
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(open(&stack, &s.agent, None).await.err(), Some(404));
    stack.stop().await;
}

#[tokio::test]
async fn the_pages_own_credential_joins_as_visitor() {
    let stack = support::start().await;
    let (id, visitor_url) = stack.session("https://www.shop.test/").await;
    let page = stack.get(&visitor_url).await.text();
    let token = page
        .split("data-cobrowse-token=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the agent tag carries a credential");
    let credential = Credential::verify(token, SystemTime::now()).unwrap();
    assert_eq!(credential.role, Role::Visitor);
    assert_eq!(credential.session.as_str(), id);
    let mut ws = open(&stack, token, None).await.unwrap();
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["role"], "visitor");
    stack.stop().await;
}

#[tokio::test]
async fn presence_is_pushed_to_both_sides() {
    let stack = support::start().await;
    let s = new_session(&stack).await;
    let mut visitor = open(&stack, &s.visitor, None).await.unwrap();
    let hello = next_json(&mut visitor).await;
    assert_eq!(hello["t"], "hello");
    assert_eq!(hello["presence"]["agents"], 0);
    assert_eq!(hello["presence"]["consent"], "pending");

    let mut agent = open(&stack, &s.agent, None).await.unwrap();
    let hello = next_json(&mut agent).await;
    assert_eq!(
        (
            hello["role"].as_str(),
            hello["presence"]["visitor"].as_bool()
        ),
        (Some("agent"), Some(true))
    );
    let p = next_json(&mut visitor).await;
    assert_eq!(
        (p["t"].as_str(), p["agents"].as_u64()),
        (Some("presence"), Some(1))
    );

    send(&mut visitor, r#"{"t":"consent","granted":true}"#).await;
    let p = next_json(&mut agent).await;
    assert_eq!(p["consent"], "granted");
    let (need, _) = until(&mut visitor, "presence").await;
    assert_eq!(need["consent"], "granted");

    agent.close(None).await.unwrap();
    let (p, _) = until(&mut visitor, "presence").await;
    assert_eq!(p["agents"], 0);

    let mut agent = open(&stack, &s.agent, None).await.unwrap();
    next_json(&mut agent).await;
    visitor.close(None).await.unwrap();
    let (p, _) = until(&mut agent, "presence").await;
    assert_eq!(p["visitor"], false);
    stack.stop().await;
}

#[tokio::test]
async fn no_content_before_consent_and_relayed_byte_for_byte_after() {
    let stack = support::start().await;
    let s = new_session(&stack).await;
    let mut visitor = open(&stack, &s.visitor, None).await.unwrap();
    next_json(&mut visitor).await;
    let mut agent = open(&stack, &s.agent, None).await.unwrap();
    next_json(&mut agent).await;
    next_json(&mut visitor).await; // presence

    // A visitor that sends page content before consent is cut off, and nothing reaches the agent.
    send(&mut visitor, r#"{"t":"snap","doc":"secret"}"#).await;
    assert_eq!(close_code(&mut visitor).await, 4002);
    let (p, skipped) = until(&mut agent, "presence").await;
    assert_eq!(p["visitor"], false);
    assert!(skipped.is_empty(), "{skipped:?}");

    let mut visitor = open(&stack, &s.visitor, None).await.unwrap();
    next_json(&mut visitor).await;
    send(&mut visitor, r#"{"t":"consent","granted":true}"#).await;
    let snap = r#"{"t":"snap","f":"","doc":{"i":1,"c":[]}, "odd spacing":true}"#;
    send(&mut visitor, snap).await;
    send(&mut visitor, r#"{"t":"mut","f":"","kids":[]}"#).await;
    let (got, _) = until(&mut agent, "snap").await;
    assert_eq!(
        got,
        serde_json::from_str::<serde_json::Value>(snap).unwrap()
    );
    let m = next_json(&mut agent).await;
    assert_eq!(m["t"], "mut");

    // An agent's tools reach the visitor tagged with who sent them; its clicks need control.
    send(&mut agent, r#"{"t":"hl","f":"","id":4}"#).await;
    let (tool, _) = until(&mut visitor, "tool").await;
    assert_eq!(tool["m"]["id"], 4);
    send(&mut agent, r#"{"t":"click","f":"","id":4}"#).await;
    let (refused, _) = until(&mut agent, "refused").await;
    assert_eq!(refused["what"], "click");
    send(&mut visitor, r#"{"t":"control","granted":true}"#).await;
    until(&mut agent, "presence").await;
    send(&mut agent, r#"{"t":"click","f":"","id":4}"#).await;
    let (tool, _) = until(&mut visitor, "tool").await;
    assert_eq!(tool["m"]["t"], "click");
    // An agent cannot speak for the visitor.
    send(&mut agent, r#"{"t":"snap","doc":{}}"#).await;
    assert_eq!(close_code(&mut agent).await, 4002);
    stack.stop().await;
}

#[tokio::test]
async fn message_size_and_rate_limits_close_with_their_codes() {
    let relay = RelayConfig {
        max_visitor_message: 64 << 10,
        ..RelayConfig::default()
    };
    let stack = support::start_with(stack_options(relay)).await;
    let s = new_session(&stack).await;

    let mut agent = open(&stack, &s.agent, None).await.unwrap();
    next_json(&mut agent).await;
    let big = format!(r#"{{"t":"ptr","pad":"{}"}}"#, "x".repeat(20 << 10));
    let _ = agent.send(Message::Text(big.into())).await;
    assert_eq!(
        close_code(&mut agent).await,
        1009,
        "agent message over 16 KiB"
    );

    let mut visitor = open(&stack, &s.visitor, None).await.unwrap();
    next_json(&mut visitor).await;
    let big = format!(r#"{{"t":"ping","pad":"{}"}}"#, "x".repeat(70 << 10));
    let _ = visitor.send(Message::Text(big.into())).await;
    assert_eq!(
        close_code(&mut visitor).await,
        1009,
        "visitor message over the configured 64 KiB"
    );

    let mut agent = open(&stack, &s.agent, None).await.unwrap();
    next_json(&mut agent).await;
    for _ in 0..300 {
        if agent
            .send(Message::Text(r#"{"t":"ping"}"#.into()))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(close_code(&mut agent).await, 4008, "agent over its rate");

    let mut agent = open(&stack, &s.agent, None).await.unwrap();
    next_json(&mut agent).await;
    let _ = agent.send(Message::Text("not json".into())).await;
    assert_eq!(close_code(&mut agent).await, 4002);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_agent_never_slows_the_visitor_and_is_resynchronised() {
    let relay = RelayConfig {
        visitor_rate: 1_000_000,
        visitor_burst: 1_000_000,
        queue_bytes: 8 << 20,
        ..RelayConfig::default()
    };
    let stack = support::start_with(stack_options(relay)).await;
    let s = new_session(&stack).await;
    let mut visitor = open(&stack, &s.visitor, None).await.unwrap();
    next_json(&mut visitor).await;
    send(&mut visitor, r#"{"t":"consent","granted":true}"#).await;
    let mut slow = open(&stack, &s.agent, None).await.unwrap();
    let mut fast = open(&stack, &s.agent, None).await.unwrap();
    next_json(&mut slow).await;
    next_json(&mut fast).await;
    send(&mut visitor, r#"{"t":"snap","n":0}"#).await;
    until(&mut fast, "snap").await;

    // The fast agent reads everything as it comes; the slow one reads nothing for now.
    let reader = tokio::spawn(async move {
        let mut deltas = 0u32;
        let mut snaps = 0u32;
        while deltas < 3000 || snaps == 0 {
            let m = next_json(&mut fast).await;
            match m["t"].as_str() {
                Some("mut") => deltas += 1,
                Some("snap") => snaps += 1,
                _ => {}
            }
        }
        deltas
    });
    let pad = "x".repeat(16 << 10);
    let (mut sink, mut from_relay) = visitor.split();
    let sender = tokio::spawn(async move {
        for n in 0..3000 {
            let msg = format!(r#"{{"t":"mut","n":{n},"pad":"{pad}"}}"#);
            sink.send(Message::Text(msg.into())).await.unwrap();
        }
        sink
    });
    // 48 MB of changes go out although one agent reads none of them.
    let mut sink = tokio::time::timeout(Duration::from_secs(60), sender)
        .await
        .expect("the visitor is never blocked by a slow agent")
        .unwrap();

    // The relay asked the visitor for a fresh snapshot for the agent that fell behind.
    loop {
        let m = tokio::time::timeout(WAIT, from_relay.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            if t.contains("need_snap") {
                break;
            }
        }
    }
    sink.send(Message::Text(r#"{"t":"snap","n":"fresh"}"#.into()))
        .await
        .unwrap();
    assert_eq!(reader.await.unwrap(), 3000, "the fast agent missed nothing");

    // The slow agent now reads: it gets some old changes, then the fresh snapshot, never the whole
    // backlog: the queue was dropped, not grown.
    let (snap, skipped) = until(&mut slow, "snap").await;
    let (snap, skipped) = if snap["n"] == 0 {
        until(&mut slow, "snap").await
    } else {
        (snap, skipped)
    };
    assert_eq!(snap["n"], "fresh");
    let old = skipped.iter().filter(|m| m["t"] == "mut").count();
    eprintln!("slow agent: {old} of 3000 changes reached it before its fresh snapshot");
    assert!(
        old < 3000,
        "a lagging agent's backlog is dropped ({old} delivered)"
    );
    stack.stop().await;
}

#[tokio::test]
async fn either_side_ends_the_session_and_removal_revokes_it() {
    let stack = support::start().await;
    let s = new_session(&stack).await;
    let mut visitor = open(&stack, &s.visitor, None).await.unwrap();
    next_json(&mut visitor).await;
    let mut agent = open(&stack, &s.agent, None).await.unwrap();
    next_json(&mut agent).await;
    send(&mut agent, r#"{"t":"end"}"#).await;
    let (ended, _) = until(&mut visitor, "ended").await;
    assert_eq!(ended["by"], "agent");
    assert_eq!(close_code(&mut visitor).await, 4010);
    assert_eq!(close_code(&mut agent).await, 4010);
    // The session itself is over: its proxy hosts stop answering.
    let page = stack
        .get(&stack.proxied(&s.id, "https://www.shop.test/"))
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);

    let s = new_session(&stack).await;
    let mut visitor = open(&stack, &s.visitor, None).await.unwrap();
    next_json(&mut visitor).await;
    let mut agent = open(&stack, &s.agent, None).await.unwrap();
    next_json(&mut agent).await;
    let reply = stack
        .request(
            Method::DELETE,
            &format!("{}/api/sessions/{}", stack.public, s.id),
            &[],
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(close_code(&mut visitor).await, 4011);
    assert_eq!(close_code(&mut agent).await, 4011);
    stack.stop().await;
}

#[tokio::test]
async fn a_new_page_replaces_the_old_one_and_keeps_consent() {
    let stack = support::start().await;
    let s = new_session(&stack).await;
    let mut first = open(&stack, &s.visitor, None).await.unwrap();
    next_json(&mut first).await;
    send(&mut first, r#"{"t":"consent","granted":true}"#).await;
    until(&mut first, "presence").await;
    let mut second = open(&stack, &s.visitor, None).await.unwrap();
    let hello = next_json(&mut second).await;
    assert_eq!(hello["presence"]["consent"], "granted");
    assert_eq!(close_code(&mut first).await, 4009);
    stack.stop().await;
}

#[tokio::test]
async fn an_expired_session_closes_its_room() {
    let options = support::Options {
        file: FileConfig {
            session_ttl_secs: Some(1),
            ..FileConfig::default()
        },
        ..support::Options::default()
    };
    let stack = support::start_with(options).await;
    let s = new_session(&stack).await;
    let mut visitor = open(&stack, &s.visitor, None).await.unwrap();
    next_json(&mut visitor).await;
    let mut agent = open(&stack, &s.agent, None).await.unwrap();
    next_json(&mut agent).await;
    // Nobody removes it: the relay's sweep finds the session gone once its time is up.
    assert_eq!(close_code(&mut visitor).await, 4011);
    assert_eq!(close_code(&mut agent).await, 4011);
    stack.stop().await;
}
