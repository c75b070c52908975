//! The debug event log in SQLite: the statements only (`store/events.rs` has the records).

use std::time::SystemTime;

use rusqlite::{params, Connection};

use crate::store::events::{self, EventRecord, NewEvent, MAX_LIST};
use crate::store::retention::{self, EVENT_TTL};
use crate::store::StoreError;

pub fn insert(conn: &Connection, event: &NewEvent) -> Result<(), StoreError> {
    let bytes = events::bytes_column(event.bytes);
    conn.prepare_cached(
        "INSERT INTO events (at, session, name, role, bytes) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        event.at,
        event.session,
        event.name.as_str(),
        event.role,
        bytes
    ])?;
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
        Ok(EventRecord {
            at: row.get(0)?,
            session: row.get(1)?,
            name: row.get(2)?,
            role: row.get(3)?,
            bytes: events::bytes_from_column(row.get(4)?),
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Deletes every event past its time; returns how many.
pub fn sweep(conn: &Connection, now: SystemTime) -> Result<usize, StoreError> {
    let cutoff = retention::cutoff(now, EVENT_TTL);
    Ok(conn.execute("DELETE FROM events WHERE at <= ?1", params![cutoff])?)
}
