//! The co-browsing relay's WebSocket endpoint (`GET /__cobrowse/relay?t=<credential>` on the public
//! origin): checks the credential and origin, upgrades, then runs one reader and one writer per
//! connection and feeds what they see into the session's [`room::Room`]. It owns the I/O only; the room
//! owns the rules, `message` the wire format, `outbox` the queue policy. Lifecycle: `docs/RELAY.md`.
//!
//! Nothing here stores content: messages go from the reader, through the room, into bounded outboxes,
//! and out.

pub mod bridge;
pub mod message;
mod nodes;
pub mod outbox;
mod record;
pub mod room;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::{
    frame::CloseFrame, Role as WsRole, WebSocketConfig,
};
use tokio_tungstenite::tungstenite::{handshake::derive_accept_key, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use crate::body::{empty, ProxyBody};
use crate::cluster::RoomLink;
use crate::config::RelayConfig;
use crate::session::{Credential, CredentialError, Role, Sessions};
use crate::store::{EventName, Store};
use crate::url_codec::{PublicOrigin, SessionId};
use bridge::{Note, NODE_SHIFT};
use message::{close, RateLimit, CONSENT_GRACE};
use nodes::{note_of, relayed_text};
use outbox::{Item, Outbox, Push};
use record::Client;
use room::{Action, ConnId, Event, Room};

pub const PATH: &str = "/__cobrowse/relay";
/// Keep-alive ping interval; a connection silent for `IDLE_TIMEOUT` (pongs count) is closed.
const PING_EVERY: Duration = Duration::from_secs(20);
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often rooms are checked against their sessions (revocation, expiry) and resync retries run.
const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// Scale-out: each node restates its members of every room this often, and a node not heard from in a
/// room for `NODE_SILENCE` is taken to be gone with its members (it died, or lost the engine).
const ANNOUNCE_EVERY: Duration = Duration::from_secs(10);
const NODE_SILENCE: Duration = Duration::from_secs(35);

type Ws = WebSocketStream<TokioIo<Upgraded>>;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("the relay speaks WebSocket only")]
    NotWebSocket,
    #[error("a relay credential is required")]
    MissingCredential,
    #[error("relay credential refused: {0}")]
    Credential(#[from] CredentialError),
    #[error("no such session, or it has ended")]
    SessionGone,
    #[error("this page may not join as the {0}")]
    WrongOrigin(&'static str),
    #[error("this credential does not admit the {0} of this session")]
    WrongRole(&'static str),
}

impl RelayError {
    pub fn status(&self) -> StatusCode {
        match self {
            RelayError::NotWebSocket => StatusCode::BAD_REQUEST,
            RelayError::MissingCredential | RelayError::Credential(_) => StatusCode::UNAUTHORIZED,
            RelayError::SessionGone => StatusCode::NOT_FOUND,
            RelayError::WrongOrigin(_) | RelayError::WrongRole(_) => StatusCode::FORBIDDEN,
        }
    }
}

/// One session's room and the outboxes of its connections, locked together so that what the room
/// decides is queued in the same order it was decided.
struct Entry {
    room: Room,
    outboxes: HashMap<ConnId, Arc<Outbox>>,
    /// Since when this node has had no connection in the room (scale-out: the room may still have
    /// members on other nodes, but this node stops following it after a grace).
    empty_since: Option<Instant>,
    /// Scale-out: when each other node last said anything about this room, and when this one last
    /// restated its own members.
    heard: HashMap<u64, Instant>,
    announced: Option<Instant>,
    /// Connections between taking the room and joining it: the sweeper must not drop it under them
    /// (with scale-out a joiner first waits for the subscription).
    joining: usize,
    /// Scale-out: done once the node hears the session's subject; every joiner waits for it, so no join
    /// is announced before the answers to it can arrive.
    followed: Arc<tokio::sync::OnceCell<()>>,
}

type Rooms = Mutex<HashMap<SessionId, Arc<Mutex<Entry>>>>;

struct Inner {
    config: RelayConfig,
    mask: Arc<[String]>,
    sessions: Sessions,
    public: Arc<PublicOrigin>,
    rooms: Rooms,
    /// Visitor metadata (online, last seen) and the debug event log; never what is relayed.
    store: Store,
    next_conn: AtomicU64,
    sweeping: AtomicBool,
    /// The other nodes' rooms, when scale-out is on.
    link: Option<Arc<RoomLink>>,
    /// This node's number (0 alone), the high bits of its connection ids.
    node: u64,
}

/// The relay: cheap to clone, shared by every connection.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Room state stays consistent across a panic elsewhere (each handle() call is all-or-nothing).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Relay {
    pub fn new(
        config: RelayConfig,
        sessions: Sessions,
        public: Arc<PublicOrigin>,
        store: Store,
        link: Option<Arc<RoomLink>>,
    ) -> Relay {
        let node = link.as_ref().map_or(0, |l| l.node());
        Relay {
            inner: Arc::new(Inner {
                mask: config.mask_selectors.clone().into(),
                config,
                sessions,
                public,
                rooms: Mutex::new(HashMap::new()),
                store,
                next_conn: AtomicU64::new((node << NODE_SHIFT) + 1),
                sweeping: AtomicBool::new(false),
                link,
                node,
            }),
        }
    }

    /// Checks a relay request and answers `101 Switching Protocols`; the connection then runs in its own
    /// task. Refusals happen before the upgrade, with a status code and no socket kept.
    pub async fn upgrade(
        &self,
        mut req: Request<hyper::body::Incoming>,
    ) -> Result<Response<ProxyBody>, RelayError> {
        let accept = websocket_accept(req.headers())?;
        let token = query_param(req.uri().query().unwrap_or_default(), "t")
            .ok_or(RelayError::MissingCredential)?;
        let credential = self.inner.sessions.verify(&token, SystemTime::now())?;
        if self
            .inner
            .sessions
            .find(&credential.session)
            .await
            .is_none()
        {
            return Err(RelayError::SessionGone);
        }
        self.check_origin(req.headers(), &credential)?;
        let client = Client::of(&req);
        let on_upgrade = hyper::upgrade::on(&mut req);
        let relay = self.clone();
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                relay.serve(upgraded, credential, client).await;
            }
        });
        Ok(switching_protocols(accept))
    }

    /// Browsers always send `Origin` on WebSocket requests: an agent must come from the public origin, a
    /// visitor from a proxy host of its own session. Clients without `Origin` are not browsers and rely
    /// on the credential alone.
    fn check_origin(&self, headers: &HeaderMap, credential: &Credential) -> Result<(), RelayError> {
        let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
            return Ok(());
        };
        let authority = origin.split_once("://").map_or(origin, |(_, a)| a);
        let ok = match credential.role {
            Role::Agent => origin == self.inner.public.origin(),
            Role::Visitor => self
                .inner
                .public
                .decode_authority(authority)
                .is_ok_and(|(session, _)| session == credential.session),
        };
        if ok {
            Ok(())
        } else {
            Err(RelayError::WrongOrigin(credential.role.as_str()))
        }
    }

    /// Ends a session's room at once (the session was removed).
    pub fn revoke(&self, session: &SessionId) {
        let entry = lock(&self.inner.rooms).get(session).cloned();
        if let Some(entry) = entry {
            self.apply(&entry, session, Event::Revoked, None, false);
        }
    }

    /// How many rooms exist (for tests and the bench).
    pub fn rooms(&self) -> usize {
        lock(&self.inner.rooms).len()
    }

    async fn serve(&self, upgraded: Upgraded, credential: Credential, client: Client) {
        let cfg = &self.inner.config;
        let max = match credential.role {
            Role::Visitor => cfg.max_visitor_message,
            Role::Agent => cfg.max_agent_message,
        };
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        let ws = WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            WsRole::Server,
            Some(ws_config),
        )
        .await;
        let conn = self.inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let outbox = Arc::new(Outbox::new(cfg.queue_messages, cfg.queue_bytes));
        let session = credential.session;
        let role = credential.role;
        let entry = self.room(&session);
        let followed = lock(&entry).followed.clone();
        followed.get_or_init(|| self.follow(&session)).await;
        let join = Event::Join {
            conn,
            role,
            now: Instant::now(),
        };
        self.apply(&entry, &session, join, Some((conn, outbox.clone())), true);
        lock(&entry).joining -= 1;
        self.note_presence(&entry, &session, role, &client, EventName::RelayJoin);

        let (sink, stream) = ws.split();
        let done = CancellationToken::new();
        let send_timeout = Duration::from_millis(cfg.send_timeout_ms);
        let writer = tokio::spawn(write_loop(sink, outbox.clone(), send_timeout, done.clone()));
        let reader = Reader {
            relay: self,
            entry: &entry,
            session: &session,
            conn,
            role,
            outbox: &outbox,
        };
        reader.run(stream, &done).await;

        let leave = Event::Leave {
            conn,
            now: Instant::now(),
        };
        self.apply(&entry, &session, leave, None, true);
        self.note_presence(&entry, &session, role, &client, EventName::RelayLeave);
        {
            let mut guard = lock(&entry);
            guard.outboxes.remove(&conn);
            if guard.outboxes.is_empty() {
                guard.empty_since = Some(Instant::now());
            }
        }
        outbox.close(close::NORMAL, "bye");
        let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
        // Who and when only: never a session id, a credential or anything relayed.
        tracing::debug!(role = role.as_str(), "relay connection ended");
    }

    /// After a join or leave: what the room says now (a page replaced by a newer one leaves the
    /// visitor online) goes to the store.
    fn note_presence(
        &self,
        entry: &Arc<Mutex<Entry>>,
        session: &SessionId,
        role: Role,
        client: &Client,
        name: EventName,
    ) {
        let online = lock(entry).room.presence().visitor;
        record::presence(&self.inner.store, session, role, client, online, name);
    }

    /// The session's room, counted as being joined until the caller's join is applied.
    fn room(&self, session: &SessionId) -> Arc<Mutex<Entry>> {
        self.ensure_sweeper();
        let cfg = &self.inner.config;
        let mut rooms = lock(&self.inner.rooms);
        let entry = rooms
            .entry(session.clone())
            .or_insert_with(|| {
                Arc::new(Mutex::new(Entry {
                    room: Room::new(
                        cfg.max_agents,
                        self.inner.mask.clone(),
                        cfg.max_visitor_message,
                    ),
                    outboxes: HashMap::new(),
                    empty_since: None,
                    heard: HashMap::new(),
                    announced: None,
                    joining: 0,
                    followed: Arc::new(tokio::sync::OnceCell::new()),
                }))
            })
            .clone();
        // Under the map's lock, so the sweeper's `forget` sees it.
        lock(&entry).joining += 1;
        entry
    }

    /// Feeds one event to a room and carries out what it decides: queue texts (an overflowing outbox
    /// becomes a `Lagged` event, fed back), close connections, end the session.
    /// `local`: the event is one of this node's connections', so the other nodes hear of it too
    /// (queued under the room's lock, so they hear in the order this room took it).
    fn apply(
        &self,
        entry: &Arc<Mutex<Entry>>,
        session: &SessionId,
        event: Event<'_>,
        register: Option<(ConnId, Arc<Outbox>)>,
        local: bool,
    ) {
        let mut guard = lock(entry);
        if let Some((conn, outbox)) = register {
            guard.outboxes.insert(conn, outbox);
            guard.empty_since = None;
        }
        let link = self.inner.link.as_ref().filter(|_| local);
        if let Some((link, note)) = link.zip(note_of(&event)) {
            let text = relayed_text(&event);
            link.publish(session, bridge::encode(self.inner.node, &note, text));
        }
        let mut actions = guard.room.handle(event);
        let mut end_session = false;
        // Each overflow empties a queue, so the next push fits: a few rounds always settle it.
        for _ in 0..4 {
            if actions.is_empty() {
                break;
            }
            let mut lagged = Vec::new();
            for action in actions.drain(..) {
                match action {
                    Action::Send { to, text } => {
                        let pushed = guard.outboxes.get(&to).map(|ob| ob.push(text));
                        if pushed == Some(Push::Overflowed) {
                            lagged.push(to);
                        }
                    }
                    Action::Close { to, code, reason } => {
                        if let Some(ob) = guard.outboxes.get(&to) {
                            ob.close(code, reason);
                        }
                    }
                    Action::EndSession => end_session = true,
                }
            }
            let now = Instant::now();
            for conn in lagged {
                if let Some(link) = &self.inner.link {
                    let note = bridge::encode(self.inner.node, &Note::Lagged { conn }, None);
                    link.publish(session, note);
                }
                actions.extend(guard.room.handle(Event::Lagged { conn, now }));
            }
        }
        let ended = guard.room.is_ended();
        drop(guard);
        if end_session {
            self.inner.sessions.remove(session);
            let ended = EventName::SessionEnded;
            self.inner.store.event(session, ended, None, None);
        }
        if ended {
            self.forget(session, entry);
        }
    }

    /// Drops a room from the map, unless a newer room already took its place.
    fn forget(&self, session: &SessionId, entry: &Arc<Mutex<Entry>>) {
        let mut rooms = lock(&self.inner.rooms);
        let current = rooms.get(session).is_some_and(|e| Arc::ptr_eq(e, entry));
        if current && lock(entry).joining == 0 {
            rooms.remove(session);
            if let Some(link) = &self.inner.link {
                link.unwatch(session);
            }
        }
    }

    fn ensure_sweeper(&self) {
        if self.inner.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            loop {
                every.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                Relay { inner }.sweep();
            }
        });
    }

    /// Every room as it is now, taken out of the map so that handling each locks only that room.
    fn all_rooms(&self) -> Vec<(SessionId, Arc<Mutex<Entry>>)> {
        lock(&self.inner.rooms)
            .iter()
            .map(|(id, e)| (id.clone(), e.clone()))
            .collect()
    }

    /// Ends rooms whose session is gone, retries pending resyncs, and drops rooms nobody uses.
    fn sweep(&self) {
        let rooms = self.all_rooms();
        let now = Instant::now();
        for (session, entry) in rooms {
            let event = if self.inner.sessions.get(&session).is_none() {
                Event::Revoked
            } else {
                Event::Tick { now }
            };
            self.apply(&entry, &session, event, None, false);
            if self.inner.link.is_some() {
                self.keep_nodes_current(&entry, &session, now);
            }
            let unused = {
                let guard = lock(&entry);
                let left_long_ago = guard
                    .empty_since
                    .is_some_and(|at| now.saturating_duration_since(at) > CONSENT_GRACE);
                guard.room.is_idle(now) || left_long_ago
            };
            if unused {
                self.forget(&session, &entry);
            }
        }
    }
}

