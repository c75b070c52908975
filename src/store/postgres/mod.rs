//! The shared backend, for several proxy nodes on one PostgreSQL database. The same commands and
//! batching as the SQLite thread, on a tokio task instead (the driver is async): writes that arrive
//! within the commit window share one transaction, a query first commits what came before it, a delete is committed
//! (synchronously) before its answer. What differs is what sharing demands: the online flag belongs to
//! a node (`nodes.rs`), the connection can drop and come back (`link.rs`; meanwhile writes are
//! dropped as under a full queue and queries fail), and deleted rows are vacuumed, since PostgreSQL
//! has no `secure_delete` (`schema.rs`).

mod events;
mod link;
mod nodes;
mod prepared;
mod schema;
mod visitors;

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};

use super::command::{self, Command, Query, Reply, Swept, Write};
use super::{Inbox, StoreError, QUEUE};
use crate::cache::Clock;
use link::{Conn, Link};
use schema::{Vacuum, EVENTS, VISITORS};

/// A database error as logs and API answers may show it: the SQLSTATE only. The server's message and
/// detail can quote the values of the row at fault (`Failing row contains (…)`), which are visitor
/// metadata; connection and protocol errors carry no row data and are shown whole.
pub fn redacted(e: &tokio_postgres::Error) -> String {
    match e.code() {
        Some(code) => format!("database error {}", code.code()),
        None => e.to_string(),
    }
}

/// Connects (once, so a wrong URL fails the start) and spawns the task; returns its queue. Writes come
/// through `inbox`.
pub async fn start(
    url: &str,
    clock: Arc<dyn Clock>,
    inbox: Arc<Inbox>,
) -> Result<mpsc::Sender<Command>, StoreError> {
    let config = link::config(url)?;
    let conn = link::connect(config.clone()).await?;
    let (queue, commands) = mpsc::channel(QUEUE);
    let task = Task {
        link: Link::up(config, conn),
        node: nodes::random_id(),
        clock,
        beat_at: None,
        inbox,
        writes: Vec::new(),
    };
    tokio::spawn(task.run(commands));
    Ok(queue)
}

struct Task {
    link: Link,
    /// This node's id in `cobrowse_nodes` and `online_node`.
    node: String,
    clock: Arc<dyn Clock>,
    /// When this node last heartbeat, on `clock`.
    beat_at: Option<SystemTime>,
    inbox: Arc<Inbox>,
    /// The writes being committed (taken from the inbox).
    writes: Vec<Write>,
}

impl Task {
    /// Runs until a `Close` arrives or every handle is gone; either way the node then leaves.
    async fn run(mut self, mut queue: mpsc::Receiver<Command>) {
        let mut beat = tokio::time::interval(nodes::HEARTBEAT);
        beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let inbox = self.inbox.clone();
        // When the open commit window ends (`command::COMMIT_WINDOW`).
        let mut window_end: Option<Instant> = None;
        let closed = loop {
            tokio::select! {
                command = queue.recv() => {
                    let Some(first) = command else { break None };
                    if let Some(done) = self.batch(first, &mut queue).await {
                        break Some(done);
                    }
                }
                () = inbox.opened(), if window_end.is_none() => {
                    window_end = Some(Instant::now() + command::COMMIT_WINDOW);
                }
                () = command::window_end(window_end) => {
                    self.writes.extend(inbox.end_window());
                    window_end = (!self.writes.is_empty())
                        .then(|| Instant::now() + command::COMMIT_WINDOW);
                    self.flush().await;
                }
                up = self.link.tend() => if up { self.heartbeat().await },
                _ = beat.tick() => self.heartbeat().await,
            }
        };
        self.leave().await;
        if let Some(done) = closed {
            let _ = done.send(());
        }
    }

    /// Handles the queries and `Close` queued together, each after committing the writes that came before
    /// it; returns the reply of a `Close` if one came.
    async fn batch(
        &mut self,
        first: Command,
        queue: &mut mpsc::Receiver<Command>,
    ) -> Option<oneshot::Sender<()>> {
        self.heartbeat_if_due().await;
        for command in command::batch(first, queue) {
            self.writes.extend(self.inbox.take());
            match command {
                Command::Query(query) => {
                    self.flush().await;
                    self.answer(query).await;
                }
                Command::Close(done) => {
                    self.flush().await;
                    return Some(done);
                }
            }
        }
        None
    }

    /// Commits the pending writes in one transaction, or drops them while the database is away.
    async fn flush(&mut self) {
        if self.writes.is_empty() {
            return;
        }
        let mut writes = std::mem::take(&mut self.writes);
        // Row locks in one order on every node: two batches touching the same visitors cannot deadlock.
        // The sort is stable, so one visitor's writes keep their order.
        writes.sort_by(|a, b| write_key(a).cmp(&write_key(b)));
        let Some(conn) = self.link.conn() else {
            tracing::debug!(
                records = writes.len(),
                "store: database unreachable; records dropped"
            );
            return;
        };
        if let Err(e) = try_flush(conn, &self.node, &writes).await {
            tracing::warn!(error = %e, records = writes.len(), "store: a batch of writes was lost");
            self.link.check();
        }
        writes.clear();
        self.writes = writes;
    }

