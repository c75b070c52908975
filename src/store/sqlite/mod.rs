//! The embedded backend: one SQLite file in the data folder (`db.rs`), owned by one thread. SQLite is
//! synchronous, so the thread owns the connection and the async side only ever sends it commands.
//! Writes that arrive within a short window share one transaction (one fsync); a query first commits
//! what came before it, so it sees every earlier write, and a delete is durable before its answer goes out.

pub mod db;
mod events;
mod visitors;

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::command::{self, Command, Query, Swept, Write};
use super::{Inbox, StoreError, QUEUE};

/// Opens the file and starts the thread that owns it; returns its queue. Writes come through `inbox`.
pub fn start(dir: &Path, inbox: Arc<Inbox>) -> Result<mpsc::Sender<Command>, StoreError> {
    let conn = db::open(dir)?;
    let (queue, commands) = mpsc::channel(QUEUE);
    // The thread's own runtime, for the queue and the commit window's timer; SQLite itself stays
    // synchronous, and this thread is the only one that waits on it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(StoreError::Thread)?;
    std::thread::Builder::new()
        .name("cobrowse-store".into())
        .spawn(move || runtime.block_on(run(conn, commands, inbox)))
        .map_err(StoreError::Thread)?;
    Ok(queue)
}

/// The thread's body: runs until the queue closes or a `Close` arrives. Writes wait for the end of
/// their [`command::COMMIT_WINDOW`] to share a commit (here several fsyncs: `synchronous = FULL`, a
/// rollback journal made and removed); a query commits them first.
async fn run(mut conn: Connection, mut queue: mpsc::Receiver<Command>, inbox: Arc<Inbox>) {
    // When the open commit window ends.
    let mut window_end: Option<Instant> = None;
    loop {
        tokio::select! {
            command = queue.recv() => {
                let Some(first) = command else {
                    flush(&mut conn, &inbox.take());
                    return;
                };
                for command in command::batch(first, &mut queue) {
                    flush(&mut conn, &inbox.take());
                    match command {
                        Command::Query(query) => answer(&conn, query),
                        Command::Close(done) => return close(conn, done),
                    }
                }
            }
            () = inbox.opened(), if window_end.is_none() => {
                window_end = Some(Instant::now() + command::COMMIT_WINDOW);
            }
            () = command::window_end(window_end) => {
                let writes = inbox.end_window();
                window_end = (!writes.is_empty()).then(|| Instant::now() + command::COMMIT_WINDOW);
                flush(&mut conn, &writes);
            }
        }
    }
}

fn close(conn: Connection, done: oneshot::Sender<()>) {
    drop(conn);
    let _ = done.send(());
}

/// Commits the pending writes in one transaction. A failure is logged (SQLite's message names tables
/// and constraints, never values) and the batch is lost: the request that caused it is long answered.
fn flush(conn: &mut Connection, writes: &[Write]) {
    if writes.is_empty() {
        return;
    }
    if let Err(e) = try_flush(conn, writes) {
        tracing::warn!(error = %e, records = writes.len(), "store: a batch of writes was lost");
    }
}

fn try_flush(conn: &mut Connection, writes: &[Write]) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    for write in writes {
        match write {
            Write::Seen(seen, now) => visitors::record_seen(&tx, seen, *now)?,
            Write::Identify {
                visitor,
                identity,
                at,
                now,
            } => visitors::record_identity(&tx, visitor, identity, *at, *now)?,
            Write::Event(event) => events::insert(&tx, event)?,
        }
    }
    tx.commit()?;
    Ok(())
}

fn answer(conn: &Connection, query: Query) {
    match query {
        Query::Visitors(now, reply) => {
            let _ = reply.send(visitors::list(conn, now));
        }
        Query::Visitor(id, now, reply) => {
            let _ = reply.send(visitors::get(conn, &id, now));
        }
        Query::Delete(id, now, reply) => {
            let _ = reply.send(visitors::delete(conn, &id, now));
        }
        Query::Events(session, now, reply) => {
            let _ = reply.send(events::for_session(conn, &session, now));
        }
        Query::Start(now) => {
            let started = visitors::reset_online(conn).and_then(|()| sweep(conn, now));
            match started {
                Ok(swept) => command::log_sweep(swept),
                Err(e) => tracing::warn!(error = %e, "store: start-up sweep failed"),
            }
        }
        Query::Sweep(now, reply) => {
            let swept = sweep(conn, now);
            if let Ok(s) = &swept {
                command::log_sweep(*s);
            }
            let _ = reply.send(swept);
        }
    }
}

fn sweep(conn: &Connection, now: SystemTime) -> Result<Swept, StoreError> {
    Ok(Swept {
        visitors: visitors::sweep(conn, now)?,
        events: events::sweep(conn, now)?,
    })
}
