//! Relay load: holds N sessions (one visitor and one agent each, over loopback WebSockets to a real
//! server), has every visitor send mirror changes at a page-like rate, and reports visitor→agent latency
//! percentiles. Bounded in count and time; figures are printed, never asserted.
//!
//! `cargo bench --bench relay` (env: `RELAY_BENCH_SESSIONS`, default 500; `RELAY_BENCH_SECS`, default 10;
//! `RELAY_BENCH_RATE`, messages per visitor per second, default 20; `RELAY_BENCH_BYTES`, default 512).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cobrowse_proxy::config::Config;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn create(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    port: u16,
) -> (String, String) {
    let req = http::Request::post(format!("http://127.0.0.1:{port}/api/sessions"))
        .header("host", format!("localhost:{port}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"url":"https://www.example.test/"}"#,
        )))
        .unwrap();
    let body = client
        .request(req)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let id = json["id"].as_str().unwrap().to_owned();
    let agent = url::Url::parse(json["agent_url"].as_str().unwrap()).unwrap();
    let token = agent
        .query_pairs()
        .find(|(k, _)| k == "t")
        .unwrap()
        .1
        .into_owned();
    (id, token)
}

async fn open(port: u16, token: &str) -> Ws {
    let request = format!("ws://localhost:{port}/__cobrowse/relay?t={token}")
        .into_client_request()
        .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp))
        .await
        .unwrap()
        .0
}

async fn next_text(ws: &mut Ws) -> String {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return t.to_string(),
            Some(Ok(_)) => continue,
            other => panic!("relay socket ended: {other:?}"),
        }
    }
}

/// One session: joins both sides, consents, then returns the visitor and agent sockets, in sync.
async fn session(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    port: u16,
) -> (Ws, Ws) {
    let (id, agent_token) = create(client, port).await;
    let visitor_token = cobrowse_proxy::session::Credential::new(
        cobrowse_proxy::url_codec::SessionId::parse(&id).unwrap(),
        cobrowse_proxy::session::Role::Visitor,
        std::time::SystemTime::now() + Duration::from_secs(3600),
    )
    .sign();
    let mut visitor = open(port, &visitor_token).await;
    next_text(&mut visitor).await;
    let mut agent = open(port, &agent_token).await;
    next_text(&mut agent).await;
    visitor
        .send(Message::Text(r#"{"t":"consent","granted":true}"#.into()))
        .await
        .unwrap();
    visitor
        .send(Message::Text(r#"{"t":"snap","doc":{}}"#.into()))
        .await
        .unwrap();
    while !next_text(&mut agent).await.contains("\"snap\"") {}
    (visitor, agent)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at] as f64 / 1000.0
}

fn main() {
    let sessions = env("RELAY_BENCH_SESSIONS", 500) as usize;
    let secs = env("RELAY_BENCH_SECS", 10);
    let rate = env("RELAY_BENCH_RATE", 20).max(1);
    let bytes = env("RELAY_BENCH_BYTES", 512) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(sessions, secs, rate, bytes));
}

async fn run(sessions: usize, secs: u64, rate: u64, bytes: usize) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = Config::for_listener(listener.local_addr().unwrap()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(cobrowse_proxy::run(config, listener, async {
        let _ = stopped.await;
    }));
    let client = Client::builder(TokioExecutor::new()).build_http();

    let joining = Instant::now();
    let mut pairs = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        pairs.push(session(&client, port).await);
    }
    println!(
        "relay bench: {sessions} sessions held ({} WebSockets), joined in {:.1} s",
        sessions * 2,
        joining.elapsed().as_secs_f64()
    );

    let epoch = Instant::now();
    let until = epoch + Duration::from_secs(secs);
    let pad = Arc::new("x".repeat(bytes));
    let mut tasks = Vec::new();
    for (mut visitor, mut agent) in pairs {
        let pad = pad.clone();
        tasks.push(tokio::spawn(async move {
            let sender = tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
                let mut sent = 0u64;
                while Instant::now() < until {
                    tick.tick().await;
                    let ts = epoch.elapsed().as_micros();
                    let msg = format!(r#"{{"t":"mut","ts":{ts},"pad":"{pad}"}}"#);
                    visitor.send(Message::Text(msg.into())).await.unwrap();
                    sent += 1;
                }
                (visitor, sent)
            });
            let mut latencies = Vec::new();
            let deadline = until + Duration::from_secs(2);
            while let Ok(Some(Ok(msg))) =
                tokio::time::timeout_at(deadline.into(), agent.next()).await
            {
                if let Message::Text(t) = msg {
                    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                    if let Some(ts) = v["ts"].as_u64() {
                        latencies.push(epoch.elapsed().as_micros() as u64 - ts);
                    }
                }
                if Instant::now() > until && latencies.len() as u64 >= rate * secs {
                    break;
                }
            }
            let (_visitor, sent) = sender.await.unwrap();
            (sent, latencies)
        }));
    }
    let mut sent = 0;
    let mut all = Vec::new();
    for t in tasks {
        let (s, l) = t.await.unwrap();
        sent += s;
        all.extend(l);
    }
    all.sort_unstable();
    println!(
        "relay bench: {sent} messages of ~{bytes} B sent, {} received in {secs} s ({:.0} msg/s)",
        all.len(),
        all.len() as f64 / secs as f64
    );
    println!(
        "relay bench: visitor→agent latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        percentile(&all, 1.0)
    );
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
}