    async fn answer(&mut self, query: Query) {
        let Some(conn) = self.link.conn() else {
            return query.refuse(|| StoreError::Unavailable);
        };
        match query {
            Query::Visitors(now, reply) => {
                let result = visitors::list(&conn.client, now).await;
                self.reply(reply, result);
            }
            Query::Visitor(id, now, reply) => {
                let result = visitors::get(&conn.client, &id, now).await;
                self.reply(reply, result);
            }
            Query::Delete(id, now, reply) => {
                let result = visitors::delete(&mut conn.client, &id, now).await;
                let deleted = result.is_ok();
                self.reply(reply, result);
                if deleted {
                    // A deletion request reaches every file of both tables.
                    self.vacuum(VISITORS, Vacuum::Full).await;
                    self.vacuum(EVENTS, Vacuum::Full).await;
                }
            }
            Query::Events(session, now, reply) => {
                let result = events::for_session(&conn.client, &session, now).await;
                self.reply(reply, result);
            }
            Query::Start(now) => {
                if let Err(e) = self.sweep(now).await {
                    tracing::warn!(error = %e, "store: start-up sweep failed");
                }
            }
            Query::Sweep(now, reply) => {
                let result = self.sweep(now).await;
                self.reply(reply, result);
            }
        }
    }

    /// Clears lapsed nodes' online flags, deletes what expired, and vacuums what was. Expired visitors
    /// are rewritten away like deleted ones; the (content-free, possibly large) event log is only
    /// pruned, and its space reused.
    async fn sweep(&mut self, now: SystemTime) -> Result<Swept, StoreError> {
        let conn = self.link.conn().ok_or(StoreError::Unavailable)?;
        let swept = sweep(&conn.client, now).await;
        let Ok(s) = swept else {
            self.link.check();
            return swept;
        };
        command::log_sweep(s);
        if s.visitors > 0 {
            self.vacuum(VISITORS, Vacuum::Full).await;
        }
        if s.events > 0 {
            self.vacuum(EVENTS, Vacuum::Plain).await;
        }
        swept
    }

    fn reply<T>(&mut self, reply: Reply<T>, result: Result<T, StoreError>) {
        if result.is_err() {
            self.link.check();
        }
        let _ = reply.send(result);
    }

    async fn vacuum(&mut self, table: &str, how: Vacuum) {
        if let Some(conn) = self.link.conn() {
            schema::vacuum(&conn.client, table, how).await;
        }
    }

    async fn heartbeat_if_due(&mut self) {
        let now = self.clock.now();
        let due = self.beat_at.is_none_or(|at| {
            now.duration_since(at)
                .is_ok_and(|since| since >= nodes::HEARTBEAT)
        });
        if due {
            self.heartbeat().await;
        }
    }

    async fn heartbeat(&mut self) {
        let now = self.clock.now();
        let Some(conn) = self.link.conn() else { return };
        match nodes::heartbeat(&conn.client, &self.node, now).await {
            Ok(()) => self.beat_at = Some(now),
            Err(e) => {
                tracing::warn!(error = %e, "store: node heartbeat failed");
                self.link.check();
            }
        }
    }

    /// Nobody is connected to a node that stops: its flags and row go (if the database is there).
    async fn leave(&mut self) {
        self.writes.extend(self.inbox.take());
        self.flush().await;
        let Some(conn) = self.link.conn() else { return };
        if let Err(e) = nodes::leave(&conn.client, &self.node).await {
            tracing::warn!(error = %e, "store: could not clear this node's online flags");
        }
    }
}

async fn try_flush(conn: &mut Conn, node: &str, writes: &[Write]) -> Result<(), StoreError> {
    let tx = conn.client.transaction().await?;
    let sql = &conn.prepared;
    for write in writes {
        match write {
            Write::Seen(seen, now) => visitors::record_seen(&tx, sql, node, seen, *now).await?,
            Write::Identify {
                visitor,
                identity,
                at,
                now,
            } => visitors::record_identity(&tx, sql, visitor, identity, *at, *now).await?,
            Write::Event(event) => events::insert(&tx, sql, event).await?,
        }
    }
    tx.commit().await?;
    Ok(())
}

async fn sweep(client: &tokio_postgres::Client, now: SystemTime) -> Result<Swept, StoreError> {
    nodes::clear_lapsed(client, now).await?;
    Ok(Swept {
        visitors: visitors::sweep(client, now).await?,
        events: events::sweep(client, now).await?,
    })
}

/// The row a write locks, if any (events only insert).
fn write_key(write: &Write) -> Option<&str> {
    match write {
        Write::Seen(seen, _) => Some(&seen.visitor),
        Write::Identify { visitor, .. } => Some(visitor),
        Write::Event(_) => None,
    }
}