/// One connection's incoming side.
struct Reader<'a> {
    relay: &'a Relay,
    entry: &'a Arc<Mutex<Entry>>,
    session: &'a SessionId,
    conn: ConnId,
    role: Role,
    outbox: &'a Arc<Outbox>,
}

impl Reader<'_> {
    async fn run(&self, mut stream: SplitStream<Ws>, done: &CancellationToken) {
        let cfg = &self.relay.inner.config;
        let (rate, burst) = match self.role {
            Role::Visitor => (cfg.visitor_rate, cfg.visitor_burst),
            Role::Agent => (cfg.agent_rate, cfg.agent_burst),
        };
        let mut limit = RateLimit::new(rate, burst, Instant::now());
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout(IDLE_TIMEOUT, stream.next()) => next,
                () = done.cancelled() => return,
            };
            let message = match next {
                Err(_) => return self.outbox.close(close::NORMAL, "idle"),
                Ok(None) => return,
                Ok(Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. })))) => {
                    return self.outbox.close(close::TOO_BIG, "message too big")
                }
                Ok(Some(Err(_))) => return,
                Ok(Some(Ok(message))) => message,
            };
            let text = match message {
                Message::Text(text) => text,
                Message::Close(_) => return,
                Message::Binary(_) => return self.outbox.close(close::PROTOCOL, "text only"),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
            let now = Instant::now();
            if !limit.allow(now) {
                return self.outbox.close(close::RATE_LIMITED, "too many messages");
            }
            if self.handle(&text, now).is_err() || self.outbox.is_closed() {
                return;
            }
        }
    }

    fn handle(
        &self,
        text: &tokio_tungstenite::tungstenite::Utf8Bytes,
        now: Instant,
    ) -> Result<(), ()> {
        let conn = self.conn;
        let event = match self.role {
            Role::Visitor => message::parse_visitor(text).map(|msg| Event::Visitor {
                conn,
                msg,
                text,
                now,
            }),
            Role::Agent => message::parse_agent(text).map(|msg| Event::Agent {
                conn,
                msg,
                text,
                now,
            }),
        };
        match event {
            Ok(event) => {
                self.relay
                    .apply(self.entry, self.session, event, None, true);
                record::message(&self.relay.inner.store, self.session, self.role, text.len());
                Ok(())
            }
            Err(e) => {
                self.outbox.close(e.close_code(), "bad message");
                Err(())
            }
        }
    }
}

