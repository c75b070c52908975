//! Visitor metadata in SQLite: the statements only; what may be stored is decided in `store/visitors.rs`.

use std::time::SystemTime;

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::store::retention::{self, VISITOR_TTL};
use crate::store::visitors::{self, Identity, Seen, VisitorRecord, MAX_LIST};
use crate::store::StoreError;

const COLUMNS: &str =
    "id, created_at, last_seen, last_ip, last_page_url, last_page_at, device, os, \
                       browser, online, external_id, identities";
const TOUCHED: &str = "coalesce(last_seen, created_at)";

pub fn record_seen(conn: &Connection, seen: &Seen, now: SystemTime) -> Result<(), StoreError> {
    forget_if_expired(conn, &seen.visitor, now)?;
    let device = seen.device.as_ref();
    conn.prepare_cached(
        "INSERT INTO visitors (id, created_at, last_seen, last_ip, last_page_url, last_page_at,
                               device, os, browser, online)
         VALUES (?1, ?2, ?2, ?3, ?4, CASE WHEN ?4 IS NULL THEN NULL ELSE ?2 END, ?5, ?6, ?7,
                 coalesce(?8, 0))
         ON CONFLICT (id) DO UPDATE SET
             last_seen = max(coalesce(last_seen, 0), excluded.last_seen),
             last_ip = coalesce(excluded.last_ip, last_ip),
             last_page_url = coalesce(excluded.last_page_url, last_page_url),
             last_page_at = coalesce(excluded.last_page_at, last_page_at),
             device = coalesce(excluded.device, device),
             os = coalesce(excluded.os, os),
             browser = coalesce(excluded.browser, browser),
             online = coalesce(?8, online)",
    )?
    .execute(params![
        seen.visitor,
        seen.at,
        seen.ip,
        seen.page_url,
        device.map(|d| d.kind),
        device.map(|d| d.os),
        device.map(|d| d.browser),
        seen.online,
    ])?;
    Ok(())
}

pub fn record_identity(
    conn: &Connection,
    visitor: &str,
    identity: &Identity,
    at: i64,
    now: SystemTime,
) -> Result<(), StoreError> {
    forget_if_expired(conn, visitor, now)?;
    let identities = visitors::encode_identities(identity)?;
    conn.execute(
        "INSERT INTO visitors (id, created_at, external_id, identities) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET
             external_id = coalesce(excluded.external_id, external_id),
             identities = coalesce(excluded.identities, identities)",
        params![visitor, at, identity.external_id, identities],
    )?;
    Ok(())
}

/// A record past its time must not lend old fields to a new sighting, even before the sweep runs.
fn forget_if_expired(conn: &Connection, visitor: &str, now: SystemTime) -> Result<(), StoreError> {
    let cutoff = retention::cutoff(now, VISITOR_TTL);
    // One statement per sighting: prepared once per connection, not parsed each time.
    conn.prepare_cached(&format!(
        "DELETE FROM visitors WHERE id = ?1 AND {TOUCHED} <= ?2"
    ))?
    .execute(params![visitor, cutoff])?;
    Ok(())
}

pub fn list(conn: &Connection, now: SystemTime) -> Result<Vec<VisitorRecord>, StoreError> {
    let cutoff = retention::cutoff(now, VISITOR_TTL);
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM visitors WHERE {TOUCHED} > ?1 ORDER BY {TOUCHED} DESC, id LIMIT ?2"
    ))?;
    let limit = i64::try_from(MAX_LIST).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![cutoff, limit], from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub fn get(
    conn: &Connection,
    id: &str,
    now: SystemTime,
) -> Result<Option<VisitorRecord>, StoreError> {
    let cutoff = retention::cutoff(now, VISITOR_TTL);
    let sql = format!("SELECT {COLUMNS} FROM visitors WHERE id = ?1 AND {TOUCHED} > ?2");
    Ok(conn
        .query_row(&sql, params![id, cutoff], from_row)
        .optional()?)
}

/// Deletes a visitor and the debug events of its session. True when a live (unexpired) record was
/// there; an expired one is deleted too, but was already gone as far as the API is concerned.
pub fn delete(conn: &Connection, id: &str, now: SystemTime) -> Result<bool, StoreError> {
    let cutoff = retention::cutoff(now, VISITOR_TTL);
    let tx = conn.unchecked_transaction()?;
    let touched: Option<i64> = tx
        .query_row(
            &format!("DELETE FROM visitors WHERE id = ?1 RETURNING {TOUCHED}"),
            params![id],
            |row| row.get(0),
        )
        .optional()?;
    tx.execute("DELETE FROM events WHERE session = ?1", params![id])?;
    tx.commit()?;
    Ok(touched.is_some_and(|t| t > cutoff))
}

/// Deletes every visitor past its time; returns how many.
pub fn sweep(conn: &Connection, now: SystemTime) -> Result<usize, StoreError> {
    let cutoff = retention::cutoff(now, VISITOR_TTL);
    Ok(conn.execute(
        &format!("DELETE FROM visitors WHERE {TOUCHED} <= ?1"),
        params![cutoff],
    )?)
}

/// Nobody is connected to a process that has just started: an online flag left by a crash is stale.
pub fn reset_online(conn: &Connection) -> Result<(), StoreError> {
    conn.execute("UPDATE visitors SET online = 0 WHERE online != 0", [])?;
    Ok(())
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<VisitorRecord> {
    let identities: Option<String> = row.get(11)?;
    Ok(VisitorRecord {
        id: row.get(0)?,
        created_at: row.get(1)?,
        last_seen: row.get(2)?,
        last_ip: row.get(3)?,
        last_page_url: row.get(4)?,
        last_page_at: row.get(5)?,
        device: row.get(6)?,
        os: row.get(7)?,
        browser: row.get(8)?,
        online: row.get(9)?,
        external_id: row.get(10)?,
        identities: visitors::decode_identities(identities),
    })
}
