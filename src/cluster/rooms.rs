//! The relay's per-session subjects: `<prefix>.room.<session id>`. A node subscribes to a session when
//! its first client of that session joins and unsubscribes when its room goes, so it only ever
//! receives sessions it has clients for. What the notes mean is the relay's (`relay::bridge`); this
//! only moves them.

use std::collections::HashMap;
use std::sync::Mutex;

use async_nats::Client;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::Publisher;
use crate::url_codec::SessionId;

pub struct RoomLink {
    client: Client,
    publisher: Publisher,
    prefix: String,
    node: u64,
    watching: Mutex<HashMap<SessionId, CancellationToken>>,
}

impl RoomLink {
    pub fn new(client: Client, publisher: Publisher, prefix: &str, node: u64) -> RoomLink {
        RoomLink {
            client,
            publisher,
            prefix: prefix.to_owned(),
            node,
            watching: Mutex::new(HashMap::new()),
        }
    }

    /// This node's number, which the relay puts in the high bits of its connection ids.
    pub fn node(&self) -> u64 {
        self.node
    }

    fn subject(&self, session: &SessionId) -> String {
        format!("{}.room.{}", self.prefix, session.as_str())
    }

    /// Queues a note for the session's other nodes, in order with every other note of this node.
    pub fn publish(&self, session: &SessionId, note: Bytes) {
        self.publisher.send(self.subject(session), note);
    }

    /// Subscribes to a session and hands each note from the other nodes to `deliver`, until
    /// [`RoomLink::unwatch`]. Returns once the subscription is queued ahead of any later publish,
    /// so a reply to this node's next note cannot be missed.
    pub async fn watch(&self, session: &SessionId, deliver: impl Fn(Bytes) + Send + 'static) {
        let stop = CancellationToken::new();
        {
            let mut watching = self.watching.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(old) = watching.insert(session.clone(), stop.clone()) {
                old.cancel();
            }
        }
        let mut notes = match self.client.subscribe(self.subject(session)).await {
            Ok(notes) => notes,
            Err(e) => {
                tracing::warn!("cluster: cannot subscribe to a room: {e}");
                return;
            }
        };
        tokio::spawn(async move {
            loop {
                let note = tokio::select! {
                    note = notes.next() => note,
                    () = stop.cancelled() => break,
                };
                match note {
                    Some(message) => deliver(message.payload),
                    None => break,
                }
            }
            let _ = notes.unsubscribe().await;
        });
    }

    pub fn unwatch(&self, session: &SessionId) {
        let mut watching = self.watching.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(stop) = watching.remove(session) {
            stop.cancel();
        }
    }
}