/// One connection's outgoing side: drains the outbox, pings, and gives up on a client that takes longer
/// than `send_timeout` to accept one message.
async fn write_loop(
    mut sink: SplitSink<Ws, Message>,
    outbox: Arc<Outbox>,
    send_timeout: Duration,
    done: CancellationToken,
) {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        let (message, last) = tokio::select! {
            item = outbox.pop() => match item {
                Item::Text(text) => (Message::Text(text), false),
                Item::Close(code, reason) => {
                    let frame = CloseFrame { code: code.into(), reason: reason.into() };
                    (Message::Close(Some(frame)), true)
                }
            },
            _ = ping.tick() => (Message::Ping(Default::default()), false),
        };
        let sent = tokio::time::timeout(send_timeout, sink.send(message)).await;
        if last || !matches!(sent, Ok(Ok(()))) {
            break;
        }
    }
    done.cancel();
}

/// `Sec-WebSocket-Accept` for a valid upgrade request.
fn websocket_accept(headers: &HeaderMap) -> Result<HeaderValue, RelayError> {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let key = headers.get(header::SEC_WEBSOCKET_KEY);
    match key {
        Some(key)
            if has(header::UPGRADE, "websocket")
                && has(header::CONNECTION, "upgrade")
                && version_ok =>
        {
            HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
                .map_err(|_| RelayError::NotWebSocket)
        }
        _ => Err(RelayError::NotWebSocket),
    }
}

fn switching_protocols(accept: HeaderValue) -> Response<ProxyBody> {
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
