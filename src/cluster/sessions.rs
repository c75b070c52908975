//! Sessions across nodes. The bucket (JetStream key-value, one entry per session, entries age out with
//! the session lifetime) is the record every node can read; the subject tells the nodes that are up
//! at once. A session is created once the bucket has it, so its link works on any node from the
//! first request; an end is published first (every node drops it and closes its room within
//! milliseconds) and then deleted from the bucket.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, kv};
use async_nats::Client;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use url::Url;

use super::{ClusterError, Publisher, ENGINE_TIMEOUT};
use crate::relay::Relay;
use crate::session::{Session, Sessions};
use crate::url_codec::SessionId;
use crate::Shared;

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    id: String,
    start: String,
    expires_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Note {
    Created(Record),
    Ended(String),
}

pub struct SessionLink {
    client: Client,
    publisher: Publisher,
    subject: String,
    bucket_name: String,
    ttl: Duration,
    bucket: OnceCell<kv::Store>,
}

impl SessionLink {
    pub fn new(client: Client, publisher: Publisher, prefix: &str, ttl: Duration) -> SessionLink {
        SessionLink {
            client,
            publisher,
            subject: format!("{prefix}.sessions"),
            bucket_name: format!("{prefix}_sessions"),
            ttl,
            bucket: OnceCell::new(),
        }
    }

    /// The bucket, created on first use (every node asks with the same settings, so whichever comes
    /// first creates it and the others open it).
    async fn bucket(&self) -> Result<&kv::Store, ClusterError> {
        let opened = self
            .bucket
            .get_or_try_init(|| async {
                tokio::time::timeout(ENGINE_TIMEOUT, self.open_bucket())
                    .await
                    .map_err(|_| ClusterError::Timeout(ENGINE_TIMEOUT))?
            })
            .await?;
        Ok(opened)
    }

    /// The client's own `create_key_value` first reads account fields that servers before 2.10 do not
    /// send (Debian ships 2.9), so the bucket's stream is made here, exactly as a key-value bucket's
    /// stream is laid out, and then opened as a bucket.
    async fn open_bucket(&self) -> Result<kv::Store, ClusterError> {
        let js = jetstream::new(self.client.clone());
        if let Ok(store) = js.get_key_value(self.bucket_name.clone()).await {
            return Ok(store);
        }
        let stream = jetstream::stream::Config {
            name: format!("KV_{}", self.bucket_name),
            subjects: vec![format!("$KV.{}.>", self.bucket_name)],
            max_messages_per_subject: 1,
            max_age: self.ttl,
            storage: jetstream::stream::StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            num_replicas: 1,
            discard: jetstream::stream::DiscardPolicy::New,
            ..Default::default()
        };
        // Another node may win the race to create it; opening it afterwards is what matters.
        let _ = js.get_or_create_stream(stream).await;
        js.get_key_value(self.bucket_name.clone())
            .await
            .map_err(|e| ClusterError::Engine(e.to_string()))
    }

    /// Stores a new session and tells the other nodes; an error means the session must not be handed out.
    pub async fn created(&self, session: &Session) -> Result<(), ClusterError> {
        let record = Record {
            id: session.id.as_str().to_owned(),
            start: session.start.to_string(),
            expires_ms: unix_ms(session.expires_at),
        };
        let json = serde_json::to_vec(&record).map_err(|e| ClusterError::Engine(e.to_string()))?;
        let bucket = self.bucket().await?;
        tokio::time::timeout(ENGINE_TIMEOUT, bucket.put(session.id.as_str(), json.into()))
            .await
            .map_err(|_| ClusterError::Timeout(ENGINE_TIMEOUT))?
            .map_err(|e| ClusterError::Engine(e.to_string()))?;
        self.publish(&Note::Created(record));
        Ok(())
    }

