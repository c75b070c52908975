//! Visitor metadata in PostgreSQL: the statements only; what may be stored is decided in
//! `store/visitors.rs`. Unlike the single-node file, `online` belongs to the node that set it
//! (`nodes.rs`): a visitor reads as online only while that node is alive.

use std::time::SystemTime;

use tokio_postgres::{Client, GenericClient, Row, Transaction};

use super::nodes;
use super::prepared::Prepared;
use crate::store::retention::{self, VISITOR_TTL};
use crate::store::visitors::{self, Identity, Seen, VisitorRecord, MAX_LIST};
use crate::store::StoreError;

/// `$8` is the sighting's `online` (null: unchanged), `$9` this node. A leave from one node does not
/// clear a flag another node set: that node still holds a connection of the visitor.
pub const SEEN: &str = "
INSERT INTO cobrowse_visitors AS v (id, created_at, last_seen, last_ip, last_page_url, last_page_at,
                                    device, os, browser, online, online_node)
VALUES ($1, $2::bigint, $2::bigint, $3, $4::text, CASE WHEN $4::text IS NULL THEN NULL ELSE $2::bigint END,
        $5, $6, $7,
        coalesce($8::boolean, false), CASE WHEN $8::boolean THEN $9::text END)
ON CONFLICT (id) DO UPDATE SET
    last_seen = greatest(coalesce(v.last_seen, 0), excluded.last_seen),
    last_ip = coalesce(excluded.last_ip, v.last_ip),
    last_page_url = coalesce(excluded.last_page_url, v.last_page_url),
    last_page_at = coalesce(excluded.last_page_at, v.last_page_at),
    device = coalesce(excluded.device, v.device),
    os = coalesce(excluded.os, v.os),
    browser = coalesce(excluded.browser, v.browser),
    online = CASE WHEN $8::boolean IS NULL THEN v.online
                  WHEN $8::boolean THEN true
                  WHEN v.online_node <> $9::text THEN v.online
                  ELSE false END,
    online_node = CASE WHEN $8::boolean IS NULL THEN v.online_node
                       WHEN $8::boolean THEN $9::text
                       WHEN v.online_node <> $9::text THEN v.online_node
                       ELSE NULL END";

pub const IDENTIFY: &str = "
INSERT INTO cobrowse_visitors AS v (id, created_at, external_id, identities) VALUES ($1, $2, $3, $4)
ON CONFLICT (id) DO UPDATE SET
    external_id = coalesce(excluded.external_id, v.external_id),
    identities = coalesce(excluded.identities, v.identities)";

/// A record past its time must not lend old fields to a new sighting, even before the sweep runs.
pub const FORGET_IF_EXPIRED: &str =
    "DELETE FROM cobrowse_visitors WHERE id = $1 AND coalesce(last_seen, created_at) <= $2";

/// `$1` the visitor cutoff, `$2` the node cutoff (`nodes::lapse_cutoff`).
const SELECT: &str = "
SELECT id, created_at, last_seen, last_ip, last_page_url, last_page_at, device, os, browser,
       (online AND EXISTS (SELECT 1 FROM cobrowse_nodes n
                           WHERE n.id = v.online_node AND n.alive_at > $2)) AS online,
       external_id, identities
FROM cobrowse_visitors v
WHERE coalesce(last_seen, created_at) > $1";

pub async fn record_seen(
    tx: &Transaction<'_>,
    sql: &Prepared,
    node: &str,
    seen: &Seen,
    now: SystemTime,
) -> Result<(), StoreError> {
    forget_if_expired(tx, sql, &seen.visitor, now).await?;
    let device = seen.device.as_ref();
    tx.execute(
        &sql.seen,
        &[
            &seen.visitor,
            &seen.at,
            &seen.ip,
            &seen.page_url,
            &device.map(|d| d.kind),
            &device.map(|d| d.os),
            &device.map(|d| d.browser),
            &seen.online,
            &node,
        ],
    )
    .await?;
    Ok(())
}

