//! Relay sockets for tests outside `tests/relay.rs`: open one as a browser would (credential, Origin,
//! User-Agent), read JSON messages with a time limit, send text.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::Stack;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(10);

/// The two links of a session created through the API: its id, a visitor credential (as the proxy
/// mints into pages) and the agent credential from the agent link.
pub struct Links {
    pub id: String,
    pub visitor: String,
    pub agent: String,
}

impl Links {
    /// From the JSON of `POST /api/sessions`.
    pub fn from_json(json: &serde_json::Value) -> Links {
        Links::from_json_signed(json, &cobrowse_proxy::session::SigningKey::process())
    }

    /// Like [`Links::from_json`], for a proxy that signs with `key` (a deployment's shared key).
    pub fn from_json_signed(
        json: &serde_json::Value,
        key: &cobrowse_proxy::session::SigningKey,
    ) -> Links {
        let id = json["id"].as_str().unwrap().to_owned();
        let agent_url = url::Url::parse(json["agent_url"].as_str().unwrap()).unwrap();
        let agent = agent_url
            .query_pairs()
            .find(|(k, _)| k == "t")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        let session = cobrowse_proxy::url_codec::SessionId::parse(&id).unwrap();
        let now = std::time::SystemTime::now();
        let visitor = cobrowse_proxy::session::visitor_credential_for(&session, now).sign_with(key);
        Links { id, visitor, agent }
    }
}

/// Opens a relay socket with `token`, sending `headers` (Origin, User-Agent…) on the handshake.
pub async fn open(stack: &Stack, token: &str, headers: &[(&str, &str)]) -> Ws {
    let port = stack.proxy.port();
    let url = format!(
        "ws://localhost:{port}/__cobrowse/relay?t={}",
        url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
    );
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    let tcp = TcpStream::connect(stack.proxy).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp))
        .await
        .expect("relay handshake");
    ws
}

/// Reads until a message of type `t` arrives (pings skipped). Panics on close or silence.
pub async fn until(ws: &mut Ws, t: &str) -> serde_json::Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("socket open")
            .expect("no socket error");
        if let Message::Text(text) = msg {
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            if json["t"] == t {
                return json;
            }
        }
    }
}

pub async fn send(ws: &mut Ws, json: &str) {
    ws.send(Message::Text(json.into())).await.unwrap();
}

/// Closes the socket and waits (bounded) for the server's side of the close.
pub async fn close(mut ws: Ws) {
    let _ = ws.close(None).await;
    let _ = tokio::time::timeout(WAIT, async { while ws.next().await.is_some() {} }).await;
}
