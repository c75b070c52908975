//! Scale-out (`docs/SCALING.md`): several proxy nodes behind one name, joined through a NATS server.
//! Off unless `[cluster] nats_url` is set; then this module is the only one that talks to the engine.
//!
//! - `rooms`: per-session subjects carrying the relay's room notes (`relay::bridge`) between nodes.
//! - `sessions`: sessions in a JetStream key-value bucket (links work on every node) and their
//!   creation and end on a subject (revocation reaches every node at once).
//! - purges of the per-node asset cache on a subject.
//!
//! Everything a node publishes goes through one queue and one task, so the engine sees a node's notes
//! in the order the node made them. When the engine is away the node keeps serving what it has: local
//! rooms relay locally, known sessions keep working; the client reconnects on its own and, once back,
//! the node re-announces its rooms and re-checks the sessions it holds.

pub mod rooms;
pub mod sessions;

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::ClusterConfig;
use crate::relay::bridge::MAX_NODE;
use crate::Shared;
pub use rooms::RoomLink;
pub use sessions::SessionLink;

/// Notes queued for the engine before new ones are dropped; the request path never waits on it.
const QUEUE: usize = 65_536;
/// How long a request to the engine (a bucket read or write) may take before the node gives up.
pub const ENGINE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot reach the cluster engine at {url}: {source}")]
    Connect {
        url: String,
        source: async_nats::ConnectError,
    },
    #[error("cluster engine: {0}")]
    Engine(String),
    #[error("the cluster engine did not answer within {0:?}")]
    Timeout(Duration),
}

/// This node's link to the engine; cheap to share.
pub struct Cluster {
    client: Client,
    prefix: String,
    publisher: Publisher,
    pub sessions: Arc<SessionLink>,
    pub rooms: Arc<RoomLink>,
    events: std::sync::Mutex<Option<mpsc::Receiver<Event>>>,
}

/// The single ordered way out to the engine.
#[derive(Clone)]
pub struct Publisher {
    queue: mpsc::Sender<(String, Bytes)>,
}

impl Publisher {
    fn start(client: Client) -> Publisher {
        let (queue, mut out) = mpsc::channel::<(String, Bytes)>(QUEUE);
        tokio::spawn(async move {
            while let Some((subject, payload)) = out.recv().await {
                if let Err(e) = client.publish(subject, payload).await {
                    tracing::warn!("cluster: a note was not published: {e}");
                }
            }
        });
        Publisher { queue }
    }

    pub fn send(&self, subject: String, payload: Bytes) {
        if self.queue.try_send((subject, payload)).is_err() {
            // The engine is away and the queue is full: local service goes on; the others resync later.
            tracing::debug!("cluster: publish queue full; a note was dropped");
        }
    }
}

/// What the purge subject carries.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PurgeNote {
    Url(String),
    All,
}

impl Cluster {
    /// Connects in the background: a node starts (and serves alone) even while the engine is away.
    pub async fn connect(
        config: &ClusterConfig,
        session_ttl: Duration,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let url = config.nats_url.clone().unwrap_or_default();
        let node = rand::Rng::gen_range(&mut rand::thread_rng(), 1..MAX_NODE);
        let name = config
            .node_name
            .clone()
            .unwrap_or_else(|| format!("cobrowse-{}-{node:05x}", std::process::id()));
        let (events_tx, events) = mpsc::channel(64);
        let mut options = ConnectOptions::new();
        if let Some(ca) = &config.nats_ca {
            // Room notes carry page content: over a network the engine link should be `tls://`.
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        let client = options
            .name(&name)
            // A node never needs its own notes back; without this every note would loop home.
            .no_echo()
            .retry_on_initial_connect()
            .max_reconnects(None)
            // Back within a second of the engine's return, and never hammering it while it is away.
            .reconnect_delay_callback(|attempts| {
                let attempts = u64::try_from(attempts).unwrap_or(u64::MAX);
                Duration::from_millis(attempts.saturating_mul(100).min(1000))
            })
            .connection_timeout(ENGINE_TIMEOUT)
            .event_callback(move |event| {
                let events = events_tx.clone();
                async move {
                    let _ = events.try_send(event);
                }
            })
            .connect(url.as_str())
            .await
            .map_err(|source| ClusterError::Connect { url, source })?;
        let prefix = config.prefix().to_owned();
        let publisher = Publisher::start(client.clone());
        let sessions = Arc::new(SessionLink::new(
            client.clone(),
            publisher.clone(),
            &prefix,
            session_ttl,
        ));
        let rooms = Arc::new(RoomLink::new(
            client.clone(),
            publisher.clone(),
            &prefix,
            node,
        ));
        Ok(Arc::new(Cluster {
            client,
            prefix,
            publisher,
            sessions,
            rooms,
            events: std::sync::Mutex::new(Some(events)),
        }))
    }

    fn purge_subject(&self) -> String {
        format!("{}.purge", self.prefix)
    }

    /// Tells every other node to purge a URL from its cache (this node already did).
    pub fn purge(&self, url: &str) {
        self.publish_purge(&PurgeNote::Url(url.to_owned()));
    }

    pub fn purge_all(&self) {
        self.publish_purge(&PurgeNote::All);
    }

    fn publish_purge(&self, note: &PurgeNote) {
        if let Ok(json) = serde_json::to_vec(note) {
            self.publisher.send(self.purge_subject(), json.into());
        }
    }

    /// Starts listening for the other nodes once the whole node exists. The tasks hold the node
    /// weakly and end with it.
    pub fn attach(self: &Arc<Self>, shared: &Arc<Shared>) {
        let weak = Arc::downgrade(shared);
        self.sessions.listen(weak.clone());
        tokio::spawn(listen_purges(
            self.client.clone(),
            self.purge_subject(),
            weak.clone(),
        ));
        let events = self.events.lock().ok().and_then(|mut e| e.take());
        if let Some(events) = events {
            tokio::spawn(on_engine_events(events, weak));
        }
    }
}

async fn listen_purges(client: Client, subject: String, shared: Weak<Shared>) {
    let Ok(mut purges) = client.subscribe(subject).await else {
        tracing::warn!("cluster: cannot subscribe to purges");
        return;
    };
    while let Some(message) = purges.next().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match serde_json::from_slice::<PurgeNote>(&message.payload) {
            Ok(PurgeNote::Url(url)) => {
                shared.cache.purge(&url);
            }
            Ok(PurgeNote::All) => {
                shared.cache.purge_all();
            }
            // Without the parser's words: they can quote the note, and a purge note carries a URL.
            Err(_) => tracing::debug!("cluster: a bad purge note"),
        }
    }
}

/// After every (re)connection: whatever was said while the engine was away is lost, so rooms are
/// announced afresh and the sessions this node holds are checked against the bucket.
async fn on_engine_events(mut events: mpsc::Receiver<Event>, shared: Weak<Shared>) {
    while let Some(event) = events.recv().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match event {
            Event::Connected => {
                tracing::info!("cluster: connected to the engine");
                shared.relay.resync();
                let sessions = shared.sessions.clone();
                let relay = shared.relay.clone();
                if let Some(cluster) = &shared.cluster {
                    let link = cluster.sessions.clone();
                    tokio::spawn(async move { link.recheck(&sessions, &relay).await });
                }
            }
            Event::Disconnected => {
                tracing::warn!("cluster: lost the engine; serving local sessions until it is back")
            }
            other => tracing::debug!("cluster: {other}"),
        }
    }
}
