//! Live sessions: which session ids exist, what they were created for, and when they expire.
//! Memory only; an expired session is gone and its proxy hosts stop answering.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use url::Url;

use crate::url_codec::SessionId;

#[derive(Debug)]
pub struct Session {
    pub id: SessionId,
    /// The page the session was created for (the visitor link opens it).
    pub start: Url,
    pub expires_at: SystemTime,
}

pub struct Sessions {
    live: moka::sync::Cache<SessionId, Arc<Session>>,
    ttl: Duration,
}

impl Sessions {
    pub fn new(ttl: Duration) -> Sessions {
        Sessions {
            live: moka::sync::Cache::builder()
                .time_to_live(ttl)
                .max_capacity(1_000_000)
                .build(),
            ttl,
        }
    }

    pub fn create(&self, start: Url) -> Arc<Session> {
        let session = Arc::new(Session {
            id: SessionId::random(),
            start,
            expires_at: SystemTime::now() + self.ttl,
        });
        self.live.insert(session.id.clone(), session.clone());
        session
    }

    pub fn get(&self, id: &SessionId) -> Option<Arc<Session>> {
        self.live.get(id)
    }

    pub fn remove(&self, id: &SessionId) {
        self.live.invalidate(id);
    }
}
