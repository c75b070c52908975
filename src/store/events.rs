//! The content-free debug event log: what happened in a session, when, and how many bytes, never what
//! was in it. Names are a closed set ([`EventName`]), so no caller can put text of its own into the log.
//! Written only when `debug_events` is on; kept [`EVENT_TTL`](super::retention::EVENT_TTL).

use std::time::SystemTime;

use rusqlite::{params, Connection};

use super::retention::{self, EVENT_TTL};
use super::StoreError;

/// Most events one listing returns, oldest first.
pub const MAX_LIST: usize = 1000;

/// Every event the log can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventName {
    SessionCreated,
    SessionEnded,
    /// A page of the session was loaded (no URL is kept here).
    PageView,
    RelayJoin,
    /// One relay message; `bytes` is its size.
    RelayMessage,
    RelayLeave,
}

impl EventName {
    pub fn as_str(self) -> &'static str {
        match self {
            EventName::SessionCreated => "session.created",
            EventName::SessionEnded => "session.ended",
            EventName::PageView => "page.view",
            EventName::RelayJoin => "relay.join",
            EventName::RelayMessage => "relay.message",
            EventName::RelayLeave => "relay.leave",
        }
    }
}

/// An event to store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub at: i64,
    pub session: String,
    pub name: EventName,
    /// `visitor` or `agent`, for relay events.
    pub role: Option<&'static str>,
    pub bytes: Option<u64>,
}

/// A stored event, as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub at: i64,
    pub session: String,
    pub name: String,
    pub role: Option<String>,
    pub bytes: Option<u64>,
}

pub fn insert(conn: &Connection, event: &NewEvent) -> Result<(), StoreError> {
    let bytes = event.bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX));
    conn.execute(
        "INSERT INTO events (at, session, name, role, bytes) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            event.at,
            event.session,
            event.name.as_str(),
            event.role,
            bytes
        ],
    )?;
    Ok(())
}

pub fn for_session(
    conn: &Connection,
    session: &str,
    now: SystemTime,
) -> Result<Vec<EventRecord>, StoreError> {
    let cutoff = retention::cutoff(now, EVENT_TTL);
    let mut stmt = conn.prepare(
        "SELECT at, session, name, role, bytes FROM events
         WHERE session = ?1 AND at > ?2 ORDER BY at, seq LIMIT ?3",
    )?;
    let limit = i64::try_from(MAX_LIST).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![session, cutoff, limit], |row| {
        let bytes: Option<i64> = row.get(4)?;
        Ok(EventRecord {
            at: row.get(0)?,
            session: row.get(1)?,
            name: row.get(2)?,
            role: row.get(3)?,
            bytes: bytes.and_then(|b| u64::try_from(b).ok()),
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Deletes every event past its time; returns how many.
pub fn sweep(conn: &Connection, now: SystemTime) -> Result<usize, StoreError> {
    let cutoff = retention::cutoff(now, EVENT_TTL);
    Ok(conn.execute("DELETE FROM events WHERE at <= ?1", params![cutoff])?)
}
