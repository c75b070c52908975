//! What the proxy keeps across restarts, and for how long (`docs/DATA-POLICY.md`).
//! Visitor metadata (30 days after last seen, deletable on request) and, only when `debug_events` is on,
//! a content-free event log (7 days). Relayed content, bodies, cookies and query strings are never
//! handed to it: its inputs are typed ([`Sighting`], [`EventName`]) so there is nowhere to put them.
//!
//! Two backends behind one handle: an embedded SQLite file in the data folder (`sqlite/`, one node) and
//! a PostgreSQL database several nodes share (`postgres/`). Either way one owner holds the connection
//! and this handle queues commands to it (`command.rs`), so the request path never waits on a database;
//! what is stored and when it expires is decided here, once, for both (`visitors.rs`, `events.rs`,
//! `retention.rs`, `device.rs`). Records are written on the clock the rest of the proxy uses
//! (`cache::Clock`), so tests move time instead of waiting.

mod command;
pub mod device;
pub mod events;
mod inbox;
mod postgres;
pub mod retention;
mod sqlite;
pub mod visitors;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::cache::Clock;
use crate::url_codec::SessionId;
pub use command::Swept;
use command::{Command, Query, Write};
pub use events::{EventName, EventRecord};
use inbox::Inbox;
pub use visitors::{Identity, VisitorRecord};

