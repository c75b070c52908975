//! Visitor metadata: what a deployment may know about the visitor of a session, and nothing more. The
//! last IP, the last page (without its query or fragment) and when, device and browser families, whether
//! the visitor is online, and the external id and identities the deployer gave when creating the
//! session. Kept [`VISITOR_TTL`](super::retention::VISITOR_TTL) after the visitor was last seen.
//!
//! The visitor of a session is keyed by the session id (the visitor credential names nothing else).
//! SQL on a connection only; the store's thread calls it (`worker.rs`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::SystemTime;

use rusqlite::{params, Connection, OptionalExtension, Row};
use url::Url;

use super::device::Device;
use super::retention::{self, VISITOR_TTL};
use super::StoreError;

/// Longest page URL kept; longer ones are cut (at a character boundary).
const MAX_URL: usize = 2048;
/// Most visitors one listing returns, most recently seen first.
pub const MAX_LIST: usize = 1000;

/// One observation of a visitor, ready to store: a page load, joining or leaving the relay. `None`
/// fields keep what is stored.
#[derive(Debug, Clone)]
pub struct Seen {
    pub visitor: String,
    pub at: i64,
    pub ip: Option<String>,
    pub page_url: Option<String>,
    pub device: Option<Device>,
    pub online: Option<bool>,
}

/// What the deployer says about a session's visitor (`POST /api/sessions` `visitor`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub external_id: Option<String>,
    pub identities: BTreeMap<String, String>,
}

/// A stored visitor, as the API lists it. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitorRecord {
    pub id: String,
    pub created_at: i64,
    pub last_seen: Option<i64>,
    pub last_ip: Option<String>,
    pub last_page_url: Option<String>,
    pub last_page_at: Option<i64>,
    pub device: Option<String>,
    pub os: Option<String>,
    pub browser: Option<String>,
    pub online: bool,
    pub external_id: Option<String>,
    pub identities: BTreeMap<String, String>,
}

impl VisitorRecord {
    /// The time retention counts from: the last sighting, or the record's creation if never seen.
    pub fn touched(&self) -> i64 {
        self.last_seen.unwrap_or(self.created_at)
    }

    pub fn expires_at(&self) -> SystemTime {
        retention::expires_at(self.touched(), VISITOR_TTL)
    }
}

/// The page URL as stored: scheme, host, port and path. Query, fragment and user info never reach the
/// disk (they carry tokens, search terms, personal data).
pub fn page_url(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let mut text = String::from(url);
    if text.len() > MAX_URL {
        let mut end = MAX_URL;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// IPv4 clients on a dual-stack socket show as `::ffff:a.b.c.d`; stored as the IPv4 address.
pub fn ip_text(ip: IpAddr) -> String {
    ip.to_canonical().to_string()
}

const COLUMNS: &str =
    "id, created_at, last_seen, last_ip, last_page_url, last_page_at, device, os, \
                       browser, online, external_id, identities";
const TOUCHED: &str = "coalesce(last_seen, created_at)";

pub fn record_seen(conn: &Connection, seen: &Seen, now: SystemTime) -> Result<(), StoreError> {
    forget_if_expired(conn, &seen.visitor, now)?;
    let device = seen.device.as_ref();
    conn.execute(
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
        params![
            seen.visitor,
            seen.at,
            seen.ip,
            seen.page_url,
            device.map(|d| d.kind),
            device.map(|d| d.os),
            device.map(|d| d.browser),
            seen.online,
        ],
    )?;
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
    let identities = (!identity.identities.is_empty())
        .then(|| serde_json::to_string(&identity.identities))
        .transpose()
        .map_err(|e| StoreError::Encode(e.to_string()))?;
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
    conn.execute(
        &format!("DELETE FROM visitors WHERE id = ?1 AND {TOUCHED} <= ?2"),
        params![visitor, cutoff],
    )?;
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
        // Written by us as a JSON object; anything else reads as none rather than failing the list.
        identities: identities
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default(),
    })
}
