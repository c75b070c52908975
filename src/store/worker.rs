//! The store's own thread: SQLite is synchronous, so one thread owns the connection and the async side
//! only ever sends it commands. Writes that arrive together share one transaction (one fsync); a query
//! first commits what came before it, so it sees every earlier write, and a delete is durable before
//! its answer goes out.

use std::time::SystemTime;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::events::{self, EventRecord, NewEvent};
use super::visitors::{self, Identity, Seen, VisitorRecord};
use super::StoreError;

/// Most commands taken off the queue per transaction.
const MAX_BATCH: usize = 512;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// How many records a sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub visitors: usize,
    pub events: usize,
}

pub enum Command {
    Seen(Seen, SystemTime),
    Identify {
        visitor: String,
        identity: Identity,
        at: i64,
        now: SystemTime,
    },
    Event(NewEvent),
    Visitors(SystemTime, Reply<Vec<VisitorRecord>>),
    Visitor(String, SystemTime, Reply<Option<VisitorRecord>>),
    Delete(String, SystemTime, Reply<bool>),
    Events(String, SystemTime, Reply<Vec<EventRecord>>),
    /// At start: clear stale online flags, then sweep.
    Start(SystemTime),
    Sweep(SystemTime, Reply<Swept>),
    /// Commit, close the file, then answer.
    Close(oneshot::Sender<()>),
}

enum Write {
    Seen(Seen, SystemTime),
    Identify(String, Identity, i64, SystemTime),
    Event(NewEvent),
}

/// The thread's body: runs until the queue closes or a `Close` arrives.
pub fn run(mut conn: Connection, mut queue: mpsc::Receiver<Command>) {
    let mut writes = Vec::new();
    while let Some(first) = queue.blocking_recv() {
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(command) = next.take() {
            taken += 1;
            match command {
                Command::Seen(seen, now) => writes.push(Write::Seen(seen, now)),
                Command::Identify {
                    visitor,
                    identity,
                    at,
                    now,
                } => writes.push(Write::Identify(visitor, identity, at, now)),
                Command::Event(event) => writes.push(Write::Event(event)),
                Command::Close(done) => {
                    flush(&mut conn, &mut writes);
                    drop(conn);
                    let _ = done.send(());
                    return;
                }
                query => {
                    flush(&mut conn, &mut writes);
                    answer(&conn, query);
                }
            }
            if taken < MAX_BATCH {
                next = queue.try_recv().ok();
            }
        }
        flush(&mut conn, &mut writes);
    }
}

/// Commits the pending writes in one transaction. A failure is logged (SQLite's message names tables
/// and constraints, never values) and the batch is lost: the request that caused it is long answered.
fn flush(conn: &mut Connection, writes: &mut Vec<Write>) {
    if writes.is_empty() {
        return;
    }
    if let Err(e) = try_flush(conn, writes) {
        tracing::warn!(error = %e, records = writes.len(), "store: a batch of writes was lost");
    }
    writes.clear();
}

fn try_flush(conn: &mut Connection, writes: &[Write]) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    for write in writes {
        match write {
            Write::Seen(seen, now) => visitors::record_seen(&tx, seen, *now)?,
            Write::Identify(visitor, identity, at, now) => {
                visitors::record_identity(&tx, visitor, identity, *at, *now)?
            }
            Write::Event(event) => events::insert(&tx, event)?,
        }
    }
    tx.commit()?;
    Ok(())
}

fn answer(conn: &Connection, query: Command) {
    match query {
        Command::Visitors(now, reply) => {
            let _ = reply.send(visitors::list(conn, now));
        }
        Command::Visitor(id, now, reply) => {
            let _ = reply.send(visitors::get(conn, &id, now));
        }
        Command::Delete(id, now, reply) => {
            let _ = reply.send(visitors::delete(conn, &id, now));
        }
        Command::Events(session, now, reply) => {
            let _ = reply.send(events::for_session(conn, &session, now));
        }
        Command::Start(now) => {
            let started = visitors::reset_online(conn).and_then(|()| sweep(conn, now));
            match started {
                Ok(swept) => log_sweep(swept),
                Err(e) => tracing::warn!(error = %e, "store: start-up sweep failed"),
            }
        }
        Command::Sweep(now, reply) => {
            let swept = sweep(conn, now);
            if let Ok(s) = &swept {
                log_sweep(*s);
            }
            let _ = reply.send(swept);
        }
        Command::Seen(..) | Command::Identify { .. } | Command::Event(_) | Command::Close(_) => {}
    }
}

fn sweep(conn: &Connection, now: SystemTime) -> Result<Swept, StoreError> {
    Ok(Swept {
        visitors: visitors::sweep(conn, now)?,
        events: events::sweep(conn, now)?,
    })
}

fn log_sweep(swept: Swept) {
    if swept != Swept::default() {
        tracing::info!(
            visitors = swept.visitors,
            events = swept.events,
            "store: expired records deleted"
        );
    }
}
