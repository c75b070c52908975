//! The debug event log in PostgreSQL: the statements only (`store/events.rs` has the records).

use std::time::SystemTime;

use tokio_postgres::{Client, GenericClient, Transaction};

use super::prepared::Prepared;
use crate::store::events::{self, EventRecord, NewEvent, MAX_LIST};
use crate::store::retention::{self, EVENT_TTL};
use crate::store::StoreError;

pub const INSERT: &str =
    "INSERT INTO cobrowse_events (at, session, name, role, bytes) VALUES ($1, $2, $3, $4, $5)";

pub async fn insert(
    tx: &Transaction<'_>,
    sql: &Prepared,
    event: &NewEvent,
) -> Result<(), StoreError> {
    let bytes = events::bytes_column(event.bytes);
    tx.execute(
        &sql.event,
        &[
            &event.at,
            &event.session,
            &event.name.as_str(),
            &event.role,
            &bytes,
        ],
    )
    .await?;
    Ok(())
}

pub async fn for_session(
    client: &Client,
    session: &str,
    now: SystemTime,
) -> Result<Vec<EventRecord>, StoreError> {
    let cutoff = retention::cutoff(now, EVENT_TTL);
    let limit = i64::try_from(MAX_LIST).unwrap_or(i64::MAX);
    let rows = client
        .query(
            "SELECT at, session, name, role, bytes FROM cobrowse_events
             WHERE session = $1 AND at > $2 ORDER BY at, seq LIMIT $3",
            &[&session, &cutoff, &limit],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(EventRecord {
                at: row.try_get(0)?,
                session: row.try_get(1)?,
                name: row.try_get(2)?,
                role: row.try_get(3)?,
                bytes: events::bytes_from_column(row.try_get(4)?),
            })
        })
        .collect()
}

/// Deletes every event past its time; returns how many.
pub async fn sweep(client: &impl GenericClient, now: SystemTime) -> Result<usize, StoreError> {
    let cutoff = retention::cutoff(now, EVENT_TTL);
    let deleted = client
        .execute("DELETE FROM cobrowse_events WHERE at <= $1", &[&cutoff])
        .await?;
    Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
}
