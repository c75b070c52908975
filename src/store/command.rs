//! What the handle sends a backend, and the batching rule both backends follow. One queue and one
//! owner per connection keep the request path from ever waiting on the database; sharing the command
//! set and the batching here keeps SQLite and PostgreSQL answering the same way.

use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot};

use super::events::{EventRecord, NewEvent};
use super::visitors::{Identity, Seen, VisitorRecord};
use super::StoreError;

/// Most commands taken off the queue at once.
pub const MAX_BATCH: usize = 512;

/// How long a write may wait for later ones to share its commit. A busy proxy records a sighting for
/// every page it serves, and each commit is fsyncs: committing each write as it came cost more CPU than
/// rewriting the pages (`docs/PERFORMANCE.md`). Queries and `Close` commit first, so nothing a caller
/// can read waits; a crash loses at most this much of the newest metadata.
pub const COMMIT_WINDOW: std::time::Duration = std::time::Duration::from_millis(100);

pub type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// How many records a sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub visitors: usize,
    pub events: usize,
}

/// What goes through the owner's channel; writes go through the [`super::Inbox`] instead.
pub enum Command {
    /// Answered after every earlier write is committed.
    Query(Query),
    /// Commit, let go of the connection, then answer.
    Close(oneshot::Sender<()>),
}

pub enum Write {
    Seen(Seen, SystemTime),
    Identify {
        visitor: String,
        identity: Identity,
        at: i64,
        now: SystemTime,
    },
    Event(NewEvent),
}

pub enum Query {
    Visitors(SystemTime, Reply<Vec<VisitorRecord>>),
    Visitor(String, SystemTime, Reply<Option<VisitorRecord>>),
    Delete(String, SystemTime, Reply<bool>),
    Events(String, SystemTime, Reply<Vec<EventRecord>>),
    /// At start: clear stale online flags, then sweep.
    Start(SystemTime),
    Sweep(SystemTime, Reply<Swept>),
}

impl Query {
    /// Answers with `error` (the backend cannot run it); `Start` has nobody to tell.
    pub fn refuse(self, error: impl FnOnce() -> StoreError) {
        match self {
            Query::Visitors(_, reply) => drop(reply.send(Err(error()))),
            Query::Visitor(_, _, reply) => drop(reply.send(Err(error()))),
            Query::Delete(_, _, reply) => drop(reply.send(Err(error()))),
            Query::Events(_, _, reply) => drop(reply.send(Err(error()))),
            Query::Sweep(_, reply) => drop(reply.send(Err(error()))),
            Query::Start(_) => {}
        }
    }
}

/// The commands to handle together: `first`, then whatever is already queued, up to [`MAX_BATCH`].
pub fn batch(
    first: Command,
    queue: &mut mpsc::Receiver<Command>,
) -> impl Iterator<Item = Command> + '_ {
    std::iter::once(first)
        .chain(std::iter::from_fn(|| queue.try_recv().ok()))
        .take(MAX_BATCH)
}

pub fn log_sweep(swept: Swept) {
    if swept != Swept::default() {
        tracing::info!(
            visitors = swept.visitors,
            events = swept.events,
            "store: expired records deleted"
        );
    }
}

/// Resolves at `at`, or never when there is no open window.
pub async fn window_end(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