    /// Tells every node the session ended, then removes it from the bucket.
    pub fn ended(self: &Arc<Self>, id: &SessionId) {
        self.publish(&Note::Ended(id.as_str().to_owned()));
        let link = self.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let deleted = async {
                let bucket = link.bucket().await?;
                tokio::time::timeout(ENGINE_TIMEOUT, bucket.delete(id.as_str()))
                    .await
                    .map_err(|_| ClusterError::Timeout(ENGINE_TIMEOUT))?
                    .map_err(|e| ClusterError::Engine(e.to_string()))
            };
            if let Err(e) = deleted.await {
                // Nodes that were up dropped it already; the entry still ages out with the session.
                tracing::warn!(
                    "cluster: an ended session stays in the bucket until it expires: {e}"
                );
            }
        });
    }

    /// The session as the bucket has it; `None` when it has not, or the engine cannot say now.
    pub async fn lookup(&self, id: &SessionId) -> Option<Session> {
        match self.read(id).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!("cluster: cannot look a session up: {e}");
                None
            }
        }
    }

    async fn read(&self, id: &SessionId) -> Result<Option<Session>, ClusterError> {
        let bucket = self.bucket().await?;
        let value = tokio::time::timeout(ENGINE_TIMEOUT, bucket.get(id.as_str()))
            .await
            .map_err(|_| ClusterError::Timeout(ENGINE_TIMEOUT))?
            .map_err(|e| ClusterError::Engine(e.to_string()))?;
        Ok(value.and_then(|bytes| decode(&bytes)))
    }

    /// After an outage: drops (and closes the rooms of) sessions the bucket no longer has, since
    /// their end may have been announced while this node could not hear it.
    pub async fn recheck(&self, sessions: &Sessions, relay: &Relay) {
        for id in sessions.known_ids() {
            if let Ok(None) = self.read(&id).await {
                sessions.forget(&id);
                relay.revoke(&id);
            }
        }
    }

    fn publish(&self, note: &Note) {
        if let Ok(json) = serde_json::to_vec(note) {
            self.publisher.send(self.subject.clone(), json.into());
        }
    }

    /// Applies the other nodes' creations and ends as they happen.
    pub fn listen(&self, shared: Weak<Shared>) {
        let client = self.client.clone();
        let subject = self.subject.clone();
        tokio::spawn(async move {
            let Ok(mut notes) = client.subscribe(subject).await else {
                tracing::warn!("cluster: cannot subscribe to session notes");
                return;
            };
            while let Some(message) = notes.next().await {
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                match serde_json::from_slice::<Note>(&message.payload) {
                    Ok(Note::Created(record)) => {
                        if let Some(session) = from_record(record) {
                            shared.sessions.learn(Arc::new(session));
                        }
                    }
                    Ok(Note::Ended(id)) => {
                        if let Some(id) = SessionId::parse(&id) {
                            shared.sessions.forget(&id);
                            shared.relay.revoke(&id);
                        }
                    }
                    // Without the parser's words: they can quote the note, which carries a start URL.
                    Err(_) => tracing::debug!("cluster: a bad session note"),
                }
            }
        });
    }
}

fn decode(bytes: &[u8]) -> Option<Session> {
    from_record(serde_json::from_slice(bytes).ok()?)
}

fn from_record(record: Record) -> Option<Session> {
    Some(Session {
        id: SessionId::parse(&record.id)?,
        start: Url::parse(&record.start).ok()?,
        expires_at: UNIX_EPOCH + Duration::from_millis(record.expires_ms),
    })
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_no_session() {
        let record = Record {
            id: "k3x9q2m7wa".into(),
            start: "https://www.shop.test/a?b".into(),
            expires_ms: 1_900_000_000_000,
        };
        let json = serde_json::to_vec(&record).unwrap();
        let session = decode(&json).unwrap();
        assert_eq!(session.id.as_str(), "k3x9q2m7wa");
        assert_eq!(session.start.as_str(), "https://www.shop.test/a?b");
        assert_eq!(unix_ms(session.expires_at), 1_900_000_000_000);
        for bad in [
            &b"{}"[..],
            b"null",
            b"{\"id\":\"UPPER\",\"start\":\"x\",\"expires_ms\":1}",
        ] {
            assert!(decode(bad).is_none());
        }
    }
}