pub async fn record_identity(
    tx: &Transaction<'_>,
    sql: &Prepared,
    visitor: &str,
    identity: &Identity,
    at: i64,
    now: SystemTime,
) -> Result<(), StoreError> {
    forget_if_expired(tx, sql, visitor, now).await?;
    let identities = visitors::encode_identities(identity)?;
    tx.execute(
        &sql.identify,
        &[&visitor, &at, &identity.external_id, &identities],
    )
    .await?;
    Ok(())
}

async fn forget_if_expired(
    tx: &Transaction<'_>,
    sql: &Prepared,
    visitor: &str,
    now: SystemTime,
) -> Result<(), StoreError> {
    let cutoff = retention::cutoff(now, VISITOR_TTL);
    tx.execute(&sql.forget, &[&visitor, &cutoff]).await?;
    Ok(())
}

pub async fn list(client: &Client, now: SystemTime) -> Result<Vec<VisitorRecord>, StoreError> {
    let sql = format!("{SELECT} ORDER BY coalesce(last_seen, created_at) DESC, id LIMIT $3");
    let limit = i64::try_from(MAX_LIST).unwrap_or(i64::MAX);
    let (cutoff, nodes) = cutoffs(now);
    let rows = client.query(&sql, &[&cutoff, &nodes, &limit]).await?;
    rows.iter().map(from_row).collect()
}

pub async fn get(
    client: &Client,
    id: &str,
    now: SystemTime,
) -> Result<Option<VisitorRecord>, StoreError> {
    let sql = format!("{SELECT} AND id = $3");
    let (cutoff, nodes) = cutoffs(now);
    let row = client.query_opt(&sql, &[&cutoff, &nodes, &id]).await?;
    row.as_ref().map(from_row).transpose()
}

/// Deletes a visitor and the debug events of its session, durably even on a server running with
/// `synchronous_commit = off`. True when a live (unexpired) record was there.
pub async fn delete(client: &mut Client, id: &str, now: SystemTime) -> Result<bool, StoreError> {
    let cutoff = retention::cutoff(now, VISITOR_TTL);
    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL synchronous_commit = on")
        .await?;
    let touched = tx
        .query_opt(
            "DELETE FROM cobrowse_visitors WHERE id = $1 RETURNING coalesce(last_seen, created_at)",
            &[&id],
        )
        .await?;
    tx.execute("DELETE FROM cobrowse_events WHERE session = $1", &[&id])
        .await?;
    tx.commit().await?;
    let touched: Option<i64> = touched.map(|row| row.try_get(0)).transpose()?;
    Ok(touched.is_some_and(|t| t > cutoff))
}

/// Deletes every visitor past its time; returns how many.
pub async fn sweep(client: &impl GenericClient, now: SystemTime) -> Result<usize, StoreError> {
    let cutoff = retention::cutoff(now, VISITOR_TTL);
    let deleted = client
        .execute(
            "DELETE FROM cobrowse_visitors WHERE coalesce(last_seen, created_at) <= $1",
            &[&cutoff],
        )
        .await?;
    Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
}

fn cutoffs(now: SystemTime) -> (i64, i64) {
    (
        retention::cutoff(now, VISITOR_TTL),
        nodes::lapse_cutoff(now),
    )
}

fn from_row(row: &Row) -> Result<VisitorRecord, StoreError> {
    Ok(VisitorRecord {
        id: row.try_get(0)?,
        created_at: row.try_get(1)?,
        last_seen: row.try_get(2)?,
        last_ip: row.try_get(3)?,
        last_page_url: row.try_get(4)?,
        last_page_at: row.try_get(5)?,
        device: row.try_get(6)?,
        os: row.try_get(7)?,
        browser: row.try_get(8)?,
        online: row.try_get(9)?,
        external_id: row.try_get(10)?,
        identities: visitors::decode_identities(row.try_get(11)?),
    })
}