/// Writes held for the store's owner before new ones are dropped, and queries queued for it (the
/// request path never waits).
const QUEUE: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data folder {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the store {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("store: {}", postgres::redacted(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// The shared database cannot be reached right now; the store keeps trying to reconnect.
    #[error("the store's database is unreachable")]
    Unavailable,
    #[error("store: cannot encode a record: {0}")]
    Encode(String),
    #[error("cannot start the store's thread: {0}")]
    Thread(std::io::Error),
    #[error("the store is closed")]
    Closed,
}

/// One observation of a session's visitor. The store keeps the page URL without its query and
/// fragment, and the User-Agent as device and browser families only.
#[derive(Debug, Clone, Copy)]
pub struct Sighting<'a> {
    pub visitor: &'a SessionId,
    pub ip: Option<IpAddr>,
    pub page: Option<&'a Url>,
    pub user_agent: Option<&'a str>,
    /// Whether the visitor is on the relay now; `None` leaves it as it was.
    pub online: Option<bool>,
}

/// Cheap to clone; every clone queues to the same owner.
#[derive(Clone)]
pub struct Store {
    /// Queries and `Close`, answered at once.
    queue: mpsc::Sender<Command>,
    /// Writes, committed at the end of a commit window.
    inbox: Arc<Inbox>,
    clock: Arc<dyn Clock>,
    debug_events: bool,
}

impl Store {
    /// Opens (or creates) the embedded store in `dir` and starts its thread, which first clears stale
    /// online flags and sweeps what expired while the proxy was down.
    pub fn open(
        dir: &Path,
        clock: Arc<dyn Clock>,
        debug_events: bool,
    ) -> Result<Store, StoreError> {
        let inbox = Arc::new(Inbox::new(QUEUE));
        let queue = sqlite::start(dir, inbox.clone())?;
        Ok(Store::started(queue, inbox, clock, debug_events))
    }

    /// Connects to a shared PostgreSQL store (a libpq-style connection string or a `postgres://`
    /// URL), creating its tables if missing, and starts the task that owns the connection. Fails when
    /// the first connection does (a wrong URL should stop the proxy at start); later drops are retried.
    /// Plain TCP, no TLS: meant for a database on loopback or a private network.
    pub async fn open_postgres(
        url: &str,
        clock: Arc<dyn Clock>,
        debug_events: bool,
    ) -> Result<Store, StoreError> {
        let inbox = Arc::new(Inbox::new(QUEUE));
        let queue = postgres::start(url, clock.clone(), inbox.clone()).await?;
        Ok(Store::started(queue, inbox, clock, debug_events))
    }

    fn started(
        queue: mpsc::Sender<Command>,
        inbox: Arc<Inbox>,
        clock: Arc<dyn Clock>,
        debug_events: bool,
    ) -> Store {
        let store = Store {
            queue,
            inbox,
            clock,
            debug_events,
        };
        store.send_start();
        store
    }

    fn send_start(&self) {
        let start = Command::Query(Query::Start(self.clock.now()));
        if self.queue.try_send(start).is_err() {
            tracing::debug!("store: queue full or closed at start");
        }
    }

    /// Whether the debug event log is on for this deployment.
    pub fn debug_events(&self) -> bool {
        self.debug_events
    }

    /// Records a sighting; returns at once.
    pub fn seen(&self, s: Sighting<'_>) {
        let now = self.clock.now();
        let seen = visitors::Seen {
            visitor: s.visitor.as_str().to_owned(),
            at: retention::unix_ms(now),
            ip: s.ip.map(visitors::ip_text),
            page_url: s.page.map(visitors::page_url),
            device: s.user_agent.map(device::classify),
            online: s.online,
        };
        self.queue_write(Write::Seen(seen, now));
    }

    /// Records the deployer's external id and identities for a session's visitor; returns at once.
    pub fn identify(&self, visitor: &SessionId, identity: Identity) {
        let now = self.clock.now();
        self.queue_write(Write::Identify {
            visitor: visitor.as_str().to_owned(),
            identity,
            at: retention::unix_ms(now),
            now,
        });
    }

    /// Logs a content-free event when the debug event log is on; otherwise does nothing.
    pub fn event(
        &self,
        session: &SessionId,
        name: EventName,
        role: Option<&'static str>,
        bytes: Option<u64>,
    ) {
        if !self.debug_events {
            return;
        }
        self.queue_write(Write::Event(events::NewEvent {
            at: retention::unix_ms(self.clock.now()),
            session: session.as_str().to_owned(),
            name,
            role,
            bytes,
        }));
    }

    /// Unexpired visitors, most recently seen first (at most [`visitors::MAX_LIST`]).
    pub async fn visitors(&self) -> Result<Vec<VisitorRecord>, StoreError> {
        let now = self.clock.now();
        self.query(|reply| Query::Visitors(now, reply)).await
    }

    pub async fn visitor(&self, id: &SessionId) -> Result<Option<VisitorRecord>, StoreError> {
        let (id, now) = (id.as_str().to_owned(), self.clock.now());
        self.query(|reply| Query::Visitor(id, now, reply)).await
    }

    /// Deletes a visitor and its session's events, durably; false when there was no such visitor.
    pub async fn delete_visitor(&self, id: &SessionId) -> Result<bool, StoreError> {
        let (id, now) = (id.as_str().to_owned(), self.clock.now());
        self.query(|reply| Query::Delete(id, now, reply)).await
    }

    /// A session's unexpired events, oldest first (at most [`events::MAX_LIST`]).
    pub async fn events(&self, session: &SessionId) -> Result<Vec<EventRecord>, StoreError> {
        let (session, now) = (session.as_str().to_owned(), self.clock.now());
        self.query(|reply| Query::Events(session, now, reply)).await
    }

    /// Deletes everything past its time now.
    pub async fn sweep(&self) -> Result<Swept, StoreError> {
        let now = self.clock.now();
        self.query(|reply| Query::Sweep(now, reply)).await
    }

    /// Sweeps every [`retention::SWEEP_EVERY`] until `stop` is cancelled or the store closes.
    pub fn spawn_sweeper(&self, stop: CancellationToken) {
        let store = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(retention::SWEEP_EVERY);
            // The first tick is immediate; the start-up sweep already ran.
            every.tick().await;
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    () = stop.cancelled() => return,
                }
                if let Err(StoreError::Closed) = store.sweep().await {
                    return;
                }
            }
        });
    }

    /// Commits what is queued and lets go of the file or connection (so another store may open the
    /// folder at once; a shared store also clears the online flags this node set).
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.queue.send(Command::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
    }

    fn queue_write(&self, write: Write) {
        if !self.inbox.push(write) {
            // Full (a burst beyond QUEUE): a lost sighting beats a stalled request.
            tracing::debug!("store: queue full; a record was dropped");
        }
    }

    async fn query<T>(
        &self,
        query: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Query,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Command::Query(query(reply)))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}
